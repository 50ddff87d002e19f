"""Which customers a message belongs to: pure decisions over a known directory."""

from __future__ import annotations

import mailgen
import pytest

from mailcrm.domain.classify import classify
from mailcrm.domain.matching import Directory, MatchPolicy, fold_address, match
from mailcrm.domain.messages import parse_message

TEAM = frozenset({"alice@acme.example", "bob@acme.example"})


def _directory(**extra: object) -> Directory:
    values: dict[str, object] = {
        "customers_by_address": {"somsri@siam.example": 1, "wang@golden.example": 2},
        "customers_by_message_id": {},
        "companies_by_domain": {"siam.example": 10},
        "team_addresses": TEAM,
    }
    values.update(extra)
    return Directory(**values)  # type: ignore[arg-type]


def _match(raw: bytes, directory: Directory | None = None, policy: MatchPolicy | None = None):  # type: ignore[no-untyped-def]
    parsed = parse_message(raw)
    return match(parsed, classify(parsed), directory or _directory(), policy or MatchPolicy())


def test_inbound_from_a_customer_is_a_reply_and_cc_customers_are_linked() -> None:
    result = _match(
        mailgen.make(sender="Somsri@Siam.example", to="alice@acme.example", cc=["wang@golden.example"])
    )
    assert result.direction == "in"
    assert set(result.links) == {(1, "from"), (2, "cc")}
    assert result.replied == (1,)
    assert result.lead is None


def test_outbound_links_recipients_and_is_no_reply() -> None:
    result = _match(mailgen.make(sender="alice@acme.example", to=["somsri@siam.example", "bob@acme.example"]))
    assert result.direction == "out"
    assert result.links == ((1, "to"),)
    assert result.replied == ()


def test_new_address_in_a_known_thread_is_recorded_on_the_customer() -> None:
    directory = _directory(customers_by_message_id={"<offer@acme.example>": frozenset({1})})
    raw = mailgen.make(
        sender="somsri.home@mail.example", to="alice@acme.example", in_reply_to="<offer@acme.example>"
    )
    result = _match(raw, directory)
    assert result.links == ((1, "from"),)
    assert result.new_addresses == ((1, "somsri.home@mail.example"),)
    assert result.replied == (1,)


def test_unknown_human_sender_becomes_a_lead_with_its_company() -> None:
    result = _match(mailgen.make(sender="new@siam.example", name="Kanokwan S.", to="alice@acme.example"))
    assert result.lead is not None
    assert result.lead.name == "Kanokwan S."
    assert result.lead.company_id == 10


def test_free_mail_never_identifies_a_company() -> None:
    directory = _directory(companies_by_domain={"gmail.com": 99})
    result = _match(mailgen.make(sender="someone@gmail.com", to="alice@acme.example"), directory)
    assert result.lead is not None and result.lead.company_id is None


@pytest.mark.parametrize(
    ("sender", "headers"),
    [
        ("noreply@shop.example", {}),
        ("news@list.example", {"List-Id": "<news.list.example>", "Precedence": "list"}),
        ("ooo@other.example", {"Auto-Submitted": "auto-replied"}),
    ],
)
def test_robots_do_not_become_leads(sender: str, headers: dict[str, str]) -> None:
    result = _match(mailgen.make(sender=sender, to="alice@acme.example", headers=headers))
    assert result.lead is None


def test_lead_creation_can_be_turned_off() -> None:
    result = _match(
        mailgen.make(sender="new@startup.example", to="alice@acme.example"),
        policy=MatchPolicy(create_leads=False),
    )
    assert result.lead is None and result.links == ()


def test_auto_reply_from_a_customer_is_linked_but_not_a_reply() -> None:
    result = _match(
        mailgen.make(
            sender="wang@golden.example",
            to="alice@acme.example",
            subject="自动回复",
            headers={"Auto-Submitted": "auto-replied"},
        )
    )
    assert result.links == ((2, "from"),)
    assert result.replied == ()


def test_spoofed_from_does_not_match_the_victim() -> None:
    raw = b"From: alice@evil.example)<wang@golden.example>\r\nTo: alice@acme.example\r\n\r\nhi\r\n"
    result = _match(raw)
    assert (2, "from") not in result.links


def test_address_folding() -> None:
    assert fold_address("john.doe+crm@googlemail.com") == "johndoe@gmail.com"
    assert fold_address("ann+news@acme.example") == "ann@acme.example"
    directory = _directory(customers_by_folded={"johndoe@gmail.com": 7})
    raw = mailgen.make(sender="John.Doe+x@gmail.com", to="alice@acme.example")
    assert _match(raw, directory, MatchPolicy(fold_addresses=True)).links == ((7, "from"),)
    assert _match(raw, directory, MatchPolicy(fold_addresses=False)).links == ()

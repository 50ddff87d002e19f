"""Unsubscribe tokens: signed per outbox row and address, short, and worthless once altered."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mailcrm.domain import unsubscribe

KEY = b"k" * 32


def test_a_token_verifies_for_its_row_and_address_only() -> None:
    token = unsubscribe.sign(KEY, 1234, "Ann@X.example")
    found = unsubscribe.find([f"unsubscribe-{token}"])
    assert found is not None and found.outbox_id == 1234
    assert unsubscribe.verify(KEY, found, "ann@x.example")  # addresses compare case-insensitively
    assert not unsubscribe.verify(KEY, found, "bob@x.example")
    assert not unsubscribe.verify(b"another key" * 3, found, "ann@x.example")
    assert unsubscribe.signed_for(KEY, found, ["bob@x.example", "ann@x.example"]) == "ann@x.example"
    assert unsubscribe.signed_for(KEY, found, ["bob@x.example"]) is None


def test_the_mailto_is_short_and_url_safe() -> None:
    token = unsubscribe.sign(KEY, 987_654_321, "ann@x.example")
    mailto = unsubscribe.mailto("alice@acme.example", token)
    assert mailto == f"mailto:alice@acme.example?subject=unsubscribe-{token}"
    assert len(token) <= 30 and all(c.isalnum() or c in "-_." for c in token)


@pytest.mark.parametrize(
    "tamper",
    [
        lambda t: t[:-1] + ("A" if t[-1] != "A" else "B"),  # the signature altered
        lambda t: "1" + t,  # another row, same signature
        lambda t: t.split(".")[0],  # no signature
    ],
)
def test_an_altered_token_verifies_for_nobody(tamper) -> None:  # type: ignore[no-untyped-def]
    token = unsubscribe.sign(KEY, 42, "ann@x.example")
    found = unsubscribe.find([f"Re: unsubscribe-{tamper(token)}"])
    assert found is None or unsubscribe.signed_for(KEY, found, ["ann@x.example"]) is None


def test_the_token_is_found_in_the_subject_or_the_first_body_line() -> None:
    token = unsubscribe.sign(KEY, 7, "ann@x.example")
    assert unsubscribe.find(["Unsubscribe", f"unsubscribe-{token}"]) is not None
    assert unsubscribe.find([f"AW: unsubscribe-{token}", None]) is not None
    assert unsubscribe.find(["unsubscribe", "please remove me"]) is None
    assert unsubscribe.find([f"xunsubscribe-{token}"]) is None


@given(outbox_id=st.integers(min_value=0, max_value=2**63), address=st.emails())
def test_any_row_and_address_round_trip(outbox_id: int, address: str) -> None:
    found = unsubscribe.find([f"unsubscribe-{unsubscribe.sign(KEY, outbox_id, address)}"])
    assert found is not None and found.outbox_id == outbox_id
    assert unsubscribe.verify(KEY, found, address)

"""The outbox store on SQLite and PostgreSQL: idempotent planning, claims, leases, outcomes."""

from __future__ import annotations

import json
import threading
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import typer
from sendrunner import OWNER, plan, seed_customers
from sqlalchemy import select
from typer.testing import CliRunner

from mailcrm.cli import outbox as outbox_cli
from mailcrm.cli import suppress as suppress_cli
from mailcrm.cli.context import AppContext
from mailcrm.domain.planning import PlannedEmail
from mailcrm.errors import ConflictError, NotFoundError, ValidationError
from mailcrm.store import outbox, timeline
from mailcrm.store.db import Database
from mailcrm.store.models import Message, MessageLink, OutboxItem, Suppression, TimelineEvent, table_of
from mailcrm.store.outbox.suppression import list_suppressed
from mailcrm.store.types import utcnow

LEASE = timedelta(seconds=60)


def _rows(db: Database) -> dict[int, OutboxItem]:
    with db.read() as session:
        return {row.id: row for row in session.execute(select(OutboxItem)).scalars()}  # type: ignore[misc]


def test_insert_planned_is_idempotent_and_fixes_message_ids(db: Database) -> None:
    ids = seed_customers(db, 3)
    due = utcnow() + timedelta(hours=1)
    planned = [
        PlannedEmail("thank-you", ids[0], "purchase:1", "thank_you", due),
        PlannedEmail("thank-you", ids[1], "purchase:2", "thank_you", due, sender=OWNER),
        PlannedEmail(
            "birthday", ids[2], "2026-03-02", "birthday", due, state="skipped", note="late: too old"
        ),
        PlannedEmail("thank-you", ids[0], "purchase:1", "thank_you", due),  # the same key twice
    ]
    with db.write() as session:
        assert outbox.insert_planned(session, planned, message_id_domain=None) == 3
    first = _rows(db)
    with db.write() as session:
        assert outbox.insert_planned(session, planned, message_id_domain="other.example") == 0
    again = _rows(db)
    assert {k: v.message_id for k, v in first.items()} == {k: v.message_id for k, v in again.items()}
    by_key = {(r.rule, r.customer_id): r for r in again.values()}
    # The owner's domain when no domain is configured; unique Message-IDs.
    assert all(r.message_id.endswith("@acme.example>") for r in again.values())
    assert len({r.message_id for r in again.values()}) == 3
    skipped = by_key[("birthday", ids[2])]
    assert (skipped.state, skipped.skip_reason) == ("skipped", "late: too old")
    assert by_key[("thank-you", ids[0])].state == "due"


def test_configured_message_id_domain_wins(db: Database) -> None:
    ids = seed_customers(db, 1)
    with db.write() as session:
        outbox.insert_planned(
            session,
            [PlannedEmail("r", ids[0], "x", "t", utcnow())],
            message_id_domain="mail.acme.example",
        )
    (row,) = _rows(db).values()
    assert row.message_id.endswith("@mail.acme.example>")


def test_claim_takes_due_rows_once(db: Database) -> None:
    ids = seed_customers(db, 6)
    now = utcnow()
    plan(db, ids[:4], due_at=now - timedelta(minutes=5))
    plan(db, ids[4:], due_at=now + timedelta(hours=1))  # not due yet
    first = outbox.claim(db, "a", 3, LEASE, now)
    second = outbox.claim(db, "b", 10, LEASE, now)
    assert len(first) == 3 and len(second) == 1
    assert {r.id for r in first}.isdisjoint({r.id for r in second})
    assert all(r.sender == OWNER and r.claimed_by == "a" for r in first)  # the owner is the sender
    assert outbox.claim(db, "c", 10, LEASE, now) == []
    states = _rows(db)
    assert sorted(r.state for r in states.values()) == ["claimed"] * 4 + ["due"] * 2
    assert {r.claimed_by for r in states.values() if r.state == "claimed"} == {"a", "b"}


def test_concurrent_claims_never_share_a_row(db: Database) -> None:
    ids = seed_customers(db, 120)
    plan(db, ids)
    now = utcnow()
    results: dict[str, list[int]] = {}

    def worker(name: str) -> None:
        taken: list[int] = []
        for _ in range(40):
            batch = outbox.claim(db, name, 7, LEASE, now)
            if not batch:
                break
            taken += [r.id for r in batch]
        results[name] = taken

    threads = [threading.Thread(target=worker, args=(f"w{n}",)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    everything = [row for taken in results.values() for row in taken]
    assert len(everything) == len(set(everything)) == 120


def test_an_expired_lease_is_taken_over(db: Database) -> None:
    ids = seed_customers(db, 2)
    plan(db, ids)
    now = utcnow()
    crashed = outbox.claim(db, "dead", 10, LEASE, now)
    assert len(crashed) == 2
    assert outbox.claim(db, "alive", 10, LEASE, now + LEASE / 2) == []  # lease still running
    taken = outbox.claim(db, "alive", 10, LEASE, now + LEASE + timedelta(seconds=1))
    assert {r.id for r in taken} == {r.id for r in crashed}
    assert all(r.claimed_by == "alive" and r.ambiguous_attempts == 0 for r in taken)
    # The dead worker's late writes no longer apply.
    assert outbox.mark_sending(db, crashed[0]) is False
    assert outbox.mark_failed(db, crashed[0], "late") is False


def test_heartbeat_keeps_the_lease(db: Database) -> None:
    ids = seed_customers(db, 1)
    plan(db, ids)
    now = utcnow()
    outbox.claim(db, "a", 10, LEASE, now)
    assert outbox.extend_lease(db, "a", now + 3 * LEASE) == 1
    assert outbox.claim(db, "b", 10, LEASE, now + 2 * LEASE) == []


@pytest.mark.parametrize("policy", ["resend", "hold"])
def test_a_row_left_inside_an_smtp_transaction(db: Database, policy: str) -> None:
    ids = seed_customers(db, 2)
    plan(db, ids)
    now = utcnow()
    rows = outbox.claim(db, "dead", 10, LEASE, now)
    assert outbox.mark_sending(db, rows[0], now)  # the final dot was on its way
    later = now + LEASE + timedelta(seconds=1)
    taken = outbox.claim(db, "next", 10, LEASE, later, ambiguous=policy)  # type: ignore[arg-type]
    states = _rows(db)
    interrupted = states[rows[0].id]
    if policy == "resend":
        assert {r.id for r in taken} == {rows[0].id, rows[1].id}
        again = next(r for r in taken if r.id == rows[0].id)
        assert again.message_id == rows[0].message_id  # the same Message-ID goes out again
        assert again.ambiguous_attempts == 1
        assert interrupted.attempt_started_at is None and interrupted.attempts == 1
        # A second interruption of the resend is held, not resent again.
        assert outbox.mark_sending(db, again, later)
        outbox.claim(db, "third", 10, LEASE, later + LEASE * 2)
        assert _rows(db)[rows[0].id].state == "delivery_unknown"
    else:
        assert [r.id for r in taken] == [rows[1].id]
        assert interrupted.state == "delivery_unknown"
        assert "delivery unknown" in (interrupted.last_error or "")


@pytest.mark.parametrize("policy", ["resend", "hold"])
def test_release_gives_back_unstarted_rows(db: Database, policy: str) -> None:
    ids = seed_customers(db, 3)
    plan(db, ids)
    now = utcnow()
    rows = outbox.claim(db, "me", 10, LEASE, now)
    outbox.mark_sending(db, rows[0], now)
    assert outbox.release(db, "me", now, ambiguous=policy) == 3  # type: ignore[arg-type]
    states = _rows(db)
    assert [states[r.id].state for r in rows[1:]] == ["due", "due"]
    assert all(states[r.id].claimed_by is None for r in rows)
    assert states[rows[0].id].state == ("due" if policy == "resend" else "delivery_unknown")


def test_mark_sent_records_the_message_once(db: Database) -> None:
    ids = seed_customers(db, 1)
    plan(db, ids)
    (row,) = outbox.claim(db, "me", 10, LEASE, utcnow())
    assert outbox.mark_sending(db, row)
    sent = {"sender": OWNER, "recipient": "c0@example.org", "subject": "Thanks", "snippet": "Dear ..."}
    assert outbox.mark_sent(db, row, **sent) is True
    assert outbox.mark_sent(db, row, **sent) is False  # a second copy is reported, not recorded twice
    with db.read() as session:
        stored = session.execute(select(OutboxItem)).scalars().one()  # type: ignore[call-overload]
        assert (stored.state, stored.attempts, stored.sender) == ("sent", 1, OWNER)
        assert stored.sent_at is not None and stored.claimed_by is None
        message = session.execute(select(Message)).scalars().one()  # type: ignore[call-overload]
        assert (message.message_id, message.direction, message.subject) == (row.message_id, "out", "Thanks")
        assert message.from_address == OWNER
        links = session.execute(select(table_of(MessageLink))).all()
        assert [(link.customer_id, link.role) for link in links] == [(ids[0], "to")]
        events = session.execute(select(TimelineEvent)).scalars().all()  # type: ignore[call-overload]
        assert [(e.kind, e.payload) for e in events] == [
            ("email_out", {"rule": "thank-you", "template": "thank_you", "outbox_id": row.id})
        ]
    count, oldest = outbox.sent_since(db, OWNER, utcnow() - timedelta(hours=24))
    assert count == 1 and oldest is not None and oldest.tzinfo is not None


def test_retry_schedules_with_deadline_and_counts_attempts(db: Database) -> None:
    ids = seed_customers(db, 1)
    plan(db, ids)
    now = utcnow()
    (row,) = outbox.claim(db, "me", 10, LEASE, now)
    deadline = now + timedelta(days=3)
    assert outbox.mark_retry(
        db, row, "451 4.3.0 later (at dot)", now + timedelta(minutes=1), deadline=deadline
    )
    stored = _rows(db)[row.id]
    assert (stored.state, stored.attempts, stored.last_error) == ("due", 1, "451 4.3.0 later (at dot)")
    assert stored.deadline_at == deadline
    assert outbox.claim(db, "me", 10, LEASE, now) == []  # not before its next attempt
    assert len(outbox.claim(db, "me", 10, LEASE, now + timedelta(minutes=2))) == 1


def test_operator_retry_and_cancel(db: Database) -> None:
    ids = seed_customers(db, 3)
    plan(db, ids)
    now = utcnow()
    rows = outbox.claim(db, "me", 10, LEASE, now)
    outbox.mark_failed(db, rows[0], "550 5.7.1 rejected")
    with pytest.raises(ConflictError, match="only failed or delivery_unknown"):
        outbox.retry(db, rows[1].id)
    again = outbox.retry(db, rows[0].id, now)
    assert (again.state, again.last_error, again.deadline_at) == ("due", "550 5.7.1 rejected", None)
    outbox.mark_sending(db, rows[1])
    with pytest.raises(ConflictError, match="being sent right now"):
        outbox.cancel(db, rows[1].id)
    cancelled = outbox.cancel(db, rows[2].id)  # claimed but not started: the sender will not send it
    assert (cancelled.state, cancelled.skip_reason) == ("cancelled", "manual")
    assert outbox.mark_sending(db, rows[2]) is False
    with pytest.raises(ConflictError, match="already cancelled"):
        outbox.cancel(db, rows[2].id)
    with pytest.raises(NotFoundError):
        outbox.cancel(db, 999_999)


def test_list_and_show_views(db: Database) -> None:
    ids = seed_customers(db, 2)
    plan(db, ids, rule="thank-you")
    plan(db, ids[:1], rule="birthday", template="birthday", occurrence="2026-03-02")
    with db.read() as session:
        everything = outbox.list_rows(session)
        birthday = outbox.list_rows(session, rule="birthday")
        mine = outbox.list_rows(session, customer_id=ids[1])
        due = outbox.list_rows(session, state="due", limit=1)
        detail = outbox.get(session, birthday[0].id)
    assert len(everything) == 3 and len(due) == 1
    assert [r.customer for r in birthday] == ["c0@example.org"]
    assert [r.customer_id for r in mine] == [ids[1]]
    dumped = everything[0].model_dump(mode="json")
    assert list(dumped) == [
        "id", "rule", "customer_id", "customer", "occurrence", "template", "sender",
        "due_at", "state", "attempts", "last_error", "message_id", "sent_at",
    ]  # fmt: skip
    assert dumped["due_at"].endswith("Z")
    assert detail.ambiguous_attempts == 0 and detail.in_reply_to is None


def test_suppress_and_unsuppress(db: Database) -> None:
    ids = seed_customers(db, 1)
    with db.write() as session:
        assert outbox.suppress(session, "C0@Example.org", "hard_bounce", "550 5.1.1", customer_id=ids[0])
        assert not outbox.suppress(session, "c0@example.org", "manual")
    with db.read() as session:
        (row,) = session.execute(select(Suppression)).scalars().all()  # type: ignore[call-overload]
        assert (row.address, row.reason) == ("c0@example.org", "hard_bounce")
        kinds = [e.kind for e in session.execute(select(TimelineEvent)).scalars()]  # type: ignore[call-overload]
        assert kinds == ["bounced"]
    with db.write() as session:
        assert outbox.unsuppress(session, "c0@example.org")
        assert not outbox.unsuppress(session, "c0@example.org")


def test_unsuppress_records_who_allowed_a_customer_address_again_and_why(db: Database) -> None:
    (customer,) = seed_customers(db, 1)
    with db.write() as session:
        outbox.suppress(session, "c0@example.org", "unsubscribed")
        outbox.suppress(session, "stranger@else.example", "complaint")
    with db.write() as session:
        assert outbox.unsuppress(
            session, "C0@example.org", note="asked by phone", author="alice@acme.example"
        )
        assert outbox.unsuppress(session, "stranger@else.example")  # no customer: nothing to record
        assert not outbox.unsuppress(session, "c0@example.org", note="twice")
    with db.read() as session:
        assert list_suppressed(session, limit=10) == []
        entries = timeline.for_customer(session, customer, 10)
    assert [(e.kind, e.summary) for e in entries] == [
        ("unsuppressed", "email to c0@example.org allowed again (was unsubscribed): asked by phone")
    ]
    assert entries[0].payload == {
        "address": "c0@example.org",
        "previous_reason": "unsubscribed",
        "note": "asked by phone",
        "by": "alice@acme.example",
        "summary": "email to c0@example.org allowed again (was unsubscribed): asked by phone",
    }
    with db.write() as session:
        outbox.suppress(session, "c0@example.org", "manual")
        with pytest.raises(ValidationError, match="longer than 2000"):
            outbox.unsuppress(session, "c0@example.org", note="x" * 2001)


def test_list_suppressed_newest_first_with_the_customer_if_any(db: Database) -> None:
    """Addresses of no customer (a bounce of an unknown address, a complaint) are listed too."""
    (customer,) = seed_customers(db, 1)
    with db.write() as session:
        outbox.suppress(
            session, "c0@example.org", "hard_bounce", "550 5.1.1 user unknown", customer_id=customer
        )
    with db.write() as session:
        outbox.suppress(session, "stranger@else.example", "hard_bounce", "550 5.1.1 no such user")
    with db.write() as session:
        outbox.suppress(session, "angry@else.example", "complaint")
    with db.write() as session:
        outbox.suppress(session, "odd_100%@else.example", "manual", "asked by phone")

    with db.read() as session:
        everything = list_suppressed(session, limit=100)
        bounces = list_suppressed(session, reason="hard_bounce", limit=100)
        by_name = list_suppressed(session, search="CUSTOMER 0", limit=100)
        by_detail = list_suppressed(session, search="no such user", limit=100)
        literal = list_suppressed(session, search="_100%", limit=100)
        wildcard = list_suppressed(session, search="%", limit=100)
        newest = list_suppressed(session, limit=2)
    assert [(r.address, r.reason, r.customer_id, r.customer_name) for r in everything] == [
        ("odd_100%@else.example", "manual", None, None),
        ("angry@else.example", "complaint", None, None),
        ("stranger@else.example", "hard_bounce", None, None),
        ("c0@example.org", "hard_bounce", customer, "Customer 0"),
    ]
    assert everything[-1].detail == "550 5.1.1 user unknown"
    assert everything[0].suppressed_at >= everything[-1].suppressed_at
    assert everything[0].suppressed_at.tzinfo is not None
    assert [r.address for r in bounces] == ["stranger@else.example", "c0@example.org"]
    assert [r.address for r in by_name] == ["c0@example.org"]
    assert [r.address for r in by_detail] == ["stranger@else.example"]
    assert [r.address for r in literal] == ["odd_100%@else.example"]
    assert [r.address for r in wildcard] == ["odd_100%@else.example"]  # % is a character, not "anything"
    assert [r.address for r in newest] == ["odd_100%@else.example", "angry@else.example"]


def _cli(config: Path) -> typer.Typer:
    """The outbox commands mounted as `mailcrm/cli/__init__.py` mounts them."""
    app = typer.Typer()

    @app.callback()
    def root(ctx: typer.Context) -> None:
        context = AppContext(config_path=config)
        ctx.obj = context
        ctx.call_on_close(context.close)

    app.add_typer(outbox_cli.app, name="outbox")
    app.add_typer(suppress_cli.app, name="suppress")
    app.command("unsuppress")(suppress_cli.unsuppress)
    return app


def test_cli_list_show_retry_cancel_suppress(db: Database, tmp_path: Path) -> None:
    ids = seed_customers(db, 2)
    plan(db, ids)
    (first, second) = outbox.claim(db, "me", 10, LEASE, utcnow())
    outbox.mark_failed(db, first, "554 5.7.1 no")
    outbox.release(db, "me", utcnow())
    config = tmp_path / "mailcrm.yaml"
    url = db.url.render_as_string(hide_password=False)
    config.write_text(f"database:\n  url: {url}\nsalespeople:\n  - name: Alice Example\n    email: {OWNER}\n")
    app, runner = _cli(config), CliRunner()

    def run(*args: str) -> Any:
        result = runner.invoke(app, list(args), catch_exceptions=False)
        assert result.exit_code == 0, result.output
        return json.loads(result.stdout) if "--json" in args else result.stdout

    listed = run("outbox", "list", "--state", "failed", "--json")
    assert [(r["id"], r["customer"], r["last_error"]) for r in listed] == [
        (first.id, "c0@example.org", "554 5.7.1 no")
    ]
    assert [r["id"] for r in run("outbox", "list", "--customer", "c1@example.org", "--json")] == [second.id]
    assert "thank-you" in run("outbox", "list")
    shown = run("outbox", "show", str(first.id), "--json")
    assert shown["message_id"] == first.message_id and shown["state"] == "failed"
    assert "554 5.7.1 no" in run("outbox", "show", str(first.id))
    assert run("outbox", "retry", str(first.id), "--json")["state"] == "due"
    assert run("outbox", "cancel", str(second.id), "--json")["state"] == "cancelled"
    with pytest.raises(ConflictError):
        runner.invoke(app, ["outbox", "cancel", str(second.id)], catch_exceptions=False)
    assert run("suppress", "C1@Example.org", "--reason", "asked by phone", "--json") == {
        "address": "c1@example.org", "suppressed": True, "added": True,
    }  # fmt: skip
    with db.read() as session:
        reason = session.execute(select(table_of(Suppression).c.reason)).scalar_one()
    assert reason == "asked by phone"
    assert run("suppress", "add", "c0@example.org", "--json")["added"] is True
    assert [(r["address"], r["reason"], r["customer_id"]) for r in run("suppress", "list", "--json")] == [
        ("c0@example.org", "manual", ids[0]),
        ("c1@example.org", "asked by phone", ids[1]),
    ]
    assert "asked by phone" in run("suppress", "list", "--reason", "asked by phone")
    assert run("unsuppress", "c1@example.org", "--json")["removed"] is True

"""Sending when the other side misbehaves, or a second daemon shares the file, against real
servers on loopback: aiosmtpd records what arrived, a TCP proxy cuts connections, and
`mailcrm run` daemons run as subprocesses.

* Too busy: the server says `421 4.7.0 try later` at the greeting, then at MAIL FROM.
* Cut mid-DATA: the connection is cut after half of the message body went to the server; the
  final "." never reaches it, so the server drops the message and the resend is its
  only copy.
* Two daemons share one SQLite file: every row is still sent once.

Each test checks what a user sees: the outbox rows, their attempt history, and how
many times each Message-ID reached the server.
"""

from __future__ import annotations

import time
from collections import Counter, defaultdict
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sendrunner import (
    Daemons,
    daemon_config,
    make_settings,
    open_rows,
    plan,
    seed_customers,
    send_batch,
)
from servers.proxy import CuttingProxy
from servers.smtp_faults import FaultyHandler, FaultySMTPServer
from servers.smtpd import RecordingSMTPServer
from sqlalchemy import func, select

from mailcrm.render import TemplateRenderer
from mailcrm.send.results import SendStats
from mailcrm.send.sharing import sender_config
from mailcrm.send.worker import Sender
from mailcrm.settings import Settings
from mailcrm.store import migrate, outbox
from mailcrm.store.db import Database
from mailcrm.store.models import OutboxAttempt, OutboxItem, Suppression, TimelineEvent, table_of
from mailcrm.store.types import utcnow

BASE = 60.0  # retry_base_seconds: the first retry waits BASE/2..BASE, the second BASE..2*BASE
HOUR = timedelta(hours=1)
TRY_LATER = "421 4.7.0 try later"
SLACK = timedelta(seconds=5)  # the sender's clock runs on while a batch is recorded
_OUTBOX = table_of(OutboxItem)
_ATTEMPT = table_of(OutboxAttempt)


def _sender(db: Database, settings: Settings, templates: Path) -> Sender:
    return Sender(db, sender_config(settings), TemplateRenderer(templates), worker_id="reliability-test")


def _rows(db: Database) -> list[Any]:
    with db.read() as session:
        return list(session.execute(select(_OUTBOX).order_by(_OUTBOX.c.id)))


def _history(db: Database, outbox_id: int) -> list[tuple[str, int | None, str]]:
    with db.read() as session:
        return [(a.outcome, a.code, a.reply or "") for a in outbox.history(session, outbox_id)]


def _count(db: Database, model: Any) -> int:
    with db.read() as session:
        return int(session.execute(select(func.count()).select_from(table_of(model))).scalar_one())


def _stats(stats: SendStats) -> tuple[int, int, int, int, int]:
    return stats.sent, stats.retried, stats.deferred, stats.failed, stats.unknown


# -- 421 at the greeting and at MAIL FROM -------------------------------------------------


async def test_421_at_greeting_and_at_mail_backs_off_pauses_the_account_then_delivers_once(
    db: Database, templates: Path
) -> None:
    ids = seed_customers(db, 3)
    assert plan(db, ids) == 3
    handler = FaultyHandler(close_after_421=True)  # a 421 hangs up, as RFC 5321 says
    with FaultySMTPServer(handler) as sink:
        settings = make_settings(sink.port, connections=1, retry_base_seconds=BASE)

        # 1. The server refuses the connection with 421 at the greeting.
        handler.queue_reply("CONNECT", TRY_LATER)
        start = utcnow()
        first = await send_batch(_sender(db, settings, templates), now=start, within=30)
        # One attempt; the account is then paused, so the other rows wait without an attempt.
        assert _stats(first) == (0, 1, 2, 0, 0)
        assert [verb for verb, _, _ in handler.rejections] == ["CONNECT"]  # not hammered
        rows = _rows(db)
        assert {r.state for r in rows} == {"due"}
        (refused,) = [r for r in rows if r.attempts == 1]
        assert TRY_LATER in refused.last_error and "(at connect, 127.0.0.1:" in refused.last_error
        assert (
            start + timedelta(seconds=BASE / 2) <= refused.due_at <= start + timedelta(seconds=BASE) + SLACK
        )
        assert refused.deadline_at is not None and refused.deadline_at > start + timedelta(days=1)
        assert _history(db, refused.id) == [("retry", 421, "4.7.0 try later")]
        for paused in (r for r in rows if r.id != refused.id):
            assert paused.attempts == 0 and _history(db, paused.id) == []
            assert TRY_LATER in paused.last_error  # why it waits: the account's pause
            assert paused.due_at >= start + timedelta(seconds=BASE)  # not before the pause ends

        # 2. An hour later the server greets, then says 421 to MAIL FROM.
        handler.queue_reply("MAIL", TRY_LATER)
        later = start + HOUR
        second = await send_batch(_sender(db, settings, templates), now=later, within=30)
        assert _stats(second) == (0, 1, 2, 0, 0)
        assert [verb for verb, _, _ in handler.rejections] == ["CONNECT", "MAIL"]
        before = {r.id: r for r in rows}
        rows = _rows(db)
        assert {r.state for r in rows} == {"due"}
        (refused_at_mail,) = [r for r in rows if r.attempts == before[r.id].attempts + 1]
        assert TRY_LATER in refused_at_mail.last_error and "(at mail, " in refused_at_mail.last_error
        failures = refused_at_mail.attempts  # consecutive failures of this row: the backoff doubles
        low, high = BASE * 2 ** (failures - 1) / 2, BASE * 2 ** (failures - 1)
        assert (
            later + timedelta(seconds=low)
            <= refused_at_mail.due_at
            <= later + timedelta(seconds=high) + SLACK
        )
        assert _history(db, refused_at_mail.id)[-1] == ("retry", 421, "4.7.0 try later")
        assert all(r.due_at >= later + timedelta(seconds=BASE) for r in rows if r.id != refused_at_mail.id)
        assert sink.messages == []

        # 3. The server behaves again: every row goes out, once.
        third = await send_batch(_sender(db, settings, templates), now=start + 2 * HOUR, within=30)
        assert _stats(third) == (3, 0, 0, 0, 0)
        received = Counter(m.message_id for m in sink.handler.wait_for(3))

    rows = _rows(db)
    assert {r.state for r in rows} == {"sent"}
    assert received == Counter({r.message_id: 1 for r in rows})
    # Transient refusals are neither failures nor bounces: nothing suppressed, no bounce event.
    assert _count(db, Suppression) == 0
    with db.read() as session:
        kinds = Counter(session.execute(select(table_of(TimelineEvent).c.kind)).scalars())
    assert kinds == Counter({"email_out": 3})
    outcomes = Counter(outcome for r in rows for outcome, _, _ in _history(db, r.id))
    assert outcomes == Counter({"retry": 2, "sent": 3})


# -- the connection is cut in the middle of DATA -----------------------------------------


@pytest.fixture
def sink() -> Iterator[RecordingSMTPServer]:
    with RecordingSMTPServer() as server:
        yield server


@pytest.fixture
def proxy(sink: RecordingSMTPServer) -> Iterator[CuttingProxy]:
    with CuttingProxy(sink.host, sink.port) as running:
        yield running


async def test_a_cut_halfway_through_the_body_is_retried_and_delivered_once(
    db: Database, sink: RecordingSMTPServer, proxy: CuttingProxy, templates: Path
) -> None:
    ids = seed_customers(db, 3)
    assert plan(db, ids) == 3
    settings = make_settings(proxy.port, connections=1, retry_base_seconds=BASE)

    proxy.cut_data(0.5)  # the first message body through the proxy
    start = utcnow()
    first = await send_batch(_sender(db, settings, templates), now=start, within=30)
    assert _stats(first) == (2, 1, 0, 0, 0)  # the other rows went out on a new connection
    ((forwarded, body),) = proxy.data_cuts
    assert body > 500 and forwarded == body // 2  # half the body reached the server, no final "."
    rows = _rows(db)
    (cut,) = [r for r in rows if r.state != "sent"]
    assert cut.state == "due" and cut.attempts == 1  # retried: not failed, not held as unknown
    assert "connection lost" in cut.last_error and f"127.0.0.1:{proxy.port}" in cut.last_error
    assert cut.due_at >= start + timedelta(seconds=BASE / 2)
    # The sender had written the whole message, final "." included, when the connection
    # died; from its side the server may hold the message, so the attempt is recorded as
    # ambiguous and `sending.ambiguous: resend` (the default) spends the row's one resend.
    assert _history(db, cut.id) == [("ambiguous", None, cut.last_error)]
    assert cut.ambiguous_attempts == 1
    assert cut.message_id not in {m.message_id for m in sink.messages}  # the server dropped the half
    assert len(sink.messages) == 2

    second = await send_batch(_sender(db, settings, templates), now=start + HOUR, within=30)
    assert _stats(second) == (1, 0, 0, 0, 0)
    received = Counter(m.message_id for m in sink.handler.wait_for(3))
    rows = _rows(db)
    assert {r.state for r in rows} == {"sent"}
    assert received == Counter({r.message_id: 1 for r in rows})  # the cut message arrived once
    assert [r.attempts for r in rows if r.id == cut.id] == [2]
    assert proxy.data_cuts == [(forwarded, body)]  # one-shot: the retry was not cut


# -- two daemons on one SQLite file -------------------------------------------------------

ROWS = 3000


@pytest.fixture
def daemons(tmp_path: Path) -> Iterator[Daemons]:
    started = Daemons(tmp_path)
    yield started
    started.stop_all()


def test_two_daemons_on_one_sqlite_file_send_every_row_once(
    sqlite_url: str, tmp_path: Path, daemons: Daemons
) -> None:
    db = Database(sqlite_url)
    migrate.upgrade(db)
    assert plan(db, seed_customers(db, ROWS)) == ROWS
    with RecordingSMTPServer() as sink:
        config = daemon_config(tmp_path, sqlite_url, sink.port, connections=2, lease_seconds=10)
        first, second = daemons.start(config, "first"), daemons.start(config, "second")
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            assert first.poll() is None, daemons.tail(first)
            assert second.poll() is None, daemons.tail(second)
            if len(sink.messages) >= ROWS and open_rows(db) == 0:
                break
            time.sleep(0.2)
        assert open_rows(db) == 0, f"{open_rows(db)} rows still due or claimed"
        assert daemons.stop(first) == 0, daemons.tail(first)
        assert daemons.stop(second) == 0, daemons.tail(second)
        received = Counter(m.message_id for m in sink.messages)

    rows = _rows(db)
    assert len(rows) == ROWS and {r.state for r in rows} == {"sent"}
    assert set(received) == {r.message_id for r in rows}
    assert max(received.values()) == 1  # never two senders of one row
    assert {r.attempts for r in rows} == {1}
    with db.read() as session:
        per_row = Counter(session.execute(select(_ATTEMPT.c.outbox_id)).scalars())
    assert len(per_row) == ROWS and set(per_row.values()) == {1}  # one attempt in each history

    sent_by: dict[int, int] = defaultdict(int)
    for process in (first, second):
        logs = daemons.logs(process)
        assert not [x for x in logs if x.get("action") in ("send_bug", "send_lane_failed")]
        for line in logs:
            if line.get("action") == "send_batch":
                sent_by[int(str(line["worker"]).split(":")[-2])] += int(line["sent"])
    assert sum(sent_by.values()) == ROWS
    assert sent_by[first.pid] > 0 and sent_by[second.pid] > 0, dict(sent_by)  # both did some
    db.dispose()

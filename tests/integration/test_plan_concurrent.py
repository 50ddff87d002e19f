"""Two planners at the same instant, as on two machines, on SQLite and PostgreSQL.

Both run the planning pass the daemon runs (`planner.plan`, which writes the outbox),
for the same moment over the same customers: once as two threads with an engine each,
released together by a barrier, and once as two `mailcrm plan --apply` processes
started together. Afterwards the outbox must hold exactly what one pass writes alone:
the same rows (rule, customer, occurrence, template, due time, state, ...), one per
occurrence key, and the two passes' "new rows" add up to that count.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, date, datetime, timedelta
from itertools import islice
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from plan_fixtures import ALICE, make_settings, utc
from sqlalchemy import delete, func, insert, select

from mailcrm import planner, wiring
from mailcrm.domain.rules import RuleSet
from mailcrm.settings import Settings
from mailcrm.store import candidates as candidate_store
from mailcrm.store.db import Database
from mailcrm.store.models import Customer, EmailAddress, OutboxItem, Purchase, table_of
from mailcrm.store.salespeople import sync_team

CUSTOMERS = 6000
NOW = "2026-03-01T00:00"  # the pass covers the catch-up week before and the next day
ZONES = ("UTC", "Asia/Bangkok", "America/New_York", "Pacific/Kiritimati")
RULES = """\
rules:
  - name: birthday-card
    when: {anniversary_of: birthday}
    template: birthday
  - name: purchase-anniversary
    when: {anniversary_of: first_purchase}
    template: anniversary
  - name: thank-you
    when: {after: purchase, wait: 1d}
    template: thank_you
"""
_OUTBOX = table_of(OutboxItem)
_KEY = (_OUTBOX.c.rule, _OUTBOX.c.customer_id, _OUTBOX.c.occurrence)
_UNCOMPARED = {"id", "message_id", "created_at", "updated_at"}  # differ between any two passes
START_TIMEOUT = 30.0


def _seed(db: Database, settings: Settings) -> None:
    """CUSTOMERS customers with birthdays, first purchases years ago and a recent purchase,
    spread over the days the pass covers and over timezones (some are too late: skipped)."""
    now = utc(NOW)
    with db.write() as session:
        owner = sync_team(session, wiring.team(settings))[ALICE]
        customer = table_of(Customer)
        rows = [
            {
                "name": f"Customer {i}",
                "owner_id": owner,
                "status": "customer",
                "birthday": date(1970 + i % 40, 2, 22) + timedelta(days=i % 8),
                "timezone": ZONES[i % len(ZONES)],
                "custom": {},
                "created_at": now - timedelta(days=900),
                "updated_at": now - timedelta(days=900),
            }
            for i in range(CUSTOMERS)
        ]
        ids = [r.id for r in session.execute(insert(customer).returning(customer.c.id), rows)]
        session.execute(
            insert(table_of(EmailAddress)),
            [
                {"customer_id": cid, "address": f"c{n}@example.org", "is_primary": True, "created_at": now}
                for n, cid in enumerate(ids)
            ],
        )
        purchases = []
        for n, cid in enumerate(ids):
            zone = ZoneInfo(ZONES[n % len(ZONES)])
            first = datetime(2018 + n % 7, 2, 22, 9) + timedelta(days=n % 8)
            recent = now.replace(tzinfo=None) - timedelta(days=n % 9, hours=n % 5)
            for kind, at in (("first", first), ("recent", recent)):
                purchases.append(
                    {
                        "customer_id": cid,
                        "purchased_at": at,
                        "purchased_on": at.replace(tzinfo=UTC).astimezone(zone).date(),
                        "product": "Panel",
                        "quantity": 1,
                        "amount_minor": 100,
                        "currency": "THB",
                        "dedupe_key": f"{kind}-{n}",
                        "created_at": now,
                    }
                )
        session.execute(insert(table_of(Purchase)), purchases)


@pytest.fixture
def world(db: Database, tmp_path: Path) -> tuple[Settings, RuleSet]:
    settings = make_settings(tmp_path)
    (settings.rules_path() / "team.yaml").write_text(RULES, encoding="utf-8")
    rules = planner.configured_rules(settings)
    assert [rule.name for rule in rules.rules] == ["birthday-card", "purchase-anniversary", "thank-you"]
    _seed(db, settings)
    return settings, rules


def _contents(db: Database) -> list[tuple[Any, ...]]:
    """Every outbox row as a user sees it, without what is random per pass (id, Message-ID,
    timestamps of the insert), sorted."""
    columns = [c for c in _OUTBOX.c if c.name not in _UNCOMPARED]
    with db.read() as session:
        rows = session.execute(select(*columns)).all()
    return sorted((tuple(row) for row in rows), key=repr)


def _counts(db: Database) -> tuple[int, int, int]:
    """(rows, distinct occurrence keys, distinct Message-IDs)."""
    keys = select(*_KEY).distinct().subquery()
    with db.read() as session:
        rows = session.execute(select(func.count()).select_from(_OUTBOX)).scalar_one()
        distinct = session.execute(select(func.count()).select_from(keys)).scalar_one()
        ids = session.execute(select(func.count(func.distinct(_OUTBOX.c.message_id)))).scalar_one()
    return int(rows), int(distinct), int(ids)


def _single_pass(db: Database, settings: Settings, rules: RuleSet) -> list[tuple[Any, ...]]:
    """Empty the outbox, plan once alone at the same instant; the outbox that leaves."""
    with db.write() as session:
        session.execute(delete(_OUTBOX))
    report = planner.plan(db, settings, rules, utc(NOW))
    alone = _contents(db)
    assert report.inserted == report.planned == len(alone)
    return alone


def _check(db: Database, settings: Settings, rules: RuleSet, inserted: list[int], planned: list[int]) -> None:
    together = _contents(db)
    rows, keys, ids = _counts(db)
    assert rows == keys == ids == len(together)  # one row per occurrence key, each its own Message-ID
    assert planned == [rows, rows]  # each pass saw every occurrence...
    assert sum(inserted) == rows  # ...and between them they wrote each row once
    assert len(together) > 2 * CUSTOMERS
    assert _single_pass(db, settings, rules) == together  # what one pass alone writes


def _overlapped(spans: list[tuple[float, float]]) -> bool:
    (a_start, a_end), (b_start, b_end) = spans
    return a_start < b_end and b_start < a_end


@pytest.mark.parametrize("order", ["same", "opposite"])
def test_two_planner_threads_at_the_same_instant_write_what_one_pass_writes(
    db: Database, world: tuple[Settings, RuleSet], monkeypatch: pytest.MonkeyPatch, order: str
) -> None:
    """`opposite`: the second planner gets each batch of candidates in reverse order. A query
    without ORDER BY returns rows in no promised order (parallel or synchronized scans
    differ from run to run), so two machines may well see the same customers differently."""
    settings, rules = world
    monkeypatch.setattr(planner, "_BATCH", 500)  # many transactions each, so they interleave
    barrier = threading.Barrier(2, timeout=START_TIMEOUT)
    local = threading.local()
    candidates = candidate_store.candidates  # what the planner calls, by its module's name

    def reordered(connection: Any, rule: Any, start: datetime, end: datetime) -> Iterator[Any]:
        found = candidates(connection, rule, start, end)
        if not getattr(local, "reverse", False):
            yield from found
            return
        while chunk := list(islice(found, planner._BATCH)):
            yield from reversed(chunk)

    monkeypatch.setattr(planner, "candidates", reordered)
    collided: list[int] = []
    existing = planner.planned_occurrences
    if not db.is_sqlite:
        # The worst case, every time: both transactions have looked up which rows exist
        # before either inserts, so both insert each batch and the unique key decides.
        # (SQLite's write transactions take the lock up front: there they queue instead.)
        gate = threading.Barrier(2, timeout=10)

        def racing(connection: Any, rule: str, customer_ids: set[int]) -> set[tuple[int, str]]:
            known = existing(connection, rule, customer_ids)
            gate.wait()
            collided.append(len(customer_ids) - len({c for c, _ in known}))
            return known

        monkeypatch.setattr(planner, "planned_occurrences", racing)

    def one_pass(reverse: bool) -> tuple[planner.PlanReport, float, float]:
        engine = Database(db.url)  # a machine of its own: its own connections
        local.reverse = reverse
        try:
            barrier.wait()
            started = time.monotonic()
            report = planner.plan(engine, settings, rules, utc(NOW))
            return report, started, time.monotonic()
        finally:
            engine.dispose()

    with ThreadPoolExecutor(max_workers=2, thread_name_prefix="concurrent-planner") as pool:
        futures = [pool.submit(one_pass, reverse) for reverse in (False, order == "opposite")]
        results = [future.result(timeout=60) for future in futures]
    assert _overlapped([(started, ended) for _, started, ended in results])
    reports = [report for report, _, _ in results]
    monkeypatch.setattr(planner, "planned_occurrences", existing)  # the single pass below runs alone
    monkeypatch.setattr(planner, "candidates", candidates)
    if not db.is_sqlite:
        assert sum(collided) >= 2 * CUSTOMERS  # both passes tried to insert the same rows
    _check(db, settings, rules, [r.inserted for r in reports], [r.planned for r in reports])


# The planner as a user starts it, `mailcrm plan --apply`, in a process that has imported
# everything, says so with a ready file and waits for a go file, so the two processes
# start planning together.
_BOOT = """\
import json, os, sys, time
from mailcrm.cli import main
ready, go, deadline = sys.argv[1], sys.argv[2], time.monotonic() + float(sys.argv[3])
open(ready, "w").close()
while not os.path.exists(go):
    if time.monotonic() > deadline:
        sys.exit("no go signal")
    time.sleep(0.005)
started = time.monotonic()
try:
    main(sys.argv[4:])
finally:
    sys.stderr.write(json.dumps({"started": started, "ended": time.monotonic()}) + "\\n")
"""


def _config(folder: Path, db: Database) -> Path:
    path = folder / "mailcrm.yaml"
    path.write_text(
        f"""\
database:
  url: {db.url.render_as_string(hide_password=False)}
rules_dir: rules
salespeople:
  - name: Alice
    email: {ALICE}
  - name: Bob
    email: bob@acme.example
""",
        encoding="utf-8",
    )
    return path


def test_two_plan_apply_processes_at_the_same_instant_write_what_one_pass_writes(
    db: Database, world: tuple[Settings, RuleSet], tmp_path: Path
) -> None:
    settings, rules = world
    config = _config(tmp_path, db)
    go = tmp_path / "go"
    ready = [tmp_path / f"ready-{n}" for n in range(2)]
    env = {k: v for k, v in os.environ.items() if not k.startswith("MAILCRM_")}
    arguments = ["--config", str(config), "plan", "--apply", "--at", NOW, "--json"]
    started = [
        subprocess.Popen(
            [sys.executable, "-c", _BOOT, str(flag), str(go), str(START_TIMEOUT), *arguments],
            cwd=tmp_path,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for flag in ready
    ]
    try:
        deadline = time.monotonic() + START_TIMEOUT
        while not all(flag.exists() for flag in ready):
            assert time.monotonic() < deadline, "the planner processes did not start"
            assert all(process.poll() is None for process in started), "a planner process died"
            time.sleep(0.02)
        go.touch()
        outputs = [process.communicate(timeout=60) for process in started]
    finally:
        for process in started:
            if process.poll() is None:
                os.kill(process.pid, signal.SIGKILL)
                process.wait(timeout=10)
    for process, (_out, err) in zip(started, outputs, strict=True):
        assert process.returncode == 0, err[-3000:]
    results = [json.loads(out) for out, _ in outputs]
    spans = [json.loads(err.strip().splitlines()[-1]) for _, err in outputs]
    assert _overlapped([(s["started"], s["ended"]) for s in spans]), spans
    _check(db, settings, rules, [r["inserted"] for r in results], [r["planned"] for r in results])

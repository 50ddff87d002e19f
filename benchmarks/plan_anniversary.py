"""Benchmark: planning anniversary rules over 1,000,000 customers, on SQLite and PostgreSQL.

Setup (not timed) fills a fresh database with bulk SQL only: customers from a recursive
CTE (SQLite) or generate_series (PostgreSQL), with birthdays, timezones across DST
and non-DST zones, languages and owners, and one or two purchases each (local date: the
date part of the instant, close enough for timing); then ANALYZE
(and on PostgreSQL VACUUM and CHECKPOINT, the steady state autovacuum keeps).

The timed part is the daemon's planning tick, `planner.configured_rules` +
`planner.plan` at a fixed moment: the candidates SQL, the occurrence computation
(local send times, send windows, Feb 29 in a common year, catch-up/skipped) and the
outbox insert with its unique (rule, customer, occurrence) key. A second pass at the
same moment must create nothing new. Each store plans in its own child process, so
the peak RSS reported is the planner's own.

    python benchmarks/plan_anniversary.py [--customers N] [--skip-postgres]
                                          [--postgres URL] [--json]

PostgreSQL: a new database is created on the server `--postgres` points at (default
postgresql://postgres@127.0.0.1:5432/postgres) and dropped afterwards.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import secrets
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

TARGET_SECONDS = 5.0
TARGET_RSS_MB = 500.0
PHASE_TIMEOUT = 900  # seconds, per child process
MAX_CUSTOMERS = 5_000_000
DEFAULT_POSTGRES = "postgresql://postgres@127.0.0.1:5432/postgres"
# A fixed planning moment: the catch-up range covers Feb 28 of a common year, where
# Feb 29 anniversaries fall, and a weekend, where the weekday send window defers.
NOW = datetime(2027, 3, 2, 6, 0, tzinfo=UTC)
ZONES = (
    "Asia/Bangkok",
    "Europe/Berlin",
    "America/New_York",
    "Asia/Shanghai",
    "Asia/Tehran",
    "Australia/Sydney",
    "UTC",
    "America/Los_Angeles",
)
LANGUAGES = ("en", "th", "zh", "fa", "km")
SALESPEOPLE = (
    ("Alice Chen", "alice@team.example"),
    ("Bob Meyer", "bob@team.example"),
    ("Chaiwat Srisuk", "chai@team.example"),
    ("Dara Sok", "dara@team.example"),
    ("Neda Karimi", "neda@team.example"),
)
RULES_YAML = """\
# The benchmark's rules: two anniversary triggers, one with a weekday send window.
send_time: "10:00"
rules:
  - name: purchase-anniversary
    when: {anniversary_of: first_purchase}
    send_window: {days: mon-fri, hours: "09:00-17:00"}
    template: anniversary
  - name: birthday-card
    when: {anniversary_of: birthday}
    send_window: any
    send_time: "09:00"
    template: birthday
"""


def write_config(directory: Path, url: str) -> Path:
    """mailcrm.yaml + rules/ as a user would write them."""
    people = "".join(f"  - name: {name}\n    email: {email}\n" for name, email in SALESPEOPLE)
    (directory / "rules").mkdir(parents=True, exist_ok=True)
    (directory / "rules" / "benchmark.yaml").write_text(RULES_YAML, encoding="utf-8")
    config = directory / "mailcrm.yaml"
    config.write_text(
        f"database:\n  url: {json.dumps(url)}\n"
        "defaults:\n  timezone: Asia/Bangkok\n  language: en\n"
        "rules_dir: rules\n"
        "sending:\n  message_id_domain: team.example\n"
        f"salespeople:\n{people}",
        encoding="utf-8",
    )
    return config


# --- setup (child process, not timed) --------------------------------------------------------


def _case(expression: str, values: tuple[str, ...]) -> str:
    arms = " ".join(f"WHEN {i} THEN '{value}'" for i, value in enumerate(values))
    return f"CASE ({expression}) % {len(values)} {arms} END"


def _sqlite_fill(connection: Any, count: int) -> None:
    """Customers and purchases from a recursive CTE: nothing goes through Python rows."""
    numbers = f"WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < {count})"
    stamp = (
        "strftime('%Y-%m-%d %H:%M:%S', '2016-01-01', '+' || ({days}) || ' days', "
        "'+' || ({secs}) || ' seconds') || '.000000'"
    )
    connection.exec_driver_sql(
        f"{numbers} INSERT INTO customer (id, name, birthday, timezone, language, owner_id, lead_source, "
        "status, custom, created_at, updated_at) "
        "SELECT i, 'Customer ' || i, "
        "CASE WHEN i % 10 = 0 THEN NULL ELSE date('1950-01-01', '+' || ((i * 7919) % 20000) || ' days') END, "
        f"CASE WHEN i % 9 = 0 THEN NULL ELSE {_case('i * 31', ZONES)} END, "
        f"{_case('i * 17', LANGUAGES)}, 1 + (i % {len(SALESPEOPLE)}), 'website', 'customer', '{{}}', "
        "'2024-01-01 00:00:00.000000', '2024-01-01 00:00:00.000000' FROM n"
    )
    for k, (multiplier, every) in enumerate(((40503, 1), (6007, 2))):
        when = stamp.format(days=f"(i * {multiplier}) % 3650 + {k * 30}", secs="(i * 37) % 86400")
        connection.exec_driver_sql(
            f"{numbers} INSERT INTO purchase (customer_id, purchased_at, purchased_on, has_time, product, "
            "quantity, amount_minor, currency, dedupe_key, created_at) "
            f"SELECT i, {when}, substr({when}, 1, 10), 1, 'Solar panel 400W', 1, 890000, 'THB', "
            f"'bench-{k}-' || i, '2024-01-01 00:00:00.000000' FROM n WHERE i % {every} = 0"
        )
    connection.exec_driver_sql("ANALYZE")


def _postgres_fill(connection: Any, count: int) -> None:
    """Customers and purchases from generate_series."""

    def run(sql: str) -> None:
        connection.exec_driver_sql(sql.replace("%", "%%"))  # psycopg reads % as a placeholder

    run(
        "INSERT INTO customer (id, name, birthday, timezone, language, owner_id, lead_source, status, "
        "custom, created_at, updated_at) "
        "SELECT i, 'Customer ' || i, "
        "CASE WHEN i % 10 = 0 THEN NULL ELSE DATE '1950-01-01' + ((i * 7919) % 20000)::int END, "
        f"CASE WHEN i % 9 = 0 THEN NULL ELSE {_case('i * 31', ZONES)} END, "
        f"{_case('i * 17', LANGUAGES)}, 1 + (i % {len(SALESPEOPLE)}), 'website', 'customer', '{{}}', "
        f"TIMESTAMP '2024-01-01', TIMESTAMP '2024-01-01' FROM generate_series(1::bigint, {count}) AS i"
    )
    run("SELECT setval(pg_get_serial_sequence('customer', 'id'), (SELECT max(id) FROM customer))")
    for k, (multiplier, every) in enumerate(((40503, 1), (6007, 2))):
        run(
            "INSERT INTO purchase (customer_id, purchased_at, purchased_on, has_time, product, quantity, "
            "amount_minor, currency, dedupe_key, created_at) "
            "SELECT i, at, at::date, true, "
            f"'Solar panel 400W', 1, 890000, 'THB', 'bench-{k}-' || i, TIMESTAMP '2024-01-01' "
            "FROM (SELECT i, TIMESTAMP '2016-01-01' "
            f"+ make_interval(days => ((i * {multiplier}) % 3650 + {k * 30})::int, "
            "secs => (i * 37) % 86400) AS at "
            f"FROM generate_series(1::bigint, {count}) AS i WHERE i % {every} = 0) AS p"
        )


def setup_phase(config: Path, count: int) -> dict[str, Any]:
    from mailcrm import wiring
    from mailcrm.settings import load_settings
    from mailcrm.store import migrate
    from mailcrm.store.db import Database, normalize_url
    from mailcrm.store.salespeople import sync_team

    started = time.perf_counter()
    settings = load_settings(config)
    db = Database(normalize_url(settings.database_url(), settings.base_dir))
    try:
        migrate.upgrade(db)
        with db.write() as session:
            sync_team(session, wiring.team(settings))
        with db.engine.begin() as connection:
            (_sqlite_fill if db.is_sqlite else _postgres_fill)(connection, count)
            purchases = connection.exec_driver_sql("SELECT count(*) FROM purchase").scalar_one()
        if db.is_sqlite:
            with db.engine.connect() as connection:
                connection.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
        else:
            # Steady state, as autovacuum leaves a live database: hint bits and the visibility
            # map set, statistics fresh, the bulk load's WAL checkpointed (so the timed pass
            # does not pay for the setup's writes).
            with db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
                connection.exec_driver_sql("VACUUM ANALYZE")
                connection.exec_driver_sql("CHECKPOINT")
    finally:
        db.dispose()
    return {"seconds": round(time.perf_counter() - started, 2), "customers": count, "purchases": purchases}


# --- planning (child process, timed) ----------------------------------------------------------


def plan_phase(config: Path) -> dict[str, Any]:
    from mailcrm import planner
    from mailcrm.settings import load_settings
    from mailcrm.store.db import Database, normalize_url

    settings = load_settings(config)
    db = Database(normalize_url(settings.database_url(), settings.base_dir))
    passes = []
    try:
        for _ in range(2):
            started = time.perf_counter()
            rules = planner.configured_rules(settings)
            report = planner.plan(db, settings, rules, NOW)
            passes.append(
                {
                    "seconds": round(time.perf_counter() - started, 3),
                    "planned": report.planned,
                    "inserted": report.inserted,
                    "skipped_late": report.skipped_late,
                    "per_rule": report.per_rule,
                }
            )
        with db.engine.connect() as connection:
            rows = connection.exec_driver_sql(
                "SELECT rule, state, count(*) FROM outbox GROUP BY rule, state ORDER BY rule, state"
            ).all()
    finally:
        db.dispose()
    peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {
        "first": passes[0],
        "again": passes[1],
        "outbox": {f"{rule}/{state}": n for rule, state, n in rows},
        "peak_rss_mb": round(peak_kb / 1024, 1),
    }


def in_child(*args: str) -> dict[str, Any]:
    command = [sys.executable, __file__, "--phase", *args]
    done = subprocess.run(command, capture_output=True, text=True, timeout=PHASE_TIMEOUT, check=False)
    if done.returncode != 0:
        sys.stderr.write(done.stderr)
        raise SystemExit(f"phase {args[0]} failed (exit {done.returncode})")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def run_store(directory: Path, url: str, customers: int) -> dict[str, Any]:
    config = write_config(directory, url)
    setup = in_child("setup", str(config), str(customers))
    planned = in_child("plan", str(config))
    first, again = planned["first"], planned["again"]
    return {
        "customers": customers,
        "purchases": setup["purchases"],
        "setup_seconds": setup["seconds"],
        "seconds": first["seconds"],
        "replan_seconds": again["seconds"],
        "planned": first["planned"],
        "inserted": first["inserted"],
        "skipped_late": first["skipped_late"],
        "per_rule": first["per_rule"],
        "replan_planned": again["planned"],
        "replan_inserted": again["inserted"],
        "outbox": planned["outbox"],
        "peak_rss_mb": planned["peak_rss_mb"],
        "seconds_vs_target": round(first["seconds"] / TARGET_SECONDS, 3),
        "rss_vs_target": round(planned["peak_rss_mb"] / TARGET_RSS_MB, 3),
        "ok": first["seconds"] < TARGET_SECONDS
        and planned["peak_rss_mb"] < TARGET_RSS_MB
        and again["inserted"] == 0,
    }


def run_sqlite(customers: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="mailcrm-plan-bench-") as folder:
        return run_store(Path(folder), "sqlite:///bench.db", customers)


def run_postgres(server: str, customers: int) -> dict[str, Any]:
    from sqlalchemy import create_engine
    from sqlalchemy.engine import make_url

    from mailcrm.store.db import normalize_url

    base = normalize_url(server)
    name = f"mailcrm_bench_plan_{secrets.token_hex(4)}"
    admin = create_engine(base, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as connection:
            connection.exec_driver_sql(f'CREATE DATABASE "{name}"')
        try:
            url = make_url(base).set(database=name).render_as_string(hide_password=False)
            with tempfile.TemporaryDirectory(prefix="mailcrm-plan-bench-") as folder:
                return run_store(Path(folder), url, customers)
        finally:
            with admin.connect() as connection:
                connection.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        admin.dispose()


def print_results(results: dict[str, Any]) -> None:
    print(
        f"planning anniversary rules (first purchase, birthday) over {results['customers']:,} customers "
        f"at {results['now']}; targets: < {TARGET_SECONDS:g} s, peak RSS < {TARGET_RSS_MB:g} MB"
    )
    for store in ("sqlite", "postgres"):
        if store not in results:
            continue
        r = results[store]
        print(
            f"\n{store}: {r['customers']:,} customers, {r['purchases']:,} purchases "
            f"(setup {r['setup_seconds']} s, not timed)"
        )
        print(
            f"  plan:    {r['seconds']:.2f} s ({r['seconds_vs_target']:.2f}x of target), "
            f"{r['planned']:,} planned, {r['inserted']:,} new outbox rows "
            f"({r['skipped_late']:,} recorded as skipped: past the catch-up grace)"
        )
        print("  per rule: " + ", ".join(f"{rule} {n:,}" for rule, n in sorted(r["per_rule"].items())))
        print(
            f"  re-plan: {r['replan_seconds']:.2f} s, {r['replan_planned']:,} planned, "
            f"{r['replan_inserted']} new (the unique key holds)"
        )
        print(f"  peak RSS {r['peak_rss_mb']:.0f} MB ({r['rss_vs_target']:.2f}x of target)")
        print(f"  {'OK' if r['ok'] else 'MISSED'}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--customers", type=int, default=1_000_000, help="customers to plan over (default 1,000,000)"
    )
    parser.add_argument("--skip-postgres", action="store_true", help="run on SQLite only")
    parser.add_argument(
        "--postgres", metavar="URL", default=os.environ.get("MAILCRM_BENCH_POSTGRES", DEFAULT_POSTGRES),
        help=f"PostgreSQL server to create the throw-away database on (default {DEFAULT_POSTGRES})",
    )  # fmt: skip
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of text")
    parser.add_argument("--phase", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.phase:
        phase, *rest = args.phase
        result = setup_phase(Path(rest[0]), int(rest[1])) if phase == "setup" else plan_phase(Path(rest[0]))
        print(json.dumps(result))
        return
    if not 1 <= args.customers <= MAX_CUSTOMERS:
        parser.error(f"--customers must be between 1 and {MAX_CUSTOMERS:,}")
    results: dict[str, Any] = {
        "customers": args.customers,
        "now": NOW.isoformat(),
        "target_seconds": TARGET_SECONDS,
        "target_rss_mb": TARGET_RSS_MB,
    }
    results["sqlite"] = run_sqlite(args.customers)
    if not args.skip_postgres:
        results["postgres"] = run_postgres(args.postgres, args.customers)
    stores = [results[s] for s in ("sqlite", "postgres") if s in results]
    results["ok"] = all(store["ok"] for store in stores)
    if args.json:
        print(json.dumps(results))
    else:
        print_results(results)


if __name__ == "__main__":
    main()

"""Benchmark: the sender end to end against postfix's `smtp-sink`, next to `smtp-source`.

Setup (not timed): a fresh SQLite database with N customers (default 50,000), each with
a primary address and a purchase, inserted with bulk SQL; one due outbox row per customer
for a thank-you rule, inserted with `outbox.insert_planned` (the planner's own insert,
which fixes each row's Message-ID) rather than by running the planner, whose speed
`benchmarks/plan_anniversary.py` measures.

Timed: the senders until the outbox is empty, the way `mailcrm run` sends with
`sending.processes: N` (default: one per CPU): this process is sender 0 and
`mailcrm.send.processes.SenderProcesses` starts and supervises the other N-1 from a
config file written for the run. The rows are made due once every child is ready, as
in a daemon that is already running (the children's start-up is printed, not timed;
nor is the single process's import time). Unless `--no-single`, the same number of emails is also sent by
`Sender.send_due` in this process alone, on a fresh database, for comparison. Every email is claimed,
checked (suppression, frequency cap, archived), rendered from the shipped `thank_you`
templates (Jinja2, Babel dates and money), built (`domain.mime`), sent over pooled
aiosmtplib connections to `smtp-sink` on loopback, and recorded: `sent`, the message, a
timeline event and its attempt. Then, in the same run, `smtp-source -d -s 10` sends the
same number of messages of a fixed file of similar size to the same sink, as the ceiling
the issue compares against (target: >= 1,000 emails/s and >= 0.1x of smtp-source).

Unless `--skip-planning`, `benchmarks/plan_anniversary.py --json` runs as a subprocess
and its figures are part of the report.

    python benchmarks/send_smtp.py [--count N] [--processes N] [--no-single] [--connections N]
                                   [--batch N] [--skip-planning] [--planning-customers N] [--json]

`--connections` is the account's `max_connections` (default 32, see `CONNECTIONS`),
divided among the processes as the daemon divides it.

Every process started here (smtp-sink, smtp-source, the planning benchmark) is stopped by
its PID and bounded in time; everything listens on 127.0.0.1 only.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import func, insert, select, update

from mailcrm.domain.planning import PlannedEmail
from mailcrm.render import TemplateRenderer
from mailcrm.send import compose, sharing
from mailcrm.send.processes import SenderProcesses
from mailcrm.send.results import SendStats
from mailcrm.send.worker import Sender
from mailcrm.settings import (
    SalespersonSettings,
    SendingSettings,
    Settings,
    SmtpAccount,
    WebSettings,
    load_settings,
)
from mailcrm.store import migrate, outbox
from mailcrm.store.db import Database
from mailcrm.store.models import Customer, EmailAddress, OutboxItem, Purchase, Salesperson, table_of
from mailcrm.store.types import utcnow

BANGKOK = ZoneInfo("Asia/Bangkok")

HOST = "127.0.0.1"
OWNER = "alice@acme.example"
CONNECTIONS = 32
"""Each connection waits, once per email, for the group commit that records the start of
its transaction before the final "." (the crash guarantee); smtp-source's 10 sessions
wait for nothing, so the sender needs more connections to keep the CPU busy: 16 per
process on two cores. A local relay (postfix accepts 100 by default) takes that easily."""
TARGET_RATE = 1000.0
TARGET_RATIO = 0.1
MAX_COUNT = 200_000
IDLE_POLL = 0.1  # seconds between an idle sender's looks for due rows
PLANNING_LIMIT = 1800.0  # seconds for the whole planning benchmark (two stores, 1M customers each)
SBIN = (Path("/usr/sbin"), Path("/usr/lib/postfix/sbin"), Path("/usr/libexec/postfix"))
PLANNING_SCRIPT = Path(__file__).resolve().parent / "plan_anniversary.py"
PRODUCTS = ("Espresso machine", "Coffee grinder", "Milk frother", "Tamper set", "Descaler")
NAMES = ("Anna Schmidt", "Somchai Jaidee", "Li Wei", "Sara Ahmadi", "Dara Sok", "John Smith")


def _binary(name: str) -> str:
    for folder in SBIN:
        candidate = folder / name
        if candidate.exists():
            return str(candidate)
    found = shutil.which(name)
    if found is None:
        raise SystemExit(f"{name} not found (Debian: apt-get install postfix)")
    return found


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind((HOST, 0))
        port: int = probe.getsockname()[1]
        return port


def _stop(process: subprocess.Popen[Any]) -> None:
    """Stop one process we started, by its PID."""
    if process.poll() is None:
        os.kill(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            os.kill(process.pid, signal.SIGKILL)
            process.wait(timeout=5)


@contextmanager
def smtp_sink() -> Iterator[int]:
    """postfix's smtp-sink on a loopback port; yields the port."""
    port = _free_port()
    command = [_binary("smtp-sink")]
    if os.geteuid() == 0:
        command += ["-u", "nobody"]  # it refuses to run as root otherwise
    command += ["-m", "512", f"{HOST}:{port}", "1024"]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection((HOST, port), timeout=1).close()
                break
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise SystemExit(
                        f"smtp-sink did not start: {process.stderr.read() if process.stderr else ''!r}"
                    ) from None
                time.sleep(0.05)
        yield port
    finally:
        _stop(process)


# --- setup -------------------------------------------------------------------------------


def setup(db: Database, count: int, *, due_in: timedelta = timedelta(minutes=-1)) -> None:
    """N customers with an address and a purchase, and one thank-you row each, due `due_in`
    from now (already due by default)."""
    migrate.upgrade(db)
    rng = random.Random(42)
    now = utcnow()
    customers, addresses, purchases = table_of(Customer), table_of(EmailAddress), table_of(Purchase)
    with db.write() as session:
        owner = session.execute(
            insert(table_of(Salesperson))
            .values(email=OWNER, name="Alice Example", language="en", created_at=now)
            .returning(table_of(Salesperson).c.id)
        ).scalar_one()
        rows = [
            {
                "name": f"{rng.choice(NAMES)} {n}",
                "owner_id": owner,
                "status": "customer",
                "language": "en",
                "timezone": "Asia/Bangkok",
                "custom": {},
                "created_at": now,
                "updated_at": now,
            }
            for n in range(count)
        ]
        session.execute(insert(customers), rows)
        ids = list(session.execute(select(customers.c.id).order_by(customers.c.id)).scalars())
        session.execute(
            insert(addresses),
            [
                {"customer_id": cid, "address": f"c{n}@example.org", "is_primary": True, "created_at": now}
                for n, cid in enumerate(ids)
            ],
        )
        session.execute(
            insert(purchases),
            [
                {
                    "customer_id": cid,
                    "purchased_at": now - timedelta(days=2, minutes=n % 1440),
                    "purchased_on": (now - timedelta(days=2, minutes=n % 1440))
                    .replace(tzinfo=UTC)
                    .astimezone(BANGKOK)
                    .date(),
                    "has_time": True,
                    "product": rng.choice(PRODUCTS),
                    "quantity": 1,
                    "amount_minor": rng.randrange(1_000, 500_000),
                    "currency": "EUR",
                    "order_ref": f"A-{n}",
                    "dedupe_key": f"bench-{n}",
                    "created_at": now,
                }
                for n, cid in enumerate(ids)
            ],
        )
        bought = {
            row.customer_id: row.id
            for row in session.execute(select(purchases.c.customer_id, purchases.c.id))
        }
        planned = [
            PlannedEmail(
                rule="thank-you",
                customer_id=cid,
                occurrence=f"purchase:{bought[cid]}",
                template="thank_you",
                due_at=now + due_in,
            )
            for cid in ids
        ]
        inserted = outbox.insert_planned(session, planned, message_id_domain=None)
    assert inserted == count, (inserted, count)


def _settings(port: int, connections: int, batch: int) -> Settings:
    account = SmtpAccount.model_validate(
        {"host": HOST, "port": port, "security": "plain", "max_connections": connections}
    )
    return Settings(
        salespeople=[SalespersonSettings(name="Alice Example", email=OWNER, language="en", smtp=account)],
        sending=SendingSettings.model_validate({"batch_size": batch}),
        web=WebSettings(base_url="https://crm.acme.example"),
    )


def _config_file(folder: Path, db: Database, port: int, connections: int, batch: int, count: int) -> Path:
    """The settings of `_settings` as a file: child senders load it like the daemon's."""
    path = folder / "mailcrm.yaml"
    path.write_text(
        f"""\
database:
  url: {db.url.render_as_string(hide_password=False)}
salespeople:
  - name: Alice Example
    email: {OWNER}
    language: en
    smtp: {{host: {HOST}, port: {port}, security: plain, max_connections: {connections}}}
sending:
  batch_size: {batch}
  processes: {count}
web:
  base_url: https://crm.acme.example
""",
        encoding="utf-8",
    )
    return path


def _sent_rows(db: Database) -> int:
    table = table_of(OutboxItem)
    with db.read() as session:
        return int(
            session.execute(
                select(func.count()).select_from(table).where(table.c.state == "sent")
            ).scalar_one()
        )


def _child_cpu_seconds(pids: list[int]) -> float:
    """utime + stime of live processes (Linux /proc; 0 where unknown)."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for pid in pids:
        try:
            stat = Path(f"/proc/{pid}/stat").read_bytes()
        except OSError:
            continue
        fields = stat[stat.rfind(b")") + 2 :].split()
        total += (int(fields[11]) + int(fields[12])) / ticks
    return total


async def _send_with_processes(
    db: Database, settings: Settings, count: int, limit: float
) -> tuple[float, float, float, float, int]:
    """Sender 0 here plus `count - 1` supervised children, as `mailcrm run` starts them.

    The rows were set up due later: once every child is ready (started, imported, its
    sender built; the single-process figure pays no start-up either) they are made due
    and the clock runs until none is due or claimed. Returns wall seconds, CPU seconds
    (all senders), the children's peak RSS (MB), their start-up seconds and restarts.
    """
    stop = asyncio.Event()
    sender = Sender(
        db,
        sharing.sender_config(settings, 0, count),
        TemplateRenderer(settings.templates_path()),
        worker_id="bench-0",
    )
    children = SenderProcesses(settings, count, interval=IDLE_POLL)
    launched = time.perf_counter()
    tasks = [asyncio.create_task(children.run(stop))]
    child_cpu, child_rss, startup = 0.0, 0.0, 0.0
    try:
        await asyncio.wait_for(children.ready(), timeout=60)
        startup = time.perf_counter() - launched
        child_cpu = -_child_cpu_seconds(children.pids)
        await asyncio.to_thread(_make_due, db)
        started, cpu = time.perf_counter(), time.process_time()
        tasks.append(asyncio.create_task(sender.run(stop, interval=IDLE_POLL)))
        while time.perf_counter() - started < limit and not any(t.done() for t in tasks):
            await asyncio.sleep(0.1)
            if await asyncio.to_thread(_open_rows, db) == 0:
                break
        seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
        child_cpu += _child_cpu_seconds(children.pids)
        child_rss = children.peak_rss_mb()
    finally:
        stop.set()
        await asyncio.gather(*tasks, return_exceptions=True)
    return seconds, cpu + child_cpu, child_rss, startup, children.restarts


def _make_due(db: Database) -> None:
    table = table_of(OutboxItem)
    with db.write() as session:
        session.execute(update(table).values(due_at=utcnow() - timedelta(minutes=1)))


def _open_rows(db: Database) -> int:
    table = table_of(OutboxItem)
    with db.read() as session:
        query = select(func.count()).select_from(table).where(table.c.state.in_(["due", "claimed"]))
        return int(session.execute(query).scalar_one())


async def _send_all(sender: Sender, limit: float) -> tuple[SendStats, float, float]:
    """Batches until nothing is claimed; returns the totals, wall and CPU seconds."""
    totals = SendStats()
    started, cpu = time.perf_counter(), time.process_time()
    try:
        while time.perf_counter() - started < limit:
            stats = await sender.send_due()
            totals.add(stats)
            if stats.claimed == 0:
                break
    finally:
        await sender.close()
    return totals, time.perf_counter() - started, time.process_time() - cpu


def run_sender(
    port: int, count: int, connections: int, batch: int, limit: float, wanted: int = 1
) -> dict[str, Any]:
    """Set up a fresh database and send it all with `wanted` sender processes."""
    folder = Path(tempfile.mkdtemp(prefix="mailcrm-send-bench-"))
    rss_before = peak_rss_mb()
    try:
        db = Database(f"sqlite:///{folder}/bench.db")
        began = time.perf_counter()
        setup(db, count, due_in=timedelta(minutes=-1) if wanted == 1 else timedelta(days=1))
        setup_seconds = time.perf_counter() - began
        _count_built_bytes()
        child_rss, startup, restarts = 0.0, 0.0, 0
        if wanted == 1:
            settings = _settings(port, connections, batch)
            renderer = TemplateRenderer(settings.templates_path())
            sender = Sender(db, sharing.sender_config(settings), renderer, worker_id="bench")
            totals, seconds, cpu = asyncio.run(_send_all(sender, limit))
            sent, used = totals.sent, 1
        else:
            settings = load_settings(_config_file(folder, db, port, connections, batch, wanted))
            used = sharing.resolve(settings)
            figures = asyncio.run(_send_with_processes(db, settings, used, limit))
            seconds, cpu, child_rss, startup, restarts = figures
            sent = _sent_rows(db)
        left = _open_rows(db)
        db.dispose()
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    return {
        "processes": used,
        "count": count,
        "connections": connections,
        "batch_size": batch,
        "setup_seconds": round(setup_seconds, 2),
        "seconds": round(seconds, 3),
        "cpu_seconds": round(cpu, 3),
        "sent": sent,
        "sent_by_this_process": _BUILT["count"],
        "not_sent": count - sent,
        "left_open": left,
        "child_startup_seconds": round(startup, 2),
        "restarts": restarts,
        "emails_per_second": round(sent / seconds, 1) if seconds else 0.0,
        "mean_message_bytes": round(_BUILT["bytes"] / _BUILT["count"]) if _BUILT["count"] else 0,
        # this process's peak so far (setup included) plus the children's
        "peak_rss_mb": round(max(rss_before, peak_rss_mb()) + child_rss, 1),
        "peak_rss_children_mb": round(child_rss, 1),
    }


_BUILT = {"count": 0, "bytes": 0}


def _count_built_bytes() -> None:
    """Wrap the sender's `build_message` to learn the mean size sent (smtp-source gets the same);
    with several processes, this process's share is the sample."""
    _BUILT.update(count=0, bytes=0)
    build = getattr(compose.build_message, "__wrapped__", compose.build_message)

    def counting(**kwargs: Any) -> bytes:
        payload = build(**kwargs)
        _BUILT["count"] += 1
        _BUILT["bytes"] += len(payload)
        return payload

    counting.__wrapped__ = build  # type: ignore[attr-defined]
    compose.build_message = counting


# --- smtp-source -------------------------------------------------------------------------


def message_file(folder: Path, size: int) -> Path:
    """A fixed message of about `size` bytes, headers included."""
    body_line = "Thank you for choosing our espresso machine. I hope it serves you well.\n"
    head = (
        "From: Alice Example <alice@acme.example>\nTo: c0@example.org\n"
        "Subject: Thank you for your purchase\nMessage-ID: <bench@acme.example>\n"
        "MIME-Version: 1.0\nContent-Type: text/plain; charset=utf-8\n\n"
    )
    lines = max(1, (size - len(head)) // len(body_line))
    path = folder / "message.eml"
    path.write_text(head + body_line * lines, encoding="ascii")
    return path


def run_smtp_source(port: int, count: int, size: int, limit: float) -> dict[str, Any]:
    folder = Path(tempfile.mkdtemp(prefix="mailcrm-source-bench-"))
    try:
        path = message_file(folder, size)
        command = [
            _binary("smtp-source"),
            "-d", "-s", "10", "-m", str(count),
            "-f", "alice@acme.example", "-t", "c0@example.org",
            "-F", str(path),
            f"{HOST}:{port}",
        ]  # fmt: skip
        started = time.perf_counter()
        process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        try:
            _, err = process.communicate(timeout=limit)
        except subprocess.TimeoutExpired:
            _stop(process)
            raise SystemExit(f"smtp-source did not finish within {limit:.0f} s") from None
        seconds = time.perf_counter() - started
        if process.returncode != 0:
            raise SystemExit(f"smtp-source failed ({process.returncode}): {err[-500:]}")
        return {
            "count": count,
            "sessions": 10,
            "message_bytes": path.stat().st_size,
            "seconds": round(seconds, 3),
            "messages_per_second": round(count / seconds, 1),
        }
    finally:
        shutil.rmtree(folder, ignore_errors=True)


# --- planning ----------------------------------------------------------------------------


def run_planning(customers: int | None, limit: float) -> dict[str, Any]:
    if not PLANNING_SCRIPT.exists():
        return {"skipped": f"{PLANNING_SCRIPT.name} is not there (yet); planning figures left out"}
    command = [sys.executable, str(PLANNING_SCRIPT), "--json"]
    if customers is not None:
        command += ["--customers", str(customers)]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        out, err = process.communicate(timeout=limit)
    except subprocess.TimeoutExpired:
        _stop(process)
        return {"error": f"{PLANNING_SCRIPT.name} did not finish within {limit:.0f} s"}
    if process.returncode != 0:
        return {"error": f"{PLANNING_SCRIPT.name} exited with {process.returncode}: {err.strip()[-500:]}"}
    try:
        result: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
    except (ValueError, IndexError):
        return {"error": f"{PLANNING_SCRIPT.name} printed no JSON: {out[-300:]!r}"}
    return result


# --- report ------------------------------------------------------------------------------


def peak_rss_mb() -> float:
    """This process's peak RSS (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _print_sender(s: dict[str, Any]) -> None:
    n = s["processes"]
    label = "1 process" if n == 1 else f"{n} processes"
    print(
        f"sender, {label}: {s['sent']:,} emails in {s['seconds']:.2f} s"
        f" = {s['emails_per_second']:,.0f} emails/s"
    )
    print(
        f"  claimed, checked, rendered, built, sent over {s['connections']} connections and recorded "
        f"(batches of {s['batch_size']}); CPU {s['cpu_seconds']:.1f} s; setup {s['setup_seconds']:.1f} s"
    )
    if n > 1:
        print(
            f"  this process sent {s['sent_by_this_process']:,}, the {n - 1} child process(es) "
            f"{s['sent'] - s['sent_by_this_process']:,}; children ready after "
            f"{s['child_startup_seconds']:.1f} s (not timed), restarts: {s['restarts']}"
        )
    print(
        f"  peak RSS summed over the sender processes: {s['peak_rss_mb']:.0f} MB"
        + (f" (children {s['peak_rss_children_mb']:.0f} MB)" if n > 1 else "")
    )
    if s["not_sent"] or s["left_open"]:
        print(f"  NOT SENT: {s['not_sent']}; still due/claimed: {s['left_open']}")


def print_report(result: dict[str, Any]) -> None:
    s, src = result["sender"], result["smtp_source"]
    _print_sender(s)
    single = result.get("single")
    if single is not None:
        _print_sender(single)
    print(
        f"smtp-source -d -s 10 -m {src['count']}: {src['seconds']:.2f} s = "
        f"{src['messages_per_second']:,.0f} msg/s ({src['message_bytes']:,} byte file)"
    )
    print(
        f"ratio: {result['ratio']:.3f}x of smtp-source with {s['processes']} process(es)"
        + (f", {result['ratio_single']:.3f}x with 1" if single is not None else "")
        + f" (target >= {TARGET_RATIO}x, >= {TARGET_RATE:,.0f}/s)"
    )
    planning = result.get("planning")
    if planning is None:
        print("planning: skipped (--skip-planning)")
    elif "skipped" in planning or "error" in planning:
        print(f"planning: {planning.get('skipped') or planning.get('error')}")
    else:
        print(f"planning an anniversary rule over {planning.get('customers', 0):,} customers:")
        for store in ("sqlite", "postgres"):
            figures = planning.get(store)
            if not figures:
                continue
            print(
                f"  {store}: {figures.get('seconds', 0):.2f} s, {figures.get('planned', 0):,} planned, "
                f"{figures.get('inserted', 0):,} new outbox rows, "
                f"peak RSS {figures.get('peak_rss_mb', 0):.0f} MB: "
                f"{'OK' if figures.get('ok') else 'MISSED'} (targets < 5 s, < 500 MB)"
            )
    print("sending: " + ("OK" if result["ok"] else "MISSED"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=50_000, help="due emails to send (default 50,000)")
    parser.add_argument(
        "--processes",
        type=int,
        default=sharing.cpu_count(),
        help=f"sender processes, as sending.processes (default: one per CPU, {sharing.cpu_count()})",
    )
    parser.add_argument(
        "--no-single", action="store_true", help="skip the single-process figure (sent after the other)"
    )
    parser.add_argument(
        "--connections",
        type=int,
        default=CONNECTIONS,
        help=f"the account's max_connections, shared by the processes (default {CONNECTIONS})",
    )
    parser.add_argument("--batch", type=int, default=1000, help="rows claimed per batch (default 1,000)")
    parser.add_argument("--max-seconds", type=float, default=600.0, help="bound on each timed phase")
    parser.add_argument("--skip-planning", action="store_true", help="do not run plan_anniversary.py")
    parser.add_argument(
        "--planning-customers", type=int, default=None, help="customers for plan_anniversary.py (its default)"
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of text")
    args = parser.parse_args()
    if not 1 <= args.count <= MAX_COUNT:
        parser.error(f"--count must be between 1 and {MAX_COUNT:,}")
    if not 1 <= args.connections <= 100:
        parser.error("--connections must be between 1 and 100")
    if not 1 <= args.processes <= sharing.MAX_PROCESSES:
        parser.error(f"--processes must be between 1 and {sharing.MAX_PROCESSES}")
    if not 1 <= args.batch <= 5000:
        parser.error("--batch must be between 1 and 5,000")

    single: dict[str, Any] | None = None
    with smtp_sink() as port:
        sender = run_sender(port, args.count, args.connections, args.batch, args.max_seconds, args.processes)
        if sender["processes"] > 1 and not args.no_single:
            single = run_sender(port, args.count, args.connections, args.batch, args.max_seconds)
        size = sender["mean_message_bytes"] or 3000
        source = run_smtp_source(port, args.count, size, args.max_seconds)
    ratio = sender["emails_per_second"] / source["messages_per_second"]
    result: dict[str, Any] = {
        "sender": sender,
        "smtp_source": source,
        "ratio": round(ratio, 4),
        "peak_rss_mb": sender["peak_rss_mb"],
        "target_emails_per_second": TARGET_RATE,
        "target_ratio": TARGET_RATIO,
        "ok": sender["sent"] == args.count
        and sender["emails_per_second"] >= TARGET_RATE
        and ratio >= TARGET_RATIO,
    }
    if single is not None:
        result["single"] = single
        result["ratio_single"] = round(single["emails_per_second"] / source["messages_per_second"], 4)
    if not args.skip_planning:
        result["planning"] = run_planning(args.planning_customers, PLANNING_LIMIT)
    if args.json:
        print(json.dumps(result))
    else:
        print_report(result)


if __name__ == "__main__":
    main()

"""A sender process for crash and multi-daemon tests, plus the seeding helpers those tests share.

Run as a script: `python tests/sendrunner.py --db URL --smtp-port N --templates DIR
--worker-id W [--until-done]`. It runs `Sender.run` until SIGTERM/SIGINT or, with
`--until-done`, until no row is due or claimed; it always exits within `--max-seconds`.
On exit it prints one JSON line with the batches it ran and the rows it sent.

`daemon_config` and `Daemons` do the same for whole `mailcrm run` daemons: a config
file on a given database and SMTP port, and daemons started with JSON logs on a file,
stopped by PID (SIGTERM, then SIGKILL).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from datetime import datetime, timedelta
from pathlib import Path
from typing import IO, Any

from sqlalchemy import func, insert, select

from mailcrm.domain.planning import PlannedEmail
from mailcrm.errors import DatabaseError
from mailcrm.render import TemplateRenderer
from mailcrm.send.results import SendStats
from mailcrm.send.sharing import sender_config
from mailcrm.send.worker import Sender
from mailcrm.settings import SalespersonSettings, SendingSettings, Settings, SmtpAccount, WebSettings
from mailcrm.store import outbox
from mailcrm.store.db import Database
from mailcrm.store.models import Customer, EmailAddress, OutboxItem, Salesperson, table_of
from mailcrm.store.types import utcnow

OWNER = "alice@acme.example"
OWNER_NAME = "Alice Example"

TEMPLATES = {
    "thank_you/en.subject.j2": "Thank you, {{ customer.first_name }}!",
    "thank_you/en.txt.j2": (
        "Dear {{ customer.name }},\n\nthank you for your order.\n\n{{ salesperson.name }}\n"
    ),
    "thank_you/en.html.j2": "<p>Dear {{ customer.name }},</p><p>thank you for your order.</p>",
    "thank_you/th.subject.j2": "ขอบคุณค่ะ {{ customer.first_name }}",
    "thank_you/th.txt.j2": "เรียน {{ customer.name }}\n\nขอบคุณสำหรับการสั่งซื้อ\n",
    "follow_up/en.subject.j2": "Re: {{ previous_subject or 'our last email' }}",
    "follow_up/en.txt.j2": "Hello {{ customer.first_name }}, just checking in.\n",
    "broken/en.subject.j2": "Hello",
    "broken/en.txt.j2": "Hello {{ customer.name }},\n{{ customer.no_such_field }}\n",
}


def write_templates(folder: Path) -> Path:
    """The templates the sender tests use, written under `folder`."""
    for name, text in TEMPLATES.items():
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return folder


def make_settings(
    smtp_port: int,
    *,
    connections: int = 2,
    per_minute: int | None = None,
    per_day: int | None = None,
    security: str = "plain",
    timeout: float = 10.0,
    **sending: object,
) -> Settings:
    """Settings for one salesperson whose SMTP account is the test sink on loopback."""
    account = SmtpAccount.model_validate(
        {
            "host": "127.0.0.1",
            "port": smtp_port,
            "security": security,
            "max_connections": connections,
            "per_minute": per_minute,
            "per_day": per_day,
            "timeout_seconds": timeout,
        }
    )
    return Settings(
        salespeople=[SalespersonSettings(name=OWNER_NAME, email=OWNER, language="en", smtp=account)],
        sending=SendingSettings.model_validate({"retry_base_seconds": 1.0, **sending}),
        web=WebSettings(base_url="https://crm.acme.example"),
    )


def seed_customers(
    db: Database,
    count: int,
    *,
    domain: str = "example.org",
    start: int = 0,
    language: str | None = None,
    owner: str = OWNER,
) -> list[int]:
    """`count` customers owned by `owner`, with addresses c<i>@domain; returns their ids."""
    now = utcnow()
    with db.write() as session:
        owner_id = session.execute(
            select(table_of(Salesperson).c.id).where(table_of(Salesperson).c.email == owner)
        ).scalar_one_or_none()
        if owner_id is None:
            owner_id = session.execute(
                insert(table_of(Salesperson))
                .values(email=owner, name=OWNER_NAME, created_at=now)
                .returning(table_of(Salesperson).c.id)
            ).scalar_one()
        rows = [
            {
                "name": f"Customer {index}",
                "owner_id": owner_id,
                "status": "customer",
                "language": language,
                "custom": {},
                "created_at": now,
                "updated_at": now,
            }
            for index in range(start, start + count)
        ]
        ids = [
            row.id
            for row in session.execute(insert(table_of(Customer)).returning(table_of(Customer).c.id), rows)
        ]
        session.execute(
            insert(table_of(EmailAddress)),
            [
                {
                    "customer_id": cid,
                    "address": f"c{start + n}@{domain}",
                    "is_primary": True,
                    "created_at": now,
                }
                for n, cid in enumerate(ids)
            ],
        )
    return ids


def plan(
    db: Database,
    customer_ids: Sequence[int],
    *,
    rule: str = "thank-you",
    template: str = "thank_you",
    occurrence: str = "purchase:1",
    due_at: datetime | None = None,
    in_reply_to: str | None = None,
) -> int:
    """One due outbox row per customer (inserted like the planner does)."""
    due = due_at or utcnow() - timedelta(minutes=1)
    planned = [
        PlannedEmail(
            rule=rule,
            customer_id=cid,
            occurrence=occurrence,
            template=template,
            due_at=due,
            in_reply_to=in_reply_to,
        )
        for cid in customer_ids
    ]
    with db.write() as session:
        return outbox.insert_planned(session, planned, message_id_domain=None)


async def send_batch(sender: Sender, now: datetime | None = None, within: float = 60) -> SendStats:
    """One `send_due` pass, bounded in time; the sender's connections are closed after."""
    try:
        return await asyncio.wait_for(sender.send_due(now), timeout=within)
    finally:
        await sender.close()


async def send_due(
    db: Database, settings: Settings, templates: Path, now: datetime | None = None, *, worker_id: str = "test"
) -> SendStats:
    """`send_batch` of a fresh sender rendering the test templates in `templates`."""
    return await send_batch(
        Sender(db, sender_config(settings), TemplateRenderer(templates), worker_id=worker_id), now
    )


def wait_until(condition: Any, timeout: float, what: str) -> None:
    """Poll `condition` every 50 ms; TimeoutError naming `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.05)
    raise TimeoutError(f"timed out waiting for {what}")


def outbox_rows(db: Database) -> list[Any]:
    """Every outbox row (all columns), in id order."""
    table = table_of(OutboxItem)
    with db.read() as session:
        return list(session.execute(select(table).order_by(table.c.id)))


def open_rows(db: Database) -> int:
    """Rows still due or claimed."""
    table = table_of(OutboxItem)
    with db.read() as session:
        return int(
            session.execute(
                select(func.count()).select_from(table).where(table.c.state.in_(["due", "claimed"]))
            ).scalar_one()
        )


class SenderProcesses:
    """Sender subprocesses (this script) started by one test; each is stopped by its PID."""

    def __init__(self, db_url: str, smtp_port: int, templates: Path, *, lease: float = 3.0) -> None:
        self.db_url = db_url
        self.smtp_port = smtp_port
        self.templates = templates
        self.lease = lease
        self.started: list[subprocess.Popen[str]] = []

    def start(self, worker: str, *extra: str) -> subprocess.Popen[str]:
        command = [
            sys.executable,
            str(Path(__file__).resolve()),
            "--db", self.db_url,
            "--smtp-port", str(self.smtp_port),
            "--templates", str(self.templates),
            "--worker-id", worker,
            "--lease", str(self.lease),
            *extra,
        ]  # fmt: skip
        process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.started.append(process)
        return process

    def kill(self, process: subprocess.Popen[str]) -> None:
        """`kill -9` the process (if it still runs) and reap it."""
        if process.poll() is None:
            os.kill(process.pid, signal.SIGKILL)
        process.communicate(timeout=10)

    def finish(self, process: subprocess.Popen[str], timeout: float) -> dict[str, Any]:
        """Wait for a clean exit and return the JSON line it printed."""
        out, err = process.communicate(timeout=timeout)
        assert process.returncode == 0, err[-3000:]
        result: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
        return result

    def stop_all(self) -> None:
        """`kill -9` what still runs, reap everything and close every pipe: a process a
        test left unread would otherwise leave two open files behind (a ResourceWarning)."""
        for process in self.started:
            if process.poll() is None:
                os.kill(process.pid, signal.SIGKILL)
                process.wait(timeout=10)
            for pipe in (process.stdout, process.stderr):
                if pipe is not None:
                    pipe.close()


def _open_rows(db: Database, outages: bool) -> int:
    """`open_rows`; with `outages`, a database that is away counts as rows still open."""
    if not outages:
        return open_rows(db)
    try:
        return open_rows(db)
    except DatabaseError:
        return -1


async def _main(args: argparse.Namespace) -> dict[str, object]:
    db = Database(args.db)
    settings = make_settings(
        args.smtp_port,
        connections=args.connections,
        lease_seconds=args.lease,
        batch_size=args.batch,
        ambiguous=args.ambiguous,
        frequency_cap=None,
    )
    sender = Sender(
        db, sender_config(settings), TemplateRenderer(Path(args.templates)), worker_id=args.worker_id
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    totals = SendStats()
    batches = 0
    original = sender.send_due

    async def counted(now: datetime | None = None) -> SendStats:
        nonlocal batches
        stats = await original(now)
        batches += stats.claimed > 0
        totals.add(stats)
        return stats

    sender.send_due = counted  # type: ignore[method-assign]
    runner = asyncio.create_task(sender.run(stop, interval=0.2))
    deadline = time.monotonic() + args.max_seconds
    while not stop.is_set() and time.monotonic() < deadline:
        await asyncio.sleep(0.3)
        if args.until_done and await asyncio.to_thread(_open_rows, db, args.db_outages) == 0:
            break
    stop.set()
    await runner
    db.dispose()
    return {"worker": args.worker_id, "batches": batches, **vars(totals)}


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--db", required=True)
    parser.add_argument("--smtp-port", type=int, required=True)
    parser.add_argument("--templates", required=True)
    parser.add_argument("--worker-id", required=True)
    parser.add_argument("--connections", type=int, default=2)
    parser.add_argument("--lease", type=float, default=3.0)
    parser.add_argument("--batch", type=int, default=50)
    parser.add_argument("--ambiguous", choices=["resend", "hold"], default="resend")
    parser.add_argument("--until-done", action="store_true")
    parser.add_argument(
        "--db-outages", action="store_true", help="--until-done keeps polling while the database is away"
    )
    parser.add_argument("--max-seconds", type=float, default=120.0)
    args = parser.parse_args(argv)
    result = asyncio.run(_main(args))
    sys.stdout.write(json.dumps(result) + "\n")


if __name__ == "__main__":
    main()


def daemon_config(
    folder: Path,
    db_url: str,
    smtp_port: int,
    *,
    processes: int = 1,
    connections: int = 4,
    batch_size: int = 100,
    lease_seconds: float = 30,
) -> Path:
    """`folder/mailcrm.yaml` for `mailcrm run`: Alice sends through `smtp_port` on loopback, no
    rules (the planner adds nothing), no mailbox to sync, the test templates."""
    (folder / "rules").mkdir(parents=True, exist_ok=True)
    write_templates(folder / "templates")
    path = folder / "mailcrm.yaml"
    path.write_text(
        f"""\
database:
  url: {db_url}
templates_dir: templates
rules_dir: rules
salespeople:
  - name: {OWNER_NAME}
    email: {OWNER}
    smtp:
      host: 127.0.0.1
      port: {smtp_port}
      security: plain
      max_connections: {connections}
planning:
  interval_seconds: 3600
sending:
  processes: {processes}
  batch_size: {batch_size}
  frequency_cap: null
  lease_seconds: {lease_seconds}
""",
        encoding="utf-8",
    )
    return path


def log_lines(path: Path) -> list[dict[str, Any]]:
    """The JSON log lines of a daemon's log file (other lines are skipped)."""
    lines = []
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        if line.startswith("{"):
            try:
                lines.append(json.loads(line))
            except ValueError:
                continue
    return lines


class Daemons:
    """`mailcrm run` subprocesses started by one test, each logging JSON to its own file and
    stopped by its PID."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.started: list[tuple[subprocess.Popen[bytes], Path, IO[str]]] = []

    def start(self, config: Path, name: str) -> subprocess.Popen[bytes]:
        log_path = self.folder / f"{name}.log"
        log_file = log_path.open("w", encoding="utf-8")
        env = {k: v for k, v in os.environ.items() if not k.startswith("MAILCRM_")}
        env.update(MAILCRM_LOG_LEVEL="info", MAILCRM_LOG_FORMAT="json")
        process = subprocess.Popen(
            [sys.executable, "-m", "mailcrm", "--config", str(config), "run"],
            cwd=config.parent,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=log_file,
        )
        self.started.append((process, log_path, log_file))
        return process

    def log_path(self, process: subprocess.Popen[bytes]) -> Path:
        return next(path for started, path, _ in self.started if started is process)

    def logs(self, process: subprocess.Popen[bytes]) -> list[dict[str, Any]]:
        return log_lines(self.log_path(process))

    def tail(self, process: subprocess.Popen[bytes], size: int = 3000) -> str:
        return self.log_path(process).read_text(encoding="utf-8", errors="replace")[-size:]

    def stop(self, process: subprocess.Popen[bytes], timeout: float = 30) -> int:
        """SIGTERM by PID and wait; SIGKILL if it has not exited within `timeout`."""
        if process.poll() is None:
            os.kill(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                os.kill(process.pid, signal.SIGKILL)
                process.wait(timeout=10)
        return process.returncode

    def stop_all(self) -> None:
        for process, _path, log_file in self.started:
            if process.poll() is None:
                os.kill(process.pid, signal.SIGKILL)
                process.wait(timeout=10)
            log_file.close()

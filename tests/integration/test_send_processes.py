"""`mailcrm run` with `sending.processes: 2`: the daemon and one child sender share the
outbox (SQLite file and PostgreSQL), every email goes out once, both processes send,
and SIGTERM leaves no sender process behind.

The daemon runs as a real subprocess with JSON logs on a file: its `send_batch` lines
say which worker (host:pid:random) sent how much, `send_process_started` names the
children's PIDs. The SMTP sink runs in the test process and counts Message-IDs.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import Counter, defaultdict
from pathlib import Path
from typing import IO, Any

from sendrunner import OWNER, daemon_config, log_lines, open_rows, plan, seed_customers
from servers.smtpd import RecordingSMTPServer
from sqlalchemy import select

from mailcrm.send import sharing
from mailcrm.settings import Settings, SmtpAccount
from mailcrm.store.db import Database
from mailcrm.store.models import OutboxItem, table_of

ROWS = 2000
CHILD = "mailcrm.send.processes"


def _senders_of(parent: int) -> list[int]:
    """Live (non-zombie) child sender processes started by daemon `parent`."""
    found = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            cmdline = Path(f"/proc/{entry.name}/cmdline").read_bytes().split(b"\0")
            stat = Path(f"/proc/{entry.name}/stat").read_bytes()
        except OSError:
            continue
        state = stat[stat.rfind(b")") + 2 :].split()[0]
        if CHILD.encode() in cmdline and str(parent).encode() in cmdline and state not in (b"Z", b"X"):
            found.append(int(entry.name))
    return found


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_bytes()
    except OSError:
        return False
    return stat[stat.rfind(b")") + 2 :].split()[0] not in (b"Z", b"X")


def _start_daemon(config: Path, cwd: Path, log_file: IO[str]) -> subprocess.Popen[bytes]:
    """`mailcrm run` with JSON logs at info level into `log_file` (the tests read who sent what)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MAILCRM_")}
    env.update(MAILCRM_LOG_LEVEL="info", MAILCRM_LOG_FORMAT="json")
    return subprocess.Popen(
        [sys.executable, "-m", "mailcrm", "--config", str(config), "run"],
        cwd=cwd,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=log_file,
    )


def test_two_sender_processes_send_every_email_once(db: Database, tmp_path: Path) -> None:
    assert plan(db, seed_customers(db, ROWS)) == ROWS
    log_path = tmp_path / "daemon.log"
    with RecordingSMTPServer() as sink, log_path.open("w", encoding="utf-8") as log_file:
        config = daemon_config(tmp_path, db.url.render_as_string(hide_password=False), sink.port, processes=2)
        daemon = _start_daemon(config, tmp_path, log_file)
        children: list[int] = []
        try:
            deadline = time.monotonic() + 150
            while time.monotonic() < deadline and daemon.poll() is None:
                children = sorted(set(children) | set(_senders_of(daemon.pid)))
                if len(sink.messages) >= ROWS and open_rows(db) == 0:
                    break
                time.sleep(0.2)
            assert daemon.poll() is None, log_path.read_text()[-3000:]
            assert open_rows(db) == 0, f"{open_rows(db)} rows still due or claimed"
            daemon.send_signal(signal.SIGTERM)
            daemon.wait(timeout=40)
        finally:
            if daemon.poll() is None:
                os.kill(daemon.pid, signal.SIGKILL)
                daemon.wait(timeout=10)
            for pid in _senders_of(daemon.pid):  # only if the test failed: no orphans either way
                os.kill(pid, signal.SIGKILL)
        received = Counter(m.message_id for m in sink.messages)

    logs = log_lines(log_path)
    assert daemon.returncode == 0, log_path.read_text()[-3000:]
    started = [line["pid"] for line in logs if line.get("action") == "send_process_started"]
    assert len(started) == 1, started  # one child, never restarted
    assert set(children) <= set(started)
    assert not [pid for pid in started if _alive(pid)], "a sender process outlived the daemon"
    assert _senders_of(daemon.pid) == []
    stopped = [line for line in logs if line.get("action") == "send_process_stopped"]
    assert [(line["pid"], line["code"]) for line in stopped] == [(started[0], 0)]

    outbox = table_of(OutboxItem)
    with db.read() as session:
        rows = list(session.execute(select(outbox.c.state, outbox.c.message_id)))
    assert len(rows) == ROWS and {state for state, _ in rows} == {"sent"}
    assert set(received) == {mid for _, mid in rows}
    assert max(received.values()) == 1  # every Message-ID arrived exactly once

    sent_by: dict[int, int] = defaultdict(int)
    for line in logs:
        if line.get("action") == "send_batch":
            sent_by[int(str(line["worker"]).split(":")[-2])] += int(line["sent"])
    assert sum(sent_by.values()) == ROWS
    assert sent_by[daemon.pid] > 0 and sent_by[started[0]] > 0, dict(sent_by)


def test_limits_are_shared_out_among_processes() -> None:
    account = SmtpAccount(host="127.0.0.1", max_connections=5, per_minute=7, per_day=100)
    settings = Settings.model_validate(
        {
            "salespeople": [{"name": "A", "email": OWNER, "smtp": account.model_dump()}],
            "sending": {"processes": 2},
        }
    )
    parts = [sharing.share(settings, slot, 2).salespeople[0].smtp for slot in range(2)]
    assert [(p.max_connections, p.per_minute) for p in parts if p] == [(3, 4), (2, 3)]
    # a process cannot see the others' rows reserved but not yet started: one per connection
    assert [p.per_day for p in parts if p] == [100 - 2, 100 - 3]
    assert sharing.resolve(settings) == 2
    narrow = settings.model_copy(
        update={
            "salespeople": [
                settings.salespeople[0].model_copy(
                    update={"smtp": account.model_copy(update={"max_connections": 1})}
                )
            ]
        }
    )
    assert sharing.resolve(narrow) == 1  # one connection cannot be split: limits stay exact
    assert sharing.share(settings, 0, 1) is settings


def _wait_for(condition: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.1)
    raise TimeoutError(f"timed out waiting for {what}")


def test_a_dead_child_is_restarted_and_a_killed_daemon_leaves_no_child(
    sqlite_url: str, tmp_path: Path
) -> None:
    db = Database(sqlite_url)
    log_path = tmp_path / "daemon.log"
    with RecordingSMTPServer() as sink, log_path.open("w", encoding="utf-8") as log_file:
        config = daemon_config(tmp_path, db.url.render_as_string(hide_password=False), sink.port, processes=2)
        daemon = _start_daemon(config, tmp_path, log_file)
        try:

            def ready() -> list[int]:
                return [x["pid"] for x in log_lines(log_path) if x.get("action") == "send_process_ready"]

            _wait_for(lambda: len(ready()) == 1, 60, "the child sender")
            first = ready()[0]
            os.kill(first, signal.SIGKILL)
            _wait_for(lambda: len(ready()) == 2, 60, "the restarted child")
            second = ready()[1]
            assert second != first and _senders_of(daemon.pid) == [second]
            os.kill(daemon.pid, signal.SIGKILL)  # no SIGTERM for the children: they must notice
            daemon.wait(timeout=10)
            _wait_for(lambda: not _alive(second), 30, "the orphaned child to stop")
        finally:
            if daemon.poll() is None:
                os.kill(daemon.pid, signal.SIGKILL)
                daemon.wait(timeout=10)
            for pid in _senders_of(daemon.pid):
                os.kill(pid, signal.SIGKILL)
    db.dispose()
    died = [x for x in log_lines(log_path) if x.get("action") == "send_process_died"]
    assert [x["code"] for x in died] == [-signal.SIGKILL]
    assert any(x.get("action") == "send_process_orphaned" for x in log_lines(log_path))

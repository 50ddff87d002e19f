"""Benchmark: initial IMAP sync of a generated mailbox, against mbsync, and IDLE latency.

A private Dovecot (tests/servers/dovecot.py) serves a seeded mailbox (benchmarks/
mailcorpus.py: mixed sizes, charsets and threads; mostly mail from the known
customers, plus leads, outbound mail, auto-replies and bounces). Phases:

A. mailcrm: `MailboxWorker.sync_once()` into a fresh SQLite database holding the
   customers, end to end (fetched, parsed, matched, committed), in a child process so
   its peak RSS is the sync's own (with its parsing worker process: the sum of both,
   sampled); the stored message count must equal the corpus.
B. peer: `mbsync` (isync) with its default settings pulls the same folder into an
   empty local Maildir, in the same run.
C. IDLE: the mailbox worker runs (`MailboxWorker.run`) in a child process on the
   synced database; messages are delivered one at a time (`doveadm save`) and each is
   timed from the start of its delivery until its row is in the database.
D. memory: phase A again on a mailbox of small messages (`--big`, default 100,000),
   to show the peak RSS does not grow with the mailbox.

Phases A and B alternate `--rounds` times (default 2); the rates compared are each
side's best round (all rounds are printed), the peak RSS the highest of all rounds.
Before any timing the files are flushed to disk and Dovecot has read every message once.

    python benchmarks/sync_imap.py [--messages N] [--customers N] [--idle N] [--rounds N]
                                   [--big N | --skip-big] [--profile] [--json]

`--profile` adds a profiled run of phase A: where the wall time goes (IMAP fetch,
parsing, database ingest, waiting) and the hottest functions of each thread.
Needs root (Dovecot switches to the mail users' uids), dovecot-imapd and isync.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import io
import json
import math
import os
import random
import select
import shutil
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import mailcorpus

ROOT = Path(__file__).resolve().parents[1]
PASSWORD_ENV = "MAILCRM_BENCH_IMAP_PASSWORD"
PHASE_TIMEOUT = 900.0  # seconds, per child process
READY_TIMEOUT = 120.0  # the IDLE worker's first sync and IDLE start
IDLE_MESSAGE_TIMEOUT = 10.0  # per delivered message
IDLE_POLL = 0.01
IDLE_GAP = (0.1, 0.2)  # seconds between deliveries
MAX_MESSAGES = 1_000_000
MAX_CUSTOMERS = 200_000
MAX_IDLE = 10_000
MAX_ROUNDS = 5

TARGET_RATE = 1000.0  # messages/s, initial sync end to end
TARGET_RATIO = 0.8  # mailcrm / mbsync
TARGET_P99 = 2.0  # seconds, delivery to timeline
TARGET_RSS = 300.0  # MB, peak of the sync process


def log(text: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {text}", file=sys.stderr, flush=True)


def percentile(values: list[float], fraction: float) -> float:
    """Nearest-rank percentile."""
    ordered = sorted(values)
    rank = max(1, min(len(ordered), math.ceil(fraction * len(ordered))))
    return ordered[rank - 1]


# --- child processes -------------------------------------------------------------------


def _settings(account: dict[str, Any]) -> Any:
    from mailcrm.settings import ImapAccount, SalespersonSettings, Settings

    return Settings(
        salespeople=[
            SalespersonSettings(
                name=mailcorpus.SALES_NAME,
                email=mailcorpus.SALES_ADDRESS,
                imap=ImapAccount(
                    host=account["host"],
                    port=account["port"],
                    security="plain",
                    username=account["username"],
                    password_env=PASSWORD_ENV,
                    timeout_seconds=60,
                ),
            )
        ]
    )


def _rss_mb() -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


class _TreeSampler:
    """Peak RSS and CPU of this process plus its descendants (the parsing worker process
    is a grandchild via the forkserver, which `RUSAGE_CHILDREN` never sees), sampled."""

    INTERVAL = 0.2

    def __init__(self) -> None:
        self.peak_rss_mb = 0.0
        self.cpu: dict[int, float] = {}  # descendant pid -> last seen CPU seconds
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._tick = os.sysconf("SC_CLK_TCK")

    def _tree(self) -> list[int]:
        parents: dict[int, list[int]] = {}
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            try:
                with open(f"/proc/{entry}/stat") as stat:
                    fields = stat.read().rpartition(")")[2].split()
            except OSError:
                continue
            parents.setdefault(int(fields[1]), []).append(int(entry))
        found, todo = [], [os.getpid()]
        while todo:
            pid = todo.pop()
            found.append(pid)
            todo.extend(parents.get(pid, ()))
        return found

    def sample(self) -> None:
        total = 0.0
        for pid in self._tree():
            try:
                with open(f"/proc/{pid}/status") as status:
                    rss = next((int(line.split()[1]) for line in status if line.startswith("VmRSS:")), 0)
                with open(f"/proc/{pid}/stat") as stat:
                    fields = stat.read().rpartition(")")[2].split()
            except OSError:
                continue
            total += rss / 1024
            if pid != os.getpid():
                self.cpu[pid] = (int(fields[11]) + int(fields[12])) / self._tick
        self.peak_rss_mb = max(self.peak_rss_mb, total)

    def _run(self) -> None:
        while not self._stop.wait(self.INTERVAL):
            self.sample()

    def __enter__(self) -> _TreeSampler:
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        self._thread.join()


class _Probes:
    """Wall and thread-CPU time per stage of a sync; optionally cProfile per thread."""

    def __init__(self, profile: bool) -> None:
        self.profile = profile
        self.totals: dict[str, list[float]] = {}
        self.profilers: dict[str, list[Any]] = {"parse_thread": [], "store": []}
        self._lock = threading.Lock()
        self._local = threading.local()

    def add(self, name: str, wall: float, cpu: float) -> None:
        with self._lock:
            entry = self.totals.setdefault(name, [0.0, 0.0, 0.0])
            entry[0] += wall
            entry[1] += cpu
            entry[2] += 1

    def thread_stage(self, name: str, func: Callable[..., Any]) -> Callable[..., Any]:
        import cProfile

        def wrapper(*args: Any, **kwargs: Any) -> Any:
            profiler = None
            if self.profile:
                profiler = getattr(self._local, name, None)
                if profiler is None:
                    profiler = cProfile.Profile()
                    setattr(self._local, name, profiler)
                    with self._lock:
                        self.profilers[name].append(profiler)
            wall, cpu = time.perf_counter(), time.thread_time()
            if profiler is not None:
                profiler.enable()
            try:
                return func(*args, **kwargs)
            finally:
                if profiler is not None:
                    profiler.disable()
                self.add(name, time.perf_counter() - wall, time.thread_time() - cpu)

        return wrapper

    def loop_stage(self, name: str, func: Callable[..., Any]) -> Callable[..., Any]:
        async def wrapper(*args: Any, **kwargs: Any) -> Any:
            wall = time.perf_counter()
            try:
                return await func(*args, **kwargs)
            finally:
                self.add(name, time.perf_counter() - wall, 0.0)

        return wrapper

    def install(self) -> None:
        from mailcrm.imap import fetching
        from mailcrm.sync import engine

        engine._prepare = self.thread_stage("parse_thread", engine._prepare)
        engine._Parser.prepare = self.loop_stage("parse", engine._Parser.prepare)  # type: ignore[method-assign]
        engine.FolderSync._store = self.thread_stage("store", engine.FolderSync._store)  # type: ignore[method-assign]
        fetching._bodies = self.loop_stage("fetch_bodies", fetching._bodies)
        fetching._sizes = self.loop_stage("fetch_sizes", fetching._sizes)


def _top(profilers: list[Any], limit: int = 16) -> str:
    """The hottest functions by own time, then by cumulative time."""
    import pstats

    if not profilers:
        return ""
    sections = []
    for order in ("tottime", "cumulative"):
        out = io.StringIO()
        stats = pstats.Stats(profilers[0], stream=out)
        for more in profilers[1:]:
            stats.add(more)
        stats.strip_dirs().sort_stats(order).print_stats(limit)
        text = out.getvalue()
        start = text.find("   ncalls")
        sections.append(f"by {order}:\n" + (text[start:] if start >= 0 else text).rstrip())
    return "\n".join(sections)


def child_sync(url: str, account: dict[str, Any], profile: str | None) -> dict[str, Any]:
    """Phase A in this (child) process: one `sync_once()` of the mailbox."""
    import asyncio
    import cProfile
    import resource

    from sqlalchemy import func, select

    from mailcrm import wiring
    from mailcrm.store.db import Database
    from mailcrm.store.models import Message
    from mailcrm.sync.supervisor import workers

    probes = _Probes(profile == "cprofile") if profile else None
    if probes is not None:
        probes.install()
    db = Database(url)
    settings = _settings(account)
    worker = workers(db, wiring.team(settings), wiring.mailboxes(settings), wiring.sync_policy(settings))[0]
    rss_before = _rss_mb()
    last = [time.monotonic()]

    def progress(folder: str, done: int, total: int) -> None:
        now = time.monotonic()
        if now - last[0] >= 5 or done == total:
            last[0] = now
            log(f"  {folder}: {done}/{total}")

    gc_time = [0.0, 0.0]  # total seconds in the collector, start of the current run

    def on_gc(phase: str, _info: dict[str, int]) -> None:
        if phase == "start":
            gc_time[1] = time.perf_counter()
        else:
            gc_time[0] += time.perf_counter() - gc_time[1]

    gc.callbacks.append(on_gc)
    loop_profiler = cProfile.Profile() if profile == "cprofile" else None
    before = resource.getrusage(resource.RUSAGE_SELF)
    loop_cpu = time.thread_time()
    started = time.perf_counter()
    if loop_profiler is not None:
        loop_profiler.enable()
    with _TreeSampler() as tree:
        results = asyncio.run(worker.sync_once(progress))
    if loop_profiler is not None:
        loop_profiler.disable()
    seconds = time.perf_counter() - started
    loop_cpu = time.thread_time() - loop_cpu
    after = resource.getrusage(resource.RUSAGE_SELF)
    with db.read() as session:
        stored = int(session.execute(select(func.count()).select_from(Message)).scalar_one())
    db.dispose()
    fetched = sum(result.fetched for result in results)
    figures: dict[str, Any] = {
        "seconds": round(seconds, 3),
        "fetched": fetched,
        "stored": stored,
        "new_messages": sum(result.stats.new_messages for result in results),
        "leads": sum(result.stats.leads for result in results),
        "links": sum(result.stats.links for result in results),
        "bounces": sum(result.stats.bounces for result in results),
        "malformed": sum(result.stats.malformed for result in results),
        "cpu_seconds": round(
            after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime + sum(tree.cpu.values()), 2
        ),
        "worker_cpu_seconds": round(sum(tree.cpu.values()), 2),
        "gc_seconds": round(gc_time[0], 2),  # this process's garbage collector, all threads
        "rss_before_mb": round(rss_before, 1),
        # This process and its parsing worker together.
        "peak_rss_mb": round(max(after.ru_maxrss / 1024, tree.peak_rss_mb), 1),
    }
    if probes is not None:
        stages = {
            name: {"wall": round(wall, 2), "thread_cpu": round(cpu, 2), "calls": int(calls)}
            for name, (wall, cpu, calls) in sorted(probes.totals.items())
        }
        busy = probes.totals.get("store", [0.0])[0]
        figures["breakdown"] = {
            "stages": stages,
            "event_loop_thread_cpu": round(loop_cpu, 2),
            "store_waiting": round(seconds - busy, 2),
        }
        if loop_profiler is not None:
            figures["profiles"] = {
                "event loop thread (IMAP fetch and protocol)": _top([loop_profiler]),
                "parse + classify threads (small syncs only)": _top(probes.profilers["parse_thread"]),
                "ingest + commit threads": _top(probes.profilers["store"]),
            }
    return figures


def child_idle(url: str, account: dict[str, Any]) -> dict[str, Any]:
    """Phase C's worker: sync, IDLE, sync on every push, until stdin says stop (or closes)."""
    import asyncio
    import resource

    from mailcrm import wiring
    from mailcrm.store.db import Database
    from mailcrm.sync.supervisor import workers

    db = Database(url)
    settings = _settings(account)
    worker = workers(db, wiring.team(settings), wiring.mailboxes(settings), wiring.sync_policy(settings))[0]

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()

        def watch_stdin() -> None:
            sys.stdin.readline()
            loop.call_soon_threadsafe(stop.set)

        threading.Thread(target=watch_stdin, daemon=True).start()
        task = asyncio.create_task(worker.run(stop))
        deadline = time.monotonic() + READY_TIMEOUT
        while worker.state.last_sync_at is None and not task.done() and not stop.is_set():
            if time.monotonic() > deadline:
                stop.set()
                break
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.5)  # into IDLE
        print("ready" if worker.state.last_sync_at else "not-ready", flush=True)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=PHASE_TIMEOUT)
        stop.set()
        await asyncio.wait_for(task, timeout=30)

    asyncio.run(main())
    db.dispose()
    return {
        "synced": worker.state.synced,
        "failures": worker.state.failures,
        "last_error": worker.state.last_error,
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    }


def run_child(phase: str, url: str, account: dict[str, Any], password: str, *extra: str) -> dict[str, Any]:
    command = [sys.executable, __file__, "--phase", phase, "--url", url, "--account", json.dumps(account)]
    env = {**os.environ, PASSWORD_ENV: password}
    done = subprocess.run(
        [*command, *extra],
        stdout=subprocess.PIPE,
        text=True,
        timeout=PHASE_TIMEOUT,
        check=False,
        env=env,
    )
    if done.returncode != 0:
        raise SystemExit(f"phase {phase} failed with exit code {done.returncode}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


# --- the server, the mailboxes and the database ----------------------------------------


def _dovecot() -> Any:
    sys.path.insert(0, str(ROOT / "tests"))
    from servers.dovecot import DovecotServer, dovecot_available

    reason = dovecot_available()
    if reason is not None:
        raise SystemExit(f"cannot run a private Dovecot: {reason}")
    server = DovecotServer()
    server.start()
    return server


def server_doveadm_bin() -> str:
    from servers.dovecot import DOVEADM_BIN

    return str(DOVEADM_BIN)


def load_mailbox(
    server: Any, name: str, count: int, people: list[mailcorpus.Person], *, small: bool
) -> tuple[Any, mailcorpus.MaildirStats]:
    """A new Dovecot user with `count` generated messages in INBOX, indexed."""
    creds = server.add_user(name)
    started = time.perf_counter()
    items = mailcorpus.generate(count, people, name=name, small=small)
    stats = mailcorpus.write_maildir(creds.maildir, items, uid=creds.uid, gid=creds.uid)
    log(
        f"{name}: wrote {stats.messages} messages, {stats.imap_bytes / 2**20:.0f} MB "
        f"in {time.perf_counter() - started:.1f} s ({dict(stats.kinds)})"
    )
    started = time.perf_counter()
    server.doveadm("index", "-u", creds.username, "INBOX")
    status = server.doveadm(
        "-f", "flow", "mailbox", "status", "-u", creds.username, "messages vsize", "INBOX"
    )
    fields = dict(part.split("=", 1) for part in status.split() if "=" in part)
    if int(fields["messages"]) != count:
        raise SystemExit(f"Dovecot indexed {fields['messages']} messages, expected {count}")
    # Outside the timings: flush the written files to disk, and let Dovecot read every
    # message once (the first reader otherwise pays for filling its cache).
    os.sync()
    subprocess.run(
        [server_doveadm_bin(), "-c", str(server.config_path), "fetch", "-u", creds.username,
         "uid flags size.virtual date.received text", "mailbox", "INBOX", "all"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=PHASE_TIMEOUT, check=True,
    )  # fmt: skip
    log(f"{name}: indexed and read once by Dovecot in {time.perf_counter() - started:.1f} s")
    return creds, stats


def make_template(path: Path, people: list[mailcorpus.Person]) -> None:
    """A migrated database with the salesperson and the customers (copied per phase)."""
    from mailcrm import wiring
    from mailcrm.domain.customers import draft_from_fields
    from mailcrm.store import customers, migrate
    from mailcrm.store.db import Database
    from mailcrm.sync.supervisor import identities

    started = time.perf_counter()
    db = Database(f"sqlite:///{path}")
    try:
        migrate.upgrade(db)
        settings = _settings({"host": "127.0.0.1", "port": 143, "username": "x"})
        identities(db, wiring.team(settings), wiring.match_policy(settings))
        with db.write() as session:
            for person in people:
                fields = {"name": person.name, "email": " ".join(person.addresses)}
                customers.create(session, draft_from_fields(fields, new_record=True))
    finally:
        db.dispose()
    log(f"database with {len(people)} customers in {time.perf_counter() - started:.1f} s")


def fresh_database(template: Path, path: Path) -> str:
    source, target = sqlite3.connect(template), sqlite3.connect(path)
    try:
        source.backup(target)
    finally:
        source.close()
        target.close()
    return f"sqlite:///{path}"


def account_of(creds: Any) -> dict[str, Any]:
    return {"host": creds.host, "port": creds.port, "username": creds.username}


# --- phase A / D -----------------------------------------------------------------------


def phase_sync(
    label: str, template: Path, workdir: Path, creds: Any, stats: mailcorpus.MaildirStats
) -> dict[str, Any]:
    url = fresh_database(template, workdir / f"{label}.db")
    log(f"phase {label}: mailcrm initial sync of {stats.messages} messages (load {os.getloadavg()[0]:.2f})")
    result = run_child("sync", url, account_of(creds), creds.password)
    result["messages"] = stats.messages
    result["mb"] = round(stats.imap_bytes / 2**20, 1)
    result["messages_per_second"] = round(result["fetched"] / result["seconds"], 1)
    result["mb_per_second"] = round(stats.imap_bytes / 2**20 / result["seconds"], 2)
    result["count_ok"] = result["stored"] == stats.messages and result["fetched"] == stats.messages
    result["database"] = url
    log(
        f"phase {label}: {result['messages_per_second']:.0f} messages/s, {result['mb_per_second']:.1f} MB/s, "
        f"peak RSS {result['peak_rss_mb']:.0f} MB, stored {result['stored']}/{stats.messages}"
    )
    return result


def phase_profile(template: Path, workdir: Path, creds: Any) -> dict[str, Any]:
    figures: dict[str, Any] = {}
    for mode in ("timers", "cprofile"):
        url = fresh_database(template, workdir / f"profile-{mode}.db")
        log(f"profile: phase A again with {mode}")
        figures[mode] = run_child("sync", url, account_of(creds), creds.password, "--profile-mode", mode)
    return figures


# --- phase B ---------------------------------------------------------------------------

MBSYNCRC = """\
IMAPAccount bench
Host {host}
Port {port}
User {user}
Pass "{password}"
SSLType None
AuthMechs LOGIN

IMAPStore bench-remote
Account bench

MaildirStore bench-local
Path {local}/
Inbox {local}/INBOX

Channel bench
Far :bench-remote:INBOX
Near :bench-local:INBOX
Sync Pull
Create Near
"""


def phase_mbsync(label: str, workdir: Path, creds: Any, stats: mailcorpus.MaildirStats) -> dict[str, Any]:
    """mbsync into an empty local Maildir, with a fresh HOME (its sync state lives there)."""
    mbsync = shutil.which("mbsync")
    if mbsync is None:
        raise SystemExit("mbsync not found (install isync)")
    home = workdir / f"mbsync-{label}"
    local = home / "Mail"
    local.mkdir(parents=True)
    rc = home / "mbsyncrc"
    rc.touch(mode=0o600)
    rc.write_text(
        MBSYNCRC.format(
            host=creds.host, port=creds.port, user=creds.username, password=creds.password, local=local
        )
    )
    log(f"phase {label}: mbsync pulling {stats.messages} messages (load {os.getloadavg()[0]:.2f})")
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(home)}
    with (home / "stderr").open("wb") as stderr:
        started = time.perf_counter()
        proc = subprocess.Popen(
            [mbsync, "-c", str(rc), "bench"], stdout=subprocess.DEVNULL, stderr=stderr, env=env
        )
        deadline = time.monotonic() + PHASE_TIMEOUT
        while True:
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            if time.monotonic() > deadline:
                proc.kill()
                pid, status, usage = os.wait4(proc.pid, 0)
                break
            time.sleep(0.005)
        seconds = time.perf_counter() - started
    proc.returncode = os.waitstatus_to_exitcode(status)
    errors = (home / "stderr").read_text(errors="replace").strip()
    if proc.returncode != 0:
        raise SystemExit(f"mbsync failed ({proc.returncode}):\n{errors[-3000:]}")
    pulled = sum(len(os.listdir(local / "INBOX" / sub)) for sub in ("cur", "new"))
    result = {
        "seconds": round(seconds, 3),
        "messages": pulled,
        "messages_per_second": round(pulled / seconds, 1),
        "mb_per_second": round(stats.imap_bytes / 2**20 / seconds, 2),
        "cpu_seconds": round(usage.ru_utime + usage.ru_stime, 2),
        "peak_rss_mb": round(usage.ru_maxrss / 1024, 1),
        "count_ok": pulled == stats.messages,
        "version": subprocess.run(
            [mbsync, "--version"], capture_output=True, text=True, timeout=10, check=False
        ).stdout.strip(),
    }
    if errors:
        result["stderr"] = errors[-500:]
    log(f"phase {label}: mbsync {result['messages_per_second']:.0f} messages/s, pulled {pulled}")
    shutil.rmtree(home, ignore_errors=True)
    return result


# --- phase C ---------------------------------------------------------------------------


def _read_line(proc: subprocess.Popen[bytes], timeout: float) -> str | None:
    assert proc.stdout is not None
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ready, _, _ = select.select([proc.stdout], [], [], min(0.5, max(0.0, deadline - time.monotonic())))
        if ready:
            line = proc.stdout.readline()
            return line.decode().strip() if line else None
        if proc.poll() is not None:
            return None
    return None


def phase_idle(
    server: Any, creds: Any, database: str, people: list[mailcorpus.Person], count: int
) -> dict[str, Any]:
    log(f"phase C: IDLE latency over {count} deliveries")
    command = [
        sys.executable,
        __file__,
        "--phase",
        "idle",
        "--url",
        database,
        "--account",
        json.dumps(account_of(creds)),
    ]
    env = {**os.environ, PASSWORD_ENV: creds.password}
    # Unbuffered: select() on the pipe must see every line the child writes.
    proc = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env, bufsize=0)
    latencies: list[float] = []
    saves: list[float] = []
    missed = 0
    rng = random.Random(mailcorpus.SEED)
    worker: dict[str, Any] = {}
    try:
        if _read_line(proc, READY_TIMEOUT) != "ready":
            raise SystemExit("phase C: the mailbox worker did not get ready")
        path = database.removeprefix("sqlite:///")
        db = sqlite3.connect(path, isolation_level=None, timeout=10)
        try:
            token = f"idle{os.getpid()}"
            for index in range(count):
                item = mailcorpus.single(index, people, name=token)
                started = time.perf_counter()
                server.deliver(creds, item.raw)
                saves.append(time.perf_counter() - started)
                while time.perf_counter() - started < IDLE_MESSAGE_TIMEOUT:
                    row = db.execute("SELECT 1 FROM message WHERE message_id = ?", (item.message_id,))
                    if row.fetchone() is not None:
                        latencies.append(time.perf_counter() - started)
                        break
                    time.sleep(IDLE_POLL)
                else:
                    missed += 1
                if (index + 1) % 25 == 0:
                    log(f"  {index + 1}/{count} delivered")
                time.sleep(rng.uniform(*IDLE_GAP))
        finally:
            db.close()
        assert proc.stdin is not None
        proc.stdin.write(b"stop\n")
        proc.stdin.close()
        line = _read_line(proc, 45)
        worker = json.loads(line) if line else {}
    finally:
        if proc.stdin is not None and not proc.stdin.closed:
            with contextlib.suppress(OSError):
                proc.stdin.close()  # end of input also stops the worker
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
    result: dict[str, Any] = {
        "deliveries": count,
        "missed": missed,
        "median_seconds": round(statistics.median(latencies), 3) if latencies else None,
        "p99_seconds": round(percentile(latencies, 0.99), 3) if latencies else None,
        "max_seconds": round(max(latencies), 3) if latencies else None,
        "doveadm_save_median_seconds": round(statistics.median(saves), 3) if saves else None,
        "worker": worker,
    }
    log(f"phase C: median {result['median_seconds']} s, p99 {result['p99_seconds']} s, missed {missed}")
    return result


# --- report ----------------------------------------------------------------------------


def verdicts(results: dict[str, Any]) -> list[tuple[str, str, str, bool | None]]:
    """(figure, value, target, passed) rows; passed None is informational."""
    a, b, c = results["mailcrm"], results["mbsync"], results["idle"]
    rows: list[tuple[str, str, str, bool | None]] = [
        (f"initial sync of {a['messages']} (best round)", f"{a['messages_per_second']:.0f} msg/s",
         f">= {TARGET_RATE:.0f} msg/s", a["messages_per_second"] >= TARGET_RATE),
        ("  throughput", f"{a['mb_per_second']:.1f} MB/s", "", None),
        ("  stored messages", f"{a['stored']}", f"= {a['messages']}", a["count_ok"]),
        ("mbsync, default settings (best round)", f"{b['messages_per_second']:.0f} msg/s", "", None),
        ("mailcrm / mbsync", f"{results['ratio']:.2f}", f">= {TARGET_RATIO}",
         results["ratio"] >= TARGET_RATIO),
        ("IDLE delivery -> timeline, median",
         "n/a" if c["median_seconds"] is None else f"{c['median_seconds']:.3f} s", "", None),
        ("IDLE delivery -> timeline, p99",
         "n/a" if c["p99_seconds"] is None else f"{c['p99_seconds']:.3f} s", f"< {TARGET_P99:.0f} s",
         c["p99_seconds"] is not None and c["missed"] == 0 and c["p99_seconds"] < TARGET_P99),
        (f"peak RSS at {a['messages']}", f"{a['peak_rss_mb']:.0f} MB", f"< {TARGET_RSS:.0f} MB",
         a["peak_rss_mb"] < TARGET_RSS),
    ]  # fmt: skip
    big = results.get("big")
    if big is not None:
        rows += [
            (f"peak RSS at {big['messages']}", f"{big['peak_rss_mb']:.0f} MB", f"< {TARGET_RSS:.0f} MB",
             big["peak_rss_mb"] < TARGET_RSS),
            (f"  sync rate at {big['messages']}", f"{big['messages_per_second']:.0f} msg/s", "", None),
            ("  stored messages", f"{big['stored']}", f"= {big['messages']}", big["count_ok"]),
        ]  # fmt: skip
    return rows


def print_results(results: dict[str, Any]) -> None:
    a, b, c = results["mailcrm"], results["mbsync"], results["idle"]
    print(
        f"corpus: {a['messages']} messages, {a['mb']:.0f} MB, {results['customers']} customers "
        f"({results['kinds']}); code at {results['commit']}"
    )
    for name, side in (("mailcrm", a), ("mbsync", b)):
        print(
            f"{name + ':':<8} {side['seconds']:.1f} s, {side['messages_per_second']:.0f} msg/s, "
            f"{side['mb_per_second']:.1f} MB/s, CPU {side['cpu_seconds']:.1f} s, "
            f"peak RSS {side['peak_rss_mb']:.0f} MB; rounds {side['rounds']} msg/s"
        )
    print(
        f"         mailcrm: RSS {a['rss_before_mb']:.0f} MB before the sync; {a['new_messages']} new "
        f"messages, {a['leads']} leads, {a['links']} links, {a['bounces']} bounces; mbsync: {b['version']}"
    )
    print(
        f"         mailcrm CPU: {a['worker_cpu_seconds']:.1f} s in the parsing worker, "
        f"{a['gc_seconds']:.1f} s in the sync process's garbage collector"
    )
    print(
        f"IDLE:    {c['deliveries']} deliveries, median {c['median_seconds']} s, p99 {c['p99_seconds']} s, "
        f"max {c['max_seconds']} s, missed {c['missed']} (doveadm save alone: median "
        f"{c['doveadm_save_median_seconds']} s)"
    )
    big = results.get("big")
    if big is not None:
        print(
            f"big:     {big['messages']} messages, {big['mb']:.0f} MB, {big['seconds']:.1f} s, "
            f"{big['messages_per_second']:.0f} msg/s, RSS {big['rss_before_mb']:.0f} MB before, "
            f"{big['peak_rss_mb']:.0f} MB peak"
        )
    print()
    print(f"{'figure':<40} {'value':>14}  {'target':<14} result")
    for figure, value, target, passed in verdicts(results):
        verdict = "" if passed is None else ("PASS" if passed else "FAIL")
        print(f"{figure:<40} {value:>14}  {target:<14} {verdict}")
    profile = results.get("profile")
    if profile:
        print_profile(profile)


def print_profile(profile: dict[str, Any]) -> None:
    timers = profile["timers"]
    breakdown = timers["breakdown"]
    print(f"\nwhere the time goes (phase A with timers only: {timers['seconds']:.1f} s wall)")
    for name, stage in breakdown["stages"].items():
        cpu = f", thread CPU {stage['thread_cpu']:.1f} s" if stage["thread_cpu"] else ""
        # Two batches are parsed at once: their waits overlap, so parse wall can exceed the total.
        overlap = " (overlapping calls)" if name == "parse" else ""
        print(f"  {name:<14} {stage['wall']:>7.1f} s wall in {stage['calls']} calls{cpu}{overlap}")
    waiting = breakdown["store_waiting"]
    print(f"  store stage idle (login, SELECT, SEARCH, batches not yet fetched or parsed): {waiting:.1f} s")
    print(f"  parsing worker process CPU: {timers['worker_cpu_seconds']:.1f} s (not profiled)")
    print(f"  event loop thread CPU: {breakdown['event_loop_thread_cpu']:.1f} s")
    for title, text in profile["cprofile"].get("profiles", {}).items():
        print(f"\n--- {title} (cProfile) ---\n{text}")


# --- main ------------------------------------------------------------------------------


@contextlib.contextmanager
def terminate_on_sigterm() -> Iterator[None]:
    def handler(signum: int, _frame: Any) -> None:
        raise SystemExit(128 + signum)

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def best_of(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    """The fastest round, with every round's rate and the highest peak RSS of all."""
    best = dict(max(rounds, key=lambda result: float(result["messages_per_second"])))
    best["rounds"] = [result["messages_per_second"] for result in rounds]
    best["peak_rss_mb"] = max(result["peak_rss_mb"] for result in rounds)
    best["count_ok"] = all(result["count_ok"] for result in rounds)
    return best


def code_version() -> str | None:
    """The commit of the code under test (the working tree may differ from it)."""
    try:
        done = subprocess.run(
            ["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"],
            capture_output=True, text=True, timeout=10, check=False,
        )  # fmt: skip
    except OSError:
        return None
    return done.stdout.strip() or None


def run(args: argparse.Namespace) -> dict[str, Any]:
    people = mailcorpus.people(args.customers)
    results: dict[str, Any] = {"customers": args.customers, "commit": code_version()}
    workdir = Path(tempfile.mkdtemp(prefix="mailcrm-bench-sync-"))
    server = None
    try:
        server = _dovecot()
        log(f"Dovecot on {server.host}:{server.port} (pid {server.pid})")
        template = workdir / "template.db"
        make_template(template, people)
        creds, stats = load_mailbox(server, "sales", args.messages, people, small=False)
        results["kinds"] = dict(stats.kinds)
        ours: list[dict[str, Any]] = []
        peers: list[dict[str, Any]] = []
        for number in range(1, args.rounds + 1):
            ours.append(phase_sync(f"A{number}", template, workdir, creds, stats))
            peers.append(phase_mbsync(f"B{number}", workdir, creds, stats))
        results["mailcrm"] = best_of(ours)
        results["mbsync"] = best_of(peers)
        results["ratio"] = round(
            results["mailcrm"]["messages_per_second"] / results["mbsync"]["messages_per_second"], 3
        )
        if args.profile:
            results["profile"] = phase_profile(template, workdir, creds)
        results["idle"] = phase_idle(server, creds, ours[0]["database"], people, args.idle)
        results["mailcrm"].pop("database", None)
        if not args.skip_big:
            big_creds, big_stats = load_mailbox(server, "sales-big", args.big, people, small=True)
            results["big"] = phase_sync("D", template, workdir, big_creds, big_stats)
            results["big"].pop("database", None)
    finally:
        if server is not None:
            server.close()
        shutil.rmtree(workdir, ignore_errors=True)
    results["verdicts"] = [
        {"figure": figure.strip(), "value": value, "target": target, "passed": passed}
        for figure, value, target, passed in verdicts(results)
    ]
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--messages", type=int, default=20_000, help="messages in the mailbox")
    parser.add_argument("--customers", type=int, default=2000, help="known customers")
    parser.add_argument("--idle", type=int, default=100, help="deliveries timed with IDLE")
    parser.add_argument("--rounds", type=int, default=2, help="runs of phases A and B, alternating")
    parser.add_argument("--big", type=int, default=100_000, help="small messages for the memory check")
    parser.add_argument("--skip-big", action="store_true", help="leave out the memory check (phase D)")
    parser.add_argument("--profile", action="store_true", help="also profile phase A")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    parser.add_argument("--phase", choices=("sync", "idle"), help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    parser.add_argument("--account", help=argparse.SUPPRESS)
    parser.add_argument("--profile-mode", choices=("timers", "cprofile"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.phase:
        account = json.loads(args.account)
        if args.phase == "sync":
            print(json.dumps(child_sync(args.url, account, args.profile_mode)))
        else:
            print(json.dumps(child_idle(args.url, account)))
        return
    if not 1 <= args.messages <= MAX_MESSAGES or not 1 <= args.big <= MAX_MESSAGES:
        parser.error(f"--messages and --big: 1..{MAX_MESSAGES}")
    if not 1 <= args.customers <= MAX_CUSTOMERS or not 1 <= args.idle <= MAX_IDLE:
        parser.error(f"--customers 1..{MAX_CUSTOMERS}, --idle 1..{MAX_IDLE}")
    if not 1 <= args.rounds <= MAX_ROUNDS:
        parser.error(f"--rounds 1..{MAX_ROUNDS}")
    with terminate_on_sigterm():
        results = run(args)
    if args.json:
        print(json.dumps(results, indent=2, ensure_ascii=False))
    else:
        print_results(results)


if __name__ == "__main__":
    main()

"""Benchmark: peak memory of `mailcrm import maildir|mbox` on big messages.

Builds (under a temporary folder) COUNT messages of about SIZE MB each, every one a
short text with a large base64 attachment, once as a Maildir and once as an mbox, and
imports each with the real command in a child process; the peer, Python's `mailbox`
module, reads the same mbox one message at a time. The figure is the child's peak
RSS (`wait4`'s `ru_maxrss` for that child), set against the
bar: 300 MB whatever the input. Before batches were bounded by bytes, 25 messages of
43 MB reached 1.2 GB.

    python benchmarks/import_mail_memory.py [--count 25] [--size-mb 43] [--json]

Each message is written in pieces, so building the files needs little memory itself;
they take COUNT x SIZE MB of disk twice (the temporary folder is removed afterwards).
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

BAR_MB = 300
TIMEOUT = 1800  # seconds per import
ALICE = "alice@acme.example"
_LINE = 76  # base64 line length (RFC 2045)


def _headers(index: int) -> bytes:
    return (
        f"From: Wang Fang <wang@golden.example>\r\n"
        f"To: {ALICE}\r\n"
        f"Subject: Drawings {index}\r\n"
        f"Date: Mon, 07 Dec 2026 10:{index % 60:02d}:00 +0000\r\n"
        f"Message-ID: <big{index}@golden.example>\r\n"
        "MIME-Version: 1.0\r\n"
        'Content-Type: multipart/mixed; boundary="b"\r\n'
        "\r\n"
        "--b\r\n"
        "Content-Type: text/plain; charset=utf-8\r\n"
        "\r\n"
        "The drawings are attached.\r\n"
        "--b\r\n"
        'Content-Type: application/octet-stream; name="drawings.bin"\r\n'
        "Content-Transfer-Encoding: base64\r\n"
        'Content-Disposition: attachment; filename="drawings.bin"\r\n'
        "\r\n"
    ).encode()


def _write_message(out: Any, index: int, size: int, block: bytes) -> None:
    """One message of about `size` bytes; the attachment repeats a random `block`."""
    out.write(_headers(index))
    written = 0
    encoded = base64.b64encode(block)
    lines = b"\r\n".join(encoded[i : i + _LINE] for i in range(0, len(encoded), _LINE)) + b"\r\n"
    while written < size:
        out.write(lines)
        written += len(lines)
    out.write(b"--b--\r\n")


def build(root: Path, count: int, size: int) -> tuple[Path, Path]:
    block = os.urandom(57 * 1024)  # a multiple of 3 bytes: whole base64 lines
    maildir = root / "Maildir"
    for sub in ("cur", "new", "tmp"):
        (maildir / sub).mkdir(parents=True)
    mbox = root / "big.mbox"
    with mbox.open("wb") as box:
        for index in range(count):
            with (maildir / "new" / f"{index:04d}.bench:2,").open("wb") as out:
                _write_message(out, index, size, block)
            box.write(b"From wang@golden.example Mon Dec  7 10:00:00 2026\n")
            _write_message(box, index, size, block)
            box.write(b"\n")
    return maildir, mbox


PEER = (
    "import mailbox, sys\n"
    "box = mailbox.mbox(sys.argv[1], create=False)\n"
    "print(sum(len(box.get_bytes(key)) for key in box.iterkeys()))\n"
)
"""The peer: Python's own mailbox module reading the mbox one message at a time (no
parsing, no storing), the floor of what reading these messages costs."""


def measure(root: Path, kind: str, path: Path) -> dict[str, Any]:
    """Run one import (or the peer) as a child process; its peak RSS (from `wait4`),
    time and result."""
    out, err = root / f"{kind}.out", root / f"{kind}.err"
    started = time.perf_counter()
    if kind == "peer":
        command = [sys.executable, "-c", PEER, str(path)]
    else:
        config = str(root / "mailcrm.yaml")
        command = [sys.executable, "-m", "mailcrm", "--config", config, "import", kind, str(path), "--json"]
    with out.open("wb") as stdout, err.open("wb") as stderr:
        child = subprocess.Popen(
            command,
            stdout=stdout,
            stderr=stderr,
            env={k: v for k, v in os.environ.items() if not k.startswith("MAILCRM_")},
        )
    deadline = started + TIMEOUT
    while True:
        pid, status, usage = os.wait4(child.pid, os.WNOHANG)
        if pid:
            break
        if time.perf_counter() > deadline:
            child.kill()
            raise SystemExit(f"import {kind} did not finish in {TIMEOUT} s")
        time.sleep(0.2)
    child.returncode = os.waitstatus_to_exitcode(status)  # reaped here, not by Popen
    text = out.read_text(encoding="utf-8")
    peak_mb = round(usage.ru_maxrss / 1024, 1)  # kilobytes on Linux
    return {
        "kind": kind,
        "exit_code": child.returncode,
        "seconds": round(time.perf_counter() - started, 1),
        "peak_rss_mb": peak_mb,
        "under_bar": peak_mb < BAR_MB,
        "result": _result(text) if text.strip() else err.read_text(encoding="utf-8"),
    }


def _result(text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text.strip()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--count", type=int, default=25)
    parser.add_argument("--size-mb", type=float, default=43.0)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    if not 1 <= args.count <= 1000 or not 0 < args.size_mb <= 500:
        parser.error("--count 1..1000, --size-mb up to 500")
    with tempfile.TemporaryDirectory(prefix="mailcrm-bench-") as folder:
        root = Path(folder)
        (root / "mailcrm.yaml").write_text(
            f"salespeople:\n  - name: Alice\n    email: {ALICE}\n"
            f"database:\n  url: sqlite:///{root / 'mailcrm.db'}\n",
            encoding="utf-8",
        )
        maildir, mbox = build(root, args.count, int(args.size_mb * 2**20))
        runs = [measure(root, "maildir", maildir), measure(root, "mbox", mbox), measure(root, "peer", mbox)]
    report = {"messages": args.count, "size_mb": args.size_mb, "bar_mb": BAR_MB, "runs": runs}
    if args.json:
        print(json.dumps(report, indent=2))
        return
    print(f"{args.count} messages of {args.size_mb:g} MB each; bar: peak RSS under {BAR_MB} MB")
    for run in runs[:2]:
        verdict = "ok" if run["under_bar"] else "OVER THE BAR"
        print(
            f"  mailcrm import {run['kind']:7}: peak RSS {run['peak_rss_mb']:7.1f} MB, "
            f"{run['seconds']:6.1f} s, exit {run['exit_code']}  {verdict}"
        )
    peer = runs[2]
    ratio = runs[1]["peak_rss_mb"] / peer["peak_rss_mb"]
    print(
        f"  peer: stdlib mailbox reads the mbox: peak RSS {peer['peak_rss_mb']:7.1f} MB, "
        f"{peer['seconds']:6.1f} s (mbox import / peer: {ratio:.1f}x memory)"
    )


if __name__ == "__main__":
    main()

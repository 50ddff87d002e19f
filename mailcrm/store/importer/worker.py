"""The reader process: validates a big file's batches while the importing process writes.

The worker must never outlive the import that started it: a forked worker shares the
importer's open database connections (on PostgreSQL the socket of the transaction in
flight, which keeps that transaction and its locks alive as long as any process holds
it), and one left blocked on a full queue would hold them for good. So it dies with
its parent however the parent ends, `kill -9` included: on Linux the kernel sends it
SIGKILL when the parent dies (`PR_SET_PDEATHSIG`), and everywhere a watchdog thread
exits once the parent process is gone (the worker is then adopted by another process).
"""

from __future__ import annotations

import ctypes
import os
import queue
import signal
import sys
import threading
import time
from collections.abc import Iterator
from multiprocessing.context import ForkContext, SpawnContext
from typing import Any

from mailcrm.errors import ImportFileError
from mailcrm.store.importer.validate import Batch, Plan, fewer_gc_passes, validated_batches

_QUEUE_BATCHES = 4  # batches validated ahead of the writer: bounds memory
_PR_SET_PDEATHSIG = 1  # from <linux/prctl.h>
PARENT_POLL_SECONDS = 0.5  # how soon the watchdog notices a parent that is gone


def _die_with_parent(parent: int) -> None:
    """Arrange for this process to end as soon as process `parent` does."""
    if sys.platform.startswith("linux"):
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        except (OSError, AttributeError):  # no prctl: the watchdog below still works
            pass
    if os.getppid() != parent:  # the parent died before the line above took effect
        os._exit(1)
    threading.Thread(target=_watch_parent, args=(parent,), name="parent-watchdog", daemon=True).start()


def _watch_parent(parent: int) -> None:
    while os.getppid() == parent:
        time.sleep(PARENT_POLL_SECONDS)
    os._exit(1)  # no cleanup: nothing the worker holds is worth finishing without its parent


def _worker(plan: Plan, out: Any, parent: int) -> None:
    """Worker process: validated batches into `out`, then None; an error ends the stream."""
    _die_with_parent(parent)
    try:
        with fewer_gc_passes():
            for batch in validated_batches(plan, checked=True):
                out.put(batch)
        out.put(None)
    except Exception as exc:
        out.put(exc)


def worker_batches(plan: Plan, context: ForkContext | SpawnContext) -> Iterator[Batch[Any]]:
    """Validated batches from a worker process started in `context`; stopped when done.

    Consume it in the thread that starts it: on Linux the worker is tied to that thread.
    """
    channel = context.Queue(maxsize=_QUEUE_BATCHES)
    process = context.Process(target=_worker, args=(plan, channel, os.getpid()), daemon=True)
    process.start()
    try:
        while True:
            try:
                item = channel.get(timeout=1.0)
            except queue.Empty:
                if not process.is_alive():
                    raise ImportFileError(
                        f"{plan.path}: the CSV reader process ended unexpectedly "
                        f"(exit code {process.exitcode})",
                        hint="run the import again: rows already imported are recognised",
                    ) from None
                continue
            if item is None:
                return
            if isinstance(item, Exception):
                raise item
            yield item
    finally:
        if process.is_alive():
            process.terminate()
        process.join(timeout=10)
        channel.close()

"""The reader process: validates a big file's batches while the importing process writes."""

from __future__ import annotations

import queue
from collections.abc import Iterator
from multiprocessing.context import ForkContext, SpawnContext
from typing import Any

from mailcrm.store.importer.validate import Batch, Plan, fewer_gc_passes, validated_batches

_QUEUE_BATCHES = 4  # batches validated ahead of the writer: bounds memory


def _worker(plan: Plan, out: Any) -> None:
    """Worker process: validated batches into `out`, then None; an error ends the stream."""
    try:
        with fewer_gc_passes():
            for batch in validated_batches(plan, checked=True):
                out.put(batch)
        out.put(None)
    except Exception as exc:
        out.put(exc)


def worker_batches(plan: Plan, context: ForkContext | SpawnContext) -> Iterator[Batch[Any]]:
    """Validated batches from a worker process started in `context`; stopped when done."""
    channel = context.Queue(maxsize=_QUEUE_BATCHES)
    process = context.Process(target=_worker, args=(plan, channel), daemon=True)
    process.start()
    try:
        while True:
            try:
                item = channel.get(timeout=1.0)
            except queue.Empty:
                if not process.is_alive():
                    raise RuntimeError(
                        f"the CSV reader process ended unexpectedly (exit code {process.exitcode})"
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

"""Streaming CSV import of customers and purchases.

The file is read once, record by record, in batches. Each batch is validated without
the database (the same `draft_from_fields` / `purchase_from_fields` as the CLI), then
written in one write transaction with a fixed number of set-based statements, never a
query per row. Memory stays flat however long the file, and a crash loses at most the
batch in flight; since customers are matched by address and purchases by dedupe key,
running the import again finishes the job without duplicating anything.
`import_customers` and `import_purchases` therefore take the `Database`: they commit
a transaction per batch themselves.

Reading and validating a big file is half the work, so it runs in a worker process
that hands validated batches over a bounded queue while this process writes: on two
cores the import then costs about what the database writes cost.

A customer row matches an existing customer by ANY of its addresses. Non-empty cells
overwrite, empty cells leave the stored value alone, tags and addresses are added.
Rows of one file that share an address are one customer. Report counts are per row:
`rows == created + updated + unchanged + skipped + failed`.

The pieces: `source` reads the CSV file, `validate` turns records into rows batch by
batch (in `worker`, a separate process, for big files), `customer_writer` and
`purchase_writer` write a batch with the set-based statements of `bulk`, and `report`
counts what happened. This module runs them and holds the entry points.
"""

from __future__ import annotations

import multiprocessing
import threading
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from sqlalchemy.exc import IntegrityError
from sqlmodel import Session

from mailcrm.domain.addresses import normalize_address
from mailcrm.domain.csv_mapping import HeaderMapping, Kind, map_headers
from mailcrm.domain.values import normalize_currency, normalize_timezone
from mailcrm.errors import ConflictError
from mailcrm.store.db import Database
from mailcrm.store.importer.bulk import enlarge_page_cache
from mailcrm.store.importer.customer_writer import CustomerWriter
from mailcrm.store.importer.purchase_writer import PurchaseWriter
from mailcrm.store.importer.report import MAX_REPORTED_ERRORS, ImportReport, ProgressCallback, RowError
from mailcrm.store.importer.source import CsvSource
from mailcrm.store.importer.validate import Batch, Plan, fewer_gc_passes, validated_batches
from mailcrm.store.importer.worker import worker_batches
from mailcrm.store.salespeople import owner_ids, require_owner

__all__ = [
    "MAX_BATCH_SIZE",
    "MAX_REPORTED_ERRORS",
    "WORKER_MIN_BYTES",
    "ImportReport",
    "ProgressCallback",
    "RowError",
    "import_customers",
    "import_purchases",
]

MAX_BATCH_SIZE = 10_000
WORKER_MIN_BYTES = 2 << 20  # smaller files are read in-process: a worker costs ~0.1-1 s


def import_customers(
    db: Database,
    path: Path,
    *,
    overrides: Sequence[str] = (),
    default_owner: str | None = None,
    on_progress: ProgressCallback | None = None,
    batch_size: int = 2000,
    dry_run: bool = False,
) -> ImportReport:
    """Create and update customers from a CSV file; bad rows are reported, good rows go in.

    `default_owner` (a salesperson's address) owns new customers whose row names none.
    `on_progress(rows_done, bytes_done)` is called after every batch.
    """
    path = Path(path)
    _, report = _prepare(path, "customers", overrides, batch_size, dry_run)
    with db.read() as session:
        owners = owner_ids(session)
    default_owner_id = None
    if default_owner:
        default_owner_id = require_owner(owners, normalize_address(default_owner))
    plan = Plan(path, "customers", tuple(overrides), batch_size, owners=owners)
    _run(db, plan, CustomerWriter(report, default_owner_id), report, on_progress)
    return report


def import_purchases(
    db: Database,
    path: Path,
    *,
    overrides: Sequence[str] = (),
    default_currency: str,
    default_timezone: str,
    on_progress: ProgressCallback | None = None,
    batch_size: int = 10_000,
    dry_run: bool = False,
) -> ImportReport:
    """Record purchases from a CSV file for customers found by address; repeats are skipped.

    A row without a currency is in `default_currency`. A date, or a date-time without an
    offset, is the customer's local date or time (its timezone, else `default_timezone`).
    """
    path = Path(path)
    currency = normalize_currency(default_currency)
    zone = normalize_timezone(default_timezone)
    _, report = _prepare(path, "purchases", overrides, batch_size, dry_run)
    plan = Plan(path, "purchases", tuple(overrides), batch_size, currency=currency, timezone=zone)
    _run(db, plan, PurchaseWriter(report, zone), report, on_progress)
    return report


def _prepare(
    path: Path, kind: Kind, overrides: Sequence[str], batch_size: int, dry_run: bool
) -> tuple[HeaderMapping, ImportReport]:
    """Check the file and its header before anything is written."""
    if not 1 <= batch_size <= MAX_BATCH_SIZE:
        raise ValueError(f"batch_size must be 1..{MAX_BATCH_SIZE}, not {batch_size}")
    source = CsvSource(path)
    mapping = map_headers(source.header, kind, overrides)
    report = ImportReport(
        file=str(path),
        ignored_columns=list(mapping.ignored),
        ignored_hint=mapping.ignored_hint,
        dry_run=dry_run,
    )
    return mapping, report


def _run(
    db: Database,
    plan: Plan,
    write: Callable[[Session, Batch[Any]], None],
    report: ImportReport,
    on_progress: ProgressCallback | None,
) -> None:
    """Write the plan's batches, counting into `report`."""

    def apply(session: Session, batch: Batch[Any]) -> None:
        if batch.rows:
            enlarge_page_cache(session.connection())
            write(session, batch)
        report.rows += batch.records
        report.skipped += batch.skipped
        report.add_errors(sorted(batch.errors, key=lambda e: e.row))
        report.add_warnings(batch.warnings)

    def progress(batch: Batch[Any]) -> None:
        if on_progress is not None:
            on_progress(report.rows, batch.bytes_done)

    try:
        with fewer_gc_passes():
            _write_batches(db, plan, apply, progress, dry_run=report.dry_run)
    except IntegrityError as exc:
        raise ConflictError(
            f"a batch clashed with a concurrent change and was not saved: {exc.orig}",
            hint="run the import again: rows already imported are recognised and left alone",
        ) from exc


def _write_batches(
    db: Database,
    plan: Plan,
    apply: Callable[[Session, Batch[Any]], None],
    progress: Callable[[Batch[Any]], None],
    *,
    dry_run: bool,
) -> None:
    """One write transaction per batch; a dry run is one transaction, rolled back."""
    if dry_run:
        try:
            with db.write() as session:
                for batch in _batches(plan):
                    apply(session, batch)
                    progress(batch)
                raise _RollBack
        except _RollBack:
            pass
        return
    for batch in _batches(plan):
        with db.write() as session:
            apply(session, batch)
        progress(batch)


class _RollBack(Exception):
    """Ends a dry run's transaction."""


def _batches(plan: Plan) -> Iterator[Batch[Any]]:
    """Validated batches, from a worker process when the file is big enough to gain."""
    if plan.path.stat().st_size < WORKER_MIN_BYTES:
        yield from validated_batches(plan, checked=True)
        return
    # fork starts in milliseconds but is only safe while no other thread holds locks.
    context = (
        multiprocessing.get_context("fork")
        if threading.active_count() == 1
        else multiprocessing.get_context("spawn")
    )
    yield from worker_batches(plan, context)

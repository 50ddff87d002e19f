"""Streaming CSV import of customers and purchases.

The file is read once, record by record, in batches. Each batch is validated without
the database (the same `draft_from_fields` / `purchase_from_fields` as the CLI), then
written in one write transaction with a fixed number of set-based statements, never a
query per row. Memory stays flat however long the file, and a crash loses at most the
batch in flight; since customers are matched by address and purchases by dedupe key,
running the import again finishes the job without duplicating anything.

Reading and validating a big file is half the work, so it runs in a worker process
that hands validated batches over a bounded queue while this process writes: on two
cores the import then costs about what the database writes cost.

A customer row matches an existing customer by ANY of its addresses. Non-empty cells
overwrite, empty cells leave the stored value alone, tags and addresses are added.
Rows of one file that share an address are one customer. Report counts are per row:
`rows == created + updated + unchanged + skipped + failed`.
"""

from __future__ import annotations

import codecs
import csv
import gc
import json
import multiprocessing
import queue
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import Any, Generic, Literal, NamedTuple, TypeVar

from sqlalchemy import Connection, Dialect, Insert, Table, bindparam, func, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session

from mailcrm.domain.addresses import normalize_address
from mailcrm.domain.csv_mapping import HeaderMapping, Kind, map_headers
from mailcrm.domain.customers import draft_from_fields
from mailcrm.domain.purchases import PurchaseDraft, purchase_from_fields
from mailcrm.domain.values import normalize_currency, normalize_timezone
from mailcrm.errors import ConflictError, ImportFileError, ValidationError
from mailcrm.store import purchases
from mailcrm.store.db import Database
from mailcrm.store.models import Company, Customer, CustomerStatus, CustomerTag, EmailAddress
from mailcrm.store.salespeople import owner_ids, require_owner
from mailcrm.store.types import utcnow

MAX_REPORTED_ERRORS = 10_000
MAX_BATCH_SIZE = 10_000
WORKER_MIN_BYTES = 2 << 20  # smaller files are read in-process: a worker costs ~0.1-1 s
_QUEUE_BATCHES = 4  # batches validated ahead of the writer: bounds memory
_IN_CHUNK = 5_000  # values per IN (...) list: well under SQLite's and PostgreSQL's limits
_SCAN_CHUNK = 1 << 20
_PAGE_CACHE_KIB = 16 * 1024

_CUSTOMER: Table = Customer.__table__  # type: ignore[attr-defined]
_ADDRESS: Table = EmailAddress.__table__  # type: ignore[attr-defined]
_TAG: Table = CustomerTag.__table__  # type: ignore[attr-defined]
_COMPANY: Table = Company.__table__  # type: ignore[attr-defined]

# Customer columns a row can set, as `CustomerDraft` attributes of the same name.
_SCALARS = ("name", "phone", "birthday", "timezone", "language", "lead_source", "status")
# Columns in table order, as the bulk inserts need them.
_COLUMNS = (
    "name",
    "company_id",
    "phone",
    "birthday",
    "timezone",
    "language",
    "owner_id",
    "lead_source",
    "status",
)
_CUSTOMER_COLUMNS = ("id", *_COLUMNS, "custom")
_ADDRESS_COLUMNS = ("customer_id", "address", "is_primary")
_TAG_COLUMNS = ("customer_id", "tag")

ProgressCallback = Callable[[int, int], None]


@dataclass(frozen=True)
class RowError:
    """A refused record: `row` is the CSV line it starts on (the header is line 1)."""

    row: int
    reason: str


@dataclass
class ImportReport:
    """What an import did, row by row; `to_json` is a scripting interface."""

    file: str
    rows: int = 0
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    skipped: int = 0
    failed: int = 0
    errors: list[RowError] = field(default_factory=list)
    ignored_columns: list[str] = field(default_factory=list)
    ignored_hint: str | None = None
    dry_run: bool = False

    def add_errors(self, errors: Iterable[RowError]) -> None:
        """Count every refused row; keep the first `MAX_REPORTED_ERRORS` reasons."""
        for error in errors:
            self.failed += 1
            if len(self.errors) < MAX_REPORTED_ERRORS:
                self.errors.append(error)

    def to_json(self) -> dict[str, Any]:
        return {
            "file": self.file,
            "rows": self.rows,
            "created": self.created,
            "updated": self.updated,
            "unchanged": self.unchanged,
            "skipped": self.skipped,
            "failed": self.failed,
            "errors": [{"row": e.row, "reason": e.reason} for e in self.errors],
            "ignored_columns": list(self.ignored_columns),
            "dry_run": self.dry_run,
        }


# --- reading the file -------------------------------------------------------------


def _not_utf8(path: Path, line: int, offset: int, byte: int) -> ImportFileError:
    return ImportFileError(
        f"{path}: line {line} (byte offset {offset}) is not UTF-8 text (byte 0x{byte:02x})",
        hint="re-save the file as UTF-8, e.g. 'CSV UTF-8' in Excel's Save As",
    )


def _check_utf8(path: Path) -> None:
    """Refuse a file in another encoding before anything is written."""
    base = 0  # file offset of data[0]
    lines = 1
    pending = b""
    with path.open("rb") as handle:
        while True:
            chunk = handle.read(_SCAN_CHUNK)
            data = pending + chunk
            try:
                _, consumed = codecs.utf_8_decode(data, "strict", not chunk)
            except UnicodeDecodeError as exc:
                line = lines + data.count(b"\n", 0, exc.start)
                raise _not_utf8(path, line, base + exc.start, data[exc.start]) from None
            lines += data.count(b"\n", 0, consumed)
            base += consumed
            pending = data[consumed:]
            if not chunk:
                return


def _sniff_delimiter(header_line: str) -> str:
    """The most frequent of `,` `;` tab outside quotes in the header line (`,` on a tie)."""
    counts = {",": 0, ";": 0, "\t": 0}
    quoted = False
    for char in header_line:
        if char == '"':
            quoted = not quoted
        elif not quoted and char in counts:
            counts[char] += 1
    best = max(counts, key=lambda d: counts[d])
    return best if counts[best] else ","


class _CsvSource:
    """A CSV file's header and records, each with the line it starts on.

    Lines are decoded one by one (a UTF-8 sequence never spans a newline), so the reader
    knows how many bytes it has consumed and `check` can be skipped when a first pass
    already proved the file is UTF-8.
    """

    def __init__(self, path: Path, *, check: bool = True) -> None:
        self.path = path
        self.bytes_read = 0
        try:
            if check:
                _check_utf8(path)
            with path.open("rb") as handle:
                first = handle.readline()
        except OSError as exc:
            raise ImportFileError(f"cannot read {path}: {exc.strerror or exc}") from None
        self.delimiter = _sniff_delimiter(first.decode("utf-8-sig"))
        self._records = self._read()
        for _, cells in self._records:
            if any(cell.strip() for cell in cells):
                self.header = cells
                break
        else:
            raise ImportFileError(f"{path} is empty", hint="the first line must name the columns")

    def records(self) -> Iterator[tuple[int, list[str]]]:
        """The records after the header."""
        return self._records

    def _read(self) -> Iterator[tuple[int, list[str]]]:
        with self.path.open("rb") as handle:
            reader = csv.reader(self._lines(handle), delimiter=self.delimiter)
            line = 0
            try:
                for cells in reader:
                    start = line + 1
                    line = reader.line_num
                    yield start, cells
            except csv.Error as exc:
                raise ImportFileError(
                    f"{self.path}: line {reader.line_num}: {exc}",
                    hint='a double quote opening a cell must be closed; write "" for a literal quote',
                ) from None

    def _lines(self, handle: Iterable[bytes]) -> Iterator[str]:
        for number, raw in enumerate(handle, start=1):
            offset = self.bytes_read
            self.bytes_read += len(raw)
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError as exc:  # the file changed since it was checked
                raise _not_utf8(self.path, number, offset + exc.start, raw[exc.start]) from None
            yield text[1:] if number == 1 and text.startswith("\ufeff") else text


# --- validation: pure, in a worker process for big files ----------------------------------


class _CustomerRow(NamedTuple):
    """A validated customer row: `CustomerDraft`'s values, flat, cheap to pickle."""

    line: int
    owner_id: int | None
    name: str | None
    emails: tuple[str, ...]
    phone: str | None
    birthday: date | None
    timezone: str | None
    language: str | None
    lead_source: str | None
    status: str | None
    company: str | None
    tags: tuple[str, ...]
    custom: dict[str, str]


class _PurchaseRow(NamedTuple):
    """A validated purchase row, the address naming its customer, and its dedupe key."""

    line: int
    email: str
    draft: PurchaseDraft
    dedupe_key: str


RowT = TypeVar("RowT", _CustomerRow, _PurchaseRow)


@dataclass(slots=True)
class _Batch(Generic[RowT]):
    """Validated rows of consecutive records, and the records refused on the way."""

    rows: list[RowT] = field(default_factory=list)
    errors: list[RowError] = field(default_factory=list)
    records: int = 0
    skipped: int = 0
    bytes_done: int = 0


@dataclass(frozen=True)
class _Plan:
    """How to read and validate one file; plain data, so a worker process can take it."""

    path: Path
    kind: Kind
    overrides: tuple[str, ...]
    batch_size: int
    owners: dict[str, int] = field(default_factory=dict)
    currency: str = ""
    timezone: str = ""

    def validator(self) -> Callable[[int, dict[str, str]], _CustomerRow | _PurchaseRow]:
        if self.kind == "customers":
            return self._customer
        return self._purchase

    def _customer(self, line: int, fields: dict[str, str]) -> _CustomerRow:
        draft = draft_from_fields(fields, new_record=False)
        if not draft.emails:
            raise ValidationError("email: missing", hint="every customer needs an email address")
        owner_id = require_owner(self.owners, draft.owner) if draft.owner else None
        return _CustomerRow(
            line,
            owner_id,
            draft.name,
            draft.emails,
            draft.phone,
            draft.birthday,
            draft.timezone,
            draft.language,
            draft.lead_source,
            draft.status,
            draft.company,
            draft.tags,
            dict(draft.custom),
        )

    def _purchase(self, line: int, fields: dict[str, str]) -> _PurchaseRow:
        raw = fields.pop("email", "")
        if not raw:
            raise ValidationError("email: missing", hint="a purchase names its customer's address")
        try:
            email = normalize_address(raw)
        except ValidationError as exc:
            raise ValidationError(f"email: {exc.message}", hint=exc.hint) from None
        draft = purchase_from_fields(fields, default_currency=self.currency, default_timezone=self.timezone)
        return _PurchaseRow(line, email, draft, draft.dedupe_key)


def _reason(exc: ValidationError) -> str:
    return f"{exc.message} ({exc.hint})" if exc.hint else exc.message


def _validated_batches(plan: _Plan, *, checked: bool) -> Iterator[_Batch[Any]]:
    """The file's records, validated, `plan.batch_size` at a time."""
    source = _CsvSource(plan.path, check=not checked)
    mapping = map_headers(source.header, plan.kind, plan.overrides)
    validate = plan.validator()
    batch: _Batch[Any] = _Batch()
    for line, cells in source.records():
        batch.records += 1
        if not any(cell.strip() for cell in cells):
            batch.skipped += 1
        else:
            try:
                batch.rows.append(validate(line, mapping.fields(cells)))
            except ValidationError as exc:
                batch.errors.append(RowError(line, _reason(exc)))
        if batch.records == plan.batch_size:
            batch.bytes_done = source.bytes_read
            yield batch
            batch = _Batch()
    if batch.records:
        batch.bytes_done = source.bytes_read
        yield batch


@contextmanager
def _fewer_gc_passes() -> Iterator[None]:
    """Collect cycles less often while an import allocates millions of short-lived rows.

    With the default threshold the collector runs every 700 allocations and costs about
    a sixth of an import; it stays on, and the threshold is restored afterwards.
    """
    thresholds = gc.get_threshold()
    gc.set_threshold(max(thresholds[0], 50_000), *thresholds[1:])
    try:
        yield
    finally:
        gc.set_threshold(*thresholds)


def _worker(plan: _Plan, out: Any) -> None:
    """Worker process: validated batches into `out`, then None; an error ends the stream."""
    try:
        with _fewer_gc_passes():
            for batch in _validated_batches(plan, checked=True):
                out.put(batch)
        out.put(None)
    except Exception as exc:
        out.put(exc)


def _batches(plan: _Plan) -> Iterator[_Batch[Any]]:
    """Validated batches, from a worker process when the file is big enough to gain."""
    if plan.path.stat().st_size < WORKER_MIN_BYTES:
        yield from _validated_batches(plan, checked=True)
        return
    # fork starts in milliseconds but is only safe while no other thread holds locks.
    context = (
        multiprocessing.get_context("fork")
        if threading.active_count() == 1
        else multiprocessing.get_context("spawn")
    )
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


# --- writing batches ----------------------------------------------------------------------


class _RollBack(Exception):
    """Ends a dry run's transaction."""


def _run(
    db: Database,
    plan: _Plan,
    write: Callable[[Session, _Batch[Any]], None],
    report: ImportReport,
    on_progress: ProgressCallback | None,
) -> None:
    """Write the plan's batches, counting into `report`."""

    def apply(session: Session, batch: _Batch[Any]) -> None:
        if batch.rows:
            _enlarge_page_cache(session.connection())
            write(session, batch)
        report.rows += batch.records
        report.skipped += batch.skipped
        report.add_errors(sorted(batch.errors, key=lambda e: e.row))

    def progress(batch: _Batch[Any]) -> None:
        if on_progress is not None:
            on_progress(report.rows, batch.bytes_done)

    try:
        with _fewer_gc_passes():
            _write_batches(db, plan, apply, progress, dry_run=report.dry_run)
    except IntegrityError as exc:
        raise ConflictError(
            f"a batch clashed with a concurrent change and was not saved: {exc.orig}",
            hint="run the import again: rows already imported are recognised and left alone",
        ) from exc


def _write_batches(
    db: Database,
    plan: _Plan,
    apply: Callable[[Session, _Batch[Any]], None],
    progress: Callable[[_Batch[Any]], None],
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


def _enlarge_page_cache(connection: Connection) -> None:
    """Give SQLite a page cache that holds a batch's index pages (the default is 2 MiB).

    Otherwise dirty pages spill mid-transaction and are written more than once: a third
    of the write time at import volumes. The setting stays with the pooled connection.
    """
    if connection.dialect.name != "sqlite":
        return
    size = connection.exec_driver_sql("PRAGMA cache_size").scalar() or 0
    if size > 0:  # a number of pages rather than -KiB
        size = -size * (connection.exec_driver_sql("PRAGMA page_size").scalar() or 4096) // 1024
    if -size < _PAGE_CACHE_KIB:
        connection.exec_driver_sql(f"PRAGMA cache_size=-{_PAGE_CACHE_KIB}")


def _chunks(values: Sequence[Any]) -> Iterator[Sequence[Any]]:
    for start in range(0, len(values), _IN_CHUNK):
        yield values[start : start + _IN_CHUNK]


def _rows_where_in(
    connection: Connection, table: Table, columns: Sequence[str], key: str, values: Sequence[Any]
) -> Iterator[Sequence[Any]]:
    """`SELECT columns FROM table WHERE key IN values`, in chunks of `_IN_CHUNK`.

    On SQLite the values travel as one JSON array (`json_each`), so the statement text
    never changes: an `IN (?, ?, ...)` list of each batch's length would be a new
    prepared statement every time, and sqlite3 caches 128 of them per connection, which
    grows memory with every batch. Each column's result processor is applied as usual.
    """
    if connection.dialect.name != "sqlite":
        selected = [table.c[name] for name in columns]
        for chunk in _chunks(values):
            yield from connection.execute(select(*selected).where(table.c[key].in_(chunk)))
        return
    dialect = connection.dialect
    quote = dialect.identifier_preparer.quote
    sql = (
        f"SELECT {', '.join(quote(name) for name in columns)} FROM {quote(table.name)} "
        f"WHERE {quote(key)} IN (SELECT value FROM json_each(?))"
    )
    processors = [
        (index, processor)
        for index, name in enumerate(columns)
        if (processor := _processor(table, name, dialect, "result")) is not None
    ]
    for chunk in _chunks(values):
        rows = connection.exec_driver_sql(sql, (json.dumps(list(chunk)),)).all()
        if not processors:
            yield from rows
            continue
        for row in rows:
            processed = list(row)
            for index, processor in processors:
                processed[index] = processor(processed[index])
            yield processed


def _customers_by_address(connection: Connection, addresses: Iterable[str]) -> dict[str, int]:
    """address → customer id, for those of `addresses` that are stored."""
    rows = _rows_where_in(connection, _ADDRESS, ("address", "customer_id"), "address", list(addresses))
    found: dict[str, int] = {}
    for address, customer_id in rows:
        found[address] = customer_id
    return found


def _insert_rows(
    connection: Connection,
    table: Table,
    columns: Sequence[str],
    rows: list[tuple[Any, ...]],
    *,
    statement: Insert | None = None,
    **constants: Any,
) -> int:
    """INSERT (or `statement`) many rows given as tuples in `columns` order, plus the same
    `constants` in each; returns how many rows went in.

    On SQLite the statement is compiled once and the driver gets plain tuples: at import
    volumes SQLAlchemy's per-row parameter handling costs more than SQLite's own work.
    Each column's bind processor still runs, a constant's only once.
    """
    if not rows:
        return 0
    statement = insert(table) if statement is None else statement
    if connection.dialect.name != "sqlite":
        # RETURNING makes SQLAlchemy send multi-row VALUES pages instead of a statement
        # per row, and counts the rows an ON CONFLICT DO NOTHING kept.
        params = [dict(zip(columns, row, strict=True), **constants) for row in rows]
        return len(connection.execute(statement.returning(table.c[columns[0]]), params).all())
    dialect = connection.dialect
    names = [*columns, *constants]
    compiled = statement.compile(dialect=dialect, column_keys=names)
    if list(compiled.positiontup or ()) != names:
        raise AssertionError(f"columns of {table.name} must be given in table order")
    tail = [
        processor(value) if (processor := _processor(table, name, dialect, "bind")) else value
        for name, value in constants.items()
    ]
    processors = [
        (index, processor)
        for index, name in enumerate(columns)
        if (processor := _processor(table, name, dialect, "bind")) is not None
    ]
    params_: list[tuple[Any, ...]] = []
    for row in rows:
        values = [*row, *tail]
        for index, processor in processors:
            values[index] = processor(values[index])
        params_.append(tuple(values))
    return int(connection.exec_driver_sql(compiled.string, params_).rowcount)


def _processor(
    table: Table, name: str, dialect: Dialect, kind: Literal["bind", "result"]
) -> Callable[[Any], Any] | None:
    """The function SQLAlchemy applies to a column's values on the way in or out, if any."""
    column_type = table.c[name].type.dialect_impl(dialect)
    processor: Callable[[Any], Any] | None
    if kind == "bind":
        processor = column_type.bind_processor(dialect)
    else:
        processor = column_type.result_processor(dialect, None)
    return processor


# --- customers ----------------------------------------------------------------------------


class _Group:
    """Rows of one batch that are one customer, because they share addresses."""

    __slots__ = ("customer_id", "parent", "rows")

    def __init__(self, customer_id: int | None) -> None:
        self.customer_id = customer_id
        self.rows: list[_CustomerRow] = []
        self.parent: _Group | None = None

    def root(self) -> _Group:
        group = self
        while group.parent is not None:
            group = group.parent
        return group


@dataclass(slots=True)
class _State:
    """A customer as the rows of a batch leave it, compared with how it was stored."""

    values: dict[str, Any]
    custom: dict[str, Any]
    tags: dict[str, None]
    emails: dict[str, None]

    @classmethod
    def new(cls, row: _CustomerRow, company_id: int | None) -> _State:
        """The state a new customer's first row gives it."""
        values = {
            "name": row.name,
            "company_id": company_id,
            "phone": row.phone,
            "birthday": row.birthday,
            "timezone": row.timezone,
            "language": row.language,
            "owner_id": row.owner_id,
            "lead_source": row.lead_source,
            "status": row.status,
        }
        return cls(values, dict(row.custom), dict.fromkeys(row.tags), dict.fromkeys(row.emails))

    def copy(self) -> _State:
        return _State(dict(self.values), dict(self.custom), dict(self.tags), dict(self.emails))

    def apply(self, row: _CustomerRow, company_id: int | None) -> bool:
        """Overlay a row: given values overwrite, tags and addresses add; True if it changed."""
        values = self.values
        changed = False
        for name, value in zip(_SCALARS, _scalars(row), strict=True):
            if value is not None and values[name] != value:
                values[name] = value
                changed = True
        if row.owner_id is not None and values["owner_id"] != row.owner_id:
            values["owner_id"] = row.owner_id
            changed = True
        if company_id is not None and values["company_id"] != company_id:
            values["company_id"] = company_id
            changed = True
        for key, text in row.custom.items():
            if self.custom.get(key) != text:
                self.custom[key] = text
                changed = True
        for collection, items in ((self.tags, row.tags), (self.emails, row.emails)):
            for item in items:
                if item not in collection:
                    collection[item] = None
                    changed = True
        return changed


def _scalars(row: _CustomerRow) -> tuple[Any, ...]:
    """The row's values of `_SCALARS`, in that order."""
    return (
        row.name,
        row.phone,
        row.birthday,
        row.timezone,
        row.language,
        row.lead_source,
        row.status,
    )


class _CustomerWriter:
    """Merges each validated batch of customer rows into the database."""

    def __init__(self, report: ImportReport, default_owner_id: int | None) -> None:
        self.report = report
        self.default_owner_id = default_owner_id
        self.companies: dict[str, int] = {}  # casefolded name → id, for the whole import

    def __call__(self, session: Session, batch: _Batch[_CustomerRow]) -> None:
        connection = session.connection()
        owner_of = _customers_by_address(
            connection, {address for row in batch.rows for address in row.emails}
        )
        groups = self._groups(batch, owner_of)
        stored = self._load(connection, [g.customer_id for g in groups if g.customer_id])
        self._resolve_companies(connection, {row.company for g in groups for row in g.rows})
        addresses_of: dict[int, dict[str, None]] = {}
        for address, customer_id in owner_of.items():
            addresses_of.setdefault(customer_id, {})[address] = None
        created: list[_State] = []
        changed: list[tuple[int, _State, _State]] = []  # id, before, after
        for group in groups:
            if group.customer_id is None:
                created.append(self._merge_new(group))
            else:
                before = stored[group.customer_id]
                before.emails = addresses_of[group.customer_id]
                after = before.copy()
                if self._merge_existing(group, before, after):
                    changed.append((group.customer_id, before, after))
        now = utcnow()
        self._insert(connection, created, now)
        self._update(connection, changed, now)

    def _groups(self, batch: _Batch[_CustomerRow], owner_of: dict[str, int]) -> list[_Group]:
        """Union the batch's rows by shared addresses; refuse rows joining two customers."""
        by_address: dict[str, _Group] = {}
        by_customer: dict[int, _Group] = {}
        groups: list[_Group] = []
        for row in batch.rows:
            found: list[_Group] = []
            for address in row.emails:
                group = by_address.get(address)
                if group is not None:
                    group = group.root()
                else:
                    customer_id = owner_of.get(address)
                    if customer_id is None:
                        continue
                    group = by_customer.get(customer_id)
                    if group is None:
                        group = by_customer[customer_id] = _Group(customer_id)
                        groups.append(group)
                if group not in found:
                    found.append(group)
            if not found:
                target = _Group(None)
                groups.append(target)
            elif len(found) == 1:
                target = found[0]
            else:
                existing = [g for g in found if g.customer_id is not None]
                if len(existing) > 1:
                    batch.errors.append(RowError(row.line, _conflict(row, by_address, owner_of)))
                    continue
                target = existing[0] if existing else found[0]
                for group in found:
                    if group is not target:
                        group.parent = target
                        target.rows.extend(group.rows)
                        group.rows = []
            target.rows.append(row)
            for address in row.emails:
                by_address[address] = target
        result: list[_Group] = []
        for group in groups:
            if group.parent is not None or not group.rows:
                continue
            if len(group.rows) > 1:
                group.rows.sort()
            if group.customer_id is None and not any(r.name for r in group.rows):
                batch.errors.extend(
                    RowError(r.line, "name: missing (a new customer needs a name)") for r in group.rows
                )
                continue
            result.append(group)
        return result

    def _merge_new(self, group: _Group) -> _State:
        first, *later = group.rows
        state = _State.new(first, self._company_id(first))
        self.report.created += 1
        for row in later:
            if state.apply(row, self._company_id(row)):
                self.report.updated += 1
            else:
                self.report.unchanged += 1
        if state.values["status"] is None:
            state.values["status"] = CustomerStatus.LEAD.value
        if state.values["owner_id"] is None:
            state.values["owner_id"] = self.default_owner_id
        return state

    def _merge_existing(self, group: _Group, before: _State, after: _State) -> bool:
        """Overlay the rows on `after`; True when it now differs from what is stored."""
        flags = [after.apply(row, self._company_id(row)) for row in group.rows]
        if after == before:
            self.report.unchanged += len(flags)
            return False
        self.report.updated += sum(flags)
        self.report.unchanged += len(flags) - sum(flags)
        return True

    def _company_id(self, row: _CustomerRow) -> int | None:
        return None if row.company is None else self.companies[row.company.casefold()]

    def _load(self, connection: Connection, ids: list[int]) -> dict[int, _State]:
        """The stored values and tags of the existing customers a batch touches."""
        states: dict[int, _State] = {}
        columns = ("id", "custom", *_COLUMNS)
        for row in _rows_where_in(connection, _CUSTOMER, columns, "id", ids):
            values = dict(zip(_COLUMNS, row[2:], strict=True))
            states[row[0]] = _State(values, dict(row[1] or {}), {}, {})
        for customer_id, tag in _rows_where_in(connection, _TAG, _TAG_COLUMNS, "customer_id", ids):
            states[customer_id].tags[tag] = None
        return states

    def _resolve_companies(self, connection: Connection, names: set[str | None]) -> None:
        """Company ids by name (case-insensitive), creating the missing ones in bulk."""
        missing = {
            name.casefold(): name
            for name in names
            if name is not None and name.casefold() not in self.companies
        }
        if not missing:
            return
        for chunk in _chunks([name.lower() for name in missing.values()]):
            query = select(_COMPANY.c.id, _COMPANY.c.name).where(func.lower(_COMPANY.c.name).in_(chunk))
            for company_id, name in connection.execute(query):
                self.companies.setdefault(name.casefold(), company_id)
        new = [name for key, name in missing.items() if key not in self.companies]
        if new:
            statement = insert(_COMPANY).returning(_COMPANY.c.id, _COMPANY.c.name)
            params = [{"name": name, "created_at": utcnow()} for name in new]
            for company_id, name in connection.execute(statement, params):
                self.companies[name.casefold()] = company_id

    def _insert(self, connection: Connection, created: list[_State], now: datetime) -> None:
        if not created:
            return
        rows = [(*state.values.values(), state.custom) for state in created]
        ids = _insert_customers(connection, rows, now)
        addresses: list[tuple[Any, ...]] = []
        tags: list[tuple[Any, ...]] = []
        for customer_id, state in zip(ids, created, strict=True):
            primary = True
            for address in state.emails:
                addresses.append((customer_id, address, primary))
                primary = False
            tags.extend((customer_id, tag) for tag in state.tags)
        _insert_rows(connection, _ADDRESS, _ADDRESS_COLUMNS, addresses, created_at=now)
        _insert_rows(connection, _TAG, _TAG_COLUMNS, tags)

    def _update(
        self, connection: Connection, changed: list[tuple[int, _State, _State]], now: datetime
    ) -> None:
        if not changed:
            return
        addresses: list[tuple[Any, ...]] = []
        tags: list[tuple[Any, ...]] = []
        params: list[dict[str, Any]] = []
        for customer_id, before, after in changed:
            addresses.extend((customer_id, a, False) for a in after.emails if a not in before.emails)
            tags.extend((customer_id, t) for t in after.tags if t not in before.tags)
            row = {f"v_{name}": value for name, value in after.values.items()}
            params.append({**row, "v_id": customer_id, "v_custom": after.custom})
        statement = (
            update(_CUSTOMER)
            .where(_CUSTOMER.c.id == bindparam("v_id"))
            .values({name: bindparam(f"v_{name}") for name in (*_COLUMNS, "custom")} | {"updated_at": now})
        )
        connection.execute(statement, params)
        _insert_rows(connection, _ADDRESS, _ADDRESS_COLUMNS, addresses, created_at=now)
        _insert_rows(connection, _TAG, _TAG_COLUMNS, tags)


def _insert_customers(connection: Connection, rows: list[tuple[Any, ...]], now: datetime) -> Sequence[int]:
    """Insert customers (tuples of `_COLUMNS` values, then custom); their ids, in order."""
    if connection.dialect.name != "sqlite":
        statement = insert(_CUSTOMER).returning(_CUSTOMER.c.id, sort_by_parameter_order=True)
        params = [
            {**dict(zip(_CUSTOMER_COLUMNS[1:], row, strict=True)), "created_at": now, "updated_at": now}
            for row in rows
        ]
        return connection.execute(statement, params).scalars().all()
    # SQLAlchemy can keep RETURNING in parameter order on SQLite only by inserting row by
    # row. A write transaction holds SQLite's single write lock from BEGIN IMMEDIATE, so
    # the ids after the current maximum are ours to hand out, in one executemany.
    last = connection.execute(select(func.max(_CUSTOMER.c.id))).scalar() or 0
    ids = range(last + 1, last + 1 + len(rows))
    numbered = [(customer_id, *row) for customer_id, row in zip(ids, rows, strict=True)]
    _insert_rows(connection, _CUSTOMER, _CUSTOMER_COLUMNS, numbered, created_at=now, updated_at=now)
    return ids


def _conflict(row: _CustomerRow, by_address: dict[str, _Group], owner_of: dict[str, int]) -> str:
    owners: list[str] = []
    for address in row.emails:
        group = by_address.get(address)
        customer_id = group.root().customer_id if group is not None else owner_of.get(address)
        if customer_id is not None:
            owners.append(f"{address} is customer {customer_id}")
    return (
        f"addresses of different customers: {', '.join(owners)}; "
        "merge those customers first, or split the row"
    )


# --- purchases ----------------------------------------------------------------------------


class _PurchaseWriter:
    """Records each validated batch of purchases for the customers their addresses name."""

    def __init__(self, report: ImportReport) -> None:
        self.report = report

    def __call__(self, session: Session, batch: _Batch[_PurchaseRow]) -> None:
        connection = session.connection()
        owner_of = _customers_by_address(connection, {r.email for r in batch.rows})
        rows: dict[tuple[int, str], tuple[Any, ...]] = {}
        for row in batch.rows:
            customer_id = owner_of.get(row.email)
            if customer_id is None:
                reason = f"no customer with address {row.email}; import customers first"
                batch.errors.append(RowError(row.line, reason))
            else:
                key = (customer_id, row.dedupe_key)
                if key not in rows:
                    rows[key] = purchases.values(customer_id, row.draft, row.dedupe_key)
        found = sum(1 for row in batch.rows if row.email in owner_of)
        # In index order, so each index page is visited once per batch.
        ordered = [rows[key] for key in sorted(rows)]
        now = utcnow()
        statement = purchases.insert_statement(connection.dialect)
        added = _insert_rows(
            connection, purchases.TABLE, purchases.COLUMNS, ordered, statement=statement, created_at=now
        )
        purchases.promote_leads(connection, (key[0] for key in rows), now)
        self.report.created += added
        self.report.unchanged += found - added


# --- entry points -------------------------------------------------------------------------


def _prepare(
    path: Path, kind: Kind, overrides: Sequence[str], batch_size: int, dry_run: bool
) -> tuple[HeaderMapping, ImportReport]:
    """Check the file and its header before anything is written."""
    if not 1 <= batch_size <= MAX_BATCH_SIZE:
        raise ValueError(f"batch_size must be 1..{MAX_BATCH_SIZE}, not {batch_size}")
    source = _CsvSource(path)
    mapping = map_headers(source.header, kind, overrides)
    report = ImportReport(
        file=str(path),
        ignored_columns=list(mapping.ignored),
        ignored_hint=mapping.ignored_hint,
        dry_run=dry_run,
    )
    return mapping, report


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
    plan = _Plan(path, "customers", tuple(overrides), batch_size, owners=owners)
    _run(db, plan, _CustomerWriter(report, default_owner_id), report, on_progress)
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

    A row without a currency is in `default_currency`; a date-time without an offset
    is local time in `default_timezone`.
    """
    path = Path(path)
    currency = normalize_currency(default_currency)
    zone = normalize_timezone(default_timezone)
    _, report = _prepare(path, "purchases", overrides, batch_size, dry_run)
    plan = _Plan(path, "purchases", tuple(overrides), batch_size, currency=currency, timezone=zone)
    _run(db, plan, _PurchaseWriter(report), report, on_progress)
    return report

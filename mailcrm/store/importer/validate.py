"""Validating records into rows, batch by batch: pure, so a worker process can do it."""

from __future__ import annotations

import gc
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any, Generic, NamedTuple, TypeVar

from mailcrm.domain.addresses import normalize_address, smtputf8_note
from mailcrm.domain.csv_mapping import Kind, map_headers
from mailcrm.domain.customers import draft_from_fields
from mailcrm.domain.purchases import PurchaseDraft, purchase_from_fields
from mailcrm.errors import ImportFileError, ValidationError
from mailcrm.store.importer.report import RowError
from mailcrm.store.importer.source import CsvSource
from mailcrm.store.salespeople import require_owner


class CustomerRow(NamedTuple):
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


class PurchaseRow(NamedTuple):
    """A validated purchase row, the address naming its customer, and its dedupe key."""

    line: int
    email: str
    draft: PurchaseDraft
    dedupe_key: str


RowT = TypeVar("RowT", CustomerRow, PurchaseRow)


@dataclass(slots=True)
class Batch(Generic[RowT]):
    """Validated rows of consecutive records, and the records refused on the way."""

    rows: list[RowT] = field(default_factory=list)
    errors: list[RowError] = field(default_factory=list)
    warnings: list[RowError] = field(default_factory=list)  # imported, with a caveat
    records: int = 0
    skipped: int = 0
    bytes_done: int = 0


@dataclass(frozen=True)
class Plan:
    """How to read and validate one file; plain data, so a worker process can take it."""

    path: Path
    kind: Kind
    overrides: tuple[str, ...]
    batch_size: int
    owners: dict[str, int] = field(default_factory=dict)
    currency: str = ""
    timezone: str = ""

    def validator(self) -> Callable[[int, dict[str, str]], CustomerRow | PurchaseRow]:
        if self.kind == "customers":
            return self._customer
        return self._purchase

    def _customer(self, line: int, fields: dict[str, str]) -> CustomerRow:
        draft = draft_from_fields(fields, new_record=False)
        if not draft.emails:
            raise ValidationError("email: missing", hint="every customer needs an email address")
        owner_id = require_owner(self.owners, draft.owner) if draft.owner else None
        return CustomerRow(
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

    def _purchase(self, line: int, fields: dict[str, str]) -> PurchaseRow:
        raw = fields.pop("email", "")
        if not raw:
            raise ValidationError("email: missing", hint="a purchase names its customer's address")
        try:
            email = normalize_address(raw)
        except ValidationError as exc:
            raise ValidationError(f"email: {exc.message}", hint=exc.hint) from None
        draft = purchase_from_fields(fields, default_currency=self.currency, default_timezone=self.timezone)
        return PurchaseRow(line, email, draft, draft.dedupe_key)


def _reason(exc: ValidationError) -> str:
    return f"{exc.message} ({exc.hint})" if exc.hint else exc.message


def validated_batches(plan: Plan, *, checked: bool) -> Iterator[Batch[Any]]:
    """The file's records, validated, `plan.batch_size` at a time.

    When the file cannot be read on (a quote never closed), the rows before that
    point are still handed over, then the error is raised.
    """
    source = CsvSource(plan.path, check=not checked)
    mapping = map_headers(source.header, plan.kind, plan.overrides)
    validate = plan.validator()
    batch: Batch[Any] = Batch()
    try:
        for line, cells in source.records():
            batch.records += 1
            if not any(cell.strip() for cell in cells):
                batch.skipped += 1
            else:
                try:
                    row = validate(line, mapping.fields(cells))
                    batch.rows.append(row)
                    if isinstance(row, CustomerRow):
                        notes = (smtputf8_note(address) for address in row.emails)
                        batch.warnings.extend(RowError(line, note) for note in notes if note)
                except ValidationError as exc:
                    batch.errors.append(RowError(line, _reason(exc)))
            if batch.records == plan.batch_size:
                batch.bytes_done = source.bytes_read
                yield batch
                batch = Batch()
    except ImportFileError:
        if batch.records:
            batch.bytes_done = source.bytes_read
            yield batch
        raise
    if batch.records:
        batch.bytes_done = source.bytes_read
        yield batch


@contextmanager
def fewer_gc_passes() -> Iterator[None]:
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

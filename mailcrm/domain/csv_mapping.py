"""Which CSV column feeds which field: header aliases, user overrides, required columns.

Spreadsheets name columns many ways ("E-mail", "Email Address", "Sales Rep"), so headers
are matched ignoring case, spaces, underscores, hyphens and dots. A column nobody can
place is never imported by guesswork: it is reported as ignored, with the `--map`
option that would keep it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

from mailcrm.domain.customers import CUSTOMER_FIELDS, normalize_custom_key
from mailcrm.domain.purchases import PURCHASE_FIELDS
from mailcrm.domain.values import FORBIDDEN_CHARACTERS, MAX_FIELD_CHARS, check_text
from mailcrm.errors import ImportFileError, ValidationError

Kind = Literal["customers", "purchases"]

IGNORE = "-"
# The longest cell a row may have; a longer one refuses that row alone, the rest goes in.
MAX_CELL_CHARS = MAX_FIELD_CHARS
_EXPORT_ONLY = frozenset({"id", "purchases", "createdat", "updatedat"})
FIRST_NAME = "first_name"
LAST_NAME = "last_name"
_CUSTOM = "custom."

_SEPARATORS = re.compile(r"[\s_\-.()#]+")
# "Email", "E-mail 2", "Secondary Email", "alt_email", "Email (alt)", "Email Address", "emails",
# "Customer E-Mail-Adresse": every one of them is another address of the same customer.
_EMAIL_BEFORE = (
    "primary|secondary|alt|alternate|alternative|other|additional|backup|extra|another|work"
    "|personal|private|home|business|second|third|customer|contact|buyer"
)
_EMAIL_AFTER = r"\d+|alt|alternate|alternative|other|secondary|backup|extra"
_EMAIL = re.compile(f"(?:{_EMAIL_BEFORE})?e?mail(?:address(?:es)?|adresse)?s?(?:{_EMAIL_AFTER})?")


# A cell a spreadsheet would run as a formula starts with one of these (OWASP, "CSV Injection").
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
_ESCAPE = "'"


def _formula_after_quotes(cell: str) -> bool:
    """Whether the cell is a formula character after zero or more `'`."""
    return cell.lstrip(_ESCAPE).startswith(FORMULA_STARTS)


def escape_formula(cell: str) -> str:
    """The cell as `customers export` writes it: `'` before a formula's first character.

    Any outside sender can choose a name (a From display name becomes a lead), so a
    name like `=HYPERLINK(...)` must not run when a salesperson opens the export in a
    spreadsheet. The quote is OWASP's rule. A value that already is `'=...` gets one
    more quote, so `unescape_formula`, which removes one, gives back every value exactly.
    """
    return _ESCAPE + cell if _formula_after_quotes(cell) else cell


def unescape_formula(cell: str) -> str:
    """A cell as read back: `'` followed by a formula's first character loses the quote.

    So `-Jon-`, `+66 81 234 5678` and `=SUM(A1)` round-trip through export and import;
    a quote before anything else is the user's own and stays.
    """
    if cell.startswith(_ESCAPE) and _formula_after_quotes(cell):
        return cell[1:]
    return cell


def header_key(header: str) -> str:
    """The form headers are compared in: case-folded, without spaces, _ - . ( ) or #."""
    return _SEPARATORS.sub("", header.strip().casefold())


def _aliases(table: Mapping[str, Sequence[str]]) -> dict[str, str]:
    return {header_key(alias): target for target, names in table.items() for alias in (target, *names)}


_CUSTOMER_ALIASES = _aliases(
    {
        "name": ("full name", "customer name", "contact name", "display name", "customer"),
        FIRST_NAME: ("first", "given name", "forename"),
        LAST_NAME: ("last", "surname", "family name"),
        "phone": ("phone number", "telephone", "tel", "mobile", "mobile phone", "cell phone", "cell"),
        "birthday": ("date of birth", "dob", "birth date", "birthdate", "born"),
        "timezone": ("tz", "time zone", "zone"),
        "language": ("lang", "locale", "preferred language"),
        "owner": (
            "sales rep",
            "account owner",
            "salesperson",
            "sales person",
            "account manager",
            "assigned to",
            "lead owner",
            "contact owner",
            "owner email",
        ),
        "lead_source": ("source", "lead source", "referral source"),
        "status": ("customer status",),
        "company": (
            "company name",
            "organization",
            "organisation",
            "organization name",
            "organisation name",
            "org",
            "account name",
            "employer",
        ),
        "tags": ("tag", "labels", "label"),
    }
)

_PURCHASE_ALIASES = _aliases(
    {
        "date": (
            "purchased at",
            "purchase date",
            "purchased on",
            "order date",
            "ordered at",
            "invoice date",
            "sale date",
            "datetime",
        ),
        "product": ("product name", "item", "item name", "sku", "article"),
        "quantity": ("qty", "units"),
        "amount": ("total", "price", "total price", "order total", "line total", "revenue"),
        "currency": ("currency code", "ccy"),
        "order_ref": (
            "order id",
            "order",
            "order number",
            "order no",
            "invoice",
            "invoice id",
            "invoice number",
            "invoice no",
            "reference",
            "ref",
            "transaction id",
        ),
    }
)


@dataclass(frozen=True)
class Column:
    """One CSV column that feeds a field."""

    index: int
    header: str
    field: str


@dataclass(frozen=True)
class HeaderMapping:
    """The plan for reading a file's rows, made once from its header row."""

    kind: Kind
    width: int
    columns: tuple[Column, ...]
    ignored: tuple[str, ...]

    @property
    def ignored_hint(self) -> str | None:
        """What to type to keep an ignored column, for the first one as the example."""
        if not self.ignored:
            return None
        header = self.ignored[0]
        if self.kind == "purchases":
            return f"purchases have no custom fields; silence this with --map '{header}=-'"
        return (
            f"to import a column, map it, e.g. --map '{header}=custom.{custom_name(header)}'; "
            f"to silence this, --map '{header}=-'"
        )

    def fields(self, cells: Sequence[str]) -> dict[str, str]:
        """The row's non-empty cells as field → text, ready for validation.

        Several email columns are joined into one address list; first and last name
        make up `name` when there is no name column or its cell is empty. A cell longer
        than `MAX_CELL_CHARS` or holding a control character refuses the row, naming
        the field, the same way for customers and purchases on every store.
        """
        if len(cells) > self.width and any(cell.strip() for cell in cells[self.width :]):
            raise ValidationError(
                f"row has {len(cells)} cells but the header has {self.width} columns",
                hint="a cell containing the delimiter must be in double quotes",
            )
        result: dict[str, str] = {}
        emails: list[str] = []
        first = last = ""
        count = len(cells)
        for column in self.columns:
            if column.index >= count:
                continue
            value = cells[column.index]
            if value[:1] == _ESCAPE:
                value = unescape_formula(value)
            value = value.strip()
            if not value:
                continue
            if len(value) > MAX_CELL_CHARS or (
                not value.isprintable() and FORBIDDEN_CHARACTERS.search(value)
            ):
                _refuse_cell(column.field, value)
            if column.field == "email" and self.kind == "customers":
                emails.append(value)
            elif column.field == FIRST_NAME:
                first = value
            elif column.field == LAST_NAME:
                last = value
            else:
                result[column.field] = value
        if emails:
            result["email"] = ", ".join(emails)
        if "name" not in result and (first or last):
            result["name"] = f"{first} {last}".strip()
        return result


def _refuse_cell(field: str, value: str) -> None:
    if len(value) > MAX_CELL_CHARS:
        raise ValidationError(
            f"{field}: the cell has {len(value):,} characters, more than the limit of {MAX_CELL_CHARS:,}",
            hint="shorten the cell or leave the column out with --map 'Header=-'",
        )
    try:
        check_text(value)
    except ValidationError as exc:
        raise ValidationError(f"{field}: {exc.message}", hint=exc.hint) from None


def custom_name(header: str) -> str:
    """A custom field name suggested for a header: `"Customer No."` → `customer_no`."""
    name = re.sub(r"[^a-z0-9]+", "_", header.casefold()).strip("_")
    if not name or not name[0].isalpha():
        name = f"field_{name}".rstrip("_")
    return name[:60]


def _target(raw: str, kind: Kind) -> str | None:
    """The field an alias or field name means, `None` for "ignore"; raises when unknown."""
    text = raw.strip()
    if text == IGNORE:
        return None
    if text.casefold().startswith(_CUSTOM):
        if kind == "purchases":
            raise ValidationError(f"--map {raw!r}: purchases have no custom fields")
        return _CUSTOM + normalize_custom_key(text[len(_CUSTOM) :])
    key = header_key(text)
    aliases = _CUSTOMER_ALIASES if kind == "customers" else _PURCHASE_ALIASES
    if key in aliases:
        return aliases[key]
    if _EMAIL.fullmatch(key):
        return "email"
    names = CUSTOMER_FIELDS if kind == "customers" else PURCHASE_FIELDS
    extra = ", custom.NAME" if kind == "customers" else ""
    raise ValidationError(
        f"--map: unknown field {raw!r}",
        hint=f"use one of {', '.join(names)}{extra}, or - to ignore the column",
    )


def parse_overrides(overrides: Sequence[str], kind: Kind) -> dict[str, str | None]:
    """`["Kundennr=custom.customer_no", "Notes=-"]` → header key → field (`None`: ignore)."""
    result: dict[str, str | None] = {}
    for override in overrides:
        header, sep, target = override.rpartition("=")
        if not sep or not header.strip() or not target.strip():
            raise ValidationError(
                f"--map {override!r}: expected 'CSV Header=field'",
                hint="e.g. --map 'Kundennr=custom.customer_no' or --map 'Notes=-'",
            )
        result[header_key(header)] = _target(target, kind)
    return result


def _guess(header: str, kind: Kind) -> str | None:
    stripped = header.strip()
    if kind == "customers" and stripped.casefold().startswith(_CUSTOM):
        try:
            return _CUSTOM + normalize_custom_key(stripped[len(_CUSTOM) :])
        except ValidationError:
            return None
    key = header_key(stripped)
    aliases = _CUSTOMER_ALIASES if kind == "customers" else _PURCHASE_ALIASES
    if key in aliases:
        return aliases[key]
    if _EMAIL.fullmatch(key):
        return "email"
    return None


def map_headers(headers: Sequence[str], kind: Kind, overrides: Sequence[str] = ()) -> HeaderMapping:
    """Decide the field of every column; a missing or doubled column is an `ImportFileError`."""
    chosen = parse_overrides(overrides, kind)
    keys = [header_key(header) for header in headers]
    for key in chosen:
        if key not in keys:
            raise ImportFileError(
                f"--map names a column the file does not have: {_original(overrides, key)!r}",
                hint=f"the columns are: {', '.join(repr(h) for h in headers)}",
            )
    columns: list[Column] = []
    ignored: list[str] = []
    for index, (header, key) in enumerate(zip(headers, keys, strict=True)):
        if key in chosen:
            target = chosen[key]
        else:
            target = _guess(header, kind)
            if target is None and kind == "customers" and key in _EXPORT_ONLY:
                continue  # columns `customers export` writes that are not customer input
            if target is None:
                ignored.append(header.strip() or f"(column {index + 1} has no header)")
        if target is not None:
            columns.append(Column(index, header.strip(), target))
    _check_columns(columns, kind)
    return HeaderMapping(kind, len(headers), tuple(columns), tuple(ignored))


def map_customer_headers(headers: Sequence[str], overrides: Sequence[str] = ()) -> HeaderMapping:
    """`map_headers` for a customers file: needs a name (or first/last name) and an email."""
    return map_headers(headers, "customers", overrides)


def map_purchase_headers(headers: Sequence[str], overrides: Sequence[str] = ()) -> HeaderMapping:
    """`map_headers` for a purchases file: needs email, date, product and amount."""
    return map_headers(headers, "purchases", overrides)


def _original(overrides: Sequence[str], key: str) -> str:
    for override in overrides:
        header = override.rpartition("=")[0]
        if header_key(header) == key:
            return header.strip()
    return key


def _check_columns(columns: Sequence[Column], kind: Kind) -> None:
    by_field: dict[str, list[str]] = {}
    for column in columns:
        by_field.setdefault(column.field, []).append(column.header)
    for field, headers in by_field.items():
        if len(headers) > 1 and not (field == "email" and kind == "customers"):
            shown = " and ".join(repr(h) for h in headers)
            raise ImportFileError(
                f"columns {shown} both map to {field}",
                hint=f"ignore one with --map '{headers[-1]}=-' or map it elsewhere",
            )
    if kind == "customers":
        required = ["email"]
        if not {"name", FIRST_NAME, LAST_NAME} & set(by_field):
            raise ImportFileError(
                "no column for the customer's name",
                hint="add a 'name' column (or 'First Name' and 'Last Name'), "
                "or map one with --map 'Header=name'",
            )
    else:
        required = ["email", "date", "product", "amount"]
    for field in required:
        if field not in by_field:
            raise ImportFileError(
                f"no column for {field}",
                hint=f"add a '{field}' column or map one with --map 'Header={field}'",
            )

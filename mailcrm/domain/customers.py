"""A customer as the user describes it (CLI options, a CSV row), validated and normalised.

`draft_from_fields` is the single place raw text becomes customer values, so the CLI
and the importers accept and refuse exactly the same input.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date
from typing import Any

from mailcrm.domain.addresses import normalize_address
from mailcrm.domain.values import (
    DATE_RANGE,
    EARLIEST,
    LATEST,
    MAX_FIELD_CHARS,
    check_text,
    has_visible_character,
    normalize_language,
    normalize_timezone,
    one_line,
    parse_date,
    split_tags,
)
from mailcrm.errors import ValidationError

STATUSES = ("lead", "customer", "archived")

# The fields a customer record has, as named in CSV headers, `--set` and `--json` output.
CUSTOMER_FIELDS = (
    "name",
    "email",
    "phone",
    "birthday",
    "timezone",
    "language",
    "owner",
    "lead_source",
    "status",
    "company",
    "tags",
)

_PHONE = re.compile(r"\+?[0-9 ()./-]{3,40}")
_CUSTOM_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_.-]{0,62}")
_ADDRESS_SPLIT = re.compile(r"[,;\s]+")


@dataclass(frozen=True)
class CustomerDraft:
    """Validated values; `None` means "not given" (an edit leaves the field alone)."""

    name: str | None = None
    emails: tuple[str, ...] = ()
    phone: str | None = None
    birthday: date | None = None
    timezone: str | None = None
    language: str | None = None
    owner: str | None = None
    lead_source: str | None = None
    status: str | None = None
    company: str | None = None
    tags: tuple[str, ...] = ()
    custom: Mapping[str, str] = field(default_factory=dict)


def split_addresses(raw: str) -> list[str]:
    """`"a@x.org; B@X.org"` → normalised, de-duplicated, in the given order."""
    seen: dict[str, None] = {}
    for part in _ADDRESS_SPLIT.split(raw.strip()):
        if part:
            seen[normalize_address(part)] = None
    return list(seen)


def normalize_phone(raw: str) -> str:
    """Phone numbers are kept as written (digits, spaces, + ( ) . / -), trimmed."""
    text = " ".join(raw.split())
    if not _PHONE.fullmatch(text) or sum(ch.isdigit() for ch in text) < 3:
        raise ValidationError(f"invalid phone number {raw!r}", hint="use digits with an optional leading +")
    return text


def normalize_status(raw: str) -> str:
    text = raw.strip().lower()
    if text not in STATUSES:
        raise ValidationError(f"invalid status {raw!r}", hint=f"use one of {', '.join(STATUSES)}")
    return text


def normalize_custom_key(raw: str) -> str:
    key = raw.strip()
    if not _CUSTOM_KEY.fullmatch(key):
        raise ValidationError(
            f"invalid custom field name {raw!r}",
            hint="start with a letter; use letters, digits, _ . -",
        )
    return key


def _text(value: str, what: str, limit: int) -> str:
    """A one-line text field: whitespace folded, invisible edges trimmed, something visible."""
    text = one_line(value)
    if not has_visible_character(text):
        raise ValidationError(
            "has no visible character",
            hint=f"spaces, zero-width characters and direction marks alone are no {what}",
        )
    if len(text) > limit:
        raise ValidationError(f"{what} is longer than {limit} characters")
    return text


def _long_text(value: str) -> str:
    """A free-text field (custom values): kept as written, line breaks included."""
    text = value.strip()
    if len(text) > MAX_FIELD_CHARS:
        raise ValidationError(f"is longer than {MAX_FIELD_CHARS:,} characters")
    return text


def parse_birthday(raw: str) -> date:
    """A calendar date in `EARLIEST`..`LATEST`, as for purchases: `0001-01-01` or
    `9999-12-31` is a placeholder, never a birthday, and would plan a card for year 1."""
    day = parse_date(raw, "birthday")
    if not EARLIEST <= day <= LATEST:
        raise ValidationError(
            f"{raw.strip()!r} is outside {DATE_RANGE}",
            hint=f"write a date between {EARLIEST.isoformat()} and {LATEST.isoformat()}",
        )
    return day


def draft_from_fields(fields: Mapping[str, str | None], *, new_record: bool) -> CustomerDraft:
    """Validate raw text fields (`CUSTOMER_FIELDS` plus `custom.KEY`); empty text is "not given".

    Raises `ValidationError` whose message starts with the field name.
    """
    values: dict[str, Any] = {}
    custom: dict[str, str] = {}
    for key, raw in fields.items():
        if raw is None or not str(raw).strip():
            continue
        text = str(raw)
        try:
            check_text(text)
            if key == "name":
                values["name"] = _text(text, "name", 200)
            elif key == "email":
                values["emails"] = tuple(split_addresses(text))
            elif key == "phone":
                values["phone"] = normalize_phone(text)
            elif key == "birthday":
                values["birthday"] = parse_birthday(text)
            elif key == "timezone":
                values["timezone"] = normalize_timezone(text)
            elif key == "language":
                values["language"] = normalize_language(text)
            elif key == "owner":
                values["owner"] = normalize_address(text)
            elif key == "lead_source":
                values["lead_source"] = _text(text, "lead source", 100).lower()
            elif key == "status":
                values["status"] = normalize_status(text)
            elif key == "company":
                values["company"] = _text(text, "company", 200)
            elif key == "tags":
                values["tags"] = tuple(split_tags(text))
            elif key.startswith("custom."):
                custom[normalize_custom_key(key[len("custom.") :])] = _long_text(text)
            else:
                raise ValidationError(f"unknown field {key!r}")
        except ValidationError as exc:
            raise ValidationError(f"{key}: {exc.message}", hint=exc.hint) from None
    if new_record and "name" not in values:
        raise ValidationError("name: missing", hint="every customer needs a name")
    if new_record and not values.get("emails"):
        raise ValidationError("email: missing", hint="every customer needs an email address")
    return CustomerDraft(custom=custom, **values)

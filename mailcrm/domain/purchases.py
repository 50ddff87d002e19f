"""A purchase as the user describes it (a CSV row, CLI options), validated, with its dedupe key.

`purchase_from_fields` is the single place raw text becomes purchase values, and
`purchase_dedupe_key` decides when two records are the same purchase, which is what
makes re-importing a file change nothing.

Dates without a time are the customer's calendar dates. `2021-11-02` for a customer in
America/New_York is Nov 2 in New York, so its anniversary is on Nov 2 there, not on the
evening of Nov 1 (which is what reading it as midnight UTC gave). The customer's zone is
only known once the customer is resolved (a CSV row names an address, `purchases add`
a customer), so a draft keeps the value as written (`when`: a date, a wall time, or an
instant) and `place` turns it into stored values once the zone is known:

- a date: `purchased_on` is that date, `purchased_at` the first instant of that local day
  (midnight, or the end of a DST gap where midnight does not exist: Asia/Tehran before
  2022, America/Havana, America/Santiago), `has_time` false;
- a date-time without an offset: wall time in the customer's zone (gap: the first
  instant after it; fold: the first of the two);
- a date-time with an offset keeps its instant; its local date is the customer's date
  at that instant, fixed at write time, so a later edit of the customer's timezone does
  not move the anniversary of what they bought.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Mapping
from datetime import UTC, date, datetime, time
from typing import Any, NamedTuple, TypeVar
from zoneinfo import ZoneInfo

from mailcrm.domain.calendar import instant_of, local_send_instant
from mailcrm.domain.values import (
    check_text,
    has_visible_character,
    normalize_currency,
    parse_when,
    to_minor_units,
)
from mailcrm.errors import ValidationError

# The fields of a purchase record, as named in CSV headers; `email` names the customer.
PURCHASE_FIELDS = ("email", "date", "product", "quantity", "amount", "currency", "order_ref")

# Digits with an optional decimal point; thousands commas only in groups of three, so a
# decimal comma ("12,50") is refused instead of being read as 1250.
_AMOUNT = re.compile(r"[+-]?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?|[+-]?\.\d+")
_QUANTITY = re.compile(r"\+?\d{1,9}")
_MAX_MINOR = 10**15  # a quadrillion cents: past this a value is a typo, and it fits every column

T = TypeVar("T")


class PurchaseDraft(NamedTuple):
    """Validated values of one purchase line; `when` is as written (see the module notes):
    a `date`, a naive wall-time `datetime`, or an aware one.

    A named tuple rather than a dataclass: imports pass hundreds of thousands of them
    between processes, and tuples pickle several times faster.
    """

    when: date | datetime
    product: str
    amount_minor: int
    currency: str
    quantity: int = 1
    order_ref: str | None = None
    dedupe_key: str = ""


class PlacedPurchase(NamedTuple):
    """Where a purchase sits in time once its customer's zone is known: the stored values."""

    purchased_at: datetime  # aware UTC
    purchased_on: date  # the customer's local calendar date
    has_time: bool  # false: the line gave a date only


def place(when: date | datetime, zone: str) -> PlacedPurchase:
    """A purchase's instant and local date for a customer in `zone` (see the module notes)."""
    if isinstance(when, datetime):
        if when.tzinfo is None:
            return PlacedPurchase(instant_of(when, zone), when.date(), True)
        instant = when.astimezone(UTC)
        return PlacedPurchase(instant, instant.astimezone(ZoneInfo(zone)).date(), True)
    return PlacedPurchase(local_send_instant(when, time(), zone), when, False)


def legacy_instant(when: date | datetime, default_zone: str) -> datetime:
    """The instant (aware UTC) mailcrm stored for `when` before dates became local dates:
    a date at midnight and a wall time in `default_zone`, an offset as given.

    The dedupe key is computed from it, so purchases recorded by earlier versions are
    still recognised when the same file is imported again.
    """
    value = when if isinstance(when, datetime) else datetime.combine(when, time())
    if value.tzinfo is None:
        value = value.replace(tzinfo=ZoneInfo(default_zone))
    return value.astimezone(UTC)


def purchase_dedupe_key(
    *,
    purchased_at: datetime,
    product: str,
    quantity: int,
    amount_minor: int,
    currency: str,
    order_ref: str | None,
) -> str:
    """32 hex characters (128 bits of SHA-256) identifying a purchase line of one customer.

    `purchased_at` is `legacy_instant` of what the line says, not the stored instant: it
    depends only on the line and `defaults.timezone` (as it always did), never on the
    customer's timezone, so editing a customer's zone cannot make a re-import record a
    purchase twice, and keys stored before revision 0004 stay valid.

    With an order reference the key is the order plus the product, so several lines of
    one order stay distinct and a corrected amount in a later export is still the same
    line. Without one, every value takes part: the same product bought twice on the same
    day for the same amount counts once, the price of not having an order number.
    """
    if order_ref:
        text = f"order\x1f{order_ref}\x1f{product}"
    else:
        when = purchased_at.astimezone(UTC).replace(tzinfo=None).isoformat()
        text = f"line\x1f{when}\x1f{product}\x1f{quantity}\x1f{amount_minor}\x1f{currency}"
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def parse_quantity(raw: str) -> int:
    """A whole number of items, at least 1."""
    text = raw.strip()
    if not _QUANTITY.fullmatch(text) or int(text) < 1:
        raise ValidationError(f"invalid quantity {raw!r}", hint="write a whole number such as 1 or 3")
    return int(text)


def parse_amount(raw: str, currency: str) -> int:
    """The amount in minor units; a decimal comma or an exponent is refused, not guessed."""
    text = raw.strip()
    if not _AMOUNT.fullmatch(text):
        raise ValidationError(
            f"invalid amount {raw!r}",
            hint="write digits with a dot for decimals, e.g. 1250.50 or 1,250.50",
        )
    minor = to_minor_units(text, currency)
    if abs(minor) >= _MAX_MINOR:
        raise ValidationError(f"amount {raw!r} is implausibly large")
    return minor


def _text(raw: str, what: str, limit: int) -> str:
    """One line of plain text: control characters refused (from `purchases add` as from a
    CSV cell, so both stores hold the same), and something visible required."""
    check_text(raw)
    text = " ".join(raw.split())
    if not has_visible_character(text):
        raise ValidationError(
            "has no visible character",
            hint=f"spaces, zero-width characters and direction marks alone are no {what}",
        )
    if len(text) > limit:
        raise ValidationError(f"{what} is longer than {limit} characters")
    return text


def purchase_from_fields(
    fields: Mapping[str, str | None], *, default_currency: str, default_timezone: str
) -> PurchaseDraft:
    """Validate raw text fields (`PURCHASE_FIELDS` without `email`); empty text is "not given".

    `date` is an ISO date or date-time, kept as written (`when`) until `place` knows the
    customer's zone; `default_timezone` (`defaults.timezone`) only enters the dedupe key
    (see `purchase_dedupe_key`). Raises `ValidationError` whose message starts with the
    field name.
    """
    given = {key: str(raw) for key, raw in fields.items() if raw is not None and str(raw).strip()}
    unknown = sorted(set(given) - set(PURCHASE_FIELDS[1:]))
    if unknown:
        raise ValidationError(f"unknown field {unknown[0]!r}")
    for required in ("date", "product", "amount"):
        if required not in given:
            raise ValidationError(
                f"{required}: missing", hint="every purchase needs a date, product and amount"
            )
    currency = _named("currency", normalize_currency, given.get("currency", default_currency))
    when = _named("date", parse_when, given["date"], "date")
    quantity = _named("quantity", parse_quantity, given["quantity"]) if "quantity" in given else 1
    order_ref = given.get("order_ref")
    if order_ref is not None:
        order_ref = _named("order_ref", _text, order_ref, "order reference", 100)
    product = _named("product", _text, given["product"], "product", 200)
    amount_minor = _named("amount", parse_amount, given["amount"], currency)
    key = purchase_dedupe_key(
        purchased_at=legacy_instant(when, default_timezone),
        product=product,
        quantity=quantity,
        amount_minor=amount_minor,
        currency=currency,
        order_ref=order_ref,
    )
    return PurchaseDraft(when, product, amount_minor, currency, quantity, order_ref, key)


def _named(field: str, parse: Callable[..., T], *args: Any) -> T:
    """`parse(*args)`, with the field's name in front of any error message."""
    try:
        return parse(*args)
    except ValidationError as exc:
        raise ValidationError(f"{field}: {exc.message}", hint=exc.hint) from None

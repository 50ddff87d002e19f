"""A purchase as the user describes it (a CSV row, CLI options), validated, with its dedupe key.

`purchase_from_fields` is the single place raw text becomes purchase values, and
`purchase_dedupe_key` decides when two records are the same purchase, which is what
makes re-importing a file change nothing.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any, NamedTuple, TypeVar

from mailcrm.domain.values import normalize_currency, parse_datetime, to_minor_units
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
    """Validated values of one purchase line; `purchased_at` is aware UTC.

    A named tuple rather than a dataclass: imports pass hundreds of thousands of them
    between processes, and tuples pickle several times faster.
    """

    purchased_at: datetime
    product: str
    amount_minor: int
    currency: str
    quantity: int = 1
    order_ref: str | None = None

    @property
    def dedupe_key(self) -> str:
        return purchase_dedupe_key(
            purchased_at=self.purchased_at,
            product=self.product,
            quantity=self.quantity,
            amount_minor=self.amount_minor,
            currency=self.currency,
            order_ref=self.order_ref,
        )


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
    text = " ".join(raw.split())
    if len(text) > limit:
        raise ValidationError(f"{what} is longer than {limit} characters")
    return text


def purchase_from_fields(
    fields: Mapping[str, str | None], *, default_currency: str, default_timezone: str
) -> PurchaseDraft:
    """Validate raw text fields (`PURCHASE_FIELDS` without `email`); empty text is "not given".

    `date` is an ISO date or date-time; a value without an offset is local time in
    `default_timezone`. Raises `ValidationError` whose message starts with the field name.
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
    purchased_at = _named("date", parse_datetime, given["date"], default_timezone, "date")
    quantity = _named("quantity", parse_quantity, given["quantity"]) if "quantity" in given else 1
    order_ref = given.get("order_ref")
    if order_ref is not None:
        order_ref = _named("order_ref", _text, order_ref, "order reference", 100)
    return PurchaseDraft(
        purchased_at=purchased_at.replace(tzinfo=UTC),
        product=_named("product", _text, given["product"], "product", 200),
        amount_minor=_named("amount", parse_amount, given["amount"], currency),
        currency=currency,
        quantity=quantity,
        order_ref=order_ref,
    )


def _named(field: str, parse: Callable[..., T], *args: Any) -> T:
    """`parse(*args)`, with the field's name in front of any error message."""
    try:
        return parse(*args)
    except ValidationError as exc:
        raise ValidationError(f"{field}: {exc.message}", hint=exc.hint) from None

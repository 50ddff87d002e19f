"""A rule's `where:`: which customers it applies to."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from mailcrm.domain.rules import STATUSES, Filters
from mailcrm.domain.values import normalize_currency, normalize_language, normalize_tag, to_minor_units
from mailcrm.errors import MailcrmError, ValidationError
from mailcrm.rules_yaml.values import FieldReader, suggest
from mailcrm.yamlfile import PathKey

WHERE_KEYS = ("tags", "lead_source", "owner", "language", "status", "spend", "bought")
SPEND_KEYS = ("min", "max", "currency")


class FilterReader(FieldReader):
    """Reads `where:` and its `spend:` into `Filters`."""

    def filters(self, value: Any, loc: PathKey) -> Filters | None:
        where = self.mapping(value, loc, "where")
        if where is None:
            return None
        self.only_keys(where, loc, WHERE_KEYS, "where")
        before = len(self.problems)
        tags = self.normalized(where, loc, "tags", normalize_tag)
        sources = self.normalized(where, loc, "lead_source", _lead_source)
        languages = self.normalized(where, loc, "language", normalize_language)
        statuses = self.normalized(where, loc, "status", _status)
        bought = self.normalized(where, loc, "bought", _product, split=False)
        owners: set[str] = set()
        if "owner" in where:
            for text, item_loc in self.texts(where["owner"], (*loc, "owner"), "owner"):
                found = self.salesperson(text, item_loc, "owner")
                if found:
                    owners.add(found)
        spend = self.spend(where["spend"], (*loc, "spend")) if "spend" in where else (None, None, None)
        if len(self.problems) > before:
            return None
        return Filters(
            tags=tags,
            lead_sources=sources,
            owners=frozenset(owners),
            languages=languages,
            statuses=statuses,
            spend_min_minor=spend[0],
            spend_max_minor=spend[1],
            spend_currency=spend[2],
            bought=bought,
        )

    def normalized(
        self,
        where: dict[str, Any],
        loc: PathKey,
        key: str,
        normalize: Callable[[str], str],
        *,
        split: bool = True,
    ) -> frozenset[str]:
        if key not in where:
            return frozenset()
        result = set()
        for text, item_loc in self.texts(where[key], (*loc, key), key, split=split):
            try:
                result.add(normalize(text))
            except MailcrmError as exc:
                self.bad(item_loc, exc)
        return frozenset(result)

    def spend(self, value: Any, loc: PathKey) -> tuple[int | None, int | None, str | None]:
        spend = self.mapping(value, loc, "spend")
        if spend is None:
            return None, None, None
        self.only_keys(spend, loc, SPEND_KEYS, "spend")
        if "min" not in spend and "max" not in spend:
            self.fail(
                loc, "spend needs `min:`, `max:` or both", hint="e.g. spend: {min: 1000, currency: THB}"
            )
            return None, None, None
        if "currency" not in spend:
            self.fail(loc, "spend needs a `currency:`", hint="an ISO 4217 code such as THB, USD, EUR")
            return None, None, None
        text = self.text(spend["currency"], (*loc, "currency"), "currency")
        try:
            currency = normalize_currency(text) if text else None
        except MailcrmError as exc:
            self.bad((*loc, "currency"), exc)
            currency = None
        if currency is None:
            return None, None, None
        bounds: list[int | None] = []
        for key in ("min", "max"):
            if key not in spend:
                bounds.append(None)
                continue
            amount_loc = (*loc, key)
            raw = spend[key]
            amount = self.tree.raw.get(amount_loc, "") if isinstance(raw, float) else raw
            text = (
                self.text(amount, amount_loc, f"spend {key}") if not isinstance(amount, int) else str(amount)
            )
            minor = None
            if text is not None:
                try:
                    minor = to_minor_units(text, currency)
                except MailcrmError as exc:
                    self.bad(amount_loc, exc)
            if minor is not None and minor < 0:
                self.fail(amount_loc, f"spend {key} must not be negative")
                minor = None
            bounds.append(minor)
        low, high = bounds
        if low is not None and high is not None and high < low:
            self.fail((*loc, "max"), "spend max is below spend min")
        return low, high, currency


def _lead_source(text: str) -> str:
    value = " ".join(text.split()).lower()
    if len(value) > 100:
        raise ValidationError("lead source is longer than 100 characters")
    return value


def _status(text: str) -> str:
    value = text.strip().lower()
    if value == "archived":
        raise ValidationError(
            "archived customers never get automated mail",
            hint=f"use {STATUSES[0]} and/or {STATUSES[1]}",
        )
    if value not in STATUSES[:2]:
        raise ValidationError(
            f"unknown status {text!r}{suggest(value, STATUSES[:2])}", hint="lead or customer"
        )
    return value


def _product(text: str) -> str:
    value = " ".join(text.split())
    if len(value) > 200:
        raise ValidationError("product name is longer than 200 characters")
    return value

"""template_context: the variables a template gets, built from the customer, seller and purchase."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date, datetime
from typing import Any
from zoneinfo import ZoneInfo

from mailcrm.domain.values import from_minor_units
from mailcrm.render.helpers import _zone, first_name

_SALESPERSON_KEYS = ("name", "email", "language", "timezone", "phone", "title", "signature")


def _years_between(start: date, today: date) -> int:
    years = today.year - start.year
    if (today.month, today.day) < (start.month, start.day):
        years -= 1
    return max(0, years)


def template_context(
    *,
    customer: Mapping[str, Any],
    salesperson: Mapping[str, Any],
    purchase: Mapping[str, Any] | None = None,
    extra: Mapping[str, Any] | None = None,
    unsubscribe_url: str | None = None,
) -> dict[str, Any]:
    """The variables a template gets (besides `language` and `text_direction`, added by render).

    - `customer`: every field given (the `customers show --json` shape: `id`, `name`, `email`,
      `company`, `birthday`, `language`, `timezone`, `tags`, `custom`, ...) plus `first_name`.
    - `salesperson`: `name`, `email`, `first_name`, and `language`, `timezone`, `phone`,
      `title`, `signature` when given (nothing else: no account settings reach templates).
    - `purchase` (only when given): `product`, `quantity`, `amount_minor`, `currency`,
      `purchased_at`, `purchased_on` (the customer's local date), `has_time`, `order_ref`,
      plus `amount` (a Decimal) and `years_since` (whole years from the purchase's local
      date, else the date of `purchased_at`, to `today`).
    - `today`: `extra["today"]` when given, else today's date in the customer's timezone.
    - `unsubscribe_url` (only when given: templates that link it fail without one).
    - every key of `extra` (e.g. `feedback_url`, a callable taking a score;
      `previous_subject` for follow-ups).
    """
    extra = dict(extra or {})
    people = dict(customer)
    people["first_name"] = people.get("first_name") or first_name(people.get("name"))
    seller = {key: salesperson[key] for key in _SALESPERSON_KEYS if key in salesperson}
    seller["first_name"] = first_name(seller.get("name"))
    today = extra.get("today")
    if not isinstance(today, date):
        zone = people.get("timezone") or "UTC"
        today = datetime.now(_zone(zone) if isinstance(zone, str) else ZoneInfo("UTC")).date()
    context: dict[str, Any] = {"customer": people, "salesperson": seller, "today": today}
    if purchase is not None:
        bought = dict(purchase)
        if "amount_minor" in bought and "currency" in bought:
            bought.setdefault(
                "amount", from_minor_units(int(bought["amount_minor"]), str(bought["currency"]))
            )
        when = bought.get("purchased_on") or bought.get("purchased_at")
        if isinstance(when, date):
            day = when.date() if isinstance(when, datetime) else when
            bought.setdefault("years_since", _years_between(day, today))
        context["purchase"] = bought
    if unsubscribe_url is not None:
        context["unsubscribe_url"] = unsubscribe_url
    context.update(extra)
    return context

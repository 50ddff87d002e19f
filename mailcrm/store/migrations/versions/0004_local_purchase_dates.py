"""purchases: the customer's local date (`purchased_on`) and whether a time was given

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-07 22:00:00.000000

Until this revision a purchase was one instant, and a date given without a time was
stored as midnight of `defaults.timezone` (UTC unless configured): `2021-11-02` for a
customer in New York became 2021-11-02T00:00Z, whose anniversary fell on Nov 1 there.
Now a date is the customer's calendar date (see `mailcrm.domain.purchases`).

What this migration assumes about existing rows, since the old rows do not say whether
their file gave a time:

- a row whose instant is exactly midnight in `defaults.timezone` (00:00:00 UTC with the
  default setting) was a date without a time: its local date is that date, `has_time`
  is false, and its instant becomes the first instant of that day in the customer's
  timezone (else `defaults.timezone`). A purchase genuinely given as `...T00:00:00` in
  that zone is read the same way: the price of the old rows not saying;
- every other row keeps its instant (`has_time` true) and gets its local date in the
  customer's timezone (else `defaults.timezone`) as of this migration.

`defaults.timezone` reaches the migration from `mailcrm db upgrade` (the
`default_timezone` attribute of the Alembic config); run any other way, it is UTC.
Dedupe keys are left alone: they are computed from what a line says (the old instant),
not from the stored instant, so re-importing a file after the upgrade still changes
nothing. Rows are converted in keyset-ordered chunks, so memory stays flat.
"""

from __future__ import annotations

from datetime import date, datetime, time
from typing import Any
from zoneinfo import ZoneInfo

import sqlalchemy as sa
from alembic import context, op

from mailcrm.domain.purchases import legacy_instant, place
from mailcrm.store.types import UTCDateTime

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

_CHUNK = 5000

_purchase = sa.table(
    "purchase",
    sa.column("id", sa.BigInteger()),
    sa.column("customer_id", sa.BigInteger()),
    sa.column("purchased_at", UTCDateTime()),
    sa.column("purchased_on", sa.Date()),
    sa.column("has_time", sa.Boolean()),
)
_customer = sa.table("customer", sa.column("id", sa.BigInteger()), sa.column("timezone", sa.String()))


def _default_zone() -> str:
    zone = context.config.attributes.get("default_timezone") if context.config is not None else None
    return str(zone) if zone else "UTC"


def _chunks(connection: sa.Connection, *extra: Any) -> Any:
    """(id, purchased_at, zone, *extra) of every purchase, `_CHUNK` at a time by id."""
    last = -1
    while True:
        query = (
            sa.select(_purchase.c.id, _purchase.c.purchased_at, _customer.c.timezone, *extra)
            .select_from(_purchase.join(_customer, _customer.c.id == _purchase.c.customer_id))
            .where(_purchase.c.id > last)
            .order_by(_purchase.c.id)
            .limit(_CHUNK)
        )
        rows = connection.execute(query).all()
        if not rows:
            return
        yield rows
        last = rows[-1][0]


def _local(at: datetime, zone: str, default: str) -> tuple[datetime, date, bool]:
    """(instant, local date, has time) of an old row (see the module notes).

    Earlier versions accepted any year, so a row may sit at the edge of the calendar
    (`0001-01-01`, `9999-12-31`) where a zone conversion overflows: such a row keeps its
    instant and gets its UTC date, rather than stopping the upgrade.
    """
    try:
        old_day = _legacy_day(at, default)
        if old_day is not None:
            placed = place(old_day, zone)
            return placed.purchased_at, placed.purchased_on, False
        placed = place(at, zone)
        return placed.purchased_at, placed.purchased_on, True
    except (OverflowError, ValueError):
        return at, at.date(), at.time() != time()


def _legacy_day(at: datetime, default: str) -> date | None:
    """The date an old row was written for, if it was a date without a time, else None."""
    day = at.astimezone(ZoneInfo(default)).date()
    return day if legacy_instant(day, default) == at else None


def upgrade() -> None:
    op.add_column("purchase", sa.Column("purchased_on", sa.Date(), nullable=True))
    op.add_column("purchase", sa.Column("has_time", sa.Boolean(), nullable=True))
    connection = op.get_bind()
    default = _default_zone()
    update = (
        sa.update(_purchase)
        .where(_purchase.c.id == sa.bindparam("row_id"))
        .values(
            purchased_at=sa.bindparam("at", type_=UTCDateTime()),
            purchased_on=sa.bindparam("on", type_=sa.Date()),
            has_time=sa.bindparam("timed", type_=sa.Boolean()),
        )
    )
    for rows in _chunks(connection):
        params = []
        for row_id, at, zone, *_ in rows:
            instant, day, timed = _local(at, zone or default, default)
            params.append({"row_id": row_id, "at": instant, "on": day, "timed": timed})
        connection.execute(update, params)
    with op.batch_alter_table("purchase") as batch_op:
        batch_op.alter_column("purchased_on", existing_type=sa.Date(), nullable=False)
        batch_op.alter_column("has_time", existing_type=sa.Boolean(), nullable=False)
        batch_op.create_index("ix_purchase_customer_on", ["customer_id", "purchased_on"], unique=False)


def downgrade() -> None:
    # Dates without a time go back to what earlier versions wrote: midnight in the zone.
    connection = op.get_bind()
    default = _default_zone()
    update = (
        sa.update(_purchase)
        .where(_purchase.c.id == sa.bindparam("row_id"))
        .values(purchased_at=sa.bindparam("at", type_=UTCDateTime()))
    )
    for rows in _chunks(connection, _purchase.c.purchased_on, _purchase.c.has_time):
        params = [
            {"row_id": row_id, "at": legacy_instant(day, default)}
            for row_id, _, _, day, timed in rows
            if not timed
        ]
        if params:
            connection.execute(update, params)
    with op.batch_alter_table("purchase") as batch_op:
        batch_op.drop_index("ix_purchase_customer_on")
        batch_op.drop_column("has_time")
        batch_op.drop_column("purchased_on")

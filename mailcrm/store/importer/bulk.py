"""Set-based SQL for batches: bulk inserts and `IN` lookups without a statement per row.

Store-internal helpers: they take the `Connection` of the importer's session.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any, Literal

from sqlalchemy import Connection, Dialect, Insert, Table, insert, select

from mailcrm.store.models import Company, Customer, CustomerTag, EmailAddress

_IN_CHUNK = 5_000  # values per IN (...) list: well under SQLite's and PostgreSQL's limits
_PAGE_CACHE_KIB = 16 * 1024

CUSTOMER: Table = Customer.__table__  # type: ignore[attr-defined]
ADDRESS: Table = EmailAddress.__table__  # type: ignore[attr-defined]
TAG: Table = CustomerTag.__table__  # type: ignore[attr-defined]
COMPANY: Table = Company.__table__  # type: ignore[attr-defined]


def enlarge_page_cache(connection: Connection) -> None:
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


def chunks(values: Sequence[Any]) -> Iterator[Sequence[Any]]:
    for start in range(0, len(values), _IN_CHUNK):
        yield values[start : start + _IN_CHUNK]


def rows_where_in(
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
        for chunk in chunks(values):
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
    for chunk in chunks(values):
        rows = connection.exec_driver_sql(sql, (json.dumps(list(chunk)),)).all()
        if not processors:
            yield from rows
            continue
        for row in rows:
            processed = list(row)
            for index, processor in processors:
                processed[index] = processor(processed[index])
            yield processed


def customers_by_address(connection: Connection, addresses: Iterable[str]) -> dict[str, int]:
    """address → customer id, for those of `addresses` that are stored."""
    rows = rows_where_in(connection, ADDRESS, ("address", "customer_id"), "address", list(addresses))
    found: dict[str, int] = {}
    for address, customer_id in rows:
        found[address] = customer_id
    return found


def insert_rows(
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

"""`mailcrm suppress ...` (addresses never to write to again) and `mailcrm unsuppress`.

`suppress list` shows every suppressed address, whether or not a customer owns it (a
hard bounce of an unknown address, a complaint). `suppress add ADDRESS` suppresses one;
the older form `mailcrm suppress ADDRESS` still works and means the same. `suppress
remove ADDRESS --note WHY` (or `unsuppress`) allows it again and records that, with
the note, on the customer's timeline.
"""

from __future__ import annotations

from datetime import UTC
from typing import Annotated, Any

import typer
from typer.core import TyperGroup

from mailcrm.cli.context import app_context
from mailcrm.cli.output import JSON_HELP, emit, info, table
from mailcrm.cli.params import limit_option
from mailcrm.domain.addresses import normalize_address
from mailcrm.store import outbox as store
from mailcrm.store.outbox.suppression import SuppressedAddress, list_suppressed

JsonOption = Annotated[bool, typer.Option("--json", help=JSON_HELP)]


class _AddressOrCommand(TyperGroup):
    """A group that also takes `mailcrm suppress ADDRESS [--reason ...]`, as `add` did before
    the group existed: arguments that name no subcommand but hold an address go to `add`."""

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        if args and args[0] not in self.commands and any("@" in arg for arg in args):
            args = ["add", *args]
        result: list[str] = super().parse_args(ctx, args)
        return result


app = typer.Typer(
    cls=_AddressOrCommand,
    help="Addresses never to write to again: list, add or remove them.",
    no_args_is_help=True,
)


def _print(rows: list[SuppressedAddress], limit: int) -> None:
    if not rows:
        info("no suppressed address matches")
        return
    table(
        None,
        ["suppressed (UTC)", "address", "reason", "customer", "detail"],
        [
            [
                r.suppressed_at.astimezone(UTC).strftime("%Y-%m-%d %H:%M"),
                r.address,
                r.reason,
                f"{r.customer_name} (id {r.customer_id})" if r.customer_id is not None else "-",
                (r.detail or "")[:80],
            ]
            for r in rows
        ],
    )
    if len(rows) == limit:
        info(f"showing the newest {limit}; pass --limit for more")


@app.command("list")
def list_addresses(
    ctx: typer.Context,
    reason: Annotated[
        str | None, typer.Option(help="Only this reason, e.g. hard_bounce, unsubscribed, manual.")
    ] = None,
    search: Annotated[
        str | None, typer.Option(help="Only addresses, customer names or details containing this.")
    ] = None,
    limit: Annotated[int, limit_option("At most this many (newest first).")] = 100,
    as_json: JsonOption = False,
) -> None:
    """List suppressed addresses, newest first: reason, date, detail and customer if any.

    Example: mailcrm suppress list --reason hard_bounce --json
    """
    with app_context(ctx).database(create=False).read() as session:
        rows = list_suppressed(session, reason=reason, search=search, limit=limit)
    emit(as_json, rows, lambda: _print(rows, limit))


@app.command("add")
def add(
    ctx: typer.Context,
    address: Annotated[str, typer.Argument(help="The email address never to write to again.")],
    reason: Annotated[str, typer.Option(help="Why (kept with the address).")] = "manual",
    as_json: JsonOption = False,
) -> None:
    """Stop all automated email to an address (checked again just before each send).

    Example: mailcrm suppress add ann@example.org --reason "asked by phone"
    """
    normalized = normalize_address(address)
    with app_context(ctx).database().write() as session:
        added = store.suppress(session, normalized, reason)
    result = {"address": normalized, "suppressed": True, "added": added}
    emit(
        as_json,
        result,
        lambda: info(f"{result['address']} " + ("suppressed" if added else "was already suppressed")),
    )


@app.command("remove")
def remove(
    ctx: typer.Context,
    address: Annotated[str, typer.Argument(help="The email address to allow again.")],
    note: Annotated[
        str | None, typer.Option(help="Why (kept on the customer's timeline with who allowed it).")
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Allow automated email to an address again; its customer's timeline records it.

    Example: mailcrm suppress remove ann@example.org --note "asked to hear from us again"
    """
    context = app_context(ctx)
    normalized = normalize_address(address)
    with context.database().write() as session:
        removed = store.unsuppress(session, normalized, note=note, author=context.author())
    result = {"address": normalized, "suppressed": False, "removed": removed}
    emit(
        as_json,
        result,
        lambda: info(f"{result['address']} " + ("allowed again" if removed else "was not suppressed")),
    )


def unsuppress(
    ctx: typer.Context,
    address: Annotated[str, typer.Argument(help="The email address to allow again.")],
    note: Annotated[
        str | None, typer.Option(help="Why (kept on the customer's timeline with who allowed it).")
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Allow automated email to an address again (the same as `suppress remove`).

    Example: mailcrm unsuppress ann@example.org
    """
    remove(ctx, address, note, as_json)

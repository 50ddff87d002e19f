"""`mailcrm users ...`: the people who log in to the web dashboard and the API.

Passwords come from a hidden prompt (asked twice) or, for scripts, from standard input
with `--password-stdin`; they are never arguments, which other users of the machine
could read in the process list. Every change is written to the audit log with who made
it ($MAILCRM_USER, the only salesperson, or the OS user) and `via: cli`.
"""

from __future__ import annotations

import sys
from datetime import UTC, datetime
from typing import Annotated

import typer

from mailcrm.auth import accounts
from mailcrm.auth.passwords import Hasher
from mailcrm.cli.context import AppContext, app_context
from mailcrm.cli.output import JSON_HELP, emit, info, table
from mailcrm.domain.access import Role, Scope
from mailcrm.domain.addresses import normalize_address
from mailcrm.domain.passwords import MAX_LENGTH
from mailcrm.errors import ValidationError
from mailcrm.store import users as user_store
from mailcrm.store.types import utcnow

app = typer.Typer(
    help="Logins for the web dashboard and the API: users, passwords and API tokens.", no_args_is_help=True
)

JsonOption = Annotated[bool, typer.Option("--json", help=JSON_HELP)]
EmailArgument = Annotated[str, typer.Argument(metavar="EMAIL", help="The user's email address.")]
PasswordStdin = Annotated[
    bool,
    typer.Option(
        "--password-stdin", help="Read the password from standard input (one line) instead of asking."
    ),
]


def _when(value: datetime | None) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC") if value else "-"


def _actor(context: AppContext) -> accounts.Actor:
    return accounts.Actor(context.author(), "cli")


def _password(from_stdin: bool) -> str:
    """The new password: one line from stdin, or typed twice at a hidden prompt."""
    if from_stdin:
        text = sys.stdin.read(MAX_LENGTH * 4 + 3)
        # The newline `echo` or a here-string adds is not part of the password.
        text = text.removesuffix("\n").removesuffix("\r")
        if not text:
            raise ValidationError(
                "--password-stdin: standard input is empty, no password was given",
                hint="printf '%s\\n' \"$PASSWORD\" | mailcrm users add ...",
            )
        if "\n" in text or "\r" in text:
            raise ValidationError("--password-stdin: give the password on one line")
        return text
    if not sys.stdin.isatty():
        raise typer.BadParameter(
            "no terminal to ask for the password on: pipe it in with --password-stdin",
            param_hint="--password-stdin",
        )
    entered: str = typer.prompt("Password", hide_input=True, confirmation_prompt=True)
    return entered


@app.command("add")
def add(
    ctx: typer.Context,
    email: EmailArgument,
    role: Annotated[Role, typer.Option(help="salesperson (own customers only) or admin (everything).")],
    salesperson: Annotated[
        str | None,
        typer.Option(
            metavar="EMAIL",
            help="The salesperson (from mailcrm.yaml) whose customers this user works on "
            "(default for --role salesperson: the user's own email).",
        ),
    ] = None,
    password_stdin: PasswordStdin = False,
    as_json: JsonOption = False,
) -> None:
    """Add a user who can log in; the password is asked twice (or read with --password-stdin).

    Example: mailcrm users add alice@acme.example --role salesperson
    """
    context = app_context(ctx)
    address = normalize_address(email)
    db = context.database()
    with db.read() as session:  # refuse before asking for a password that would be thrown away
        accounts.check_new_user(session, email=address, role=role, salesperson=salesperson)
    password_hash = Hasher().new_hash(_password(password_stdin), address)
    with db.write() as session:
        user = accounts.add_user(
            session, email=address, role=role, salesperson=salesperson, password_hash=password_hash,
            actor=_actor(context),
        )  # fmt: skip
    tied = f", salesperson {user.salesperson}" if user.salesperson else ""
    emit(as_json, user, lambda: info(f"added user {user.email} ({user.role}{tied})"))


@app.command("list")
def list_users(ctx: typer.Context, as_json: JsonOption = False) -> None:
    """List users: role, salesperson, whether disabled, last login, working API tokens.

    Example: mailcrm users list --json
    """
    with app_context(ctx).database(create=False).read() as session:
        rows = user_store.listing(session, utcnow())

    def human() -> None:
        if not rows:
            info("no users yet: `mailcrm users add EMAIL --role admin` adds one")
            return
        table(
            None,
            ["email", "role", "salesperson", "state", "last login", "tokens"],
            [
                [
                    r.email,
                    r.role,
                    r.salesperson or "-",
                    "disabled" if r.disabled else "active",
                    _when(r.last_login_at),
                    r.active_tokens,
                ]
                for r in rows
            ],
        )

    emit(as_json, rows, human)


@app.command("passwd")
def passwd(
    ctx: typer.Context,
    email: EmailArgument,
    password_stdin: PasswordStdin = False,
    as_json: JsonOption = False,
) -> None:
    """Set a user's password (asked twice, or read with --password-stdin).

    Example: printf '%s\\n' "$NEW_PASSWORD" | mailcrm users passwd alice@acme.example --password-stdin
    """
    context = app_context(ctx)
    address = normalize_address(email)
    db = context.database()
    with db.read() as session:
        user_store.require(session, address)
    password_hash = Hasher().new_hash(_password(password_stdin), address)
    with db.write() as session:
        user = accounts.change_password(
            session, email=address, password_hash=password_hash, actor=_actor(context)
        )
    emit(as_json, user, lambda: info(f"password of {user.email} changed"))


def _switch(ctx: typer.Context, email: str, disabled: bool, as_json: bool) -> None:
    context = app_context(ctx)
    with context.database().write() as session:
        user, changed = accounts.set_disabled(session, email=email, disabled=disabled, actor=_actor(context))
    word = "disabled" if disabled else "enabled"
    emit(
        as_json,
        {**user.model_dump(mode="json"), "changed": changed},
        lambda: info(f"{user.email} {word}" if changed else f"{user.email} was {word} already"),
    )


@app.command("disable")
def disable(ctx: typer.Context, email: EmailArgument, as_json: JsonOption = False) -> None:
    """Stop a user logging in; their API tokens stop working too (until `users enable`).

    Example: mailcrm users disable bob@acme.example
    """
    _switch(ctx, email, True, as_json)


@app.command("enable")
def enable(ctx: typer.Context, email: EmailArgument, as_json: JsonOption = False) -> None:
    """Let a disabled user log in again (their unexpired, unrevoked tokens work again).

    Example: mailcrm users enable bob@acme.example
    """
    _switch(ctx, email, False, as_json)


@app.command("token")
def token(
    ctx: typer.Context,
    email: EmailArgument,
    scope: Annotated[Scope, typer.Option(help="read, or write (which includes read).")],
    expires: Annotated[
        int,
        typer.Option(min=1, max=accounts.MAX_TOKEN_DAYS, metavar="DAYS", help="Valid for this many days."),
    ] = 365,
    label: Annotated[str | None, typer.Option(help="What it is for, shown in `users tokens`.")] = None,
    as_json: JsonOption = False,
) -> None:
    """Make an API token for a user and print it: it is shown this once, and only its hash is kept.

    Example: mailcrm users token shop@acme.example --scope write --expires 90 --label "shop webhook"
    """
    context = app_context(ctx)
    with context.database().write() as session:
        issued = accounts.issue_token(
            session, email=email, scope=scope, days=expires, label=label, actor=_actor(context)
        )
    view = issued.view
    if as_json:
        emit(True, {"secret": issued.secret, **view.model_dump(mode="json")}, lambda: None)
        return
    sys.stdout.write(issued.secret + "\n")
    info(
        f"{view.token} for {view.user} ({view.scope}, expires {_when(view.expires_at)}): "
        "shown only this once; store it now (Authorization: Bearer <token>)"
    )


@app.command("tokens")
def tokens(ctx: typer.Context, email: EmailArgument, as_json: JsonOption = False) -> None:
    """List a user's API tokens by prefix (never the secret): scope, state, expiry, last use.

    Example: mailcrm users tokens shop@acme.example
    """
    with app_context(ctx).database(create=False).read() as session:
        rows = accounts.tokens_of(session, email)

    def human() -> None:
        if not rows:
            info("no tokens: `mailcrm users token EMAIL --scope read` makes one")
            return
        table(
            None,
            ["token", "scope", "label", "state", "created", "expires", "last used"],
            [
                [
                    r.token,
                    r.scope,
                    r.label or "",
                    r.state,
                    _when(r.created_at),
                    _when(r.expires_at),
                    _when(r.last_used_at),
                ]
                for r in rows
            ],
        )

    emit(as_json, rows, human)


@app.command("revoke")
def revoke(
    ctx: typer.Context,
    prefix: Annotated[
        str,
        typer.Argument(
            metavar="PREFIX", help="The token's prefix, as `users tokens` shows it (mcrm_xxxxxxxx)."
        ),
    ],
    as_json: JsonOption = False,
) -> None:
    """Revoke an API token at once; requests with it are refused from then on.

    Example: mailcrm users revoke mcrm_3f9k2q7x
    """
    context = app_context(ctx)
    with context.database().write() as session:
        view, changed = accounts.revoke_token(session, named=prefix, actor=_actor(context))
    emit(
        as_json,
        {**view.model_dump(mode="json"), "changed": changed},
        lambda: info(f"{view.token} of {view.user} " + ("revoked" if changed else "was revoked already")),
    )

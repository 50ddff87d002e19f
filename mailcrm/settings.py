"""Typed settings from `mailcrm.yaml`, validated once at start-up.

Every error names the file, line and field. Secrets are never written in the file:
an account names an environment variable (`password_env`) or a file
(`password_file`), one of the two, and the secret is read only when a connection
needs it; an empty one is an error, never an empty password. `security: plain` is
checked against the network by `plain_security_problems` (`config check`) and again at
every connection (`mailcrm.netpolicy`): only a host that resolves to loopback.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, field_validator, model_validator
from pydantic import ValidationError as PydanticValidationError

from mailcrm import netpolicy
from mailcrm.domain.addresses import normalize_address
from mailcrm.domain.rules import parse_duration
from mailcrm.domain.values import normalize_language, normalize_timezone
from mailcrm.errors import ConfigError, MailcrmError, SecretError
from mailcrm.netpolicy import Security
from mailcrm.textfile import MAX_SECRET_BYTES, NotATextFile, file_kind, read_text
from mailcrm.yamlfile import YamlDocument, load_file

CONFIG_ENV = "MAILCRM_CONFIG"
DATABASE_URL_ENV = "MAILCRM_DATABASE_URL"
DEFAULT_CONFIG_PATHS = (Path("config/mailcrm.yaml"), Path("mailcrm.yaml"))

_INLINE_SECRET_KEYS = ("password", "secret", "token")

_In = TypeVar("_In")
_Out = TypeVar("_Out")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)  # .inf is no duration


class SecretRef(_Strict):
    """Where a secret lives: an environment variable or a file readable only by its owner."""

    password_env: str | None = None
    password_file: Path | None = None

    @model_validator(mode="before")
    @classmethod
    def _refuse_inline(cls, data: Any) -> Any:
        if isinstance(data, dict):
            for key in _INLINE_SECRET_KEYS:
                if key in data:
                    raise ValueError(
                        f"inline `{key}:` is not accepted (secrets do not belong in config files); "
                        "write `password_env: VARIABLE_NAME` or `password_file: /path/to/file` instead"
                    )
        return data

    @model_validator(mode="after")
    def _one_source(self) -> SecretRef:
        if self.password_env is not None and self.password_file is not None:
            raise ValueError(
                "both `password_env` and `password_file` are set: keep one, so it is clear "
                "which secret is used"
            )
        return self

    def has_secret(self) -> bool:
        return self.password_env is not None or self.password_file is not None

    def resolve(self, what: str) -> str:
        """Read the secret now; `what` names the account in the error message."""
        if self.password_env:
            value = os.environ.get(self.password_env)
            if value is None:
                raise SecretError(
                    f"{what}: environment variable {self.password_env} is not set",
                    hint=f"export {self.password_env}=... before starting mailcrm",
                )
            if not value.strip():
                raise SecretError(
                    f"{what}: environment variable {self.password_env} is empty",
                    hint=f"export {self.password_env}=... (the password or token) before starting mailcrm",
                )
            return value
        if self.password_file:
            path = self.password_file
            try:
                mode = path.stat().st_mode
                if not stat.S_ISREG(mode):
                    raise SecretError(
                        f"{what}: password file {path} is {file_kind(mode)}, not a regular file",
                        hint="point password_file at the file that holds the password",
                    )
                if mode & (stat.S_IRWXG | stat.S_IRWXO):
                    raise SecretError(
                        f"{what}: password file {path} is readable by other users",
                        hint=f"run `chmod 600 {path}`",
                    )
                secret = read_text(path, MAX_SECRET_BYTES).strip()
            except NotATextFile as exc:
                raise SecretError(f"{what}: cannot read password file {path}: {exc}") from None
            except OSError as exc:
                raise SecretError(f"{what}: cannot read password file {path}: {exc.strerror}") from None
            except UnicodeDecodeError:
                raise SecretError(f"{what}: password file {path} is not UTF-8 text") from None
            if not secret:
                raise SecretError(
                    f"{what}: password file {path} is empty",
                    hint=f"write the password (or token) into {path}, on one line",
                )
            return secret
        raise SecretError(
            f"{what}: no password configured",
            hint="add `password_env: NAME` or `password_file: PATH` to the account",
        )


class ImapAccount(SecretRef):
    """A salesperson's IMAP mailbox."""

    host: str
    port: int | None = Field(default=None, ge=1, le=65535)
    security: Security = "tls"
    username: str
    auth: Literal["login", "plain", "xoauth2"] = "login"
    ca_file: Path | None = None
    folders: list[str] = Field(default_factory=list)
    timeout_seconds: float = Field(default=60.0, gt=0)
    # The provider files every sent message in Sent itself (Gmail, Outlook): mailcrm
    # then makes no copy of its own even with `sending.copy_to_sent` (no duplicate).
    server_files_sent: bool = False

    @property
    def effective_port(self) -> int:
        return self.port or (993 if self.security == "tls" else 143)


class SmtpAccount(SecretRef):
    """The SMTP account a salesperson's automated email is sent from."""

    host: str
    port: int | None = Field(default=None, ge=1, le=65535)
    security: Security = "tls"
    username: str | None = None
    # None: the best password mechanism the server offers; xoauth2 needs a token provider.
    auth: Literal["login", "plain", "xoauth2"] | None = None
    ca_file: Path | None = None
    max_connections: int = Field(default=4, ge=1, le=64)
    per_minute: int | None = Field(default=None, ge=1)
    per_day: int | None = Field(default=None, ge=1)
    timeout_seconds: float = Field(default=60.0, gt=0)

    @model_validator(mode="after")
    def _auth_needs_username(self) -> SmtpAccount:
        if self.auth is not None and self.username is None:
            raise ValueError("`auth:` needs `username:` (the account to log in as); add it or remove `auth:`")
        return self

    @property
    def effective_port(self) -> int:
        return self.port or {"tls": 465, "starttls": 587, "plain": 25}[self.security]


class SalespersonSettings(_Strict):
    """A member of the sales team and the accounts mail goes through."""

    name: str = Field(min_length=1)
    email: str
    language: str | None = None
    timezone: str | None = None
    imap: ImapAccount | None = None
    smtp: SmtpAccount | None = None

    @field_validator("email")
    @classmethod
    def _email(cls, value: str) -> str:
        return _wrap(normalize_address, value)

    @field_validator("language")
    @classmethod
    def _language(cls, value: str | None) -> str | None:
        return None if value is None else _wrap(normalize_language, value)

    @field_validator("timezone")
    @classmethod
    def _timezone(cls, value: str | None) -> str | None:
        return None if value is None else _wrap(normalize_timezone, value)


class DatabaseSettings(_Strict):
    url: str = "sqlite:///mailcrm.db"


class DefaultsSettings(_Strict):
    """Used for customers that have no timezone or language of their own."""

    timezone: str = "UTC"
    language: str = "en"

    @field_validator("timezone")
    @classmethod
    def _timezone(cls, value: str) -> str:
        return _wrap(normalize_timezone, value)

    @field_validator("language")
    @classmethod
    def _language(cls, value: str) -> str:
        return _wrap(normalize_language, value)


class SyncSettings(_Strict):
    """How mailboxes are kept in sync and how messages are matched to customers."""

    create_leads: bool = True
    lead_source: str = "inbound-email"
    fold_addresses: bool = False
    batch_messages: int = Field(default=250, ge=1, le=5000)
    batch_bytes: int = Field(default=16 * 2**20, ge=2**16)
    max_message_bytes: int = Field(default=50 * 2**20, ge=2**16)  # `import mbox|maildir` skips larger
    poll_seconds: float = Field(default=60.0, gt=0)
    idle_renew_seconds: float = Field(default=600.0, gt=0, le=1740)
    reconnect_max_seconds: float = Field(default=300.0, gt=0)
    auth_retry_seconds: float = Field(default=900.0, gt=0)


class PlanningSettings(_Strict):
    """When the planner runs and how it treats occurrences the daemon was down for."""

    # Upper bounds keep every window within a year: the planner turns them into
    # datetimes, which overflow (a crash, not an error) a few thousand years out.
    interval_seconds: float = Field(default=300.0, gt=0, le=86_400)
    lookahead_hours: float = Field(default=24.0, gt=0, le=8_784)
    grace_hours: float = Field(default=6.0, ge=0, le=8_784)
    catch_up_days: float = Field(default=7.0, ge=0, le=366)
    leap_day: Literal["feb28", "mar1"] = "feb28"


class SendingSettings(_Strict):
    """How the outbox is sent: limits per customer, retries, leases and the crash policy.

    Nothing is sent unless a rule asks for it; `enabled: false` stops all sending
    (planning still fills the outbox).
    """

    enabled: bool = True
    message_id_domain: str | None = None  # None: the sending salesperson's domain
    frequency_cap: int | None = Field(default=3, ge=1)  # automated emails per customer per window
    frequency_window: timedelta = timedelta(days=7)
    retry_deadline: timedelta = timedelta(days=3)
    retry_base_seconds: float = Field(default=60.0, gt=0, le=604_800)  # bounded: they become timedeltas
    retry_max_seconds: float = Field(default=3600.0, gt=0, le=604_800)
    lease_seconds: float = Field(default=300.0, ge=1, le=86_400)
    batch_size: int = Field(default=100, ge=1, le=5000)
    copy_to_sent: bool = False
    ambiguous: Literal["resend", "hold"] = "resend"
    # Soft bounces (mailbox full, 4.2.x/5.2.2) are retried; an address is suppressed
    # once it collected `soft_bounce_limit` of them within `soft_bounce_window`.
    soft_bounce_limit: int = Field(default=5, ge=1)
    soft_bounce_window: timedelta = timedelta(days=7)
    # Sender processes on this machine (0 or "auto": one per CPU); each SMTP account's
    # connections and per_minute are shared out among them (`mailcrm.send.processes`).
    processes: Annotated[int, BeforeValidator(lambda v: 0 if v == "auto" else v), Field(ge=0, le=64)] = 1

    @field_validator("frequency_window", "retry_deadline", "soft_bounce_window", mode="before")
    @classmethod
    def _duration(cls, value: Any) -> Any:
        if isinstance(value, str):
            return _wrap(lambda text: parse_duration(text, allow_zero=False), value)
        return value

    @field_validator("message_id_domain")
    @classmethod
    def _domain(cls, value: str | None) -> str | None:
        if value is None:
            return None
        domain = value.strip().lower()
        if not domain or any(c in domain for c in "<>@ \t\r\n\x00"):
            raise ValueError(f"invalid domain {value!r}: write a bare domain such as acme.example")
        return domain


class WebSettings(_Strict):
    """The HTTP endpoint (one-click unsubscribe today).

    Two switches: `enabled` makes `mailcrm run` serve the app beside sync, planning and
    sending (`mailcrm web` serves it alone, on another machine if need be); `base_url`
    puts the endpoint's links into the emails sent. Either needs the signing key
    (`secret_env` or `secret_file`); keys named by `old_secrets_env` / `old_secrets_file`
    (one per line or separated by spaces) are still accepted in links, so a key can be
    replaced without breaking the links already sent.
    """

    enabled: bool = False
    host: str = "127.0.0.1"
    port: int = Field(default=8080, ge=1, le=65535)
    base_url: str | None = None
    secret_env: str | None = None
    secret_file: Path | None = None
    old_secrets_env: str | None = None
    old_secrets_file: Path | None = None
    trusted_proxies: list[str] = Field(default_factory=list)
    max_body_bytes: int = Field(default=64 * 1024, ge=1024, le=16 * 1024 * 1024)
    request_timeout_seconds: float = Field(default=15.0, gt=0, le=300)

    @model_validator(mode="after")
    def _one_source(self) -> WebSettings:
        if self.secret_env is not None and self.secret_file is not None:
            raise ValueError("both `secret_env` and `secret_file` are set: keep one")
        if self.old_secrets_env is not None and self.old_secrets_file is not None:
            raise ValueError("both `old_secrets_env` and `old_secrets_file` are set: keep one")
        return self

    @field_validator("base_url")
    @classmethod
    def _base_url(cls, value: str | None) -> str | None:
        if value is None:
            return None
        url = value.strip().rstrip("/")
        scheme, _, rest = url.partition("://")
        if scheme.lower() not in ("https", "http") or not rest or any(c in url for c in ' \t\r\n<>"?#'):
            raise ValueError(
                f"invalid base_url {value!r}: write the public address, e.g. https://crm.acme.example"
            )
        return url

    @property
    def links(self) -> bool:
        """Whether the emails sent carry links to this endpoint."""
        return self.base_url is not None


class Settings(_Strict):
    """Everything mailcrm needs to run; built once in the entry point and passed down."""

    database: DatabaseSettings = Field(default_factory=DatabaseSettings)
    defaults: DefaultsSettings = Field(default_factory=DefaultsSettings)
    salespeople: list[SalespersonSettings] = Field(default_factory=list)
    sync: SyncSettings = Field(default_factory=SyncSettings)
    planning: PlanningSettings = Field(default_factory=PlanningSettings)
    sending: SendingSettings = Field(default_factory=SendingSettings)
    web: WebSettings = Field(default_factory=WebSettings)
    rules_dir: Path = Path("rules")
    templates_dir: Path | None = None
    source: Path | None = Field(default=None, exclude=True)

    @model_validator(mode="after")
    def _unique_salespeople(self) -> Settings:
        seen: set[str] = set()
        for person in self.salespeople:
            if person.email in seen:
                raise ValueError(f"salesperson {person.email} is listed twice")
            seen.add(person.email)
        return self

    @property
    def base_dir(self) -> Path:
        """Relative paths in the file are relative to the file's folder."""
        return self.source.parent if self.source else Path.cwd()

    def rules_path(self) -> Path:
        """The rules folder (relative paths are relative to the config file)."""
        return self.base_dir / self.rules_dir

    def templates_path(self) -> Path:
        """The templates folder: as configured, else the one shipped inside the package."""
        if self.templates_dir is not None:
            return self.base_dir / self.templates_dir
        return Path(__file__).resolve().parent / "resources" / "templates"

    def database_url(self) -> str:
        """`MAILCRM_DATABASE_URL` wins over the file."""
        return os.environ.get(DATABASE_URL_ENV) or self.database.url

    def salesperson(self, email: str) -> SalespersonSettings | None:
        wanted = email.strip().lower()
        return next((p for p in self.salespeople if p.email == wanted), None)


def _wrap(func: Callable[[_In], _Out], value: _In) -> _Out:
    """Turn a domain ValidationError into the ValueError pydantic reports with its location."""
    try:
        return func(value)
    except MailcrmError as exc:
        raise ValueError(str(exc)) from None


def _describe(error: Any) -> str:
    message = str(error["msg"])
    if message.startswith("Value error, "):
        message = message[len("Value error, ") :]
    if error["type"] == "extra_forbidden":
        message = "unknown setting (check the spelling; see config/mailcrm.example.yaml)"
    return message


def from_document(document: YamlDocument) -> Settings:
    """Validate parsed YAML; all problems are reported at once, each with its line."""
    data = document.data if document.data is not None else {}
    if not isinstance(data, dict):
        raise document.error((), "the file must be a mapping of settings")
    _refuse_inline_secrets(document, data)
    try:
        settings = Settings.model_validate(data)
    except PydanticValidationError as exc:
        problems = [document.error(err["loc"], _describe(err)) for err in exc.errors()]
        if len(problems) == 1:
            raise problems[0] from None
        raise ConfigError(
            f"{len(problems)} problems in {document.path}:\n"
            + "\n".join(f"  {problem}" for problem in problems)
        ) from None
    return settings.model_copy(update={"source": Path(document.path).resolve()})


def _refuse_inline_secrets(document: YamlDocument, data: dict[str, Any]) -> None:
    """Inline secrets, or two sources for one: point at the offending key itself (the model
    validator can only name the account)."""
    people = data.get("salespeople")
    if not isinstance(people, list):
        return
    for index, person in enumerate(people):
        if not isinstance(person, dict):
            continue
        for kind in ("imap", "smtp"):
            account = person.get(kind)
            if not isinstance(account, dict):
                continue
            if "password_env" in account and "password_file" in account:
                raise document.error(
                    ("salespeople", index, kind, "password_file"),
                    "both `password_env` and `password_file` are set: keep one, so it is clear "
                    "which secret is used",
                )
            for key in _INLINE_SECRET_KEYS:
                if key in account:
                    raise document.error(
                        ("salespeople", index, kind, key),
                        f"inline `{key}:` is not accepted: secrets do not belong in config files",
                        hint="write `password_env: VARIABLE_NAME` (an environment variable) or "
                        "`password_file: /path/to/file` (chmod 600) instead",
                    )


def plain_security_problems(
    settings: Settings, resolver: netpolicy.Resolver = netpolicy.resolve
) -> list[ConfigError]:
    """Every `security: plain` account whose host does not resolve to loopback only.

    Resolves each host now (`config check`); the connection checks again when it is made.
    """
    document = load_file(settings.source) if settings.source is not None else None
    problems: list[ConfigError] = []
    for index, person in enumerate(settings.salespeople):
        accounts: tuple[tuple[str, ImapAccount | SmtpAccount | None], ...] = (
            ("imap", person.imap),
            ("smtp", person.smtp),
        )
        for kind, account in accounts:
            if account is None or account.security != "plain":
                continue
            try:
                reason = netpolicy.plain_refusal(account.host, resolver(account.host, account.effective_port))
            except OSError as exc:
                reason = f"cannot resolve {account.host}: {getattr(exc, 'strerror', None) or exc}"
            if reason is None:
                continue
            loc = ("salespeople", index, kind, "security")
            message = f"`plain` (unencrypted) is allowed only to a host on this machine, and {reason}"
            if document is not None:
                problems.append(document.error(loc, message, hint=netpolicy.PLAIN_HINT))
            else:
                field = ".".join(map(str, loc))
                problems.append(ConfigError(message, field=field, hint=netpolicy.PLAIN_HINT))
    return problems


def find_config(explicit: Path | None) -> Path | None:
    """The file to load: --config, then $MAILCRM_CONFIG, then ./config/mailcrm.yaml."""
    if explicit is not None:
        return explicit
    from_env = os.environ.get(CONFIG_ENV)
    if from_env:
        return Path(from_env)
    return next((path for path in DEFAULT_CONFIG_PATHS if path.is_file()), None)


def load_settings(explicit: Path | None = None) -> Settings:
    """Load and validate the settings; built-in defaults when there is no file at all."""
    path = find_config(explicit)
    if path is None:
        return Settings()
    return from_document(load_file(path))

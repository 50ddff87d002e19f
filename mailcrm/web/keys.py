"""The keys that sign the web endpoint's links, read from where `web.*` says.

`web.secret_env` (an environment variable) or `web.secret_file` (a file only its owner
may read) holds the current key: links are signed with it. `web.old_secrets_env` or
`web.old_secrets_file` holds keys being retired, separated by white space: links signed
with them still verify, so a key can be replaced without breaking the emails already
sent. Keys are text of at least `MIN_KEY_LENGTH` characters (`openssl rand -hex 32`
makes a good one); their UTF-8 bytes are the HMAC key.

A key is required whenever links are made or checked: `load` refuses with an error
naming the setting, never starts with a guessable or empty key.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from mailcrm.errors import ConfigError
from mailcrm.settings import SecretRef, WebSettings

log = logging.getLogger(__name__)

MIN_KEY_LENGTH = 32


@dataclass(frozen=True)
class LinkKeys:
    """The current key (signs) and the old ones (still verify)."""

    current: bytes
    old: tuple[bytes, ...] = ()

    @property
    def all(self) -> tuple[bytes, ...]:
        return (self.current, *self.old)

    def __repr__(self) -> str:  # never print a key
        return f"LinkKeys(current=<{len(self.current)} bytes>, old=<{len(self.old)} keys>)"


def _checked(text: str, setting: str) -> bytes:
    if len(text) < MIN_KEY_LENGTH:
        raise ConfigError(
            f"the key in {setting} is {len(text)} characters long; at least {MIN_KEY_LENGTH} are needed",
            field=f"web.{setting.split()[0]}",
            hint="make one with `openssl rand -hex 32`",
        )
    return text.encode("utf-8")


def _resolve(env: str | None, file: Path | None, base_dir: Path, what: str) -> str:
    path = None if file is None else base_dir / file
    return SecretRef(password_env=env, password_file=path).resolve(what)


def load(web: WebSettings, base_dir: Path) -> LinkKeys:
    """The configured keys; `ConfigError` (naming the setting) when there is no usable one."""
    if web.secret_env is None and web.secret_file is None:
        raise ConfigError(
            "no key to sign links with: set web.secret_env (an environment variable) or "
            "web.secret_file (a file readable only by its owner)",
            field="web.secret_env",
            hint="export MAILCRM_WEB_SECRET=$(openssl rand -hex 32) and write "
            "`secret_env: MAILCRM_WEB_SECRET` under `web:` in mailcrm.yaml",
        )
    setting = f"secret_env {web.secret_env}" if web.secret_env else f"secret_file {web.secret_file}"
    current = _checked(_resolve(web.secret_env, web.secret_file, base_dir, f"web.{setting}").strip(), setting)
    old: list[bytes] = []
    if web.old_secrets_env is not None or web.old_secrets_file is not None:
        setting = (
            f"old_secrets_env {web.old_secrets_env}"
            if web.old_secrets_env
            else f"old_secrets_file {web.old_secrets_file}"
        )
        text = _resolve(web.old_secrets_env, web.old_secrets_file, base_dir, f"web.{setting}")
        old = [_checked(word, setting) for word in text.split()]
    keys = LinkKeys(current, tuple(key for key in dict.fromkeys(old) if key != current))
    log.debug("link keys loaded: %s", keys, extra={"action": "web_keys_loaded"})
    return keys

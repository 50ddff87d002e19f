"""Signed web links and their keys: a token verifies only for its email, customer, purpose
and a configured key; the key settings refuse what would make links forgeable."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mailcrm.domain import signed_links
from mailcrm.errors import ConfigError
from mailcrm.settings import WebSettings
from mailcrm.web import keys as link_keys
from mailcrm.web.pages.texts import language_of

KEY = b"k" * 32
OTHER = b"o" * 32


@given(st.integers(min_value=0, max_value=2**62), st.integers(min_value=0, max_value=2**62))
def test_a_token_verifies_for_its_row_and_customer_only(outbox_id: int, customer_id: int) -> None:
    token = signed_links.parse(signed_links.sign(KEY, signed_links.UNSUBSCRIBE, outbox_id, customer_id))
    assert token is not None and token.outbox_id == outbox_id
    assert signed_links.verify([KEY], signed_links.UNSUBSCRIBE, token, customer_id)
    assert signed_links.verify([OTHER, KEY], signed_links.UNSUBSCRIBE, token, customer_id)  # rotation
    assert not signed_links.verify([OTHER], signed_links.UNSUBSCRIBE, token, customer_id)
    assert not signed_links.verify([KEY], signed_links.UNSUBSCRIBE, token, customer_id + 1)
    assert not signed_links.verify([KEY], "click", token, customer_id)


@pytest.mark.parametrize(
    "text",
    ["", ".", "1.", "1.short", "1.AAAAAAAAAAAAAAAA=", "X1.AAAAAAAAAAAAAAAA", "1.AAAA AAAAAAAAAAA", "1" * 40],
)
def test_what_is_not_a_token_parses_to_none(text: str) -> None:
    assert signed_links.parse(text) is None


def test_keys_come_from_the_environment_with_the_old_ones(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WEB_KEY", "n" * 40)
    monkeypatch.setenv("WEB_OLD", f"{'a' * 32}\n{'b' * 32} {'n' * 40}")
    loaded = link_keys.load(WebSettings(secret_env="WEB_KEY", old_secrets_env="WEB_OLD"), Path.cwd())
    assert loaded.current == b"n" * 40
    assert loaded.old == (b"a" * 32, b"b" * 32)  # the current key is not listed twice
    assert "nnnn" not in repr(loaded)


def test_no_key_or_a_short_one_is_refused_naming_the_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ConfigError, match=r"web\.secret_env"):
        link_keys.load(WebSettings(base_url="https://crm.acme.example"), Path.cwd())
    monkeypatch.setenv("WEB_KEY", "short")
    with pytest.raises(ConfigError, match="at least 32"):
        link_keys.load(WebSettings(secret_env="WEB_KEY"), Path.cwd())


def test_a_key_file_readable_by_others_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "web.key"
    path.write_text("s" * 40 + "\n", encoding="utf-8")
    path.chmod(0o644)
    with pytest.raises(ConfigError, match="chmod 600"):
        link_keys.load(WebSettings(secret_file=Path("web.key")), tmp_path)
    path.chmod(0o600)
    assert link_keys.load(WebSettings(secret_file=Path("web.key")), tmp_path).current == b"s" * 40


@pytest.mark.parametrize(
    "url", ["crm.acme.example", "ftp://crm.acme.example", "https://", "https://x.example/?a=1", "https://a b"]
)
def test_a_base_url_that_cannot_prefix_a_link_is_refused(url: str) -> None:
    with pytest.raises(ValueError, match="base_url"):
        WebSettings(base_url=url)


def test_pages_speak_the_customers_language_else_english() -> None:
    assert [language_of(tag) for tag in ("th", "zh-Hans", "fa-IR", "km", "de", None)] == [
        "th",
        "zh",
        "fa",
        "km",
        "en",
        "en",
    ]


def test_forwarded_headers_are_believed_from_the_configured_proxies_only() -> None:
    """uvicorn believes X-Forwarded-* from 127.0.0.1 by default; mailcrm from nobody unless told."""
    from mailcrm.web.server import config

    async def app(scope: object, receive: object, send: object) -> None:
        raise AssertionError("not called")

    alone = config(app, WebSettings())
    assert alone.proxy_headers is False
    proxied = config(app, WebSettings(trusted_proxies=["10.0.0.5"]), port=9000)
    assert proxied.proxy_headers is True
    assert proxied.forwarded_allow_ips == ["10.0.0.5"]
    assert (proxied.host, proxied.port, alone.host) == ("127.0.0.1", 9000, "127.0.0.1")

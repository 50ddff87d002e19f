"""`security: plain` goes only to loopback: the one rule IMAP, SMTP and `config check` share."""

from __future__ import annotations

from pathlib import Path

import pytest

from mailcrm.netpolicy import is_loopback, plain_refusal
from mailcrm.settings import Settings, from_document, plain_security_problems
from mailcrm.yamlfile import load_text


@pytest.mark.parametrize("address", ["127.0.0.1", "127.4.5.6", "::1", "::ffff:127.0.0.1", "::1%lo"])
def test_loopback_addresses(address: str) -> None:
    assert is_loopback(address)
    assert plain_refusal(address, [address]) is None


@pytest.mark.parametrize("address", ["192.0.2.1", "10.0.0.1", "2001:db8::1", "0.0.0.0", "localhost"])
def test_other_addresses_are_not_loopback(address: str) -> None:
    assert not is_loopback(address)


def test_a_literal_remote_address_is_refused() -> None:
    assert plain_refusal("192.0.2.1", ["192.0.2.1"]) == "192.0.2.1 is not a loopback address"


def test_a_name_is_judged_by_every_address_it_resolves_to() -> None:
    assert plain_refusal("mail.test", ["127.0.0.1", "::1"]) is None
    reason = plain_refusal("mail.test", ["127.0.0.1", "192.0.2.7"])
    assert reason == "mail.test resolves to 192.0.2.7, which is not loopback"
    assert plain_refusal("mail.test", []) == "mail.test does not resolve to any address"


CONFIG = """\
salespeople:
  - name: Ann
    email: ann@acme.example
    imap:
      host: {imap}
      security: plain
      username: ann
      password_env: ANN_IMAP
    smtp:
      host: {smtp}
      port: 2525
      security: plain
"""


def _settings(tmp_path: Path, imap: str, smtp: str) -> Settings:
    path = tmp_path / "mailcrm.yaml"
    path.write_text(CONFIG.format(imap=imap, smtp=smtp), encoding="utf-8")
    return from_document(load_text(path.read_text(encoding="utf-8"), str(path))).model_copy(
        update={"source": path}
    )


def fake_resolver(table: dict[str, list[str]]):  # type: ignore[no-untyped-def]
    def resolve(host: str, port: int) -> list[str]:
        if host not in table:
            raise OSError(0, "Name or service not known")
        return table[host]

    return resolve


def test_config_check_accepts_names_that_resolve_to_loopback_only(tmp_path: Path) -> None:
    settings = _settings(tmp_path, "imap.test", "smtp.test")
    resolver = fake_resolver({"imap.test": ["127.0.0.1"], "smtp.test": ["::1", "127.0.0.2"]})
    assert plain_security_problems(settings, resolver) == []


def test_config_check_names_file_line_field_and_host(tmp_path: Path) -> None:
    settings = _settings(tmp_path, "mail.acme.example", "nowhere.test")
    resolver = fake_resolver({"mail.acme.example": ["127.0.0.1", "192.0.2.1"]})
    imap, smtp = (str(problem) for problem in plain_security_problems(settings, resolver))
    assert imap.startswith(f"{tmp_path / 'mailcrm.yaml'}:6:7: salespeople.0.imap.security: ")
    assert "mail.acme.example resolves to 192.0.2.1, which is not loopback" in imap
    assert "security: tls" in imap
    assert ":12:7: salespeople.0.smtp.security: " in smtp
    assert "cannot resolve nowhere.test: Name or service not known" in smtp


def test_config_check_resolves_with_the_real_resolver(tmp_path: Path) -> None:
    settings = _settings(tmp_path, "127.0.0.1", "192.0.2.1")
    (problem,) = plain_security_problems(settings)
    assert "salespeople.0.smtp.security" in str(problem) and "192.0.2.1 is not a loopback" in str(problem)

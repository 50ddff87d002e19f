"""`salespeople[].smtp.auth`: optional, one of three mechanisms, and only with a username."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from mailcrm.settings import SmtpAccount


def test_auth_defaults_to_what_the_server_offers() -> None:
    account = SmtpAccount(host="smtp.acme.example", username="alice@acme.example")
    assert account.auth is None


@pytest.mark.parametrize("auth", ["login", "plain", "xoauth2"])
def test_auth_takes_the_three_mechanisms(auth: str) -> None:
    account = SmtpAccount.model_validate(
        {"host": "smtp.acme.example", "username": "a@acme.example", "auth": auth}
    )
    assert account.auth == auth


def test_auth_needs_a_username() -> None:
    with pytest.raises(ValidationError, match="needs `username:`"):
        SmtpAccount.model_validate({"host": "smtp.acme.example", "auth": "xoauth2"})


def test_unknown_mechanism_is_refused() -> None:
    with pytest.raises(ValidationError):
        SmtpAccount.model_validate(
            {"host": "smtp.acme.example", "username": "a@acme.example", "auth": "cram-md5"}
        )

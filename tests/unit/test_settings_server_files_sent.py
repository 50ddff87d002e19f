"""`salespeople[].imap.server_files_sent`: off unless the provider files sent mail itself."""

from __future__ import annotations

from mailcrm.settings import ImapAccount


def test_server_files_sent_is_off_by_default() -> None:
    account = ImapAccount(host="imap.acme.example", username="alice@acme.example")
    assert account.server_files_sent is False


def test_server_files_sent_can_be_turned_on() -> None:
    data = {"host": "imap.gmail.com", "username": "alice@acme.example", "server_files_sent": True}
    assert ImapAccount.model_validate(data).server_files_sent is True

"""ImapClient against a real Dovecot (plain, STARTTLS and implicit TLS) and a scripted server.

The scripted server covers what Dovecot cannot be made to do on demand: a silent greeting,
a BYE greeting, a BYE during IDLE with the socket left open, multi-megabyte SEARCH
results and FETCH responses with thousands of lines in one read.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import email.utils
import itertools
import logging
import os
import re
import signal
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from servers.dovecot import TLS_SERVER_NAME, DovecotServer, ImapCredentials, _live_group_members

from mailcrm.errors import SecretError
from mailcrm.imap.client import ImapClient
from mailcrm.imap.errors import (
    ImapAuthError,
    ImapConnectionError,
    ImapError,
    ImapProtocolError,
    ImapTimeout,
)
from mailcrm.imap.params import ImapParams
from mailcrm.imap.parse import FetchedMessage
from mailcrm.settings import SecretRef

TEST_TIMEOUT = 30.0
_env_counter = itertools.count()

# A server without IDLE, SPECIAL-USE, CONDSTORE or UIDPLUS, and without a special-use Sent.
MINIMAL_SERVER = {"imap_capability": "IMAP4rev1", "namespace/inbox/mailbox/Sent/auto": "no"}


# -- helpers -------------------------------------------------------------------------------


def account_for(
    creds: ImapCredentials,
    monkeypatch: pytest.MonkeyPatch,
    *,
    password: str | None = None,
    **overrides: Any,
) -> ImapParams:
    """An account for ``creds`` whose password lives in a fresh environment variable."""
    variable = f"MAILCRM_TEST_IMAP_PASSWORD_{next(_env_counter)}"
    monkeypatch.setenv(variable, creds.password if password is None else password)
    values: dict[str, Any] = {
        "host": creds.host,
        "port": creds.port,
        "security": "plain",
        "username": creds.username,
        "timeout_seconds": 10.0,
    }
    values.update(overrides)
    return ImapParams(secret=SecretRef(password_env=variable), **values)


@contextlib.asynccontextmanager
async def connected(account: ImapParams, **kwargs: Any) -> AsyncIterator[ImapClient]:
    async with asyncio.timeout(TEST_TIMEOUT):
        client = await ImapClient.connect(account, **kwargs)
    try:
        yield client
    finally:
        async with asyncio.timeout(TEST_TIMEOUT):
            await client.close()


def make_message(index: int, size: int = 0) -> bytes:
    """A UTF-8 message with a unique Message-ID, padded to about ``size`` bytes."""
    message_id = email.utils.make_msgid(idstring=f"m{index}", domain="example.test")
    head = (
        f"From: Kunde {index} <kunde{index}@example.test>\r\n"
        "To: sales@example.test\r\n"
        f"Subject: Angebot Nr. {index} – Grüße aus Köln\r\n"
        f"Message-ID: {message_id}\r\n"
        "Date: Mon, 03 Jun 2024 10:00:00 +0200\r\n"
        "MIME-Version: 1.0\r\n"
        "Content-Type: text/plain; charset=utf-8\r\n"
        "Content-Transfer-Encoding: 8bit\r\n"
        "\r\n"
        f"Nachricht {index} (mit Klammern) und Ümläuten.\r\n"
    ).encode()
    line = b"x" * 76 + b"\r\n"
    missing = max(0, size - len(head))
    return head + line * (missing // len(line))


def message_id(raw: bytes) -> bytes:
    match = re.search(rb"^Message-ID: (\S+)\r$", raw, re.MULTILINE)
    assert match is not None, raw[:300]
    return match.group(1)


def deliver_all(
    server: DovecotServer, creds: ImapCredentials, raws: list[bytes], folder: str = "INBOX"
) -> None:
    """Deliver through doveadm, a few at a time (UID order is then not delivery order)."""
    with ThreadPoolExecutor(max_workers=4) as pool:
        list(pool.map(lambda raw: server.deliver(creds, raw, folder), raws))


async def collect(client: ImapClient, uids: list[int], **kwargs: Any) -> list[list[FetchedMessage]]:
    return [batch async for batch in client.fetch(uids, **kwargs)]


def imap_process(server: DovecotServer, username: str) -> int:
    """Pid of the Dovecot imap process serving ``username`` (it runs as that mail user)."""
    assert server.pid is not None
    for pid in _live_group_members(server.pid):
        with contextlib.suppress(OSError):
            title = Path(f"/proc/{pid}/cmdline").read_bytes()
            if b"/imap [" in title and f"[{username} ".encode() in title:
                return pid
    raise AssertionError(f"no imap process for {username}")


async def within(seconds: float, awaitable: Awaitable[Any]) -> Any:
    async with asyncio.timeout(seconds):
        return await awaitable


# -- login and capabilities ----------------------------------------------------------------


async def test_login_reads_capabilities(imap_user: ImapCredentials, monkeypatch: pytest.MonkeyPatch) -> None:
    async with connected(account_for(imap_user, monkeypatch)) as client:
        assert {"IMAP4REV1", "IDLE", "CONDSTORE", "UIDPLUS", "SPECIAL-USE"} <= client.capabilities
        assert client.has_idle
        assert client.has_condstore
        assert client.has_uidplus


async def test_authenticate_plain(imap_user: ImapCredentials, monkeypatch: pytest.MonkeyPatch) -> None:
    async with connected(account_for(imap_user, monkeypatch, auth="plain")) as client:
        assert "INBOX" in [folder.name for folder in await client.list_folders()]


async def test_password_with_quotes_and_non_ascii(
    dovecot: DovecotServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    dovecot.ensure_running()
    creds = dovecot.add_user(password='pä"ss\\wörd {3} *')
    for auth in ("login", "plain"):
        async with connected(account_for(creds, monkeypatch, auth=auth)) as client:
            assert client.has_idle


async def test_wrong_password_is_an_auth_error_naming_user_and_host(
    imap_user: ImapCredentials, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    wrong = "Wr0ng-Secret-Value"
    for auth in ("login", "plain"):
        account = account_for(imap_user, monkeypatch, password=wrong, auth=auth)
        with pytest.raises(ImapAuthError) as excinfo:
            await within(TEST_TIMEOUT, ImapClient.connect(account))
        message = str(excinfo.value)
        assert imap_user.username in message
        assert imap_user.host in message
        assert "AUTHENTICATIONFAILED" in message
        assert wrong not in message
        assert excinfo.value.retry_soon is False
    assert wrong not in caplog.text


async def test_xoauth2_with_token_provider(
    imap_user: ImapCredentials, monkeypatch: pytest.MonkeyPatch
) -> None:
    # This Dovecot checks an XOAUTH2 bearer token like a password.
    calls: list[ImapParams] = []

    async def provider(account: ImapParams) -> str:
        calls.append(account)
        return imap_user.password

    account = account_for(imap_user, monkeypatch, auth="xoauth2")
    async with connected(account, token_provider=provider) as client:
        assert client.has_idle
    assert calls == [account]

    async def bad_provider(account: ImapParams) -> str:
        return "expired-token-value"

    with pytest.raises(ImapAuthError) as excinfo:
        await within(TEST_TIMEOUT, ImapClient.connect(account, token_provider=bad_provider))
    assert imap_user.username in str(excinfo.value)
    assert "expired-token-value" not in str(excinfo.value)
    assert '"status":"401"' in str(excinfo.value)


async def test_xoauth2_without_a_provider_uses_the_accounts_secret_as_the_token(
    imap_user: ImapCredentials, monkeypatch: pytest.MonkeyPatch
) -> None:
    # What `mailcrm run` does: the access token is the account's password_env/password_file.
    async with connected(account_for(imap_user, monkeypatch, auth="xoauth2")) as client:
        assert client.has_idle
    account = dataclasses.replace(account_for(imap_user, monkeypatch, auth="xoauth2"), secret=SecretRef())
    with pytest.raises(ImapAuthError, match="has no access token"):
        await ImapClient.connect(account)


async def test_missing_password_is_reported_before_connecting(imap_user: ImapCredentials) -> None:
    account = ImapParams(
        host=imap_user.host,
        port=imap_user.port,
        security="plain",
        username=imap_user.username,
        secret=SecretRef(password_env="MAILCRM_TEST_IMAP_UNSET_VARIABLE"),
    )
    with pytest.raises(SecretError, match="MAILCRM_TEST_IMAP_UNSET_VARIABLE"):
        await ImapClient.connect(account)


async def test_connection_refused_names_host_and_port(monkeypatch: pytest.MonkeyPatch) -> None:
    server = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    server.close()
    await server.wait_closed()
    creds = ImapCredentials("nobody", "x", "127.0.0.1", port, 0, Path("/nonexistent"))
    with pytest.raises(ImapConnectionError) as excinfo:
        await within(TEST_TIMEOUT, ImapClient.connect(account_for(creds, monkeypatch)))
    assert f"127.0.0.1:{port}" in str(excinfo.value)
    assert "refused" in str(excinfo.value)
    assert excinfo.value.retry_soon


# -- folders -------------------------------------------------------------------------------


async def test_sent_folder_found_by_special_use(
    imap_user: ImapCredentials, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with connected(account_for(imap_user, monkeypatch)) as client:
        folders = {folder.name: folder for folder in await client.list_folders()}
        assert folders["Sent"].special_use == "\\Sent"
        assert folders["Drafts"].special_use == "\\Drafts"
        assert folders["INBOX"].special_use is None
        assert folders["INBOX"].delimiter == "/"
        assert await client.sent_folder() == "Sent"


async def test_sent_folder_falls_back_to_well_known_name(
    dovecot: DovecotServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    dovecot.ensure_running()
    creds = dovecot.add_user(settings=MINIMAL_SERVER)
    dovecot.create_folder(creds, "Sent Items")
    async with connected(account_for(creds, monkeypatch)) as client:
        assert "SPECIAL-USE" not in client.capabilities
        names = [folder.name for folder in await client.list_folders()]
        assert "Sent" not in names
        assert await client.sent_folder() == "Sent Items"


async def test_folder_names_with_unicode_quotes_and_stars(
    dovecot: DovecotServer, imap_user: ImapCredentials, monkeypatch: pytest.MonkeyPatch
) -> None:
    names = ["Entwürfe/Angebote 2024", "日本語", 'Quote "me"', "Q1 * 2024", "Tom & Jerry"]
    for name in names:
        dovecot.create_folder(imap_user, name)
    dovecot.deliver(imap_user, make_message(1), folder="日本語")
    async with connected(account_for(imap_user, monkeypatch)) as client:
        listed = {folder.name for folder in await client.list_folders()}
        assert set(names) <= listed
        assert "Entwürfe" in listed
        for name in names:
            status = await client.select(name)
            assert status.exists == (1 if name == "日本語" else 0)
        with pytest.raises(ImapProtocolError) as excinfo:
            await client.select("Does not exist")
        assert "Does not exist" in str(excinfo.value)
        assert client.selected is None
        with pytest.raises(ImapProtocolError, match="select"):
            await client.uids_from(1)


# -- select, search, fetch -----------------------------------------------------------------


async def test_select_reports_status(
    dovecot: DovecotServer, imap_user: ImapCredentials, monkeypatch: pytest.MonkeyPatch
) -> None:
    for index in range(3):
        dovecot.deliver(imap_user, make_message(index))
    async with connected(account_for(imap_user, monkeypatch)) as client:
        status = await client.select("INBOX")
        assert status.exists == 3
        assert status.uidnext == 4
        assert status.uidvalidity > 0
        assert status.highestmodseq is not None and status.highestmodseq > 0
        again = await client.select("INBOX", readonly=False)
        assert again.uidvalidity == status.uidvalidity
        assert client.selected == "INBOX"


async def test_select_without_condstore(dovecot: DovecotServer, monkeypatch: pytest.MonkeyPatch) -> None:
    dovecot.ensure_running()
    creds = dovecot.add_user(settings=MINIMAL_SERVER)
    dovecot.deliver(creds, make_message(1))
    async with connected(account_for(creds, monkeypatch)) as client:
        assert not client.has_condstore
        status = await client.select("INBOX")
        assert status.exists == 1
        [[message]] = await collect(client, await client.uids_from(1))
        assert message.modseq is None
        with pytest.raises(ImapProtocolError, match="CONDSTORE"):
            await client.flag_changes(0)


async def test_uids_from_filters_the_highest_uid_below_the_start(
    dovecot: DovecotServer, imap_user: ImapCredentials, monkeypatch: pytest.MonkeyPatch
) -> None:
    for index in range(3):
        dovecot.deliver(imap_user, make_message(index))
    async with connected(account_for(imap_user, monkeypatch)) as client:
        await client.select("INBOX")
        assert await client.uids_from(1) == [1, 2, 3]
        assert await client.uids_from(0) == [1, 2, 3]
        assert await client.uids_from(3) == [3]
        # The server answers "UID SEARCH UID 4:*" with UID 3.
        assert await client.uids_from(4) == []
        assert await client.uids_from(10_000) == []


async def test_fetch_many_messages_in_bounded_batches_without_marking_seen(
    dovecot: DovecotServer, imap_user: ImapCredentials, monkeypatch: pytest.MonkeyPatch
) -> None:
    raws = [make_message(index, 200_000 if index % 10 == 0 else 0) for index in range(300)]
    deliver_all(dovecot, imap_user, raws)
    by_id = {message_id(raw): raw for raw in raws}
    max_bytes, max_count = 1_000_000, 50
    async with connected(account_for(imap_user, monkeypatch)) as client:
        await client.select("INBOX")
        uids = await client.uids_from(1)
        assert uids == list(range(1, 301))
        started = time.monotonic()
        batches = await collect(client, uids, max_bytes=max_bytes, max_count=max_count)
        elapsed = time.monotonic() - started
        fetched = [message for batch in batches for message in batch]
        assert [message.uid for message in fetched] == uids
        for batch in batches:
            assert 1 <= len(batch) <= max_count
            assert sum(message.size for message in batch) <= max_bytes
        for message in fetched:
            assert message.raw == by_id[message_id(message.raw)]
            assert message.size == len(message.raw)
            assert "\\Seen" not in message.flags
            assert message.internaldate is not None and message.internaldate.tzinfo is not None
            assert message.modseq is not None
        assert len({message_id(message.raw) for message in fetched}) == 300
        # BODY.PEEK[] left every message unread for the salesperson.
        assert all("\\Seen" not in update.flags for update in await client.flag_changes(0))
        # Batches are filled greedily: each stops only where the next message breaks a bound.
        for batch, following in itertools.pairwise(batches):
            total = sum(message.size for message in batch)
            assert len(batch) == max_count or total + following[0].size > max_bytes
        assert elapsed < 20, elapsed
    print(f"fetched 300 messages ({sum(map(len, raws)) / 1e6:.1f} MB) in {elapsed:.2f}s")


async def test_fetch_single_message_bigger_than_the_byte_bound(
    dovecot: DovecotServer, imap_user: ImapCredentials, monkeypatch: pytest.MonkeyPatch
) -> None:
    raws = [make_message(0), make_message(1, 300_000), make_message(2)]
    for raw in raws:
        dovecot.deliver(imap_user, raw)
    async with connected(account_for(imap_user, monkeypatch)) as client:
        await client.select("INBOX")
        batches = await collect(client, [3, 1, 2, 2, 99], max_bytes=100_000)
        assert [[message.uid for message in batch] for batch in batches] == [[1], [2], [3]]
        assert [batch[0].raw for batch in batches] == raws
        assert await collect(client, []) == []


async def test_flag_changes_since_modseq(
    dovecot: DovecotServer, imap_user: ImapCredentials, monkeypatch: pytest.MonkeyPatch
) -> None:
    for index in range(2):
        dovecot.deliver(imap_user, make_message(index))
    async with connected(account_for(imap_user, monkeypatch)) as client:
        status = await client.select("INBOX")
        assert status.highestmodseq is not None
        assert await client.flag_changes(status.highestmodseq) == []
        dovecot.doveadm("flags", "add", "-u", imap_user.username, "\\Flagged", "mailbox", "INBOX", "uid", "2")
        [update] = await client.flag_changes(status.highestmodseq)
        assert update.uid == 2
        assert "\\Flagged" in update.flags
        assert update.modseq is not None and update.modseq > status.highestmodseq


async def test_changes_since_reports_flags_and_vanished_uids_in_one_fetch(
    dovecot: DovecotServer, imap_user: ImapCredentials, monkeypatch: pytest.MonkeyPatch
) -> None:
    for index in range(5):
        dovecot.deliver(imap_user, make_message(index))
    async with connected(account_for(imap_user, monkeypatch)) as client:
        assert client.qresync_enabled
        status = await client.select("INBOX")
        assert status.highestmodseq is not None
        user = imap_user.username
        dovecot.doveadm("flags", "add", "-u", user, "\\Seen", "mailbox", "INBOX", "uid", "1")
        dovecot.doveadm("expunge", "-u", user, "mailbox", "INBOX", "uid", "2:3")
        changes = await client.changes_since(status.highestmodseq, 5)
        assert [(u.uid, "\\Seen" in u.flags) for u in changes.flags] == [(1, True)]
        assert changes.vanished is not None
        gone = {uid for low, high in changes.vanished for uid in range(low, high + 1)}
        assert gone & {1, 2, 3, 4, 5} == {2, 3}
        # Still usable afterwards.
        assert await client.uids_upto(5) == [1, 4, 5]


# -- append --------------------------------------------------------------------------------


async def test_append_returns_the_new_uid(
    imap_user: ImapCredentials, monkeypatch: pytest.MonkeyPatch
) -> None:
    raw = make_message(7)
    async with connected(account_for(imap_user, monkeypatch)) as client:
        sent = await client.sent_folder()
        assert sent is not None
        first = await client.append(sent, raw)
        second = await client.append(sent, make_message(8), flags=())
        assert first is not None and second == first + 1
        await client.select(sent)
        [batch] = await collect(client, [first, second])
        assert batch[0].raw == raw
        assert "\\Seen" in batch[0].flags
        assert "\\Seen" not in batch[1].flags
        with pytest.raises(ImapProtocolError) as excinfo:
            await client.append("No such folder", raw)
        assert "TRYCREATE" in str(excinfo.value)
        assert excinfo.value.hint is not None and "does not exist" in excinfo.value.hint
        with pytest.raises(ValueError, match="flag"):
            await client.append(sent, raw, flags=("\\Seen) (x",))


# -- waiting for changes -------------------------------------------------------------------


async def test_idle_returns_true_soon_after_delivery(
    dovecot: DovecotServer, imap_user: ImapCredentials, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with connected(account_for(imap_user, monkeypatch)) as client:
        await client.select("INBOX")
        waiting = asyncio.create_task(client.wait_for_changes(30))
        await asyncio.sleep(0.3)
        assert not waiting.done()
        await asyncio.to_thread(dovecot.deliver, imap_user, make_message(1))
        delivered = time.monotonic()
        assert await within(2.0, waiting) is True
        latency = time.monotonic() - delivered
        assert await client.uids_from(1) == [1]
    print(f"IDLE push arrived {latency:.3f}s after delivery")


async def test_idle_reports_changes_announced_before_it_started(
    dovecot: DovecotServer, imap_user: ImapCredentials, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with connected(account_for(imap_user, monkeypatch)) as client:
        await client.select("INBOX")
        dovecot.deliver(imap_user, make_message(1))
        assert await within(5.0, client.wait_for_changes(3)) is True


async def test_idle_without_changes_returns_false_and_renews(
    imap_user: ImapCredentials, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="mailcrm.imap")
    async with connected(account_for(imap_user, monkeypatch), idle_renew=0.3) as client:
        await client.select("INBOX")
        started = time.monotonic()
        assert await within(5.0, client.wait_for_changes(1.0)) is False
        elapsed = time.monotonic() - started
        assert 0.95 <= elapsed < 2.5, elapsed
        starts = [record for record in caplog.records if record.getMessage().startswith("IMAP IDLE started")]
        assert len(starts) >= 3
        # The connection is still in a clean state after the renewals.
        assert await client.uids_from(1) == []


async def test_cancelled_wait_leaves_the_connection_usable(
    dovecot: DovecotServer, imap_user: ImapCredentials, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with connected(account_for(imap_user, monkeypatch)) as client:
        await client.select("INBOX")
        waiting = asyncio.create_task(client.wait_for_changes(30))
        await asyncio.sleep(0.3)
        waiting.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiting
        dovecot.deliver(imap_user, make_message(1))
        # SEARCH sees the session's view; new mail joins it at the next sync point.
        await within(10, client.select("INBOX"))
        assert await within(10, client.uids_from(1)) == [1]
        assert await within(10, client.wait_for_changes(0.2)) is False


async def test_close_while_another_task_waits(
    imap_user: ImapCredentials, monkeypatch: pytest.MonkeyPatch
) -> None:
    client = await within(TEST_TIMEOUT, ImapClient.connect(account_for(imap_user, monkeypatch)))
    await client.select("INBOX")
    waiting = asyncio.create_task(client.wait_for_changes(30))
    await asyncio.sleep(0.3)
    started = time.monotonic()
    await within(5, client.close())
    assert time.monotonic() - started < 1
    with pytest.raises(ImapConnectionError):
        await within(5, waiting)


async def test_polling_when_the_server_has_no_idle(
    dovecot: DovecotServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    dovecot.ensure_running()
    creds = dovecot.add_user(settings=MINIMAL_SERVER)
    async with connected(account_for(creds, monkeypatch), poll_interval=0.2) as client:
        assert not client.has_idle
        await client.select("INBOX")
        started = time.monotonic()
        assert await within(5.0, client.wait_for_changes(0.5)) is False
        assert time.monotonic() - started >= 0.45
        waiting = asyncio.create_task(client.wait_for_changes(30))
        await asyncio.sleep(0.3)
        await asyncio.to_thread(dovecot.deliver, creds, make_message(1))
        assert await within(2.0, waiting) is True


async def test_wait_needs_a_selected_folder(
    imap_user: ImapCredentials, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with connected(account_for(imap_user, monkeypatch)) as client:
        with pytest.raises(ImapProtocolError, match="select"):
            await client.wait_for_changes(1)


# -- failures ------------------------------------------------------------------------------


async def test_server_killed_during_idle_fails_fast(
    dovecot: DovecotServer, imap_user: ImapCredentials, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with connected(account_for(imap_user, monkeypatch, timeout_seconds=20)) as client:
        await client.select("INBOX")
        waiting = asyncio.create_task(client.wait_for_changes(60))
        await asyncio.sleep(0.5)
        await asyncio.to_thread(dovecot.kill)
        killed = time.monotonic()
        with pytest.raises(ImapConnectionError) as excinfo:
            await within(5.0, waiting)
        assert time.monotonic() - killed < 2.0
        assert f"{imap_user.host}:{imap_user.port}" in str(excinfo.value)
        # The client stays failed: the caller reconnects.
        with pytest.raises(ImapConnectionError, match="reconnect"):
            await client.uids_from(1)


async def test_server_stopped_during_idle_reports_bye(
    dovecot: DovecotServer, imap_user: ImapCredentials, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with connected(account_for(imap_user, monkeypatch, timeout_seconds=20)) as client:
        await client.select("INBOX")
        waiting = asyncio.create_task(client.wait_for_changes(60))
        await asyncio.sleep(0.3)
        stopping = asyncio.create_task(asyncio.to_thread(dovecot.stop))
        with pytest.raises(ImapConnectionError, match="BYE"):
            await within(10.0, waiting)
        await stopping


async def test_server_killed_during_fetch_fails_fast(
    dovecot: DovecotServer, imap_user: ImapCredentials, monkeypatch: pytest.MonkeyPatch
) -> None:
    deliver_all(dovecot, imap_user, [make_message(index, 1_000_000) for index in range(40)])
    async with connected(account_for(imap_user, monkeypatch, timeout_seconds=20)) as client:
        await client.select("INBOX")
        uids = await client.uids_from(1)
        received: list[int] = []

        async def consume() -> None:
            async for batch in client.fetch(uids, max_bytes=64 * 2**20):
                received.extend(message.uid for message in batch)

        before = client.bytes_received
        fetching = asyncio.create_task(consume())
        async with asyncio.timeout(10):
            # A counter, not an event: poll it between reads of the response.
            while client.bytes_received < before + 2_000_000:  # noqa: ASYNC110
                await asyncio.sleep(0.005)
        assert not fetching.done()
        assert dovecot.pid is not None
        os.killpg(dovecot.pid, signal.SIGKILL)
        killed = time.monotonic()
        with pytest.raises(ImapConnectionError) as excinfo:
            await within(5.0, fetching)
        assert time.monotonic() - killed < 2.0
        assert "FETCH" in str(excinfo.value)
        assert received == []
        dovecot.kill()


async def test_stalled_server_raises_timeout(
    dovecot: DovecotServer, imap_user: ImapCredentials, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with connected(account_for(imap_user, monkeypatch, timeout_seconds=1.0)) as client:
        await client.select("INBOX")
        pid = imap_process(dovecot, imap_user.username)
        os.kill(pid, signal.SIGSTOP)
        try:
            started = time.monotonic()
            with pytest.raises(ImapTimeout) as excinfo:
                await within(5.0, client.uids_from(1))
            assert 0.9 <= time.monotonic() - started < 3.0
            assert "UID SEARCH" in str(excinfo.value)
            assert excinfo.value.retry_soon
            with pytest.raises(ImapConnectionError):
                await client.uids_from(1)
        finally:
            os.kill(pid, signal.SIGCONT)


async def test_closed_client_refuses_commands(
    imap_user: ImapCredentials, monkeypatch: pytest.MonkeyPatch
) -> None:
    client = await within(TEST_TIMEOUT, ImapClient.connect(account_for(imap_user, monkeypatch)))
    await client.close()
    await client.close()
    with pytest.raises(ImapConnectionError, match="closed"):
        await client.list_folders()


# -- TLS -----------------------------------------------------------------------------------


def tls_account(
    creds: ImapCredentials, monkeypatch: pytest.MonkeyPatch, ca_file: Path | None, **overrides: Any
) -> ImapParams:
    settings: dict[str, Any] = {
        "host": TLS_SERVER_NAME,
        "port": creds.tls_port,
        "security": "tls",
        "ca_file": ca_file,
    }
    settings.update(overrides)
    return account_for(creds, monkeypatch, **settings)


async def test_implicit_tls_with_trusted_ca(
    dovecot_tls: DovecotServer,
    tls_imap_user: ImapCredentials,
    tls_ca_file: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    dovecot_tls.deliver(tls_imap_user, make_message(1))
    async with connected(tls_account(tls_imap_user, monkeypatch, tls_ca_file)) as client:
        assert "STARTTLS" not in client.capabilities
        await client.select("INBOX")
        [[message]] = await collect(client, await client.uids_from(1))
        assert b"Angebot Nr. 1" in message.raw


async def test_implicit_tls_rejects_an_untrusted_certificate(
    tls_imap_user: ImapCredentials, monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(ImapConnectionError) as excinfo:
        await within(TEST_TIMEOUT, ImapClient.connect(tls_account(tls_imap_user, monkeypatch, None)))
    error = excinfo.value
    assert "certificate verify failed" in str(error)
    assert f"{TLS_SERVER_NAME}:{tls_imap_user.tls_port}" in str(error)
    assert error.hint is not None and "ca_file" in error.hint


async def test_implicit_tls_rejects_a_hostname_mismatch(
    tls_imap_user: ImapCredentials, tls_ca_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    account = tls_account(tls_imap_user, monkeypatch, tls_ca_file, host="127.0.0.1")
    with pytest.raises(ImapConnectionError, match="mismatch") as excinfo:
        await within(TEST_TIMEOUT, ImapClient.connect(account))
    assert excinfo.value.hint is not None and "host name" in excinfo.value.hint


async def test_starttls(
    tls_imap_user: ImapCredentials, tls_ca_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    account = tls_account(
        tls_imap_user, monkeypatch, tls_ca_file, port=tls_imap_user.port, security="starttls", auth="plain"
    )
    async with connected(account) as client:
        assert client.has_idle
        assert await client.sent_folder() == "Sent"
    untrusted = tls_account(tls_imap_user, monkeypatch, None, port=tls_imap_user.port, security="starttls")
    with pytest.raises(ImapConnectionError, match="certificate verify failed"):
        await within(TEST_TIMEOUT, ImapClient.connect(untrusted))


async def test_starttls_is_required_when_configured(
    imap_user: ImapCredentials, tls_ca_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    account = account_for(imap_user, monkeypatch, security="starttls", ca_file=tls_ca_file)
    with pytest.raises(ImapConnectionError, match="does not offer STARTTLS"):
        await within(TEST_TIMEOUT, ImapClient.connect(account))


async def test_tls_against_a_plain_port_fails_clearly(
    tls_imap_user: ImapCredentials, tls_ca_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    account = tls_account(tls_imap_user, monkeypatch, tls_ca_file, port=tls_imap_user.port)
    with pytest.raises(ImapConnectionError, match="TLS handshake") as excinfo:
        await within(TEST_TIMEOUT, ImapClient.connect(account, connect_timeout=5))
    assert excinfo.value.hint is not None and "security" in excinfo.value.hint


async def test_unreadable_ca_file(
    tls_imap_user: ImapCredentials, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    account = tls_account(tls_imap_user, monkeypatch, tmp_path / "missing.pem")
    with pytest.raises(ImapConnectionError, match="ca_file"):
        await ImapClient.connect(account)


# -- scripted server -----------------------------------------------------------------------

Handler = Callable[[str, str, "ScriptedConnection"], Awaitable[None]]


class ScriptedConnection:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    async def send(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()


class ScriptedServer:
    """A loopback IMAP server that greets as told and answers commands through ``handler``."""

    def __init__(self, greeting: bytes | None, handler: Handler | None = None) -> None:
        self.greeting = greeting
        self.handler = handler
        self.commands: list[str] = []
        self.port = 0
        self._server: asyncio.Server | None = None
        self._connections: set[asyncio.Task[Any]] = set()

    async def __aenter__(self) -> ScriptedServer:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        # Let every connection handler finish before the test's event loop goes away.
        if self._connections:
            await asyncio.wait(self._connections, timeout=5)
        for task in self._connections:
            task.cancel()

    def account(self, monkeypatch: pytest.MonkeyPatch, **overrides: Any) -> ImapParams:
        creds = ImapCredentials("scripted", "secret", "127.0.0.1", self.port, 0, Path("/nonexistent"))
        return account_for(creds, monkeypatch, **overrides)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        conn = ScriptedConnection(reader, writer)
        task = asyncio.current_task()
        assert task is not None
        self._connections.add(task)
        try:
            if self.greeting is None:
                await reader.read()  # never greet
                return
            await conn.send(self.greeting)
            if self.greeting.startswith(b"* BYE"):
                return
            while line := await reader.readline():
                tag, _, command = line.decode().rstrip("\r\n").partition(" ")
                self.commands.append(command)
                if literal := re.search(r"\{(\d+)\}$", command):
                    await conn.send(b"+ go ahead\r\n")
                    await reader.readexactly(int(literal.group(1)) + 2)
                await self._answer(tag, command, conn)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    async def _answer(self, tag: str, command: str, conn: ScriptedConnection) -> None:
        verb = command.split(" ")[0].upper()
        if verb == "CAPABILITY":
            caps = "IMAP4rev1 IDLE CONDSTORE AUTH=PLAIN"
            await conn.send(f"* CAPABILITY {caps}\r\n{tag} OK done\r\n".encode())
        elif verb == "LOGIN":
            await conn.send(f"{tag} OK logged in\r\n".encode())
        elif verb == "EXAMINE":
            await conn.send(
                f"* 5 EXISTS\r\n* OK [UIDVALIDITY 7] ok\r\n* OK [UIDNEXT 6] ok\r\n{tag} OK done\r\n".encode()
            )
        elif verb == "APPEND":
            await conn.send(f"{tag} OK appended\r\n".encode())
        elif verb == "LOGOUT":
            await conn.send(f"* BYE bye\r\n{tag} OK done\r\n".encode())
        elif self.handler is not None:
            await self.handler(tag, command, conn)
        else:
            await conn.send(f"{tag} BAD unknown\r\n".encode())


async def test_greeting_timeout(monkeypatch: pytest.MonkeyPatch) -> None:
    async with ScriptedServer(greeting=None) as server:
        started = time.monotonic()
        with pytest.raises(ImapTimeout, match="greeting") as excinfo:
            await within(5, ImapClient.connect(server.account(monkeypatch), connect_timeout=0.5))
        assert time.monotonic() - started < 2
        assert f"127.0.0.1:{server.port}" in str(excinfo.value)


async def test_bye_greeting(monkeypatch: pytest.MonkeyPatch) -> None:
    async with ScriptedServer(greeting=b"* BYE Too many connections from your IP\r\n") as server:
        with pytest.raises(ImapConnectionError, match="Too many connections"):
            await within(5, ImapClient.connect(server.account(monkeypatch), connect_timeout=3))


async def test_login_sends_the_password_as_a_literal(monkeypatch: pytest.MonkeyPatch) -> None:
    async with ScriptedServer(greeting=b"* OK ready\r\n") as server:
        async with connected(server.account(monkeypatch)):
            pass
        login = next(command for command in server.commands if command.startswith("LOGIN"))
        assert "secret" not in login
        assert login == 'LOGIN "scripted" {6}'


async def test_bye_during_idle_without_close_fails_fast(monkeypatch: pytest.MonkeyPatch) -> None:
    async def handler(tag: str, command: str, conn: ScriptedConnection) -> None:
        if command == "IDLE":
            await conn.send(b"+ idling\r\n")
            await asyncio.sleep(0.3)
            # aioimaplib issue #110: the server leaves, the socket stays open.
            await conn.send(b"* BYE Server shutting down.\r\n")

    async with (
        ScriptedServer(b"* OK ready\r\n", handler) as server,
        connected(server.account(monkeypatch, timeout_seconds=30)) as client,
    ):
        await client.select("INBOX")
        started = time.monotonic()
        with pytest.raises(ImapConnectionError, match="Server shutting down"):
            await within(5, client.wait_for_changes(60))
        assert time.monotonic() - started < 2


async def test_huge_search_and_fetch_responses(monkeypatch: pytest.MonkeyPatch) -> None:
    count = 200_000

    async def handler(tag: str, command: str, conn: ScriptedConnection) -> None:
        if command.startswith("UID SEARCH"):
            numbers = " ".join(str(uid) for uid in range(1, count + 1))
            await conn.send(f"* SEARCH {numbers}\r\n{tag} OK done\r\n".encode())
        elif command.startswith("UID FETCH") and "CHANGEDSINCE" in command:
            # Thousands of lines in one read: aioimaplib recursed once per line here.
            lines = "".join(
                f"* {uid} FETCH (UID {uid} FLAGS (\\Seen) MODSEQ (9))\r\n" for uid in range(1, 5001)
            )
            await conn.send(f"{lines}{tag} OK done\r\n".encode())
        elif command.startswith("UID FETCH") and "RFC822.SIZE" in command and "BODY" not in command:
            lines = "".join(f"* {uid} FETCH (UID {uid} RFC822.SIZE 100)\r\n" for uid in range(1, 501))
            await conn.send(f"{lines}{tag} OK done\r\n".encode())
        elif command.startswith("UID FETCH"):
            body = b"Subject: x\r\n\r\n" + b"y" * 84 + b"\r\n"
            chunks = [
                f"* {uid} FETCH (UID {uid} RFC822.SIZE 100 FLAGS (\\Seen) BODY[] {{100}}\r\n".encode()
                + body
                + b")\r\n"
                for uid in range(1, 501)
            ]
            await conn.send(b"".join(chunks) + f"{tag} OK done\r\n".encode())
        else:
            await conn.send(f"{tag} BAD unknown\r\n".encode())

    async with (
        ScriptedServer(b"* OK ready\r\n", handler) as server,
        connected(server.account(monkeypatch)) as client,
    ):
        await client.select("INBOX")
        started = time.monotonic()
        uids = await within(10, client.uids_from(1))
        assert len(uids) == count
        assert uids[-1] == count
        batches = await within(20, collect(client, uids[:500], max_bytes=10**9, max_count=1000))
        assert [message.uid for message in batches[0]] == list(range(1, 501))
        updates = await within(10, client.flag_changes(0))
        assert [update.uid for update in updates] == list(range(1, 5001))
        assert time.monotonic() - started < 5
        assert await client.append("INBOX", b"Subject: x\r\n\r\n") is None


@pytest.fixture(autouse=True)
def _servers_running_after(request: pytest.FixtureRequest) -> Iterator[None]:
    """Tests here kill and stop the shared servers; bring them back for later tests."""
    yield
    for name in ("dovecot", "dovecot_tls"):
        if name in request.fixturenames:
            server = request.getfixturevalue(name)
            with contextlib.suppress(Exception):
                server.ensure_running()


def test_error_hierarchy() -> None:
    from mailcrm.errors import MailcrmError

    for error in (ImapAuthError, ImapConnectionError, ImapTimeout, ImapProtocolError):
        assert issubclass(error, ImapError)
        assert issubclass(error, MailcrmError)

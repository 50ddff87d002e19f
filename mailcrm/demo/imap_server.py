"""A real IMAP server inside `mailcrm demo`: pymap's in-memory backend on 127.0.0.1.

The demo syncs over IMAP so a new user sees exactly what `mailcrm sync` does with a
real mailbox, with nothing to install or configure. The server runs in the demo's own
event loop (no child process to leave behind), listens on loopback only, on a port the
system picks, and accepts one login per salesperson with a password made for this run.
Mailboxes live in memory: stopping the server leaves nothing behind.

The listening socket is bound when the object is created, so its port can be written
into the demo configuration before the server starts serving.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import socket
from argparse import Namespace
from collections.abc import Iterable
from importlib.metadata import PackageNotFoundError, version
from uuid import uuid4

from proxyprotocol.sock import SocketInfo
from pymap.backend.dict import Config, DictBackend, Identity, Login
from pymap.backend.dict.filter import FilterSet
from pymap.backend.dict.mailbox import MailboxSet
from pymap.concurrent import Subsystem
from pymap.imap import IMAPServer
from pymap.parsing.message import AppendMessage
from pymap.parsing.specials.flag import Flag, Seen
from pymap.user import UserMetadata
from pysasl.hashing import Cleartext

from mailcrm.demo.mailbox import INBOX, DemoMail

HOST = "127.0.0.1"
STOP_TIMEOUT = 5.0


def server_version() -> str:
    """`pymap <version>`, for the demo's report."""
    try:
        return f"pymap {version('pymap')}"
    except PackageNotFoundError:
        return "pymap"


class _DemoConfig(Config):
    """pymap's dict-backend settings with a fixed greeting.

    The stock greeting calls `socket.getfqdn()`, a DNS lookup that can stall on a
    machine without network.
    """

    @property
    def greeting(self) -> bytes:
        return b"mailcrm demo IMAP server ready"


def _config(host: str, port: int) -> _DemoConfig:
    # No TLS on loopback (the client is told `security: plain`), passwords compared in
    # clear (they are random, in memory and live only as long as this process), crypto
    # work on the event loop (no thread pool to shut down), no delay for unknown users.
    return _DemoConfig(
        Namespace(passlib_cfg=None, proxy_protocol=None),
        host=host,
        port=port,
        demo_data=False,
        demo_user="",
        demo_password="",
        tls_enabled=False,
        hash_context=Cleartext(),
        cpu_subsystem=Subsystem.for_asyncio(),
        invalid_user_sleep=0.0,
        reject_dnsbl=False,
    )


class DemoImapServer:
    """An in-memory IMAP server on loopback, loaded with the demo mailboxes."""

    def __init__(self, host: str = HOST) -> None:
        self.host = host
        self._socket: socket.socket | None = socket.create_server((host, 0))
        self.port: int = self._socket.getsockname()[1]
        self._passwords: dict[str, str] = {}
        self._config = _config(host, self.port)
        self._login = Login(self._config)
        self._backend = DictBackend(self._login, self._config)
        self._server: asyncio.Server | None = None
        self._connections: set[asyncio.Task[None]] = set()

    def add_login(self, username: str) -> str:
        """Create a login with a fresh random password; returns that password."""
        password = secrets.token_urlsafe(24)
        self._passwords[username] = password
        return password

    def login(self, username: str) -> str:
        """The password of `username`, made on first use: the sync and, with `--serve`, the
        daemon and the user all log in with the same one."""
        return self._passwords.get(username) or self.add_login(username)

    async def _ensure_user(self, username: str) -> MailboxSet:
        cached = self._config.set_cache.get(username)
        if cached is not None:
            return cached[0]
        password = self.login(username)
        identity = Identity(username, self._login, None, frozenset())
        await identity.set(UserMetadata(self._config, username, password=password))
        boxes = MailboxSet()
        self._config.set_cache[username] = (boxes, FilterSet())
        return boxes

    async def deliver(self, mail: DemoMail) -> None:
        """Put one message into its mailbox and folder, as a mail server delivering it would."""
        boxes = await self._ensure_user(mail.mailbox)
        if mail.folder.upper() != INBOX:
            with contextlib.suppress(ValueError):  # the folder exists already
                await boxes.add_mailbox(mail.folder)
        folder = await boxes.get_mailbox(mail.folder)
        flags: frozenset[Flag] = frozenset({Seen}) if mail.seen else frozenset()
        await folder.append(AppendMessage(mail.raw, mail.when, flags), recent=not mail.seen)

    async def start(self, mail: Iterable[DemoMail] = ()) -> None:
        """Load `mail` (and a login for each password made so far), then accept connections."""
        for username in list(self._passwords):
            await self._ensure_user(username)
        for message in mail:
            await self.deliver(message)
        if self._socket is None:
            raise RuntimeError("the demo IMAP server was stopped and cannot start again")
        self._server = await asyncio.start_server(self._connection, sock=self._socket)
        self._socket = None  # owned by the asyncio server from here on

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._connections.add(task)
        try:
            info = SocketInfo.get(writer, None, unique_id=uuid4().bytes)
            await IMAPServer(self._backend.login, self._config)(reader, writer, info)
        finally:
            if task is not None:
                self._connections.discard(task)

    async def stop(self) -> None:
        """Stop listening and end any open session; bounded by STOP_TIMEOUT seconds."""
        server, self._server = self._server, None
        if server is not None:
            server.close()
        for task in list(self._connections):
            task.cancel()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(STOP_TIMEOUT):
                await asyncio.gather(*self._connections, return_exceptions=True)
                if server is not None:
                    await server.wait_closed()
        self.close()

    def close(self) -> None:
        """Release the port of a server that never started (stop() does this otherwise)."""
        if self._socket is not None:
            self._socket.close()
            self._socket = None

    def __enter__(self) -> DemoImapServer:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

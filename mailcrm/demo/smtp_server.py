"""A real SMTP server inside `mailcrm demo`: aiosmtpd on 127.0.0.1, every message kept as a file.

The demo sends its planned emails through the same Sender, SMTP pool and MIME builder
as `mailcrm run`, so what lands in `sent/0001.eml` is byte for byte what a customer's
mail server would receive. Like the demo's IMAP server it runs in the demo's own event
loop (no thread or child process to leave behind), listens on loopback only, on a port
the system picks, and relays nothing: every message stops here.

The listening socket is bound when the object is created, so its port can be written
into the demo configuration before the server starts serving.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from aiosmtpd.smtp import SMTP, Envelope, Session

HOST = "127.0.0.1"
STOP_TIMEOUT = 5.0
MAX_MESSAGES = 10_000  # a demo sends a few dozen; refuse (452) rather than fill the disk


def server_version() -> str:
    """`aiosmtpd <version>`, for the demo's report."""
    try:
        return f"aiosmtpd {version('aiosmtpd')}"
    except PackageNotFoundError:
        return "aiosmtpd"


@dataclass(frozen=True)
class CapturedMessage:
    """One message the server accepted: where it was written and its envelope."""

    path: Path
    mail_from: str
    rcpt_tos: tuple[str, ...]


class _Capture:
    """aiosmtpd handler: writes each message to `directory/NNNN.eml` and remembers it."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.messages: list[CapturedMessage] = []

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        if len(self.messages) >= MAX_MESSAGES:
            return "452 4.3.4 the demo server keeps no more messages"
        content = envelope.original_content or b""
        self.directory.mkdir(parents=True, exist_ok=True)
        path = self.directory / f"{len(self.messages) + 1:04d}.eml"
        path.write_bytes(content)
        self.messages.append(
            CapturedMessage(path, str(envelope.mail_from or ""), tuple(str(r) for r in envelope.rcpt_tos))
        )
        return "250 2.0.0 kept in " + path.name


class DemoSmtpServer:
    """An SMTP server on loopback that keeps what it receives under `directory`."""

    def __init__(self, directory: Path, host: str = HOST) -> None:
        self.host = host
        self._socket: socket.socket | None = socket.create_server((host, 0))
        self.port: int = self._socket.getsockname()[1]
        self._capture = _Capture(directory)
        self._server: asyncio.Server | None = None
        self._sessions: set[SMTP] = set()

    @property
    def directory(self) -> Path:
        return self._capture.directory

    @property
    def messages(self) -> list[CapturedMessage]:
        """What was received so far, in order."""
        return list(self._capture.messages)

    def _protocol(self) -> SMTP:
        # A fixed hostname: aiosmtpd's default asks socket.getfqdn(), a DNS lookup that can
        # stall on a machine without network.
        protocol = SMTP(
            self._capture,
            hostname="demo-smtp.localhost",
            ident="mailcrm demo SMTP",
            enable_SMTPUTF8=True,
            decode_data=False,
        )
        self._sessions.add(protocol)
        return protocol

    async def start(self) -> None:
        """Accept connections (on the socket bound at creation)."""
        if self._socket is None:
            raise RuntimeError("the demo SMTP server was stopped and cannot start again")
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(self._protocol, sock=self._socket)
        self._socket = None  # owned by the asyncio server from here on

    async def stop(self) -> None:
        """Stop listening and drop any open session; bounded by STOP_TIMEOUT seconds."""
        server, self._server = self._server, None
        if server is not None:
            server.close()
        for protocol in list(self._sessions):
            transport: Any = getattr(protocol, "transport", None)
            if transport is not None:
                transport.close()
        self._sessions.clear()
        if server is not None:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(STOP_TIMEOUT):
                    await server.wait_closed()
        self.close()

    def close(self) -> None:
        """Release the port of a server that never started (stop() does this otherwise)."""
        if self._socket is not None:
            self._socket.close()
            self._socket = None

    def __enter__(self) -> DemoSmtpServer:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

"""A recording SMTP server, so outbound mail is checked at the wire rather than through mocks.

``RecordingHandler`` keeps every accepted message and can be scripted to reject a command,
either always (``reply_at``), for one recipient (``reply_for_rcpt``) or for the next few
attempts only (``queue_reply``), which is what bounce and retry tests need.
``BlackholeServer`` accepts connections and never answers (send timeouts must fire, not hang).
"""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from email.parser import BytesHeaderParser
from email.policy import default as default_policy
from typing import Any

from aiosmtpd.controller import Controller

from .dovecot import HOST, free_port

WAIT_TIMEOUT = 10.0


@dataclass(frozen=True)
class ReceivedMessage:
    """One message accepted at DATA, with its envelope as the client sent it."""

    mail_from: str
    rcpt_tos: tuple[str, ...]
    content: bytes
    message_id: str | None
    mail_options: tuple[str, ...] = ()
    received_at: float = field(default_factory=time.time)


class RecordingHandler:
    """aiosmtpd handler that records accepted mail and answers with scripted replies.

    Keys of the reply tables are the SMTP verbs ``"MAIL"``, ``"RCPT"`` and ``"DATA"``;
    values are complete reply lines such as ``"550 5.1.1 no such user"``.
    """

    # Advertise PIPELINING (RFC 2920) as production servers do, so the sender's pipelined
    # path is the one tested; aiosmtpd reads pipelined commands one by one either way.
    pipelining = True

    def __init__(self) -> None:
        self.reply_at: dict[str, str] = {}
        self.reply_for_rcpt: dict[str, str] = {}
        self._queued: dict[str, deque[str]] = {}
        self._messages: list[ReceivedMessage] = []
        self._rejections: list[tuple[str, str, str]] = []
        self._cond = threading.Condition()

    async def handle_EHLO(
        self, server: Any, session: Any, envelope: Any, hostname: str, responses: list[str]
    ) -> list[str]:
        session.host_name = hostname
        if self.pipelining:
            responses.insert(-1, "250-PIPELINING")
        return responses

    # -- scripting --------------------------------------------------------------------------

    def queue_reply(self, verb: str, *replies: str) -> None:
        """Answer the next ``len(replies)`` ``verb`` commands with these replies, in order."""
        with self._cond:
            self._queued.setdefault(verb.upper(), deque()).extend(replies)

    def reset(self) -> None:
        """Forget recorded mail and scripted replies."""
        with self._cond:
            self.reply_at.clear()
            self.reply_for_rcpt.clear()
            self._queued.clear()
            self._messages.clear()
            self._rejections.clear()

    # -- inspection -------------------------------------------------------------------------

    @property
    def messages(self) -> list[ReceivedMessage]:
        """A snapshot of the accepted messages, oldest first."""
        with self._cond:
            return list(self._messages)

    @property
    def rejections(self) -> list[tuple[str, str, str]]:
        """``(verb, argument, reply)`` for every command answered with a scripted reply."""
        with self._cond:
            return list(self._rejections)

    def wait_for(self, count: int, timeout: float = WAIT_TIMEOUT) -> list[ReceivedMessage]:
        """Block until at least ``count`` messages arrived; raise TimeoutError otherwise."""
        with self._cond:
            if not self._cond.wait_for(lambda: len(self._messages) >= count, timeout):
                raise TimeoutError(f"expected {count} messages, got {len(self._messages)}")
            return list(self._messages)

    # -- aiosmtpd hooks ---------------------------------------------------------------------

    def _scripted(self, verb: str, argument: str) -> str | None:
        with self._cond:
            queued = self._queued.get(verb)
            reply = queued.popleft() if queued else None
            if reply is None and verb == "RCPT":
                reply = self.reply_for_rcpt.get(argument)
            if reply is None:
                reply = self.reply_at.get(verb)
            if reply is not None:
                self._rejections.append((verb, argument, reply))
            return reply

    async def handle_MAIL(
        self, server: Any, session: Any, envelope: Any, address: str, mail_options: list[str]
    ) -> str:
        reply = self._scripted("MAIL", address)
        if reply is not None:
            return reply
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 OK"

    async def handle_RCPT(
        self, server: Any, session: Any, envelope: Any, address: str, rcpt_options: list[str]
    ) -> str:
        reply = self._scripted("RCPT", address)
        if reply is not None:
            return reply
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(rcpt_options)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        reply = self._scripted("DATA", envelope.mail_from or "")
        if reply is not None:
            return reply
        content: bytes = envelope.original_content or b""
        headers = BytesHeaderParser(policy=default_policy).parsebytes(content)
        message_id = headers.get("Message-ID")
        with self._cond:
            self._messages.append(
                ReceivedMessage(
                    mail_from=envelope.mail_from,
                    rcpt_tos=tuple(envelope.rcpt_tos),
                    content=content,
                    message_id=str(message_id).strip() if message_id is not None else None,
                    mail_options=tuple(envelope.mail_options),
                )
            )
            self._cond.notify_all()
        return "250 2.0.0 OK queued"


class RecordingSMTPServer:
    """An aiosmtpd ``Controller`` (own thread and loop) on a free loopback port."""

    def __init__(self, handler: RecordingHandler | None = None) -> None:
        self.handler = handler or RecordingHandler()
        self.host = HOST
        self.port = free_port(HOST)
        self._controller: Controller | None = None

    @property
    def messages(self) -> list[ReceivedMessage]:
        return self.handler.messages

    controller_class: type[Controller] = Controller

    def controller_options(self) -> dict[str, Any]:
        """Keyword arguments of the controller besides handler, host and port (for subclasses)."""
        return {}

    def start(self) -> None:
        if self._controller is not None:
            return
        options = {"enable_SMTPUTF8": True, **self.controller_options()}
        controller = self.controller_class(
            self.handler, hostname=self.host, port=self.port, ready_timeout=10.0, **options
        )
        controller.start()
        self._controller = controller

    def stop(self) -> None:
        controller, self._controller = self._controller, None
        if controller is not None:
            controller.stop()

    def __enter__(self) -> RecordingSMTPServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


class BlackholeServer:
    """A loopback TCP server that accepts connections and never sends a byte.

    A client waiting for the SMTP greeting (or any reply) gets nothing until it gives up,
    as with a firewall that drops replies or a wedged server. Connections are held open
    until `stop`, which also ends the accepting thread.
    """

    def __init__(self) -> None:
        self.host = HOST
        self.port = free_port(HOST)
        self._listener: socket.socket | None = None
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()
        self._lock = threading.Lock()
        self._held: list[socket.socket] = []

    @property
    def accepted(self) -> int:
        """Connections accepted so far."""
        with self._lock:
            return len(self._held)

    def wait_for_connections(self, count: int, timeout: float = WAIT_TIMEOUT) -> None:
        """Block until `count` connections were accepted; TimeoutError otherwise."""
        deadline = time.monotonic() + timeout
        while self.accepted < count:
            if time.monotonic() > deadline:
                raise TimeoutError(f"expected {count} connections, got {self.accepted}")
            time.sleep(0.02)

    def start(self) -> None:
        if self._listener is not None:
            return
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind((self.host, self.port))
        listener.listen(16)
        listener.settimeout(0.1)  # the accept loop checks for `stop` this often
        self._listener = listener
        self._stopping.clear()
        self._thread = threading.Thread(target=self._accept, name="blackhole-smtp", daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        listener = self._listener
        assert listener is not None
        while not self._stopping.is_set():
            try:
                connection, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            with self._lock:
                self._held.append(connection)

    def stop(self) -> None:
        self._stopping.set()
        thread, self._thread = self._thread, None
        if thread is not None:
            thread.join(timeout=5)
        listener, self._listener = self._listener, None
        if listener is not None:
            listener.close()
        with self._lock:
            held, self._held = self._held, []
        for connection in held:
            connection.close()

    def __enter__(self) -> BlackholeServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


class GatedHandler(RecordingHandler):
    """Holds one SMTP verb (``"RCPT"`` by default) on a gate once ``hold_after`` messages arrived.

    A held command gets no reply until ``gate`` is set (or ``hold_seconds`` pass), so a test
    can kill the client while a transaction waits there; ``held`` counts the commands that
    were held. Once the gate is open nothing is held again.
    """

    def __init__(self, verb: str = "RCPT", *, hold_after: int = 0, hold_seconds: float = 30.0) -> None:
        super().__init__()
        self.verb = verb.upper()
        self.hold_after = hold_after
        self.hold_seconds = hold_seconds
        self.gate = threading.Event()
        self._held = 0

    @property
    def held(self) -> int:
        with self._cond:
            return self._held

    def wait_held(self, count: int, timeout: float = WAIT_TIMEOUT) -> None:
        """Block until ``count`` commands are being held; raise TimeoutError otherwise."""
        with self._cond:
            if not self._cond.wait_for(lambda: self._held >= count, timeout):
                raise TimeoutError(f"expected {count} held {self.verb}, got {self._held}")

    async def _hold(self, verb: str) -> None:
        if verb != self.verb or self.gate.is_set() or len(self.messages) < self.hold_after:
            return
        await self._wait_at_gate()

    async def _wait_at_gate(self) -> None:
        with self._cond:
            self._held += 1
            self._cond.notify_all()
        await asyncio.to_thread(self.gate.wait, self.hold_seconds)

    async def handle_MAIL(
        self, server: Any, session: Any, envelope: Any, address: str, mail_options: list[str]
    ) -> str:
        await self._hold("MAIL")
        return await super().handle_MAIL(server, session, envelope, address, mail_options)

    async def handle_RCPT(
        self, server: Any, session: Any, envelope: Any, address: str, rcpt_options: list[str]
    ) -> str:
        await self._hold("RCPT")
        return await super().handle_RCPT(server, session, envelope, address, rcpt_options)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        await self._hold("DATA")
        return await super().handle_DATA(server, session, envelope)


class DelayingHandler(RecordingHandler):
    """Waits ``delay`` seconds before answering each DATA, so a batch takes a while to send."""

    def __init__(self, delay: float = 0.02) -> None:
        super().__init__()
        self.delay = delay

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        await asyncio.sleep(self.delay)
        return await super().handle_DATA(server, session, envelope)


class DotHoldingHandler(GatedHandler):
    """Stores each message at its final ".", then holds the 250 once ``hold_after`` messages arrived.

    A held transaction is the ambiguous window: the server has the message, the client has
    not heard so. ``held`` counts the replies being held; after ``gate`` is set (or
    ``hold_seconds`` pass) the reply goes out, into a dead socket if the client was killed
    meanwhile (the message stays recorded either way). Once the gate is open nothing is
    held again.
    """

    def __init__(self, hold_after: int = 0, *, hold_seconds: float = 30.0) -> None:
        super().__init__("DOT", hold_after=hold_after, hold_seconds=hold_seconds)  # no command hook is "DOT"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        reply = await super().handle_DATA(server, session, envelope)
        if not self.gate.is_set() and len(self.messages) > self.hold_after:
            await self._wait_at_gate()
        return reply
        with self._cond:
            self._held += 1
            self._cond.notify_all()
        await asyncio.to_thread(self.gate.wait, self.hold_seconds)
        return reply

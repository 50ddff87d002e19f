"""An aiosmtpd server that can refuse at the greeting and hang up after a 421 (retry tests).

``FaultySMTPServer`` is a ``RecordingSMTPServer`` whose handler also scripts the verb
``"CONNECT"``: ``handler.queue_reply("CONNECT", "421 4.7.0 try later")`` makes the
next connection get that line instead of the 220 greeting, after which the server
closes it, as a server does that is too busy to talk. With ``close_after_421`` (the
default here) any 421 reply, e.g. to MAIL FROM, also closes the connection: RFC 5321
§3.8 says a 421 means the server is closing the transmission channel.

Script ``"CONNECT"`` only once the server runs: starting it opens one connection of
its own to check that it answers.
"""

from __future__ import annotations

from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP

from .smtpd import RecordingHandler, RecordingSMTPServer


class FaultyHandler(RecordingHandler):
    """A ``RecordingHandler`` whose 421 replies hang up (unless ``close_after_421`` is False)."""

    def __init__(self, *, close_after_421: bool = True) -> None:
        super().__init__()
        self.close_after_421 = close_after_421


class _FaultySMTP(SMTP):
    """aiosmtpd's server, with a scripted greeting and a 421 that hangs up."""

    _greeted = False

    async def push(self, status: Any) -> None:
        handler = self.event_handler
        if not self._greeted:
            self._greeted = True  # the first line a session pushes is its greeting
            peer = self.session.peer if self.session is not None else None
            reply = handler._scripted("CONNECT", str(peer)) if isinstance(handler, RecordingHandler) else None
            if reply is not None:
                await super().push(reply)
                self._hang_up()
                return
        await super().push(status)
        text = status.decode("ascii", "replace") if isinstance(status, bytes) else str(status)
        if text.startswith("421") and getattr(handler, "close_after_421", False):
            self._hang_up()

    def _hang_up(self) -> None:
        if self.transport is not None:
            self.transport.close()


class _FaultyController(Controller):
    def factory(self) -> SMTP:
        return _FaultySMTP(self.handler, **self.SMTP_kwargs)


class FaultySMTPServer(RecordingSMTPServer):
    """A recording SMTP server on a free loopback port that can refuse at the greeting."""

    controller_class = _FaultyController

    def __init__(self, handler: RecordingHandler | None = None) -> None:
        super().__init__(handler or FaultyHandler())

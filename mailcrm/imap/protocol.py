"""aioimaplib's client protocol, adapted for mailbox sync (used by `mailcrm.imap.connection`).

Workarounds for upstream behaviour: untagged-line routing that keeps names intact and
sends QRESYNC ``VANISHED`` to the FETCH it answers, a response loop without recursion or
quadratic re-slicing, a FETCH completion check that looks back only to the last message,
activity tracking for the watchdog, and a command that sends its secret parts only after
the server's continuation.

Two of these override private methods of `IMAP4ClientProtocol`, so aioimaplib is pinned
exactly (``aioimaplib==2.0.3`` in pyproject.toml) and `tests/unit/test_imap_protocol_shape.py`
fails if a release renames them, changes their parameters or stops calling them. What
upstream change would let each override go:

* `_Protocol._untagged_response`: upstream strips every ``b"* "`` from the line
  (``line.replace(b"* ", b"")``) and has no route for ``VANISHED``. It can go once
  upstream removes only the leading ``"* "`` and hands ``* VANISHED`` to the pending
  ``UID FETCH`` (it answers that command, RFC 7162 3.2.10), not to NOOP or nowhere.
* `_Protocol._handle_responses`: upstream recurses once per response line and re-slices
  the buffer each time (aioimaplib issue #118; iterative fixes proposed in pull requests
  #103, #119 and #130). It can go once a release parses the buffer in a loop by offset.
* `_FetchCommand.wait_data` (public, but it reads the private ``_resp_lines``): upstream
  rescans every line of the response per chunk received; it can go once upstream looks
  back only to the last ``n FETCH (`` line.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from typing import Any

from aioimaplib.aioimaplib import (
    CRLF,
    AioImapException,
    Command,
    FetchCommand,
    IMAP4ClientProtocol,
    IncompleteRead,
    literal_data_re,
)

log = logging.getLogger(__name__)


class _Protocol(IMAP4ClientProtocol):  # type: ignore[misc]
    """aioimaplib's protocol, with activity tracking and three parsing fixes.

    Upstream removes every ``b"* "`` from untagged lines (corrupting names such as
    ``"Q1 * 2024"``), recurses once per response line (a large FETCH/SEARCH can exceed
    the recursion limit inside ``data_received`` and kill the connection) and re-slices
    the buffer per line (quadratic on big reads).
    """

    def __init__(self, loop: asyncio.AbstractEventLoop, conn_lost_cb: Callable[[Exception | None], None]):
        super().__init__(loop, conn_lost_cb)
        self.last_activity = loop.time()
        self.bytes_received = 0
        self.bye: str | None = None
        self.greeting_error: str | None = None

    def data_received(self, d: bytes) -> None:
        self.bytes_received += len(d)
        self.last_activity = self.loop.time()
        super().data_received(d)

    async def welcome(self, command: bytes) -> None:
        if command[:5].upper() == b"* BYE":
            # The server refuses the session and closes; the lost connection reports it.
            self.bye = command[6:].decode("utf-8", "replace").strip() or "BYE"
            return
        try:
            await super().welcome(command)
        except AioImapException as exc:
            self.greeting_error = str(exc)
            if self.transport is not None:
                self.transport.close()

    def _untagged_response(self, line: bytes) -> Any:
        body = line[2:] if line.startswith(b"* ") else line
        if body[:4].upper() == b"BYE ":
            self.bye = body[4:].decode("utf-8", "replace").strip()
        if self.pending_sync_command is not None:
            self.pending_sync_command.append_to_resp(body)
            return self.pending_sync_command
        # Route by response name: "<n> FETCH"/"<n> EXPUNGE" keep their whole line, named
        # responses ("SEARCH 1 2", "LIST ...") lose the name; anything else goes to NOOP.
        head, _, rest = body.partition(b" ")
        name, payload = head.upper(), rest
        if name == b"VANISHED":
            # QRESYNC expunges answer UID FETCH ... (VANISHED): they belong to that FETCH.
            name, payload = b"FETCH", body
        elif head.isdigit():
            kind = rest.partition(b" ")[0].upper()
            name, payload = (kind, body) if kind in (b"FETCH", b"EXPUNGE") else (b"", body)
        command = self.pending_async_commands.get(name.decode("ascii", "replace")) if name else None
        if command is None:
            command = self.pending_async_commands.get("NOOP")
            payload = body
        if command is None:
            log.debug("ignored untagged response %r", body[:200])
            return None
        command.append_to_resp(payload)
        return command

    def _handle_responses(self, data: bytes, line_handler: Any, current_cmd: Any = None) -> None:
        pos = 0
        while True:
            if pos >= len(data):
                if self.pending_sync_command is not None:
                    self.pending_sync_command.flush()
                if current_cmd is not None and current_cmd.wait_data():
                    raise IncompleteRead(current_cmd)
                return
            if current_cmd is not None and current_cmd.wait_literal_data():
                data = current_cmd.append_literal_data(data[pos:] if pos else data)
                pos = 0
                if current_cmd.wait_literal_data():
                    raise IncompleteRead(current_cmd)
            end = data.find(CRLF, pos)
            if end < 0:
                raise IncompleteRead(current_cmd, data[pos:])
            line = data[pos:end]
            pos = end + 2
            cmd = line_handler(line, current_cmd)
            literal = literal_data_re.match(line)
            if literal:
                if cmd is None:
                    cmd = Command("NIL", "unused", loop=self.loop)
                cmd.begin_literal_data(int(literal.group("size")))
                current_cmd = cmd
            elif cmd is not None and cmd.wait_data():
                current_cmd = cmd
            else:
                current_cmd = None


class _FetchCommand(FetchCommand):  # type: ignore[misc]
    """Completion check looking back only to the last ``n FETCH (`` line (upstream rescans all)."""

    def wait_data(self) -> bool:
        lines = self._resp_lines
        start = len(lines) - 1
        while start > 0:
            line = lines[start]
            if isinstance(line, bytes) and self.FETCH_MESSAGE_DATA_RE.match(line):
                break
            start -= 1
        tail = [line for line in lines[max(start, 0) :] if isinstance(line, bytes)]
        opened = sum(line.count(b"(") for line in tail)
        return opened != sum(line.count(b")") for line in tail)


class _ChallengeCommand(Command):  # type: ignore[misc]
    """A command whose secret parts are sent only after the server's ``+`` continuation."""

    def __init__(
        self,
        name: str,
        tag: str,
        *args: str,
        loop: asyncio.AbstractEventLoop,
        answers: Sequence[bytes],
        respond: Callable[[bytes], None],
        extra_answer: bytes,
    ) -> None:
        super().__init__(name, tag, *args, loop=loop)
        self._answers = list(answers)
        self._respond = respond
        self._extra_answer = extra_answer
        self.challenges: list[bytes] = []

    def append_to_resp(self, line: Any, result: str = "Pending") -> None:
        if result == "Pending" and isinstance(line, bytes) and line.startswith(b"+"):
            self.challenges.append(line[1:].strip())
            self._respond((self._answers.pop(0) if self._answers else self._extra_answer) + CRLF)
            return
        super().append_to_resp(line, result)

"""A loopback TCP proxy for fault tests: forwards both ways and can cut the server's
stream to the client in the middle of a literal.

``cut_inside(marker, occurrence, after)`` arms a one-shot cut: on the server-to-client
stream, after the ``occurrence``-th ``marker`` (e.g. ``b"BODY[] {"``) whose literal
header ``{n}\\r\\n`` is complete, ``after`` more bytes are forwarded, then both
connections are aborted. With ``hold=True`` the proxy stops forwarding at that point
and waits for `release()` before it cuts, so a test can look at what the client has
done with everything before the cut.

``cut_data(fraction)`` arms a one-shot cut on the client-to-server stream of an SMTP
session: the next message body (the bytes after a ``DATA`` command line) is held back
until its final ``.`` line has arrived from the client, then only the first
``fraction`` of it is forwarded to the server and both connections are aborted. The
server sees a transaction cut in the middle of DATA and never the final ``.``;
``data_cuts`` records (bytes forwarded, body length) of each cut.

It runs its own event loop in a thread, so it works with code that calls
``asyncio.run``; `stop()` closes every connection and ends the thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import threading
from dataclasses import dataclass

HOST = "127.0.0.1"
START_TIMEOUT = 10.0
HOLD_TIMEOUT = 60.0  # a held cut happens anyway after this long
_CHUNK = 64 * 1024
_LITERAL_END = b"}\r\n"
_DATA_LINE = re.compile(rb"(?:^|\r\n)DATA\r\n", re.IGNORECASE)
_DATA_END = b"\r\n.\r\n"
_BODY_LIMIT = 64 * 1024 * 1024  # a body held back for a cut never grows past this
_SETTLE = 0.2  # seconds the server gets to read the forwarded part before the cut


@dataclass
class _Cut:
    marker: bytes
    occurrence: int
    after: int
    hold: bool
    seen: int = 0


class CuttingProxy:
    """Forwards 127.0.0.1:``port`` to ``target_host``:``target_port``."""

    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self.port = 0
        self.cuts = 0  # connections cut so far
        self.connections = 0
        self.data_cuts: list[tuple[int, int]] = []  # (bytes forwarded, body length) per DATA cut
        self._cut: _Cut | None = None
        self._data_cut: float | None = None
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: asyncio.Server | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._stopped: asyncio.Event | None = None
        self._released = threading.Event()
        self._holding = threading.Event()
        self._writers: set[asyncio.StreamWriter] = set()

    # -- control (any thread) -----------------------------------------------------------

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="cutting-proxy", daemon=True)
        self._thread.start()
        if not self._ready.wait(START_TIMEOUT) or self.port == 0:
            raise RuntimeError("proxy did not start")

    def stop(self) -> None:
        self._released.set()
        loop, stopped = self._loop, self._stopped
        if loop is not None and stopped is not None and not loop.is_closed():
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(stopped.set)
        if self._thread is not None:
            self._thread.join(START_TIMEOUT)

    def cut_inside(self, marker: bytes, occurrence: int, after: int, *, hold: bool = False) -> None:
        """Arm a one-shot cut ``after`` bytes into the literal that follows the
        ``occurrence``-th ``marker`` (counted from now, over all connections)."""
        if occurrence < 1 or after < 0:
            raise ValueError("occurrence must be >= 1 and after >= 0")
        with self._lock:
            self._released.clear()
            self._holding.clear()
            self._cut = _Cut(marker, occurrence, after, hold)

    def cut_data(self, fraction: float = 0.5) -> None:
        """Arm a one-shot cut of the next SMTP message body (counted from now, over all
        connections) after ``fraction`` of its bytes; the final ``.`` never reaches the server."""
        if not 0.0 <= fraction < 1.0:
            raise ValueError("fraction must be in [0, 1)")
        with self._lock:
            self._data_cut = fraction

    def disarm(self) -> None:
        with self._lock:
            self._cut = None
            self._data_cut = None

    def wait_holding(self, timeout: float) -> bool:
        """True once a held cut has reached its point (the stream is stalled there)."""
        return self._holding.wait(timeout)

    def release(self) -> None:
        """Let a held cut happen."""
        self._released.set()

    def __enter__(self) -> CuttingProxy:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- the proxy's own thread ------------------------------------------------------------

    def _run(self) -> None:
        asyncio.run(self._main())

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stopped = asyncio.Event()
        self._server = await asyncio.start_server(self._handle, HOST, 0)
        self.port = int(self._server.sockets[0].getsockname()[1])
        self._ready.set()
        try:
            await self._stopped.wait()
        finally:
            self._server.close()
            for writer in list(self._writers):
                writer.transport.abort()
            await self._server.wait_closed()

    async def _handle(self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            server_reader, server_writer = await asyncio.open_connection(*self.target)
        except OSError:
            client_writer.transport.abort()
            return
        self._writers.update((client_writer, server_writer))
        upstream = asyncio.ensure_future(self._upstream(client_reader, server_writer, client_writer))
        downstream = asyncio.ensure_future(self._downstream(server_reader, client_writer, server_writer))
        try:
            await asyncio.wait({upstream, downstream}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (upstream, downstream):
                task.cancel()
            await asyncio.gather(upstream, downstream, return_exceptions=True)
            for writer in (client_writer, server_writer):
                self._writers.discard(writer)
                writer.transport.abort()

    async def _upstream(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, client: asyncio.StreamWriter
    ) -> None:
        """Client to server, watching for the armed DATA cut."""
        tail = b""  # the end of what was forwarded: a DATA line may span two reads
        body: bytearray | None = None  # the held-back body, once this connection took the cut
        fraction = 0.0
        while chunk := await reader.read(_CHUNK):
            if body is None:
                with self._lock:
                    armed = self._data_cut
                    found = _DATA_LINE.search(tail + chunk) if armed is not None else None
                    if found is not None and found.end() > len(tail):
                        self._data_cut = None  # one-shot: this connection takes it
                if armed is None or found is None or found.end() <= len(tail):
                    tail = (tail + chunk)[-16:]
                    writer.write(chunk)
                    await writer.drain()
                    continue
                assert armed is not None
                split = found.end() - len(tail)
                writer.write(chunk[:split])  # up to and including the DATA command
                await writer.drain()
                body, fraction, chunk = bytearray(), armed, chunk[split:]
            searched = max(len(body) - len(_DATA_END), 0)  # only the new bytes can end it
            body += chunk
            end = (b"\r\n" + body).find(_DATA_END, searched)  # index in `body` of the final "." line
            if end < 0 and len(body) < _BODY_LIMIT:
                continue
            if end < 0:  # no end in sight: give up on the cut, forward everything
                writer.write(bytes(body))
                await writer.drain()
                body, tail = None, b""
                continue
            forwarded = int(end * fraction)
            writer.write(bytes(body[:forwarded]))
            await writer.drain()
            await asyncio.sleep(_SETTLE)
            self.data_cuts.append((forwarded, end))
            self.cuts += 1
            writer.transport.abort()
            client.transport.abort()
            return

    async def _downstream(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, server: asyncio.StreamWriter
    ) -> None:
        """Server to client, watching for the armed cut."""
        carry = b""  # unsearched tail of what was forwarded (a marker may span two reads)
        position = 0  # bytes forwarded so far
        cut_at: int | None = None
        hold = False
        while chunk := await reader.read(_CHUNK):
            if cut_at is None:
                cut_at, hold, carry = self._scan(carry, chunk, position)
            if cut_at is not None and position + len(chunk) >= cut_at:
                writer.write(chunk[: cut_at - position])
                await writer.drain()
                if hold:
                    await self._hold()
                self.cuts += 1
                writer.transport.abort()
                server.transport.abort()
                return
            writer.write(chunk)
            await writer.drain()
            position += len(chunk)

    def _scan(self, carry: bytes, chunk: bytes, position: int) -> tuple[int | None, bool, bytes]:
        """The stream offset to cut at (and whether to hold there first), once the armed
        marker's literal header is seen; plus the tail to search again with the next read."""
        with self._lock:
            cut = self._cut
            if cut is None:
                return None, False, b""
            data = carry + chunk
            base = position - len(carry)
            start = 0
            while (found := data.find(cut.marker, start)) >= 0:
                end = data.find(_LITERAL_END, found)
                if end < 0:
                    return None, False, data[found:]  # header incomplete: search it again with more data
                start = end + len(_LITERAL_END)
                cut.seen += 1
                if cut.seen == cut.occurrence:
                    self._cut = None  # one-shot
                    return base + start + cut.after, cut.hold, b""
            keep = max(start, len(data) - len(cut.marker))
            return None, False, data[keep:]

    async def _hold(self) -> None:
        self._holding.set()
        await asyncio.get_running_loop().run_in_executor(None, self._released.wait, HOLD_TIMEOUT)

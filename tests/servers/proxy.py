"""A loopback TCP proxy for fault tests: forwards both ways and can cut the server's
stream to the client in the middle of a literal.

``cut_inside(marker, occurrence, after)`` arms a one-shot cut: on the server-to-client
stream, after the ``occurrence``-th ``marker`` (e.g. ``b"BODY[] {"``) whose literal
header ``{n}\\r\\n`` is complete, ``after`` more bytes are forwarded, then both
connections are aborted. With ``hold=True`` the proxy stops forwarding at that point
and waits for `release()` before it cuts, so a test can look at what the client has
done with everything before the cut.

It runs its own event loop in a thread, so it works with code that calls
``asyncio.run``; `stop()` closes every connection and ends the thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from dataclasses import dataclass

HOST = "127.0.0.1"
START_TIMEOUT = 10.0
HOLD_TIMEOUT = 60.0  # a held cut happens anyway after this long
_CHUNK = 64 * 1024
_LITERAL_END = b"}\r\n"


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
        self._cut: _Cut | None = None
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

    def disarm(self) -> None:
        with self._lock:
            self._cut = None

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
        upstream = asyncio.ensure_future(self._forward(client_reader, server_writer))
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

    @staticmethod
    async def _forward(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while chunk := await reader.read(_CHUNK):
            writer.write(chunk)
            await writer.drain()

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

"""The web endpoint served by uvicorn on a free loopback port, in a thread of its own.

It runs `mailcrm.web.server.serve` (the daemon's path) on its own event loop, so sync
and async tests alike talk to it over real HTTP; `stop` sets the stop event the
daemon would set on SIGTERM and waits for the server to finish.
"""

from __future__ import annotations

import asyncio
import threading

from mailcrm.settings import WebSettings
from mailcrm.store.db import Database
from mailcrm.web import server
from mailcrm.web.app import create_app
from mailcrm.web.keys import LinkKeys

from .dovecot import HOST

START_TIMEOUT = 10.0


class WebServer:
    def __init__(self, web: WebSettings, db: Database, keys: LinkKeys) -> None:
        self._socket = server.bind(HOST, 0)
        self.port = int(self._socket.getsockname()[1])
        self.url = f"http://{HOST}:{self.port}"
        self._config = server.config(create_app(web, db, keys), web, host=HOST, port=self.port)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="web", daemon=True)

    def _run(self) -> None:
        async def main() -> None:
            self._loop = asyncio.get_running_loop()
            self._stop = asyncio.Event()
            self._ready.set()
            await server.serve(self._config, self._stop, self._socket)

        try:
            asyncio.run(main())
        except BaseException as exc:
            self._error = exc
            self._ready.set()

    def start(self) -> None:
        self._thread.start()
        if not self._ready.wait(START_TIMEOUT) or self._error is not None:
            raise RuntimeError(f"the web server did not start: {self._error!r}")

    def stop(self) -> None:
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(START_TIMEOUT)
        assert not self._thread.is_alive(), "the web server did not stop"
        if self._error is not None:
            raise self._error

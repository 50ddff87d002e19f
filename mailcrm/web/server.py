"""Serving the app with uvicorn inside mailcrm's own event loop and stop event.

The daemon owns the signals: uvicorn's own handlers are left out, and the server stops
when the daemon's stop event is set (Ctrl-C, SIGTERM), finishing the requests in
flight for up to `SHUTDOWN_GRACE` seconds. uvicorn logs through mailcrm's logging
(`log_config=None`), without an access log line per request.

X-Forwarded-For and X-Forwarded-Proto are honoured only from the addresses in
`web.trusted_proxies` (uvicorn's proxy-headers middleware); with none configured they
are ignored, whoever sends them. Header size, keep-alive and concurrency are bounded.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import Generator

import uvicorn

from mailcrm.errors import ConfigError
from mailcrm.settings import WebSettings
from mailcrm.web.middleware import ASGIApp

log = logging.getLogger(__name__)

SHUTDOWN_GRACE = 5
KEEP_ALIVE_SECONDS = 5
MAX_CONNECTIONS = 500  # beyond this, 503 at once rather than a queue that never drains
MAX_HEADER_BYTES = 16 * 1024
BACKLOG = 2048


class _Server(uvicorn.Server):
    """uvicorn's server without its signal handlers (the caller's stop event rules)."""

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield


def config(
    app: ASGIApp, web: WebSettings, *, host: str | None = None, port: int | None = None
) -> uvicorn.Config:
    """The uvicorn configuration of `app` for `web` (host and port as given, else as set)."""
    return uvicorn.Config(
        app,
        host=host or web.host,
        port=web.port if port is None else port,
        lifespan="off",
        log_config=None,
        access_log=False,
        server_header=False,
        date_header=True,
        proxy_headers=bool(web.trusted_proxies),
        forwarded_allow_ips=list(web.trusted_proxies) or None,
        timeout_keep_alive=KEEP_ALIVE_SECONDS,
        timeout_graceful_shutdown=SHUTDOWN_GRACE,
        limit_concurrency=MAX_CONNECTIONS,
        h11_max_incomplete_event_size=MAX_HEADER_BYTES,
    )


def bind(host: str, port: int) -> socket.socket:
    """The listening socket, bound now so a port in use is a clear error before anything starts."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(BACKLOG)  # connections wait in the queue until the server accepts them
    except (OSError, UnicodeError, OverflowError) as exc:
        sock.close()
        raise ConfigError(
            f"cannot listen on {host}:{port}: {getattr(exc, 'strerror', None) or exc}",
            field="web.port",
            hint="choose another web.host or web.port (or --host/--port), or stop what listens there",
        ) from None
    return sock


async def serve(
    server_config: uvicorn.Config, stop: asyncio.Event, sock: socket.socket | None = None
) -> None:
    """Serve until `stop` is set; then finish the requests in flight and return."""
    server = _Server(server_config)
    listening = sock or bind(server_config.host, server_config.port)
    watcher = asyncio.create_task(_stop_on(stop, server))
    host, port = listening.getsockname()[:2]
    log.info("web endpoint on http://%s:%s", host, port, extra={"action": "web_started", "port": port})
    try:
        await server.serve(sockets=[listening])
        if not server.started and not stop.is_set():
            log.error(
                "the web endpoint could not start on %s:%s; the rest keeps running",
                host,
                port,
                extra={"action": "web_start_failed"},
            )
    finally:
        watcher.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await watcher
        listening.close()
        log.info("web endpoint stopped", extra={"action": "web_stopped"})


async def _stop_on(stop: asyncio.Event, server: uvicorn.Server) -> None:
    await stop.wait()
    server.should_exit = True

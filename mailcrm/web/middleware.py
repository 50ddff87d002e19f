"""What every response gets, whatever the route: pure ASGI middleware, outermost first.

- `SecurityHeaders`: a strict Content-Security-Policy (own styles and form posts only,
  no scripts, no framing), `X-Frame-Options: DENY`, `X-Content-Type-Options: nosniff`,
  `Referrer-Policy: no-referrer` (a link's token must not leak to another site),
  `Cache-Control: no-store`. No CORS header is ever sent: other origins' scripts cannot
  read any answer.
- `BodyLimit`: a body longer than the limit gets 413, told by Content-Length at once,
  or as soon as a chunked body passes it; nothing after the limit is read.
- `Deadline`: a request not answered within the timeout (a slow body, a stuck
  database) gets 503 and the handler is cancelled.

Uvicorn adds the rest at the socket: header size limits, keep-alive timeout and the
X-Forwarded-* handling for `web.trusted_proxies` only (`mailcrm.web.server`).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

log = logging.getLogger(__name__)

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

CSP = (
    "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; "
    "frame-ancestors 'none'; base-uri 'none'"
)
SECURITY_HEADERS = [
    (b"content-security-policy", CSP.encode()),
    (b"x-frame-options", b"DENY"),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"cache-control", b"no-store"),
]


async def plain(send: Send, status: int, text: str) -> None:
    """A short text/plain answer (with the security headers: it goes through them)."""
    body = text.encode()
    headers = [(b"content-type", b"text/plain; charset=utf-8"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


class SecurityHeaders:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                names = {name for name, _ in SECURITY_HEADERS}
                kept = [(n, v) for n, v in message.get("headers", []) if n.lower() not in names]
                message["headers"] = kept + SECURITY_HEADERS
            await send(message)

        await self.app(scope, receive, with_headers)


class Guard:
    """Logs a bug once, with its traceback, and keeps it from the client and the server.

    The app has already answered 500 ("internal error"); without the guard the
    exception would reach uvicorn, which would log it again.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await self.app(scope, receive, send)
        except Exception as exc:
            log.error(
                "%s %s failed: %r",
                scope.get("method"),
                scope.get("path"),
                exc,
                exc_info=exc,
                extra={"action": "web_error"},
            )


class BodyLimit:
    """Reads the whole body first (the routes take small forms), then hands it on.

    Told by Content-Length, a body over the limit is refused before a byte of it is
    read; a chunked one as soon as it passes the limit. The handler never sees a body
    it would have to abandon half-way, so the 413 cannot come after another answer.
    """

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for name, value in scope.get("headers", []):
            if name == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    await plain(send, 400, "bad Content-Length")
                    return
                if declared > self.max_bytes:
                    await plain(send, 413, "request body too large")
                    return
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return  # the client went away
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_bytes:
                await plain(send, 413, "request body too large")
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        pending: list[Message] = [{"type": "http.request", "body": b"".join(chunks), "more_body": False}]

        async def replay() -> Message:
            return pending.pop() if pending else await receive()

        await self.app(scope, replay, send)


class Deadline:
    def __init__(self, app: ASGIApp, seconds: float) -> None:
        self.app = app
        self.seconds = seconds

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def tracked(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            async with asyncio.timeout(self.seconds):
                await self.app(scope, receive, tracked)
        except TimeoutError:
            log.warning(
                "%s %s: no answer within %.0f s",
                scope.get("method"),
                scope.get("path"),
                self.seconds,
                extra={"action": "web_timeout"},
            )
            if not started:
                await plain(send, 503, "the request took too long; try again later")

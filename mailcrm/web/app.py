"""The ASGI app: routes of each area, the middleware every response goes through, errors.

`create_app` takes the slice of configuration it needs (`WebSettings`), the database and
the link keys, never the whole `Settings`. Errors never show a traceback or an
internal detail: an unknown path or token is a plain 404, a method a route does not
take a 405, a bug a logged 500 with one line of text. No OpenAPI document or docs
page is served yet (the JSON API will bring them).
"""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from mailcrm.settings import WebSettings
from mailcrm.store.db import Database
from mailcrm.web import middleware
from mailcrm.web.keys import LinkKeys
from mailcrm.web.pages import TEMPLATES
from mailcrm.web.unsubscribe import UnknownLink, UnsubscribeService
from mailcrm.web.unsubscribe import router as unsubscribe_router

log = logging.getLogger(__name__)

_STYLESHEET = (TEMPLATES / "page.css").read_bytes()
_REASONS = {400: "bad request", 404: "not found", 405: "method not allowed", 413: "request body too large"}


def _text(status: int, text: str | None = None) -> Response:
    return Response(text or _REASONS.get(status, "error"), status_code=status, media_type="text/plain")


def create_app(web: WebSettings, db: Database, keys: LinkKeys) -> middleware.ASGIApp:
    """The app, wrapped in the security headers, the deadline and the body limit."""
    app = FastAPI(docs_url=None, redoc_url=None, openapi_url=None)
    app.include_router(unsubscribe_router(UnsubscribeService(db, keys)))

    @app.get("/static/page.css", include_in_schema=False)
    async def stylesheet() -> Response:
        return Response(_STYLESHEET, media_type="text/css")

    @app.get("/healthz", include_in_schema=False)
    async def health() -> Response:
        return _text(200, "ok")

    @app.exception_handler(UnknownLink)
    async def not_found(_request: Request, _exc: UnknownLink) -> Response:
        return _text(404)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_request: Request, exc: StarletteHTTPException) -> Response:
        response = _text(exc.status_code)
        if exc.headers:
            response.headers.update({k: v for k, v in exc.headers.items() if k.lower() == "allow"})
        return response

    @app.exception_handler(Exception)
    async def bug(_request: Request, _exc: Exception) -> Response:
        return _text(500, "internal error")  # logged once by `middleware.Guard`

    wrapped: middleware.ASGIApp = middleware.BodyLimit(app, web.max_body_bytes)
    wrapped = middleware.Deadline(wrapped, web.request_timeout_seconds)
    return middleware.SecurityHeaders(middleware.Guard(wrapped))

"""`/u/TOKEN`: one-click unsubscribe (RFC 8058) and the unsubscribe page.

- `POST /u/TOKEN` with the body `List-Unsubscribe=One-Click` (what a mail client sends
  for List-Unsubscribe-Post) suppresses the customer at once: no page, no login, no
  cookie; 204.
- `GET /u/TOKEN` (the link in the body) shows a page in the customer's language with
  two buttons; it changes nothing, since scanners and previews fetch links.
- `POST /u/TOKEN` from the page, `choice=none` or `choice=fewer`, records the choice
  and shows the page again saying what was done.

A token that does not verify (altered, cut, another email's, an unknown row, a
customer since deleted) gets 404 and nothing is read beyond the row or recorded.
Replays are harmless: the store writes only what is new. The routes parse and check,
`UnsubscribeService` does the work in a worker thread (the store is synchronous).
"""

from __future__ import annotations

import asyncio
import logging
from urllib.parse import parse_qs

from fastapi import APIRouter, Request, Response
from fastapi.responses import HTMLResponse

from mailcrm.domain import signed_links
from mailcrm.errors import NotFoundError
from mailcrm.store import unsubscribes
from mailcrm.store.db import Database
from mailcrm.store.unsubscribes import LinkTarget
from mailcrm.web.keys import LinkKeys
from mailcrm.web.links import UNSUBSCRIBE_PATH, verified
from mailcrm.web.pages import render
from mailcrm.web.pages.texts import UNSUBSCRIBE, language_of

log = logging.getLogger(__name__)

ONE_CLICK = ("List-Unsubscribe", "One-Click")


class UnknownLink(NotFoundError):
    """The token names no email we sent (answered 404 by the app, with no detail)."""

    def __init__(self) -> None:
        super().__init__("no such link")


class UnsubscribeService:
    """Finds the email a token names and records what its recipient chose."""

    def __init__(self, db: Database, keys: LinkKeys) -> None:
        self.db = db
        self.keys = keys

    def find(self, text: str) -> LinkTarget:
        """The email `text` (a path segment) names; `UnknownLink` unless its signature holds."""
        token = signed_links.parse(text)
        if token is None:
            raise UnknownLink
        with self.db.read() as session:
            target = unsubscribes.link_target(session, token.outbox_id)
        if target is None or not verified(self.keys, signed_links.UNSUBSCRIBE, token, target.customer_id):
            raise UnknownLink
        return target

    def unsubscribe(self, target: LinkTarget) -> list[str]:
        with self.db.write() as session:
            new = unsubscribes.unsubscribe(session, target)
        if new:
            log.info(
                "customer %s unsubscribed through the link of outbox row %s",
                target.customer_id,
                target.outbox_id,
                extra={"action": "web_unsubscribed", "customer_id": target.customer_id},
            )
        return new

    def fewer(self, target: LinkTarget) -> bool:
        with self.db.write() as session:
            changed = unsubscribes.prefer_fewer(session, target)
        if changed:
            log.info(
                "customer %s asked for fewer emails through the link of outbox row %s",
                target.customer_id,
                target.outbox_id,
                extra={"action": "web_fewer_emails", "customer_id": target.customer_id},
            )
        return changed


def _form(body: bytes) -> dict[str, list[str]] | None:
    """The urlencoded form in `body`; None when it is not one (binary, not UTF-8)."""
    try:
        return parse_qs(body.decode("utf-8"), keep_blank_values=True, strict_parsing=False, max_num_fields=20)
    except (UnicodeDecodeError, ValueError):
        return None


def _page(target: LinkTarget, state: str) -> HTMLResponse:
    """The page; its form posts back to the URL it was loaded from, and its stylesheet is
    linked relatively, so both work behind a proxy that serves the endpoint under a path."""
    language = language_of(target.language)
    return HTMLResponse(render("unsubscribe.html", language, t=UNSUBSCRIBE[language], state=state))


async def _choose(service: UnsubscribeService, target: LinkTarget, body: bytes) -> Response:
    """A POST: the mail client's one click (204, no page), or a button of the page."""
    form = _form(body)
    if form is None:
        return Response("not a form", status_code=400, media_type="text/plain")
    if ONE_CLICK[1] in form.get(ONE_CLICK[0], []):  # RFC 8058
        await asyncio.to_thread(service.unsubscribe, target)
        return Response(status_code=204)
    choice = form.get("choice", [""])[0]
    if choice == "none":
        await asyncio.to_thread(service.unsubscribe, target)
        return _page(target, "done_all")
    if choice == "fewer":
        await asyncio.to_thread(service.fewer, target)
        return _page(target, "done_fewer")
    return Response(
        "expected List-Unsubscribe=One-Click or choice=none|fewer", status_code=400, media_type="text/plain"
    )


def router(service: UnsubscribeService) -> APIRouter:
    """The `/u/{token}` routes bound to `service`."""
    routes = APIRouter()

    @routes.api_route(UNSUBSCRIBE_PATH + "{token}", methods=["GET", "HEAD", "POST"], include_in_schema=False)
    async def link(token: str, request: Request) -> Response:
        """One route for the three methods, so a 405 lists them all in Allow."""
        target = await asyncio.to_thread(service.find, token)
        if request.method != "POST":  # GET and HEAD change nothing
            return _page(target, "already" if target.unsubscribed else "ask")
        return await _choose(service, target, await request.body())

    return routes

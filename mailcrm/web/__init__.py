"""The HTTP endpoint: one-click unsubscribe today; tracking, feedback and the JSON API next.

One module per area, routes thin (parse and check the request, call a service,
render): `app` (the app factory and error handling), `middleware` (security headers,
body limit, deadline), `server` (uvicorn inside mailcrm's event loop), `keys` (the link
signing keys from `web.*`), `links` (the URLs emails carry and their check),
`unsubscribe` (`/u/TOKEN`), `pages` (Jinja2 pages; templates in `web/templates/`).

May import: `mailcrm.domain`, `mailcrm.store` (through its functions; no SQL here),
`mailcrm.settings` (the `WebSettings` slice), `mailcrm.errors`. Nothing imports `web`
but the composition roots (`mailcrm.daemon`, `mailcrm.cli`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from mailcrm.settings import WebSettings
from mailcrm.web import keys as link_keys
from mailcrm.web.keys import LinkKeys
from mailcrm.web.links import Links

__all__ = ["Endpoint", "LinkKeys", "Links", "endpoint"]


@dataclass(frozen=True)
class Endpoint:
    """What the composition root needs from the web settings: the keys and the link maker."""

    keys: LinkKeys
    links: Links | None  # None: emails carry no links to the endpoint (`web.base_url` unset)


def endpoint(web: WebSettings, base_dir: Path) -> Endpoint:
    """The keys (`ConfigError` naming the setting when missing) and the link maker."""
    loaded = link_keys.load(web, base_dir)
    links = Links(web.base_url, loaded) if web.base_url is not None else None
    return Endpoint(loaded, links)

"""`mailcrm web`: serve the web endpoint alone (no sync, planning or sending).

For a second machine in front of a shared PostgreSQL, or to try the unsubscribe page.
`mailcrm run` serves the same app beside its other work when `web.enabled` is true.
"""

from __future__ import annotations

import asyncio
import signal
import socket
from typing import Annotated

import typer

from mailcrm.cli.context import app_context
from mailcrm.cli.output import JSON_HELP, emit, info
from mailcrm.settings import WebSettings
from mailcrm.store.db import Database
from mailcrm.web import endpoint
from mailcrm.web.keys import LinkKeys


def web(
    ctx: typer.Context,
    host: Annotated[
        str | None, typer.Option(help="Address to listen on (default: web.host, 127.0.0.1).")
    ] = None,
    port: Annotated[
        int | None, typer.Option(min=1, max=65535, help="Port to listen on (default: web.port, 8080).")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help=JSON_HELP)] = False,
) -> None:
    """Serve the web endpoint (one-click unsubscribe links) until Ctrl-C or SIGTERM.

    Needs the key that signs links: web.secret_env or web.secret_file. Behind a reverse
    proxy, list its address in web.trusted_proxies so X-Forwarded-For is believed.

    With --json, one object when it stops: `url` (where it listened) and `stopped`.

    Example: mailcrm web --port 8080   (mailcrm.yaml: web: {secret_env: MAILCRM_WEB_SECRET})
    """
    context = app_context(ctx)
    settings = context.settings
    site = endpoint(settings.web, settings.base_dir)  # no key: refused before the database opens
    chosen_host = host if host is not None else settings.web.host
    chosen_port = port if port is not None else settings.web.port
    from mailcrm.web import server  # uvicorn and FastAPI are slow to import; only here

    listening = server.bind(chosen_host, chosen_port)
    try:
        db = context.database()
    except BaseException:
        listening.close()
        raise
    url = f"http://{chosen_host}:{listening.getsockname()[1]}"
    info(f"serving on {url} (Ctrl-C stops)")
    asyncio.run(_serve(settings.web, db, site.keys, listening))
    emit(as_json, {"url": url, "stopped": True}, lambda: info("stopped"))


async def _serve(settings: WebSettings, db: Database, keys: LinkKeys, listening: socket.socket) -> None:
    from mailcrm.web import server
    from mailcrm.web.app import create_app

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    try:
        host, port = listening.getsockname()[:2]
        served = server.config(create_app(settings, db, keys), settings, host=host, port=port)
        await server.serve(served, stop, listening)
    finally:
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(signum)

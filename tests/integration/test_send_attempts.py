"""Every delivery attempt is kept with the server's reply, and `outbox show` lists them."""

from __future__ import annotations

import asyncio
import json
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import typer
from sendrunner import make_settings, plan, seed_customers, write_templates
from servers.smtpd import RecordingSMTPServer
from sqlalchemy import select
from typer.testing import CliRunner

from mailcrm.cli import outbox as outbox_cli
from mailcrm.cli.context import AppContext
from mailcrm.render import TemplateRenderer
from mailcrm.send.results import SendStats
from mailcrm.send.sharing import sender_config
from mailcrm.send.worker import Sender
from mailcrm.settings import Settings
from mailcrm.store.db import Database
from mailcrm.store.models import OutboxItem, table_of
from mailcrm.store.types import utcnow


def _cli(config: Path) -> typer.Typer:
    app = typer.Typer()

    @app.callback()
    def root(ctx: typer.Context) -> None:
        context = AppContext(config_path=config)
        ctx.obj = context
        ctx.call_on_close(context.close)

    app.add_typer(outbox_cli.app, name="outbox")
    return app


def _show(db: Database, tmp_path: Path, *json_flag: str) -> Any:
    """`mailcrm outbox show` of the only outbox row."""
    with db.read() as session:
        row_id = session.execute(select(table_of(OutboxItem).c.id)).scalar_one()
    config = tmp_path / "mailcrm.yaml"
    config.write_text(f"database:\n  url: {db.url.render_as_string(hide_password=False)}\n")
    result = CliRunner().invoke(
        _cli(config), ["outbox", "show", str(row_id), *json_flag], catch_exceptions=False
    )
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout) if json_flag else result.stdout


async def _send(db: Database, settings: Settings, tmp_path: Path, hours: int = 0) -> SendStats:
    renderer = TemplateRenderer(write_templates(tmp_path / "templates"))
    sender = Sender(db, sender_config(settings), renderer, worker_id="attempts")
    try:
        return await asyncio.wait_for(sender.send_due(utcnow() + timedelta(hours=hours)), timeout=60)
    finally:
        await sender.close()


async def test_a_451_after_data_then_success_is_two_attempts_and_one_delivery(
    db: Database, smtpd: RecordingSMTPServer, tmp_path: Path
) -> None:
    ids = seed_customers(db, 1)
    plan(db, ids)
    smtpd.handler.queue_reply("DATA", "451 4.3.0 queue full, try later")
    settings = make_settings(smtpd.port)

    assert (await _send(db, settings, tmp_path)).retried == 1
    assert (await _send(db, settings, tmp_path, hours=1)).sent == 1

    (received,) = smtpd.messages  # delivered once
    shown = await asyncio.to_thread(_show, db, tmp_path, "--json")
    assert shown["state"] == "sent" and shown["message_id"] == received.message_id
    history = [(a["outcome"], a["code"]) for a in shown["history"]]
    assert history == [("retry", 451), ("sent", 250)]
    assert shown["history"][0]["reply"] == "4.3.0 queue full, try later"
    assert "OK queued" in shown["history"][1]["reply"]
    text = await asyncio.to_thread(_show, db, tmp_path)
    assert "451" in text and "queue full" in text and "250" in text


@pytest.mark.parametrize(
    ("reply", "outcome", "state"),
    [("550 5.1.1 no such user", "suppressed", "failed"), ("554 5.7.1 rejected", "failed", "failed")],
)
async def test_a_permanent_refusal_is_one_attempt_with_its_reply(
    db: Database, smtpd: RecordingSMTPServer, tmp_path: Path, reply: str, outcome: str, state: str
) -> None:
    ids = seed_customers(db, 1)
    plan(db, ids)
    smtpd.handler.reply_at["RCPT"] = reply
    await _send(db, make_settings(smtpd.port), tmp_path)
    assert smtpd.messages == []
    shown = await asyncio.to_thread(_show, db, tmp_path, "--json")
    assert shown["state"] == state
    code, _, text = reply.partition(" ")
    assert [(a["outcome"], a["code"], a["reply"]) for a in shown["history"]] == [(outcome, int(code), text)]

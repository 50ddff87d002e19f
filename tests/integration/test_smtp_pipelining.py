"""One SMTP transaction, pipelined (RFC 2920) or command by command, against real servers.

aiosmtpd (which reads pipelined commands one by one) runs each case twice: advertising
PIPELINING and not. A small scripted server on loopback checks what only pipelining
can pass: it answers nothing until MAIL, RCPT and DATA have all arrived, and it splits
its replies across TCP segments and continuation lines.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager

import pytest
from servers.smtpd import RecordingHandler, RecordingSMTPServer

from mailcrm import wiring
from mailcrm.domain.retry import Phase
from mailcrm.settings import SmtpAccount
from mailcrm.smtp.errors import SmtpSendError
from mailcrm.smtp.pool import SmtpPool, SmtpReply

HOST = "127.0.0.1"
SENDER = "alice@acme.example"
MESSAGE = (
    b"From: Alice <alice@acme.example>\r\nTo: <ann@example.org>\r\nSubject: hello\r\n"
    b"Message-ID: <m1@acme.example>\r\n\r\n.leading dot survives\r\nbody\r\n"
)


def _pool(port: int, *, timeout: float = 5.0) -> SmtpPool:
    account = SmtpAccount.model_validate(
        {"host": HOST, "port": port, "security": "plain", "max_connections": 1, "timeout_seconds": timeout}
    )
    return SmtpPool(SENDER, wiring.smtp_params(account), local_hostname="client.test")


async def _allowed() -> bool:
    return True


async def _send(pool: SmtpPool, *recipients: str, message: bytes = MESSAGE) -> SmtpReply:
    async with pool.connection() as connection:
        return await connection.send(SENDER, list(recipients), message, before_dot=_allowed)


@pytest.fixture(params=["pipelined", "one by one"])
def server(request: pytest.FixtureRequest) -> Iterator[RecordingSMTPServer]:
    handler = RecordingHandler()
    handler.pipelining = request.param == "pipelined"
    with RecordingSMTPServer(handler) as running:
        yield running


async def test_messages_are_delivered_over_one_reused_connection(server: RecordingSMTPServer) -> None:
    pool = _pool(server.port)
    try:
        replies = [await _send(pool, f"c{i}@example.org") for i in range(3)]
    finally:
        await pool.close()
    assert [r.code for r in replies] == [250, 250, 250]
    received = server.messages
    assert [m.rcpt_tos for m in received] == [(f"c{i}@example.org",) for i in range(3)]
    assert all(m.mail_from == SENDER for m in received)
    assert b"\r\n.leading dot survives\r\n" in received[0].content  # dot-stuffing undone by the server


@pytest.mark.parametrize(
    ("verb", "reply", "phase"),
    [
        ("MAIL", "451 4.3.0 try again", Phase.MAIL),
        ("RCPT", "550 5.1.1 no such user", Phase.RCPT),
        ("DATA", "452 4.3.1 out of space", Phase.DOT),  # aiosmtpd's DATA hook answers the final "."
    ],
)
async def test_a_refusal_names_its_command_and_leaves_the_connection_usable(
    server: RecordingSMTPServer, verb: str, reply: str, phase: Phase
) -> None:
    server.handler.queue_reply(verb, reply)
    pool = _pool(server.port)
    try:
        with pytest.raises(SmtpSendError) as refused:
            await _send(pool, "ann@example.org")
        after = await _send(pool, "bob@example.org")
    finally:
        await pool.close()
    outcome = refused.value.outcome
    assert (outcome.phase, outcome.code, outcome.text) == (phase, int(reply[:3]), reply[4:])
    assert after.code == 250
    assert [m.rcpt_tos for m in server.messages] == [("bob@example.org",)]


async def test_421_at_mail_closes_the_connection_and_the_next_send_reconnects(
    server: RecordingSMTPServer,
) -> None:
    server.handler.queue_reply("MAIL", "421 4.7.0 try later")
    pool = _pool(server.port)
    try:
        with pytest.raises(SmtpSendError) as refused:
            await _send(pool, "ann@example.org")
        async with pool.connection() as connection:
            assert not connection.connected  # not reused after the server said it is closing
        assert (await _send(pool, "ann@example.org")).code == 250
    finally:
        await pool.close()
    assert (refused.value.outcome.phase, refused.value.outcome.code) == (Phase.MAIL, 421)
    assert len(server.messages) == 1


async def test_one_refused_recipient_of_two_sends_nothing(server: RecordingSMTPServer) -> None:
    """DATA got its 354 for the accepted recipient; the send still stops at the refusal,
    and the message must not reach the other recipient either."""
    server.handler.reply_for_rcpt["bad@example.org"] = "550 5.1.1 no such user"
    pool = _pool(server.port)
    try:
        with pytest.raises(SmtpSendError) as refused:
            await _send(pool, "ann@example.org", "bad@example.org")
        assert (await _send(pool, "ann@example.org")).code == 250
    finally:
        await pool.close()
    assert (refused.value.outcome.phase, refused.value.outcome.code) == (Phase.RCPT, 550)
    assert [m.rcpt_tos for m in server.messages] == [("ann@example.org",)]


# --- a server that only answers pipelined clients -------------------------------------------


class StrictPipeliningServer:
    """Answers MAIL, RCPT and DATA only once all three have arrived, each reply in its own
    TCP write and multi-line; records each message's body."""

    def __init__(self) -> None:
        self.bodies: list[bytes] = []
        self.port = 0

    async def _session(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        async def reply(*lines: bytes) -> None:
            for line in lines:  # one segment per line, with a pause: replies arrive in pieces
                writer.write(line)
                await writer.drain()
                await asyncio.sleep(0.005)

        try:
            await reply(b"220 strict.test ESMTP\r\n")
            await reader.readline()  # EHLO
            await reply(b"250-strict.test\r\n", b"250-PIPELINING\r\n", b"250 8BITMIME\r\n")
            while True:
                group = [await reader.readline() for _ in range(3)]
                if group[0].startswith(b"QUIT") or not group[0]:
                    break
                if not (group[0].startswith(b"MAIL") and group[2] == b"DATA\r\n"):
                    await reply(b"503 5.5.1 expected a pipelined MAIL, RCPT, DATA\r\n")
                    break
                await reply(
                    b"250-2.1.0 sender\r\n", b"250 2.1.0 ok\r\n", b"250 2.1.5 ok\r\n", b"354 go on\r\n"
                )
                body = b""
                while (line := await reader.readline()) not in (b".\r\n", b""):
                    body += line
                self.bodies.append(body)
                await reply(b"250-2.0.0 queued\r\n", b"250 2.0.0 as m1\r\n")
        finally:
            writer.close()

    @asynccontextmanager
    async def running(self) -> AsyncIterator[StrictPipeliningServer]:
        server = await asyncio.start_server(self._session, HOST, 0)
        self.port = server.sockets[0].getsockname()[1]
        try:
            yield self
        finally:
            server.close()
            await server.wait_closed()


async def test_commands_are_pipelined_and_split_replies_are_reassembled() -> None:
    async with StrictPipeliningServer().running() as server:
        pool = _pool(server.port, timeout=3.0)  # a one-by-one client would wait for MAIL's reply forever
        try:
            first = await asyncio.wait_for(_send(pool, "ann@example.org"), 10)
            second = await asyncio.wait_for(_send(pool, "bob@example.org"), 10)
        finally:
            await pool.close()
    assert (first.code, first.text) == (250, "2.0.0 queued\n2.0.0 as m1")
    assert second.code == 250
    assert len(server.bodies) == 2
    assert b"\r\n..leading dot survives\r\n" in server.bodies[0]  # dot-stuffed on the wire

"""An aiosmtpd server that wants a login: PLAIN and LOGIN with one password, XOAUTH2 with one token.

``AuthHandler`` records every login attempt as ``(mechanism, user, secret)`` and refuses
MAIL from a session that has not logged in, so a delivered message proves the login
worked. A refused XOAUTH2 token gets the error challenge Gmail sends (base64 JSON with
``"status":"401"``); the client must answer it with an empty line, then gets 535.
AUTH runs over plain TCP (``auth_require_tls=False``): the server only listens on loopback.
"""

from __future__ import annotations

import base64
import binascii
import json
import threading
from collections.abc import Iterable
from typing import Any

from aiosmtpd.smtp import MISSING, AuthResult, LoginPassword

from .smtpd import RecordingHandler, RecordingSMTPServer

OAUTH_ERROR = {"status": "401", "schemes": "bearer", "scope": "https://mail.google.com/"}


class AuthHandler(RecordingHandler):
    """Accepts ``user`` with ``password`` (PLAIN, LOGIN) or with ``token`` (XOAUTH2)."""

    def __init__(self, user: str, *, password: str = "", token: str = "") -> None:
        super().__init__()
        self.user = user
        self.password = password
        self.token = token
        self._logins: list[tuple[str, str, str]] = []
        self._lock = threading.Lock()

    @property
    def logins(self) -> list[tuple[str, str, str]]:
        """``(mechanism, user, secret)`` of every login attempt, accepted or not."""
        with self._lock:
            return list(self._logins)

    def _record(self, mechanism: str, user: str, secret: str) -> None:
        with self._lock:
            self._logins.append((mechanism, user, secret))

    def authenticator(
        self, server: Any, session: Any, envelope: Any, mechanism: str, auth_data: Any
    ) -> AuthResult:
        """PLAIN and LOGIN (aiosmtpd decodes them and calls this)."""
        assert isinstance(auth_data, LoginPassword)
        user, password = auth_data.login.decode(), auth_data.password.decode()
        self._record(mechanism, user, password)
        ok = bool(self.password) and (user, password) == (self.user, self.password)
        return AuthResult(success=ok, handled=False, auth_data=auth_data)

    async def auth_XOAUTH2(self, server: Any, args: list[str]) -> AuthResult:
        """``AUTH XOAUTH2 <base64(user=...^Aauth=Bearer ...^A^A)>``, as Gmail and Outlook take it."""
        if len(args) < 2:
            answer = await server.challenge_auth("")
            if answer is MISSING:
                return AuthResult(success=False, handled=True)
            blob = bytes(answer)
        else:
            try:
                blob = base64.b64decode(args[1], validate=True)
            except binascii.Error:
                await server.push("501 5.5.2 Can't decode base64")
                return AuthResult(success=False, handled=True)
        fields = dict(part.split("=", 1) for part in blob.decode().split("\x01") if "=" in part)
        user = fields.get("user", "")
        token = fields.get("auth", "").removeprefix("Bearer ")
        self._record("XOAUTH2", user, token)
        if self.token and (user, token) == (self.user, self.token):
            return AuthResult(success=True, auth_data=user)
        answer = await server.challenge_auth(json.dumps(OAUTH_ERROR, separators=(",", ":")))
        if answer is MISSING:  # the client sent "*" instead of the empty line
            return AuthResult(success=False, handled=True)
        return AuthResult(
            success=False, handled=False, message="535 5.7.8 Username and Password not accepted"
        )

    async def handle_MAIL(
        self, server: Any, session: Any, envelope: Any, address: str, mail_options: list[str]
    ) -> str:
        if not session.authenticated:
            return "530 5.7.0 Authentication required"
        return await super().handle_MAIL(server, session, envelope, address, mail_options)


class AuthSMTPServer(RecordingSMTPServer):
    """A ``RecordingSMTPServer`` that offers AUTH (minus ``exclude``) on plain loopback TCP."""

    handler: AuthHandler

    def __init__(self, handler: AuthHandler, *, exclude: Iterable[str] = ()) -> None:
        super().__init__(handler)
        self.exclude = list(exclude)

    def controller_options(self) -> dict[str, Any]:
        return {
            "authenticator": self.handler.authenticator,
            "auth_require_tls": False,
            "auth_exclude_mechanism": self.exclude,
        }

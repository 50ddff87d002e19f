"""Shared fixtures: private real servers (Dovecot, SMTP, PostgreSQL) and database URLs.

Tests needing a server that is unavailable here are skipped with the reason, unless
``MAILCRM_TEST_REQUIRE_SERVICES=1`` (as in CI), where a missing server is a failure.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from servers.dovecot import DovecotServer, ImapCredentials, dovecot_available
from servers.postgres import create_database, drop_database, postgres_available
from servers.smtpd import RecordingSMTPServer

REQUIRE_SERVICES_ENV = "MAILCRM_TEST_REQUIRE_SERVICES"

# Tests using these fixtures get the matching marker, so `-m "not dovecot"` deselects them.
_FIXTURE_MARKERS = {"dovecot": "dovecot", "imap_user": "dovecot", "postgres_url": "postgres"}


def services_required() -> bool:
    return os.environ.get(REQUIRE_SERVICES_ENV, "").strip().lower() in {"1", "true", "yes"}


def require_service(reason: str | None) -> None:
    """Skip the requesting test when a server is unavailable, or fail if servers are required."""
    if reason is None:
        return
    if services_required():
        pytest.fail(f"{reason} ({REQUIRE_SERVICES_ENV}=1)", pytrace=False)
    pytest.skip(reason)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        fixturenames = getattr(item, "fixturenames", ())
        for fixture, marker in _FIXTURE_MARKERS.items():
            if fixture in fixturenames:
                item.add_marker(marker)


@pytest.fixture(scope="session")
def dovecot() -> Iterator[DovecotServer]:
    """A private Dovecot for the whole session; tests may kill() and restart() it."""
    require_service(dovecot_available())
    server = DovecotServer()
    try:
        server.start()
        yield server
    finally:
        server.close()


@pytest.fixture
def imap_user(dovecot: DovecotServer) -> ImapCredentials:
    """A fresh mailbox user with a random name and password on the running ``dovecot``."""
    # An earlier test may have left the shared server killed.
    dovecot.ensure_running()
    return dovecot.add_user()


@pytest.fixture
def smtpd() -> Iterator[RecordingSMTPServer]:
    """A recording SMTP server on a free loopback port, fresh for each test."""
    server = RecordingSMTPServer()
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """SQLAlchemy URL of an empty PostgreSQL database created for this session only."""
    require_service(postgres_available())
    database = create_database()
    try:
        yield database.url
    finally:
        drop_database(database.name)


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    """SQLAlchemy URL of a SQLite file private to the test."""
    return f"sqlite:///{tmp_path}/mailcrm.db"

"""Shared fixtures: private real servers (Dovecot, SMTP, PostgreSQL) and database URLs.

Tests needing a server (or CPython's email test data) that is unavailable here are skipped
with the reason, unless ``MAILCRM_TEST_REQUIRE_SERVICES=1`` (as in CI), where a missing
server is a failure.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import trustme
from servers.dovecot import (
    TLS_SERVER_NAME,
    DovecotServer,
    ImapCredentials,
    TlsFiles,
    dovecot_available,
)
from servers.postgres import create_database, drop_database, postgres_available
from servers.smtpd import RecordingSMTPServer

REQUIRE_SERVICES_ENV = "MAILCRM_TEST_REQUIRE_SERVICES"

# Tests using these fixtures get the matching marker, so `-m "not dovecot"` deselects them.
_FIXTURE_MARKERS = {
    "dovecot": "dovecot",
    "imap_user": "dovecot",
    "dovecot_tls": "dovecot",
    "tls_imap_user": "dovecot",
    "postgres_url": "postgres",
}


def services_required() -> bool:
    return os.environ.get(REQUIRE_SERVICES_ENV, "").strip().lower() in {"1", "true", "yes"}


def require_service(reason: str | None) -> None:
    """Skip the requesting test when a server is unavailable, or fail if servers are required."""
    if reason is None:
        return
    if services_required():
        pytest.fail(f"{reason} ({REQUIRE_SERVICES_ENV}=1)", pytrace=False)
    pytest.skip(reason)


@pytest.fixture(scope="session")
def require() -> Callable[[str | None], None]:
    """`require(reason)`, for a test needing a program no fixture starts: skips with `reason`
    (or fails, where services are required); does nothing when `reason` is None."""
    return require_service


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


@pytest.fixture(scope="session")
def tls_ca() -> trustme.CA:
    """A throw-away certificate authority; nothing trusts it unless told to."""
    return trustme.CA()


@pytest.fixture(scope="session")
def tls_ca_file(tls_ca: trustme.CA, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The test CA's certificate as a PEM file (for `ca_file:` settings)."""
    path = tmp_path_factory.mktemp("tls-ca") / "ca.pem"
    tls_ca.cert_pem.write_to_path(str(path))
    return path


@pytest.fixture(scope="session")
def dovecot_tls(tls_ca: trustme.CA) -> Iterator[DovecotServer]:
    """A second private Dovecot serving implicit TLS on ``tls_port`` and STARTTLS on ``port``,
    with a certificate for ``localhost`` signed by ``tls_ca``."""
    require_service(dovecot_available())
    cert = tls_ca.issue_cert(TLS_SERVER_NAME)
    chain = b"".join(blob.bytes() for blob in cert.cert_chain_pems)
    server = DovecotServer(tls=TlsFiles(chain, cert.private_key_pem.bytes()))
    try:
        server.start()
        yield server
    finally:
        server.close()


@pytest.fixture
def tls_imap_user(dovecot_tls: DovecotServer) -> ImapCredentials:
    """A fresh mailbox user on ``dovecot_tls`` (``tls_port`` is set)."""
    dovecot_tls.ensure_running()
    return dovecot_tls.add_user()


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


def _stdlib_email_data() -> list[Path]:
    """CPython's own email test messages: Debian's testsuite package or this interpreter's."""
    version = f"python{sys.version_info[0]}.{sys.version_info[1]}"
    candidates = [
        Path("/usr/lib") / version / "test" / "test_email" / "data",
        Path(sys.base_prefix) / "lib" / version / "test" / "test_email" / "data",
    ]
    for folder in candidates:
        if folder.is_dir():
            return sorted(folder.glob("msg_*.txt"))
    return []


@pytest.fixture(scope="session")
def stdlib_email_messages() -> list[Path]:
    """The stdlib's malformed-MIME corpus (``test_email/data/msg_*.txt``). Missing, the test
    skips, or fails where services are required: CI must not lose the check silently."""
    found = _stdlib_email_data()
    version = f"{sys.version_info[0]}.{sys.version_info[1]}"
    require_service(
        None
        if found
        else f"CPython's email test data is absent (apt-get install libpython{version}-testsuite)"
    )
    return found

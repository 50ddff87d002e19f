"""Write the demo configuration and sample files, and load them through the real import path:
customers and purchases through the CSV importer, mail through IMAP sync."""

from __future__ import annotations

import csv
import ipaddress
import os
import re
import shutil
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlmodel import Session

from mailcrm.daemon import mailbox_workers
from mailcrm.demo.data import SALESPEOPLE, DemoCustomer
from mailcrm.demo.mailbox import DemoMail
from mailcrm.domain.values import from_minor_units
from mailcrm.errors import ConfigError
from mailcrm.settings import Settings
from mailcrm.store import companies, notes, overview
from mailcrm.store import customers as customer_store
from mailcrm.store.db import Database
from mailcrm.sync.engine import FolderResult

if TYPE_CHECKING:
    from mailcrm.demo.imap_server import DemoImapServer

MARKER = ".mailcrm-demo"


@dataclass(frozen=True)
class DemoPaths:
    root: Path

    @property
    def config(self) -> Path:
        return self.root / "mailcrm.yaml"

    @property
    def database(self) -> Path:
        return self.root / "mailcrm.db"

    @property
    def customers_csv(self) -> Path:
        return self.root / "customers.csv"

    @property
    def purchases_csv(self) -> Path:
        return self.root / "purchases.csv"

    @property
    def rules(self) -> Path:
        return self.root / "rules"

    @property
    def sent(self) -> Path:
        """Where the demo's SMTP server writes every message it receives."""
        return self.root / "sent"


PASSWORD_ENV_PREFIX = "MAILCRM_DEMO_IMAP_PASSWORD_"
MAIL_KINDS = ("email_out", "email_in", "reply", "auto_reply", "bounced")


def password_env(email: str) -> str:
    """The environment variable that carries a salesperson's demo IMAP password."""
    return PASSWORD_ENV_PREFIX + re.sub(r"[^A-Z0-9]", "_", email.partition("@")[0].upper())


@dataclass(frozen=True)
class ImapEndpoint:
    """Where the demo's own IMAP server listens."""

    host: str
    port: int


@dataclass(frozen=True)
class SmtpEndpoint:
    """Where the demo's own SMTP server listens."""

    host: str
    port: int


RULES_YAML = """\
# Demo rules written by `mailcrm demo`, in the shape of config/rules.example/alice.yaml.
# No `owner:`: the rules are for every customer, sent from the customer's salesperson.
# Check them with:  mailcrm --config mailcrm.yaml rules check

send_window: any                 # the demo sends at any hour, so it works whenever it runs
send_time: "09:00"               # customer's local time for date-based rules

rules:
  - name: thank-you              # a day after every purchase
    when: {after: purchase, wait: 1d}
    template: thank_you

  - name: birthday-card          # Feb 29 birthdays get their card on Feb 28 in common years
    when: {anniversary_of: birthday}
    template: birthday

  - name: purchase-anniversary   # weekdays in office hours only: may be planned for later
    when: {anniversary_of: first_purchase}
    template: anniversary
    send_window: {days: mon-fri, hours: "09:00-17:00"}

  - name: follow-up              # no reply three days after a mail; a reply stops it
    when: {no_reply_to: any_outbound, wait: 3d}
    repeat: {times: 1, every: 4d}
    template: follow_up

  - name: win-back               # quiet for about six months
    when: {no_purchase_for: 180d}
    template: win_back
"""


def _salesperson_yaml(
    name: str, email: str, language: str, zone: str, imap: ImapEndpoint | None, smtp: SmtpEndpoint | None
) -> str:
    text = f"  - name: {name}\n    email: {email}\n    language: {language}\n    timezone: {zone}\n"
    if imap is not None:
        text += (
            f"    imap:\n      host: {imap.host}\n      port: {imap.port}\n      security: plain\n"
            f"      username: {email}\n      password_env: {password_env(email)}\n"
            "      timeout_seconds: 10\n"
        )
    if smtp is not None:
        text += (
            f"    smtp:\n      host: {smtp.host}\n      port: {smtp.port}\n      security: plain\n"
            "      max_connections: 2\n      timeout_seconds: 10\n"
        )
    return text


def _check_loopback(host: str) -> None:
    """The demo's servers exist only on this machine; its config never points elsewhere."""
    if not ipaddress.ip_address(host).is_loopback:
        raise ConfigError(f"the demo servers must listen on loopback, not {host}")


def prepare(root: Path, imap: ImapEndpoint | None = None, smtp: SmtpEndpoint | None = None) -> DemoPaths:
    """Create (or reset) the demo folder; refuses to touch a folder it did not create.

    With `imap`, every salesperson gets an account on the demo's IMAP server; the
    password is only in the environment variable `password_env` names, never in the file.
    With `smtp`, they send through the demo's SMTP server (loopback, no login, relays
    nothing), and the demo rules are written to `rules/`.
    """
    for endpoint in (imap, smtp):
        if endpoint is not None:
            _check_loopback(endpoint.host)
    paths = DemoPaths(root.resolve())
    if root.exists() and any(root.iterdir()):
        if not (root / MARKER).exists():
            raise ConfigError(
                f"{root} exists and is not a mailcrm demo folder",
                hint="choose another folder with --dir, or remove it",
            )
        shutil.rmtree(root)
    root.mkdir(parents=True, exist_ok=True)
    (root / MARKER).write_text("created by `mailcrm demo`; safe to delete\n", encoding="utf-8")
    people = "".join(_salesperson_yaml(*person, imap, smtp) for person in SALESPEOPLE)
    note = (
        "# The imap: accounts are on the IMAP server that `mailcrm demo` runs while it syncs;\n"
        "# it stops when the demo ends, and its passwords are new on every run.\n"
        if imap is not None
        else ""
    )
    planning = ""
    if smtp is not None:
        note += (
            "# The smtp: accounts are on the SMTP server that `mailcrm demo` runs while it sends\n"
            "# (127.0.0.1 only; it keeps every message in sent/ and relays nothing). It stops when\n"
            "# the demo ends, so later `mailcrm run` sends fail and are retried: nothing leaves\n"
            "# this machine.\n"
        )
        planning = (
            "rules_dir: rules\n"
            "planning:\n"
            "  catch_up_days: 2    # a new installation looks back two days ...\n"
            "  grace_hours: 48     # ... and still sends what it finds there\n"
        )
        paths.rules.mkdir()
        (paths.rules / "team.yaml").write_text(RULES_YAML, encoding="utf-8")
    paths.config.write_text(
        "# Demo configuration written by `mailcrm demo`.\n"
        f"{note}"
        "database:\n  url: sqlite:///mailcrm.db\n"
        "defaults:\n  timezone: Asia/Bangkok\n  language: en\n"
        f"{planning}"
        f"salespeople:\n{people}",
        encoding="utf-8",
    )
    return paths


def write_csvs(paths: DemoPaths, people: Iterable[DemoCustomer]) -> None:
    """Sample files in the shapes `customers import` and `purchases import` read."""
    rows = list(people)
    with paths.customers_csv.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(
            ["Name", "Email", "Language", "Time zone", "Birthday", "Owner", "Lead source",
             "Company", "Tags"]
        )  # fmt: skip
        for person in rows:
            writer.writerow(
                [person.name, ";".join(person.emails), person.language, person.timezone,
                 person.birthday.isoformat() if person.birthday else "", person.owner,
                 person.lead_source, person.company[0] if person.company else "",
                 ",".join(person.tags)]
            )  # fmt: skip
    with paths.purchases_csv.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["Email", "Date", "Product", "Quantity", "Amount", "Currency"])
        for person in rows:
            for purchase in person.purchases:
                writer.writerow(
                    [person.emails[0], purchase.when.isoformat(timespec="seconds"),
                     purchase.product, purchase.quantity,
                     from_minor_units(purchase.amount_minor, purchase.currency), purchase.currency]
                )  # fmt: skip


def add_history(db: Database, people: Iterable[DemoCustomer]) -> None:
    """Company domains and dated notes (the parts a CSV import does not carry)."""
    with db.write() as session:
        for person in people:
            customer = customer_store.resolve(session, person.emails[0])
            assert customer.id is not None
            if person.company:
                company_id = companies.get_or_create(session, person.company[0])
                companies.add_domain(session, company_id, person.company[1])
            for when, text in person.notes:
                notes.add(session, customer.id, person.owner, text, at=when)


# -- mail ------------------------------------------------------------------------------------

_COUNTS = ("fetched", "new_messages", "links", "leads", "new_addresses", "bounces", "malformed")


@dataclass
class MailboxReport:
    """What syncing one demo mailbox did, folder by folder (all passes added up)."""

    mailbox: str
    folders: dict[str, dict[str, int]] = field(default_factory=dict)

    def add(self, results: Iterable[FolderResult]) -> None:
        for result in results:
            counts = self.folders.setdefault(result.folder, dict.fromkeys(_COUNTS, 0))
            counts["fetched"] += result.fetched
            for name in _COUNTS[1:]:
                counts[name] += getattr(result.stats, name)

    def to_json(self) -> dict[str, Any]:
        return {
            "mailbox": self.mailbox,
            "folders": [{"folder": folder, **counts} for folder, counts in self.folders.items()],
        }


@contextmanager
def login_env(server: DemoImapServer, settings: Settings) -> Iterator[None]:
    """While the block runs, every salesperson's IMAP password for `server` is in the
    environment variable the config names (the config never holds it); the previous
    values come back afterwards."""
    saved: dict[str, str | None] = {}
    for person in settings.salespeople:
        account = person.imap
        if account is not None and account.password_env:
            saved.setdefault(account.password_env, os.environ.get(account.password_env))
            os.environ[account.password_env] = server.login(account.username)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


async def sync_mail(
    db: Database,
    settings: Settings,
    server: DemoImapServer,
    mail: Sequence[DemoMail],
    *,
    keep_serving: bool = False,
) -> list[MailboxReport]:
    """Serve the history, sync every mailbox once, then deliver the late mail and sync again.

    The second pass is how a reply from a customer's new address is recognised: the
    thread it answers must already be stored, as it is for any mail that arrives after
    a mailbox's first sync. The passwords are removed from the environment whatever
    happens; the server is stopped too, unless `keep_serving` (`demo --serve`, whose
    daemon syncs from it next) and all went well.
    """
    chosen = mailbox_workers(db, settings)
    reports = {worker.mailbox.email: MailboxReport(worker.mailbox.email) for worker in chosen}
    with login_env(server, settings):
        try:
            await server.start(m for m in mail if not m.late)
            for worker in chosen:
                reports[worker.mailbox.email].add(await worker.sync_once())
            late = [m for m in mail if m.late]
            for message in late:
                await server.deliver(message)
            for worker in chosen:
                if any(m.mailbox == worker.mailbox.email for m in late):
                    reports[worker.mailbox.email].add(await worker.sync_once())
        except BaseException:
            await server.stop()
            raise
        if not keep_serving:
            await server.stop()
    return list(reports.values())


def mail_outcome(session: Session, people: Iterable[DemoCustomer]) -> dict[str, list[dict[str, Any]]]:
    """What the sync changed beyond timelines: leads it created, addresses it learned for
    known customers, and the addresses it suppressed."""
    imported = {address for person in people for address in person.emails}
    leads = [
        {"id": customer.id, "name": customer.name, "email": address, "company": company,
         "lead_source": customer.lead_source}
        for customer, address, company in overview.leads(session)
        if address not in imported
    ]  # fmt: skip
    lead_ids = {lead["id"] for lead in leads}
    new_addresses = [
        {"customer_id": customer.id, "name": customer.name, "address": address}
        for customer, address in overview.addresses(session)
        if address not in imported and customer.id not in lead_ids
    ]
    suppressed = [
        {"address": row.address, "reason": row.reason, "customer_id": owner}
        for row, owner in overview.suppressions(session)
    ]
    return {"leads": leads, "new_addresses": new_addresses, "suppressed": suppressed}


def showcase_customer(session: Session) -> int | None:
    """The customer with both purchases and mail whose timeline tells the most: most kinds
    of mail events, then most mail, then most purchases."""
    buyers = overview.purchases_per_customer(session)
    mail: dict[int, tuple[set[str], int]] = {}
    for customer_id, kind in overview.timeline_kinds(session, MAIL_KINDS):
        kinds, count = mail.get(customer_id, (set(), 0))
        kinds.add(kind)
        mail[customer_id] = (kinds, count + 1)
    candidates = [c for c in mail if c in buyers]
    if not candidates:
        return None
    return min(candidates, key=lambda c: (-len(mail[c][0]), -mail[c][1], -buyers[c], c))

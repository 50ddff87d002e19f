"""Write the demo configuration and sample files, and load them through the real import path."""

from __future__ import annotations

import csv
import shutil
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from mailcrm.demo.data import SALESPEOPLE, DemoCustomer
from mailcrm.domain.values import from_minor_units
from mailcrm.errors import ConfigError
from mailcrm.store import companies, notes
from mailcrm.store import customers as customer_store
from mailcrm.store.db import Database

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


def prepare(root: Path) -> DemoPaths:
    """Create (or reset) the demo folder; refuses to touch a folder it did not create."""
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
    people = "\n".join(
        f"  - name: {name}\n    email: {email}\n    language: {language}\n    timezone: {zone}"
        for name, email, language, zone in SALESPEOPLE
    )
    paths.config.write_text(
        "# Demo configuration written by `mailcrm demo`.\n"
        "database:\n  url: sqlite:///mailcrm.db\n"
        "defaults:\n  timezone: Asia/Bangkok\n  language: en\n"
        f"salespeople:\n{people}\n",
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
                note = notes.add(session, customer.id, person.owner, text)
                note.created_at = when
                session.add(note)

"""Benchmark: CSV import of customers and purchases into a fresh database.

Generates (seeded) a customers file with mixed-script names, 1-3 addresses, birthdays,
timezones, languages, tags, companies and lead sources, and a purchases file for those
customers; imports both, then the customers file again to show a re-import changes
nothing. Each phase runs in its own child process, so its peak RSS is the import's own
and not the generator's. As a peer baseline, the sqlite3 shell's `.import --csv` loads
the same customers file into a bare table.

    python benchmarks/import_customers.py [--customers N] [--purchases N] [--json]
                                          [--postgres URL]

`--postgres` runs the phases in a throw-away schema of that database, dropped after.
"""

from __future__ import annotations

import argparse
import csv
import json
import random
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import date, timedelta
from pathlib import Path
from typing import Any

SEED = 20240229
PHASE_TIMEOUT = 1800  # seconds, per child process
MAX_CUSTOMERS = 2_000_000
MAX_PURCHASES = 10_000_000
CUSTOM_MAP = ("Customer No=custom.customer_no", "Notes=-")
SALES_TEAM = (
    ("alice@team.example", "Alice Chen"),
    ("bob@team.example", "Bob Meyer"),
    ("chai@team.example", "Chaiwat Srisuk"),
    ("dara@team.example", "Dara Sok"),
    ("neda@team.example", "Neda Karimi"),
)
CUSTOMER_HEADER = (
    "Full Name",
    "E-mail",
    "Email 2",
    "Secondary Email",
    "Phone",
    "Date of Birth",
    "Time zone",
    "Lang",
    "Account Owner",
    "Lead Source",
    "Labels",
    "Organization",
    "Customer No",
    "Notes",
)
PURCHASE_HEADER = ("Email", "Order Date", "Product", "Qty", "Total", "Currency", "Order ID")

# (given names, family names, how a full name is written, timezone, language, domains)
CULTURES: tuple[tuple[tuple[str, ...], tuple[str, ...], str, str, str, tuple[str, ...]], ...] = (
    (
        ("Anna", "James", "Maria", "Lukas", "Sophie", "Daniel", "Laura", "Jonas", "Emma", "Noah"),
        ("Smith", "Müller", "García", "Johnson", "Schmidt", "Rossi", "Brown", "Fischer", "López"),
        "{first} {last}",
        "Europe/Berlin",
        "en",
        ("example.com", "mail.example", "web.example.de"),
    ),
    (
        ("สมชาย", "สุดา", "วิชัย", "มาลี", "ประเสริฐ", "กมลา", "ธนากร", "อรุณี"),
        ("ใจดี", "ศรีสุข", "วงศ์ไทย", "แสงทอง", "บุญมา", "สุวรรณ"),
        "{first} {last}",
        "Asia/Bangkok",
        "th",
        ("example.co.th", "inbox.example.th"),
    ),
    (
        ("伟", "芳", "娜", "秀英", "敏", "静", "强", "磊"),
        ("王", "李", "张", "刘", "陈", "杨", "黄", "赵"),
        "{last}{first}",
        "Asia/Shanghai",
        "zh-Hans",
        ("example.cn", "mail.example.com.cn"),
    ),
    (
        ("علی", "زهرا", "محمد", "فاطمه", "رضا", "مریم", "حسین", "سارا"),
        ("رضایی", "محمدی", "حسینی", "کریمی", "احمدی", "موسوی"),
        "{first} {last}",
        "Asia/Tehran",
        "fa",
        ("example.ir", "post.example.ir"),
    ),
    (
        ("សុខ", "ចាន់", "ដារ៉ា", "សុភា", "វណ្ណា", "ស្រីពៅ"),
        ("ហេង", "លី", "សេង", "គឹម", "ឈឹម", "ម៉ៅ"),
        "{last} {first}",
        "Asia/Phnom_Penh",
        "km",
        ("example.com.kh", "mail.example.kh"),
    ),
)
IDN_DOMAINS = ("ตัวอย่าง.ไทย", "例子.中国", "bücher.example")
TAGS = ("vip", "seminar", "newsletter", "referral", "wholesale", "trade fair", "b2b", "returning")
SOURCES = ("website", "referral", "trade fair", "cold call", "instagram", "partner", "")
PRODUCTS = tuple(
    f"{kind} {size}"
    for kind in ("Jasmine Rice", "Silk Scarf", "Green Tea", "Teak Bowl", "Coffee Beans")
    for size in ("S", "M", "L", "XL", "Gift Box", "Sample", "Refill", "Bulk", "Mini", "Deluxe")
)


def customer_addresses(index: int, count: int, domains: tuple[str, ...], rng: random.Random) -> list[str]:
    """A customer's addresses, unique by the customer's index."""
    result = [f"c{index}@{domains[index % len(domains)]}"]
    if count > 1:
        result.append(f"c{index}.work@{rng.choice(domains)}")
    if count > 2:
        domain = rng.choice(IDN_DOMAINS) if rng.random() < 0.05 else rng.choice(domains)
        result.append(f"c{index}.private@{domain}")
    return result


def generate_customers(path: Path, count: int, rng: random.Random) -> list[str]:
    """Write the customers file; returns each customer's first address."""
    companies = [
        f"{rng.choice(('Siam', 'Golden', 'Blue', 'Lotus', 'Nordic'))} Trading {n}" for n in range(2000)
    ]
    companies += ["Acme, Inc.", 'The "Best" Co.', "บริษัท สยาม จำกัด", "上海贸易有限公司", "شرکت پارس"]
    start = date(1950, 1, 1)
    primaries: list[str] = []
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(CUSTOMER_HEADER)
        for index in range(count):
            given, family, pattern, zone, language, domains = rng.choice(CULTURES)
            name = pattern.format(first=rng.choice(given), last=rng.choice(family))
            addresses = customer_addresses(index, rng.choice((1, 1, 2, 2, 3)), domains, rng)
            primaries.append(addresses[0])
            addresses += [""] * (3 - len(addresses))
            birthday = (
                (start + timedelta(days=rng.randrange(20000))).isoformat() if rng.random() < 0.7 else ""
            )
            phone = (
                f"+66 8{rng.randrange(10)} {rng.randrange(1000, 9999)} {rng.randrange(1000, 9999)}"
                if rng.random() < 0.6
                else ""
            )
            tags = ", ".join(rng.sample(TAGS, rng.choice((0, 1, 1, 2, 3))))
            company = rng.choice(companies) if rng.random() < 0.6 else ""
            owner = rng.choice(SALES_TEAM)[0] if rng.random() < 0.8 else ""
            notes = "called twice,\nwants a quote" if rng.random() < 0.02 else ""
            writer.writerow(
                (
                    name,
                    *addresses,
                    phone,
                    birthday,
                    zone,
                    language,
                    owner,
                    rng.choice(SOURCES),
                    tags,
                    company,
                    f"K-{index:07d}",
                    notes,
                )
            )
    return primaries


def generate_purchases(path: Path, count: int, primaries: list[str], rng: random.Random) -> None:
    """Write the purchases file: orders of 1-3 lines, 70% with an order number."""
    order = 100000
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(PURCHASE_HEADER)
        written = 0
        while written < count:
            email = rng.choice(primaries)
            day = date(2019, 1, 1) + timedelta(days=rng.randrange(2000))
            when = (
                day.isoformat()
                if rng.random() < 0.5
                else f"{day.isoformat()}T{rng.randrange(8, 20):02d}:{rng.randrange(60):02d}:00+07:00"
            )
            order += 1
            reference = f"SO-{order}" if rng.random() < 0.7 else ""
            currency = rng.choice(("THB", "THB", "USD", "EUR", ""))
            lines = min(count - written, rng.choice((1, 1, 1, 2, 3)))
            for product in rng.sample(PRODUCTS, lines):
                amount = f"{rng.randrange(100, 500000) / 100:.2f}"
                writer.writerow((email, when, product, rng.randrange(1, 6), amount, currency, reference))
                written += 1


def generate(directory: Path, customers: int, purchases: int) -> tuple[Path, Path]:
    rng = random.Random(SEED)
    customers_csv = directory / "customers.csv"
    purchases_csv = directory / "purchases.csv"
    primaries = generate_customers(customers_csv, customers, rng)
    generate_purchases(purchases_csv, purchases, primaries, rng)
    return customers_csv, purchases_csv


# --- phases, each in a child process ---------------------------------------------------


def run_phase(phase: str, url: str, path: Path) -> dict[str, Any]:
    """Run one import in this process and return its figures (called in the child)."""
    import resource

    from mailcrm.store.db import Database
    from mailcrm.store.importer import import_customers, import_purchases

    db = Database(url)
    try:
        started = time.perf_counter()
        if phase == "purchases":
            report = import_purchases(db, path, default_currency="THB", default_timezone="Asia/Bangkok")
        else:
            report = import_customers(db, path, overrides=CUSTOM_MAP)
        seconds = time.perf_counter() - started
    finally:
        db.dispose()
    peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    # The importer reads and validates big files in a worker process: its peak counts too.
    worker_kb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return {
        "phase": phase,
        "rows": report.rows,
        "seconds": round(seconds, 3),
        "rows_per_second": round(report.rows / seconds) if seconds else None,
        "peak_rss_mb": round(peak_kb / 1024, 1),
        "worker_peak_rss_mb": round(worker_kb / 1024, 1),
        "created": report.created,
        "updated": report.updated,
        "unchanged": report.unchanged,
        "failed": report.failed,
        "first_errors": [e.reason for e in report.errors[:3]],
    }


def in_child(phase: str, url: str, path: Path) -> dict[str, Any]:
    command = [sys.executable, __file__, "--phase", phase, "--url", url, "--file", str(path)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=PHASE_TIMEOUT, check=False)
    if done.returncode != 0:
        raise SystemExit(f"phase {phase} failed:\n{done.stderr[-4000:]}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def prepare_database(url: str) -> None:
    """Migrate and add the sales team, outside the measured phases."""
    from mailcrm.store import migrate
    from mailcrm.store.db import Database
    from mailcrm.store.models import Salesperson

    db = Database(url)
    try:
        migrate.upgrade(db)
        with db.write() as session:
            for email, name in SALES_TEAM:
                session.add(Salesperson(email=email, name=name))
    finally:
        db.dispose()


def run_all(url: str, customers_csv: Path, purchases_csv: Path) -> dict[str, Any]:
    prepare_database(url)
    return {
        "customers": in_child("customers", url, customers_csv),
        "purchases": in_child("purchases", url, purchases_csv),
        "reimport": in_child("reimport", url, customers_csv),
    }


def sqlite3_baseline(directory: Path, customers_csv: Path, rows: int) -> dict[str, Any]:
    """The sqlite3 shell loading the same file into a bare all-TEXT table."""
    database = directory / "peer.db"
    started = time.perf_counter()
    subprocess.run(
        ["sqlite3", str(database), f".import --csv {customers_csv} customers"],
        check=True,
        timeout=PHASE_TIMEOUT,
        capture_output=True,
    )
    seconds = time.perf_counter() - started
    return {"rows": rows, "seconds": round(seconds, 3), "rows_per_second": round(rows / seconds)}


def postgres_schema_url(url: str) -> tuple[str, str]:
    """A URL whose search_path is a new, private schema (created here)."""
    from sqlalchemy import create_engine, text

    from mailcrm.store.db import normalize_url

    base = normalize_url(url)
    schema = f"mailcrm_bench_{secrets.token_hex(4)}"
    engine = create_engine(base)
    with engine.begin() as connection:
        connection.execute(text(f'CREATE SCHEMA "{schema}"'))
    engine.dispose()
    scoped = base.update_query_dict({"options": f"-csearch_path={schema}"})
    return scoped.render_as_string(hide_password=False), schema


def drop_postgres_schema(url: str, schema: str) -> None:
    from sqlalchemy import create_engine, text

    from mailcrm.store.db import normalize_url

    engine = create_engine(normalize_url(url))
    with engine.begin() as connection:
        connection.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
    engine.dispose()


def print_results(results: dict[str, Any]) -> None:
    print(f"generated {results['customers']} customers, {results['purchases']} purchases")
    for backend in ("sqlite", "postgres"):
        if backend not in results:
            continue
        phases = results[backend]
        print(f"\n{backend}:")
        for name in ("customers", "purchases", "reimport"):
            p = phases[name]
            print(
                f"  {name:<10} {p['rows']:>8} rows in {p['seconds']:>7.2f} s = "
                f"{p['rows_per_second']:>7} rows/s, peak RSS {p['peak_rss_mb']:.0f} MB "
                f"(worker {p['worker_peak_rss_mb']:.0f} MB), "
                f"created {p['created']}, updated {p['updated']}, unchanged {p['unchanged']}, "
                f"failed {p['failed']}"
            )
    peer = results["sqlite3_shell"]
    print(
        f"\nsqlite3 .import --csv: {peer['rows']} rows in {peer['seconds']:.2f} s = "
        f"{peer['rows_per_second']} rows/s; mailcrm/sqlite3 = {results['ratio_vs_sqlite3']:.2f}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=100_000)
    parser.add_argument("--purchases", type=int, default=300_000)
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    parser.add_argument("--postgres", metavar="URL", help="also run against this PostgreSQL database")
    parser.add_argument("--phase", help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    parser.add_argument("--file", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.phase:
        print(json.dumps(run_phase(args.phase, args.url, args.file)))
        return
    if not 1 <= args.customers <= MAX_CUSTOMERS or not 0 <= args.purchases <= MAX_PURCHASES:
        parser.error(f"--customers 1..{MAX_CUSTOMERS}, --purchases 0..{MAX_PURCHASES}")

    directory = Path(tempfile.mkdtemp(prefix="mailcrm-bench-"))
    try:
        customers_csv, purchases_csv = generate(directory, args.customers, args.purchases)
        results: dict[str, Any] = {"customers": args.customers, "purchases": args.purchases}
        results["sqlite"] = run_all(f"sqlite:///{directory}/mailcrm.db", customers_csv, purchases_csv)
        results["sqlite3_shell"] = sqlite3_baseline(directory, customers_csv, args.customers)
        results["ratio_vs_sqlite3"] = round(
            results["sqlite"]["customers"]["rows_per_second"] / results["sqlite3_shell"]["rows_per_second"],
            3,
        )
        if args.postgres:
            url, schema = postgres_schema_url(args.postgres)
            try:
                results["postgres"] = run_all(url, customers_csv, purchases_csv)
            finally:
                drop_postgres_schema(args.postgres, schema)
    finally:
        shutil.rmtree(directory, ignore_errors=True)
    if args.json:
        print(json.dumps(results, indent=2))
    else:
        print_results(results)


if __name__ == "__main__":
    main()

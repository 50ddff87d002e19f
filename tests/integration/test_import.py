"""CSV import of customers and purchases, as a user sees it: the report and the data.

Runs on SQLite and PostgreSQL (the `db` fixture).
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text

from mailcrm.domain.purchases import purchase_from_fields
from mailcrm.errors import ImportFileError, ValidationError
from mailcrm.store import customers, importer, purchases
from mailcrm.store.db import Database
from mailcrm.store.importer import ImportReport, import_customers, import_purchases
from mailcrm.store.models import Salesperson

HEADER = "Full Name,E-mail,Email 2,Date of Birth,Time zone,Lang,Sales Rep,Labels,Organization,Kundennr"


def write(tmp_path: Path, name: str, content: str, encoding: str = "utf-8") -> Path:
    path = tmp_path / name
    path.write_bytes(content.encode(encoding))
    return path


def by_address(db: Database) -> dict[str, customers.CustomerView]:
    """Every customer's view, under each of its addresses."""
    with db.read() as session:
        views = customers.views(session, customers.search(session, limit=None, include_archived=True))
    return {address.address: view for view in views for address in view.emails}


def errors(report: ImportReport) -> list[tuple[int, str]]:
    return [(e.row, e.reason) for e in report.errors]


def snapshot(db: Database) -> dict[str, list[tuple[Any, ...]]]:
    """Every row an import can touch, timestamps included."""
    queries = {
        "customer": "SELECT * FROM customer ORDER BY id",
        "email_address": "SELECT * FROM email_address ORDER BY id",
        "customer_tag": "SELECT * FROM customer_tag ORDER BY customer_id, tag",
        "company": "SELECT * FROM company ORDER BY id",
        "purchase": "SELECT * FROM purchase ORDER BY id",
    }
    with db.read() as session:
        return {table: [tuple(row) for row in session.execute(text(sql))] for table, sql in queries.items()}


@pytest.fixture
def team(db: Database) -> Database:
    """The database with two salespeople."""
    with db.write() as session:
        session.add(Salesperson(email="alice@team.example", name="Alice"))
        session.add(Salesperson(email="bob@team.example", name="Bob"))
    return db


def test_valid_rows_go_in_and_bad_rows_are_reported(team: Database, tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "customers.csv",
        f"{HEADER},Notes\n"
        "สมชาย ใจดี,somchai@example.co.th,,1985-04-12,Asia/Bangkok,th,alice@team.example,"
        '"vip, seminar",บริษัท สยาม จำกัด,K-1,\n'
        "Bad Address,not-an-address,,,,,,,,K-2,\n"
        "Bad Date,date@example.org,,1985-02-30,,,,,,K-3,\n"
        '"Multi\nLine Name",multi@example.org,,,Europe/Berlin,de,,,"Acme, Inc.",K-4,"a\nb"\n'
        "Bad Zone,zone@example.org,,,Mars/Olympus,,,,,K-5,\n"
        "Bad Owner,owner@example.org,,,,,carol@team.example,,,K-6,\n"
        "王伟,wang@example.cn,WANG@mail.example.cn,,Asia/Shanghai,zh-Hans,bob@team.example,,,K-7,\n"
        ",,,,,,,,,,\n"
        ",nameless@example.org,,,,,,,,K-9,\n",
    )
    report = import_customers(team, path, overrides=["Kundennr=custom.customer_no"])

    assert errors(report) == [
        (3, "email: invalid email address 'not-an-address': An email address must have an @-sign."),
        (4, "birthday: invalid birthday '1985-02-30' (write dates as YYYY-MM-DD, e.g. 1990-02-28)"),
        (
            8,
            "timezone: unknown timezone 'Mars/Olympus' "
            "(use an IANA name such as 'Asia/Bangkok' or 'Europe/Berlin')",
        ),
        (
            9,
            "owner: unknown salesperson 'carol@team.example' (add them under `salespeople:` in mailcrm.yaml)",
        ),
        (12, "name: missing (a new customer needs a name)"),
    ]
    assert (report.rows, report.created, report.skipped, report.failed) == (9, 3, 1, 5)
    assert report.ignored_columns == ["Notes"]
    assert report.to_json()["errors"][0] == {"row": 3, "reason": errors(report)[0][1]}

    stored = by_address(team)
    assert sorted(stored) == [
        "multi@example.org",
        "somchai@example.co.th",
        "wang@example.cn",
        "wang@mail.example.cn",
    ]
    somchai = stored["somchai@example.co.th"]
    assert (somchai.name, somchai.birthday, somchai.timezone, somchai.language) == (
        "สมชาย ใจดี",
        date(1985, 4, 12),
        "Asia/Bangkok",
        "th",
    )
    assert (somchai.owner, somchai.company, somchai.tags, somchai.status) == (
        "alice@team.example",
        "บริษัท สยาม จำกัด",
        ["seminar", "vip"],
        "lead",
    )
    assert somchai.custom == {"customer_no": "K-1"}
    assert stored["multi@example.org"].name == "Multi Line Name"
    assert stored["multi@example.org"].company == "Acme, Inc."
    wang = stored["wang@example.cn"]
    assert [(a.address, a.primary) for a in wang.emails] == [
        ("wang@example.cn", True),
        ("wang@mail.example.cn", False),
    ]


def test_reimporting_the_same_file_changes_nothing(team: Database, tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "customers.csv",
        f"{HEADER}\n"
        "Ann Lee,ann@example.org,ann@work.example,1990-02-28,Europe/Berlin,de,alice@team.example,"
        "vip,Acme,K-1\n"
        "Bob Ray,bob@example.org,,,,,,,Acme,K-2\n"
        "Ann Lee,ANN@work.example,,,,,,newsletter,,\n"
        "Broken,broken,,,,,,,,\n",
    )
    first = import_customers(team, path, overrides=["Kundennr=custom.customer_no"])
    assert (first.created, first.updated, first.unchanged, first.failed) == (2, 1, 0, 1)
    before = snapshot(team)

    again = import_customers(team, path, overrides=["Kundennr=custom.customer_no"])

    assert (again.created, again.updated, again.unchanged, again.failed) == (0, 0, 3, 1)
    assert snapshot(team) == before
    assert by_address(team)["ann@example.org"].tags == ["newsletter", "vip"]


def test_a_second_address_merges_within_one_file(team: Database, tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "customers.csv",
        "Name,Email,Secondary Email,Labels,Phone,Status\n"
        "Ann Lee,ann@example.org,,vip,+66 81 111 2222,\n"
        "Ann B. Lee,ann@work.example,ann@example.org,seminar,,customer\n"
        "Somebody Else,else@example.org,,,,\n",
    )
    report = import_customers(team, path)

    assert (report.created, report.updated, report.unchanged) == (2, 1, 0)
    stored = by_address(team)
    ann = stored["ann@work.example"]
    assert ann.id == stored["ann@example.org"].id
    assert (ann.name, ann.phone, ann.status, ann.tags) == (
        "Ann B. Lee",
        "+66 81 111 2222",
        "customer",
        ["seminar", "vip"],
    )
    assert [(a.address, a.primary) for a in ann.emails] == [
        ("ann@example.org", True),
        ("ann@work.example", False),
    ]


def test_a_second_address_in_a_later_file_merges(team: Database, tmp_path: Path) -> None:
    first = write(tmp_path, "one.csv", f"{HEADER}\nAnn Lee,ann@example.org,,1990-02-28,,,,vip,Acme,\n")
    import_customers(team, first)
    created = by_address(team)["ann@example.org"]

    later = write(
        tmp_path,
        "two.csv",
        "Email,Secondary Email,Name,Labels,Company,Date of Birth\nann@new.example,ann@example.org,,b2b,,\n",
    )
    report = import_customers(team, later)

    assert (report.created, report.updated, report.unchanged, report.failed) == (0, 1, 0, 0)
    ann = by_address(team)["ann@new.example"]
    assert ann.id == created.id
    assert (ann.name, ann.birthday, ann.company) == ("Ann Lee", date(1990, 2, 28), "Acme")
    assert ann.tags == ["b2b", "vip"]
    assert [a.address for a in ann.emails] == ["ann@example.org", "ann@new.example"]
    assert ann.updated_at > created.updated_at
    assert ann.created_at == created.created_at


def test_merges_across_batch_boundaries(team: Database, tmp_path: Path) -> None:
    rows = "".join(f"Person {n},p{n}@example.org,\n" for n in range(5))
    path = write(
        tmp_path,
        "customers.csv",
        "Name,Email,Email 2\n" + rows + "Person Zero,p5@example.org,p0@example.org\n",
    )
    report = import_customers(team, path, batch_size=2)

    assert (report.rows, report.created, report.updated) == (6, 5, 1)
    stored = by_address(team)
    assert stored["p5@example.org"].id == stored["p0@example.org"].id
    assert stored["p0@example.org"].name == "Person Zero"
    assert len({view.id for view in stored.values()}) == 5


def test_a_row_joining_two_customers_is_refused(team: Database, tmp_path: Path) -> None:
    setup = write(tmp_path, "one.csv", "Name,Email\nAnn,ann@example.org\nBob,bob@example.org\n")
    import_customers(team, setup)
    ids = {address: view.id for address, view in by_address(team).items()}
    before = snapshot(team)

    path = write(
        tmp_path,
        "two.csv",
        "Name,Email,Email 2\n"
        "Ann Again,ann@example.org,new@example.org\n"
        "Both,new@example.org,bob@example.org\n",
    )
    report = import_customers(team, path)

    ann, bob = ids["ann@example.org"], ids["bob@example.org"]
    assert errors(report) == [
        (
            3,
            f"addresses of different customers: new@example.org is customer {ann}, "
            f"bob@example.org is customer {bob}; merge those customers first, or split the row",
        )
    ]
    assert report.updated == 1
    stored = by_address(team)
    assert stored["new@example.org"].id == ann
    assert stored["bob@example.org"].name == "Bob"
    assert snapshot(team)["customer"][1] == before["customer"][1]


def test_unchanged_customers_keep_their_updated_at(team: Database, tmp_path: Path) -> None:
    import_customers(team, write(tmp_path, "one.csv", "Name,Email,Labels\nAnn,ann@example.org,vip\n"))
    before = by_address(team)["ann@example.org"]

    report = import_customers(
        team, write(tmp_path, "two.csv", "Name,Email,Labels,Phone\nAnn,ANN@example.org,VIP,\n")
    )

    assert (report.updated, report.unchanged) == (0, 1)
    assert by_address(team)["ann@example.org"].updated_at == before.updated_at


def test_default_owner_applies_to_new_customers_only(team: Database, tmp_path: Path) -> None:
    import_customers(team, write(tmp_path, "one.csv", "Name,Email\nOld,old@example.org\n"))
    path = write(
        tmp_path,
        "two.csv",
        "Name,Email,Owner\nOld,old@example.org,\nNew,new@example.org,\nMine,mine@example.org,alice@team.example\n",
    )
    import_customers(team, path, default_owner="BOB@team.example")

    stored = by_address(team)
    assert stored["old@example.org"].owner is None
    assert stored["new@example.org"].owner == "bob@team.example"
    assert stored["mine@example.org"].owner == "alice@team.example"
    with pytest.raises(ValidationError, match=r"unknown salesperson 'carol@team\.example'"):
        import_customers(team, path, default_owner="carol@team.example")


def test_semicolon_delimited_file_with_bom(team: Database, tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "excel.csv",
        "\ufeffName;E-Mail;Organisation;Labels\r\n"
        "Müller, Hans;hans@example.de;Müller GmbH;kunde, b2b\r\n"
        '"Ødegaard; Ole";ole@example.no;;\r\n',
    )
    report = import_customers(team, path)

    assert (report.created, report.failed, report.ignored_columns) == (2, 0, [])
    stored = by_address(team)
    assert (stored["hans@example.de"].name, stored["hans@example.de"].company) == (
        "Müller, Hans",
        "Müller GmbH",
    )
    assert stored["hans@example.de"].tags == ["b2b", "kunde"]
    assert stored["ole@example.no"].name == "Ødegaard; Ole"


def test_tab_delimited_file(team: Database, tmp_path: Path) -> None:
    path = write(tmp_path, "export.tsv", "Name\tEmail\nAnn, Lee\tann@example.org\n")
    assert import_customers(team, path).created == 1
    assert by_address(team)["ann@example.org"].name == "Ann, Lee"


def test_a_file_that_is_not_utf8_is_refused_before_anything_is_written(
    team: Database, tmp_path: Path
) -> None:
    path = write(
        tmp_path,
        "latin1.csv",
        "Name,Email\nAnn,ann@example.org\nJosé,jose@example.org\n",
        encoding="latin-1",
    )
    with pytest.raises(ImportFileError) as caught:
        import_customers(team, path)

    assert "line 3 (byte offset 34) is not UTF-8 text (byte 0xe9)" in caught.value.message
    assert caught.value.hint is not None
    assert "UTF-8" in caught.value.hint
    assert by_address(team) == {}


def test_unreadable_and_empty_files(team: Database, tmp_path: Path) -> None:
    with pytest.raises(ImportFileError, match="cannot read"):
        import_customers(team, tmp_path / "missing.csv")
    with pytest.raises(ImportFileError, match="is empty"):
        import_customers(team, write(tmp_path, "empty.csv", "\n\n"))
    with pytest.raises(ImportFileError, match="no column for email"):
        import_customers(team, write(tmp_path, "noemail.csv", "Name,Phone\nAnn,+66 1\n"))


def test_dry_run_reports_but_writes_nothing(team: Database, tmp_path: Path) -> None:
    path = write(tmp_path, "c.csv", "Name,Email\nAnn,ann@example.org\nAnn L,ann@example.org\nX,bad\n")
    report = import_customers(team, path, dry_run=True, batch_size=1)

    assert (report.created, report.updated, report.failed, report.dry_run) == (1, 1, 1, True)
    assert by_address(team) == {}


def test_progress_reports_rows_and_bytes(team: Database, tmp_path: Path) -> None:
    path = write(tmp_path, "c.csv", "Name,Email\n" + "".join(f"P{n},p{n}@x.org\n" for n in range(5)))
    calls: list[tuple[int, int]] = []
    import_customers(team, path, batch_size=2, on_progress=lambda r, b: calls.append((r, b)))

    assert [rows for rows, _ in calls] == [2, 4, 5]
    assert calls[-1][1] == path.stat().st_size
    assert calls[0][1] < calls[1][1] < calls[2][1]


def test_big_files_are_read_by_a_worker_process_with_the_same_result(
    team: Database, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(importer, "WORKER_MIN_BYTES", 0)
    rows = "".join(f"Person {n},p{n}@example.org,,,,,,,,\n" for n in range(30))
    path = write(
        tmp_path, "c.csv", f"{HEADER}\n{rows}Bad,bad,,,,,,,,\nP Zero,p0@example.org,z@example.org,,,,,,,\n"
    )
    report = import_customers(team, path, batch_size=7)

    assert (report.rows, report.created, report.updated, report.failed) == (32, 30, 1, 1)
    assert errors(report)[0][0] == 32
    assert by_address(team)["z@example.org"].name == "P Zero"

    latin1 = write(tmp_path, "l.csv", "Name,Email\nJosé,j@x.org\n", encoding="latin-1")
    with pytest.raises(ImportFileError, match="not UTF-8"):
        import_customers(team, latin1)


def test_the_worker_process_also_starts_while_other_threads_run(
    team: Database, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # With other threads (a progress bar's, say) the worker is spawned, not forked.
    monkeypatch.setattr(importer, "WORKER_MIN_BYTES", 0)
    monkeypatch.setattr(importer.threading, "active_count", lambda: 2)
    people = write(tmp_path, "c.csv", "Name,Email\nAnn,ann@example.org\n")
    orders = write(tmp_path, "p.csv", "Email,Date,Product,Amount\nann@example.org,2024-01-05,Tea,10\n")

    assert import_customers(team, people).created == 1
    report = import_purchases(team, orders, default_currency="THB", default_timezone="UTC")

    assert (report.created, report.failed) == (1, 0)
    assert by_address(team)["ann@example.org"].status == "customer"


# --- purchases ----------------------------------------------------------------------------


def test_purchases_import_dedupes_and_turns_leads_into_customers(team: Database, tmp_path: Path) -> None:
    people = write(
        tmp_path,
        "customers.csv",
        "Name,Email,Email 2,Status\n"
        "Ann,ann@example.org,ann@work.example,\n"
        "Bob,bob@example.org,,\n"
        "Gone,gone@example.org,,archived\n",
    )
    import_customers(team, people)
    path = write(
        tmp_path,
        "purchases.csv",
        "Customer Email,Order Date,Item,Qty,Total,Currency,Order ID\n"
        "ann@example.org,2024-03-01,Green Tea,2,240.00,,SO-1\n"
        "ANN@work.example,2024-03-01,Teak Bowl,1,1250,,SO-1\n"
        "ann@example.org,2024-03-01,Green Tea,2,240.00,,SO-1\n"
        "ann@example.org,2024-05-02T14:30:00+02:00,Silk Scarf,1,19.90,EUR,\n"
        "nobody@example.org,2024-03-01,Green Tea,1,10,,\n"
        "bob@example.org,2024-02-30,Green Tea,1,10,,\n"
        'bob@example.org,2024-02-01,Green Tea,1,"1,000.50",usd,\n'
        "gone@example.org,2024-02-01,Green Tea,1,5,,\n",
    )
    report = import_purchases(team, path, default_currency="THB", default_timezone="Asia/Bangkok")

    assert errors(report) == [
        (6, "no customer with address nobody@example.org; import customers first"),
        (
            7,
            "date: invalid date '2024-02-30' (write YYYY-MM-DD or YYYY-MM-DDTHH:MM[:SS][+HH:MM])",
        ),
    ]
    assert (report.rows, report.created, report.unchanged, report.failed) == (8, 5, 1, 2)
    stored = by_address(team)
    ann, bob, gone = (stored[f"{n}@example.org"] for n in ("ann", "bob", "gone"))
    assert (ann.status, ann.purchases, bob.status, bob.purchases) == ("customer", 3, "customer", 1)
    assert (gone.status, gone.purchases) == ("archived", 1)

    with team.read() as session:
        bought = purchases.for_customer(session, ann.id)
    assert [(p.product, p.quantity, p.amount_minor, p.currency, p.order_ref) for p in bought] == [
        ("Silk Scarf", 1, 1990, "EUR", None),
        ("Teak Bowl", 1, 125000, "THB", "SO-1"),
        ("Green Tea", 2, 24000, "THB", "SO-1"),
    ]
    assert bought[0].purchased_at == datetime(2024, 5, 2, 12, 30, tzinfo=UTC)
    assert bought[1].purchased_at == datetime(2024, 2, 29, 17, 0, tzinfo=UTC)

    before = snapshot(team)
    again = import_purchases(team, path, default_currency="THB", default_timezone="Asia/Bangkok")
    assert (again.created, again.unchanged, again.failed) == (0, 6, 2)
    assert snapshot(team) == before


def test_purchase_file_problems(team: Database, tmp_path: Path) -> None:
    path = write(tmp_path, "p.csv", "Email,Date,Product\nann@example.org,2024-01-01,Tea\n")
    with pytest.raises(ImportFileError, match="no column for amount"):
        import_purchases(team, path, default_currency="THB", default_timezone="UTC")
    good = write(tmp_path, "g.csv", "Email,Date,Product,Amount\n")
    with pytest.raises(ValidationError, match="unknown currency"):
        import_purchases(team, good, default_currency="XXX1", default_timezone="UTC")
    with pytest.raises(ValidationError, match="unknown timezone"):
        import_purchases(team, good, default_currency="THB", default_timezone="Mars/Olympus")


def test_add_one_purchase_is_idempotent_and_promotes_a_lead(team: Database, tmp_path: Path) -> None:
    import_customers(team, write(tmp_path, "c.csv", "Name,Email\nAnn,ann@example.org\n"))
    ann = by_address(team)["ann@example.org"]
    draft = purchase_from_fields(
        {"date": "2024-06-01T09:00", "product": "Green Tea", "amount": "99"},
        default_currency="THB",
        default_timezone="Asia/Bangkok",
    )
    with team.write() as session:
        assert purchases.add(session, ann.id, draft, default_timezone="UTC") is True
    with team.write() as session:
        assert purchases.add(session, ann.id, draft, default_timezone="UTC") is False

    after = by_address(team)["ann@example.org"]
    assert (after.status, after.purchases) == ("customer", 1)


# --- hostile cells ------------------------------------------------------------------------


def test_a_control_character_refuses_its_row_alone_on_every_store(team: Database, tmp_path: Path) -> None:
    """PostgreSQL cannot store NUL and used to abort the whole import; SQLite stored it.
    Now both refuse that row, naming line and field, and take every other row."""
    path = write(
        tmp_path,
        "c.csv",
        "Name,Email,Company,Notes\n"
        "Ann,ann@example.org,Acme,\n"
        "Nul\x00Person,nul@example.org,,\n"
        "Esc,esc@example.org,\x1b[31mRed Co,\n"
        "Csi,csi@example.org,,\x9b31m\n"
        "Bo,bo@example.org,,\n"
        "\u200b\u200d\ufeff,zw@example.org,,\n"
        "ស្រី\u200bមុំ,khmer@example.org,,\n"
        "محمد\u200cرضا\u200f,persian@example.org,,\n",
    )
    report = import_customers(team, path, overrides=["Notes=custom.notes"])

    assert errors(report) == [
        (3, "name: contains a control character, U+0000 (NUL), at character 4 "
            "(remove control characters (NUL, ESC, ...): names and fields are plain text)"),
        (4, "company: contains a control character, U+001B (ESC), at character 1 "
            "(remove control characters (NUL, ESC, ...): names and fields are plain text)"),
        (5, "custom.notes: contains a control character, U+009B (CSI), at character 1 "
            "(remove control characters (NUL, ESC, ...): names and fields are plain text)"),
        (7, "name: has no visible character "
            "(spaces, zero-width characters and direction marks alone are no name)"),
    ]  # fmt: skip
    assert (report.created, report.failed) == (4, 4)
    stored = by_address(team)
    assert sorted(stored) == ["ann@example.org", "bo@example.org", "khmer@example.org", "persian@example.org"]
    assert stored["khmer@example.org"].name == "ស្រី\u200bមុំ"  # ZWSP between Khmer words stays
    assert stored["persian@example.org"].name == "محمد\u200cرضا"  # ZWNJ is spelling; the edge mark goes


def test_a_nul_in_a_purchase_refuses_that_row_alone(team: Database, tmp_path: Path) -> None:
    write(tmp_path, "c.csv", "Name,Email\nAnn,ann@example.org\n")
    import_customers(team, tmp_path / "c.csv")
    orders = write(
        tmp_path,
        "p.csv",
        "Email,Date,Product,Amount,Order ID\n"
        "ann@example.org,2024-01-05,Tea,10,A-1\n"
        "ann@example.org,2024-01-06,Co\x00ffee,12,A-2\n"
        "ann@example.org,2024-01-07,Cake,5,A-3\n",
    )
    report = import_purchases(team, orders, default_currency="THB", default_timezone="UTC")

    [(row, reason)] = errors(report)
    assert row == 3 and reason.startswith(
        "product: contains a control character, U+0000 (NUL), at character 3"
    )
    assert (report.created, report.failed) == (2, 1)


@pytest.mark.parametrize("through_worker", [False, True])
def test_an_oversized_cell_refuses_its_row_and_every_other_row_goes_in(
    team: Database, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, through_worker: bool
) -> None:
    """A 200 KB cell at line 2,501 of 3,000 used to stop the import after the first
    batch and blame quotes; now it is one refused row naming its line and the limit."""
    if through_worker:
        monkeypatch.setattr(importer, "WORKER_MIN_BYTES", 0)
    rows = [f"Person {n},p{n}@example.org,\n" for n in range(2, 3001)]
    rows[2501 - 2] = f"Big,big@example.org,{'x' * 200_000}\n"
    path = write(tmp_path, "c.csv", "Name,Email,Notes\n" + "".join(rows))

    report = import_customers(team, path, overrides=["Notes=custom.notes"])

    assert errors(report) == [
        (2501, "custom.notes: the cell has 200,000 characters, more than the limit of 65,536 "
               "(shorten the cell or leave the column out with --map 'Header=-')"),
    ]  # fmt: skip
    assert (report.rows, report.created, report.failed) == (2999, 2998, 1)
    with team.read() as session:
        assert session.execute(text("SELECT count(*) FROM customer")).scalar() == 2998


def test_an_unclosed_quote_names_its_line_and_the_rows_before_it_go_in(
    team: Database, tmp_path: Path
) -> None:
    body = "".join(f"P{n},p{n}@example.org\n" for n in range(10))
    path = write(tmp_path, "c.csv", f'Name,Email\n{body}"Open,open@example.org\n' + "x" * (17 << 20))
    with pytest.raises(ImportFileError, match=r"line 12: a cell runs past 16,777,216 characters") as info:
        import_customers(team, path)
    assert "never closed" in str(info.value) and "the rows before it were imported" in str(info.value)
    assert sorted(by_address(team)) == sorted(f"p{n}@example.org" for n in range(10))


def test_a_utf16_file_is_named_as_such(team: Database, tmp_path: Path) -> None:
    path = tmp_path / "c.csv"
    path.write_bytes("Name,Email\nAnn,ann@example.org\n".encode("utf-16-le"))
    with pytest.raises(ImportFileError, match="looks like UTF-16, not UTF-8"):
        import_customers(team, path)

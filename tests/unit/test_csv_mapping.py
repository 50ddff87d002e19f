"""CSV header mapping and purchase values: what a user's spreadsheet turns into."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mailcrm.domain.csv_mapping import (
    FORMULA_STARTS,
    custom_name,
    escape_formula,
    header_key,
    map_customer_headers,
    map_purchase_headers,
    unescape_formula,
)
from mailcrm.domain.customers import draft_from_fields
from mailcrm.domain.purchases import (
    PurchaseDraft,
    purchase_dedupe_key,
    purchase_from_fields,
)
from mailcrm.errors import ImportFileError, ValidationError


def customer_fields(headers: list[str], cells: list[str], *overrides: str) -> dict[str, str]:
    return map_customer_headers(headers, overrides).fields(cells)


# --- customer headers -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("header", "field"),
    [
        ("Full Name", "name"),
        ("FULL_NAME", "name"),
        ("  full   name ", "name"),
        ("E-mail", "email"),
        ("Email Address", "email"),
        ("emails", "email"),
        ("Date of Birth", "birthday"),
        ("DOB", "birthday"),
        ("TZ", "timezone"),
        ("Time zone", "timezone"),
        ("time_zone", "timezone"),
        ("Lang", "language"),
        ("Locale", "language"),
        ("Sales Rep", "owner"),
        ("Account Owner", "owner"),
        ("Salesperson", "owner"),
        ("Source", "lead_source"),
        ("Lead Source", "lead_source"),
        ("lead_source", "lead_source"),
        ("Labels", "tags"),
        ("Organization", "company"),
        ("Organisation", "company"),
        ("Company Name", "company"),
        ("Phone", "phone"),
        ("status", "status"),
    ],
)
def test_common_header_names_are_recognised(header: str, field: str) -> None:
    others = [h for f, h in (("name", "Name"), ("email", "Email")) if f != field]
    mapping = map_customer_headers([header, *others])
    assert mapping.columns[0].field == field
    assert mapping.columns[0].header == header.strip()
    assert mapping.ignored == ()


def test_first_and_last_name_make_up_the_name() -> None:
    headers = ["First Name", "Last Name", "Email"]
    assert customer_fields(headers, ["Ann", "Lee", "ann@example.org"])["name"] == "Ann Lee"
    assert customer_fields(headers, ["Ann", "", "ann@example.org"])["name"] == "Ann"
    assert "name" not in customer_fields(headers, ["", "", "ann@example.org"])


def test_a_filled_name_column_wins_over_first_and_last() -> None:
    headers = ["Name", "First Name", "Last Name", "Email"]
    assert customer_fields(headers, ["Dr. Ann Lee", "Ann", "Lee", "a@x.org"])["name"] == "Dr. Ann Lee"
    assert customer_fields(headers, ["", "Ann", "Lee", "a@x.org"])["name"] == "Ann Lee"


def test_several_email_columns_feed_the_addresses() -> None:
    headers = ["Name", "Email", "Email 2", "Secondary Email", "Work E-Mail"]
    fields = customer_fields(headers, ["Ann", "ann@x.org", "", "ANN@y.org", "ann@work.org"])
    draft = draft_from_fields(fields, new_record=True)
    assert draft.emails == ("ann@x.org", "ann@y.org", "ann@work.org")


@pytest.mark.parametrize(
    "header",
    ["alt_email", "alt email", "Alt. E-mail", "email2", "email 2", "E-mail 2", "e-mail #2", "Email (2)",
     "email_alt", "Email (alternate)", "secondary email", "other email", "Backup Email", "Email Address 2"],
)  # fmt: skip
def test_a_second_address_column_is_recognised_by_its_usual_names(header: str) -> None:
    """An `alt_email`-style column is one more address of the customer, never an ignored column."""
    mapping = map_customer_headers(["Name", "Email", header])
    assert mapping.ignored == ()
    fields = mapping.fields(["Ann", "ann@x.org", "ann@home.example"])
    assert draft_from_fields(fields, new_record=True).emails == ("ann@x.org", "ann@home.example")


def test_unknown_headers_are_reported_not_imported() -> None:
    mapping = map_customer_headers(["Name", "Email", "Notes", "Kundennr", ""])
    assert mapping.ignored == ("Notes", "Kundennr", "(column 5 has no header)")
    assert mapping.fields(["Ann", "a@x.org", "likes tea", "K-1", "x"]) == {
        "name": "Ann",
        "email": "a@x.org",
    }
    assert mapping.ignored_hint is not None
    assert "--map 'Notes=custom.notes'" in mapping.ignored_hint


def test_overrides_map_a_column_to_a_custom_field_or_ignore_it() -> None:
    mapping = map_customer_headers(
        ["Name", "Email", "Kundennr", "Notes"], ["Kundennr=custom.customer_no", "notes=-"]
    )
    assert mapping.ignored == ()
    fields = mapping.fields(["Ann", "a@x.org", "K-0042", "likes tea"])
    assert fields == {"name": "Ann", "email": "a@x.org", "custom.customer_no": "K-0042"}
    assert draft_from_fields(fields, new_record=True).custom == {"customer_no": "K-0042"}


def test_an_override_can_name_a_field_by_alias_and_beats_the_guess() -> None:
    mapping = map_customer_headers(
        ["Kunde", "Mail", "Source"], ["Kunde=Full Name", "Source=custom.source_system"]
    )
    assert [(c.header, c.field) for c in mapping.columns] == [
        ("Kunde", "name"),
        ("Mail", "email"),
        ("Source", "custom.source_system"),
    ]


def test_a_custom_dot_header_maps_to_that_custom_field() -> None:
    mapping = map_customer_headers(["name", "email", "custom.customer_no"])
    assert mapping.columns[2].field == "custom.customer_no"


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("Notes", "expected 'CSV Header=field'"),
        ("=name", "expected 'CSV Header=field'"),
        ("Notes=shoe_size", "unknown field 'shoe_size'"),
        ("Notes=custom.1bad", "invalid custom field name"),
    ],
)
def test_a_bad_override_is_refused(override: str, message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        map_customer_headers(["Name", "Email", "Notes"], [override])


def test_an_override_for_a_missing_column_names_it() -> None:
    with pytest.raises(ImportFileError, match="'Kundennr'") as caught:
        map_customer_headers(["Name", "Email"], ["Kundennr=custom.customer_no"])
    assert caught.value.hint is not None
    assert "'Name'" in caught.value.hint


def test_a_duplicated_column_is_an_error_naming_both_headers() -> None:
    with pytest.raises(ImportFileError, match="'Phone' and 'Mobile' both map to phone"):
        map_customer_headers(["Name", "Email", "Phone", "Mobile"])
    with pytest.raises(ImportFileError, match="'Name' and 'Full Name' both map to name"):
        map_customer_headers(["Name", "Email", "Full Name"])


def test_the_duplicate_can_be_resolved_with_an_override() -> None:
    mapping = map_customer_headers(["Name", "Email", "Phone", "Mobile"], ["Mobile=custom.mobile"])
    assert mapping.fields(["Ann", "a@x.org", "+66 1", "+66 2"])["custom.mobile"] == "+66 2"


@pytest.mark.parametrize(
    ("headers", "missing"),
    [
        (["Name", "Phone"], "email"),
        (["Email", "Phone"], "name"),
    ],
)
def test_a_missing_required_column_is_an_error(headers: list[str], missing: str) -> None:
    with pytest.raises(ImportFileError, match=missing):
        map_customer_headers(headers)


def test_first_name_alone_is_enough_for_the_name() -> None:
    mapping = map_customer_headers(["First Name", "Email"])
    assert mapping.fields(["Ann", "a@x.org"])["name"] == "Ann"


def test_a_row_wider_than_the_header_is_refused_but_trailing_blanks_are_fine() -> None:
    mapping = map_customer_headers(["Name", "Email"])
    assert mapping.fields(["Ann", "a@x.org", "", " "]) == {"name": "Ann", "email": "a@x.org"}
    assert mapping.fields(["Ann"]) == {"name": "Ann"}
    with pytest.raises(ValidationError, match="3 cells but the header has 2 columns"):
        mapping.fields(["Ann, Lee", "x", "a@x.org"])


def test_header_key_ignores_case_spaces_underscores_hyphens_and_dots() -> None:
    assert header_key(" E-Mail_Address. ") == "emailaddress"


@pytest.mark.parametrize(
    ("header", "suggestion"),
    [("Customer No.", "customer_no"), ("2nd phone", "field_2nd_phone"), ("หมายเหตุ", "field")],
)
def test_custom_name_suggestions_are_valid_field_names(header: str, suggestion: str) -> None:
    assert custom_name(header) == suggestion
    assert draft_from_fields({f"custom.{suggestion}": "x"}, new_record=False).custom


# --- purchase headers -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("header", "field"),
    [
        ("Purchased At", "date"),
        ("Order Date", "date"),
        ("date", "date"),
        ("Item", "product"),
        ("SKU", "product"),
        ("Qty", "quantity"),
        ("Total", "amount"),
        ("Price", "amount"),
        ("Currency", "currency"),
        ("Order ID", "order_ref"),
        ("Order", "order_ref"),
        ("Invoice", "order_ref"),
        ("Customer Email", "email"),
    ],
)
def test_purchase_header_aliases(header: str, field: str) -> None:
    required = {"email": "Email", "date": "Date", "product": "Product", "amount": "Amount"}
    headers = [h for f, h in required.items() if f != field] + [header]
    mapping = map_purchase_headers(headers)
    assert mapping.columns[-1].field == field


def test_purchase_files_need_email_date_product_and_amount() -> None:
    with pytest.raises(ImportFileError, match="no column for amount"):
        map_purchase_headers(["Email", "Date", "Product"])
    with pytest.raises(ImportFileError, match="both map to email"):
        map_purchase_headers(["Email", "Customer Email", "Date", "Product", "Amount"])
    with pytest.raises(ValidationError, match="purchases have no custom fields"):
        map_purchase_headers(["Email", "Date", "Product", "Amount", "X"], ["X=custom.x"])


def test_purchase_ignored_columns_get_an_ignore_hint() -> None:
    mapping = map_purchase_headers(["Email", "Date", "Product", "Amount", "Channel"])
    assert mapping.ignored == ("Channel",)
    assert mapping.ignored_hint is not None
    assert "--map 'Channel=-'" in mapping.ignored_hint


# --- purchase values --------------------------------------------------------------------


def purchase(**fields: str) -> PurchaseDraft:
    given = {"date": "2024-03-01", "product": "Green Tea", "amount": "120.50"} | fields
    return purchase_from_fields(given, default_currency="THB", default_timezone="Asia/Bangkok")


def test_a_plain_date_stays_a_date_until_the_customer_is_known() -> None:
    draft = purchase()
    assert draft.when == date(2024, 3, 1)  # the customer's calendar date, placed when stored
    assert (draft.amount_minor, draft.currency, draft.quantity, draft.order_ref) == (
        12050,
        "THB",
        1,
        None,
    )


def test_a_date_time_with_offset_keeps_its_instant() -> None:
    draft = purchase(date="2024-03-01T10:30:00+01:00")
    assert draft.when == datetime(2024, 3, 1, 9, 30, tzinfo=UTC)
    naive = purchase(date="2024-03-01 10:30")
    assert naive.when == datetime(2024, 3, 1, 10, 30)  # wall time in the customer's zone


def test_given_values_are_normalised() -> None:
    draft = purchase(
        amount="1,250", currency=" usd ", quantity="3", product=" Teak   Bowl ", order_ref="SO-1"
    )
    assert (draft.amount_minor, draft.currency, draft.quantity, draft.product) == (
        125000,
        "USD",
        3,
        "Teak Bowl",
    )
    assert purchase(amount="1500", currency="JPY").amount_minor == 1500


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"date": "2024-13-01"}, "date: invalid date '2024-13-01'"),
        ({"date": "01/03/2024"}, "date: invalid date"),
        ({"amount": "12,50"}, "amount: invalid amount '12,50'"),
        ({"amount": "1e5"}, "amount: invalid amount"),
        ({"amount": "12.345"}, "amount: amount '12.345' has more decimals than THB allows"),
        ({"amount": "1" * 20}, "implausibly large"),
        ({"currency": "XYZ"}, "currency: unknown currency 'XYZ'"),
        ({"quantity": "0"}, "quantity: invalid quantity '0'"),
        ({"quantity": "1.5"}, "quantity: invalid quantity"),
        ({"product": ""}, "product: missing"),
        ({"product": "x" * 201}, "product: product is longer than 200 characters"),
        ({"shipping": "x"}, "unknown field 'shipping'"),
    ],
)
def test_bad_purchase_values_are_refused_naming_the_field(fields: dict[str, str], message: str) -> None:
    with pytest.raises(ValidationError) as caught:
        purchase(**fields)
    assert message in caught.value.message


def test_dedupe_key_by_order_reference_and_product() -> None:
    first = purchase(order_ref="SO-7", amount="100")
    corrected = purchase(order_ref="SO-7", amount="90", date="2024-03-02")
    other_line = purchase(order_ref="SO-7", product="Silk Scarf")
    assert first.dedupe_key == corrected.dedupe_key
    assert first.dedupe_key != other_line.dedupe_key
    assert len(first.dedupe_key) == 32
    assert int(first.dedupe_key, 16) >= 0


def test_dedupe_key_without_order_reference_uses_every_value() -> None:
    base = purchase()
    assert base.dedupe_key == purchase(date="2024-03-01T00:00:00+07:00").dedupe_key
    for change in ({"amount": "121"}, {"quantity": "2"}, {"currency": "USD"}, {"date": "2024-03-02"}):
        assert purchase(**change).dedupe_key != base.dedupe_key
    assert base.dedupe_key == purchase_dedupe_key(
        purchased_at=datetime(2024, 2, 29, 17, 0, tzinfo=UTC),  # what earlier versions stored
        product="Green Tea",
        quantity=1,
        amount_minor=12050,
        currency="THB",
        order_ref=None,
    )


# --- formula escaping -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("stored", "exported"),
    [
        ("=SUM(A1)", "'=SUM(A1)"),
        ("+66 81 234 5678", "'+66 81 234 5678"),
        ("-Jon-", "'-Jon-"),
        ("@home", "'@home"),
        ("\tx", "'\tx"),
        ("\rx", "'\rx"),
        ("'=quoted", "''=quoted"),
        ("''-x", "'''-x"),
        ("Ann", "Ann"),
        ("'Tis", "'Tis"),
        ("", ""),
    ],
)
def test_formula_cells_are_escaped_the_owasp_way(stored: str, exported: str) -> None:
    assert escape_formula(stored) == exported
    assert unescape_formula(escape_formula(stored)) == stored


@given(st.text())
def test_escaping_round_trips_any_text(value: str) -> None:
    escaped = escape_formula(value)
    assert not escaped.startswith(FORMULA_STARTS)
    assert unescape_formula(escaped) == value


def test_import_removes_the_export_quote_only_before_a_formula_character() -> None:
    fields = customer_fields(["Name", "Email", "Phone"], ["'-Jon-", "jon@x.org", "'+66 2 123 4567"])
    assert (fields["name"], fields["phone"]) == ("-Jon-", "+66 2 123 4567")
    assert customer_fields(["Name", "Email"], ["'Tis Ann", "a@x.org"])["name"] == "'Tis Ann"

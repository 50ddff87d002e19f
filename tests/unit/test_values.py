from __future__ import annotations

from datetime import date

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mailcrm.domain.addresses import InvalidAddress, normalize_address, normalize_domain
from mailcrm.domain.customers import draft_from_fields, split_addresses
from mailcrm.domain.values import (
    normalize_language,
    normalize_timezone,
    parse_date,
    split_tags,
    to_minor_units,
)
from mailcrm.errors import ValidationError


@pytest.mark.parametrize(
    ("raw", "stored"),
    [
        ("Ann.Lee@Example.COM", "ann.lee@example.com"),
        ("  bob@example.org ", "bob@example.org"),
        ("somchai@ตัวอย่าง.ไทย", "somchai@xn--72c1a1bt4awk9o.xn--o3cw4h"),
        ("王芳@例子.中国", "王芳@xn--fsqu00a.xn--fiqs8s"),
    ],
)
def test_addresses_are_stored_lower_case_with_idna_domain(raw: str, stored: str) -> None:
    assert normalize_address(raw) == stored


@pytest.mark.parametrize("raw", ["", "ann", "ann@", "@example.org", "a@@b.org", "a b@c.org"])
def test_invalid_addresses_say_why(raw: str) -> None:
    with pytest.raises(InvalidAddress):
        normalize_address(raw)


@given(st.emails())
def test_normalisation_is_idempotent(address: str) -> None:
    once = normalize_address(address)
    assert normalize_address(once) == once


def test_domain_normalisation() -> None:
    assert normalize_domain("@ACME.co.th.") == "acme.co.th"


def test_timezone_language_and_dates() -> None:
    assert normalize_timezone("asia/bangkok") == "Asia/Bangkok"
    with pytest.raises(ValidationError, match="unknown timezone"):
        normalize_timezone("Asia/Atlantis")
    assert normalize_language("zh_hans") == "zh-Hans"
    assert normalize_language("KM") == "km"
    with pytest.raises(ValidationError, match="unknown language"):
        normalize_language("klingon-xx-yy")
    assert parse_date("2000-02-29") == date(2000, 2, 29)
    with pytest.raises(ValidationError, match="YYYY-MM-DD"):
        parse_date("2001-02-29")


def test_money_in_minor_units() -> None:
    assert to_minor_units("1,250.50", "THB") == 125050
    assert to_minor_units("1000", "JPY") == 1000
    with pytest.raises(ValidationError, match="more decimals"):
        to_minor_units("10.5", "JPY")
    with pytest.raises(ValidationError, match="invalid amount"):
        to_minor_units("ten", "USD")


def test_tags_and_address_lists() -> None:
    assert split_tags("VIP, seminar;vip") == ["vip", "seminar"]
    assert split_addresses("A@x.org; b@x.org a@X.org") == ["a@x.org", "b@x.org"]


def test_draft_errors_name_the_field() -> None:
    with pytest.raises(ValidationError, match=r"^birthday: invalid birthday"):
        draft_from_fields({"name": "A", "email": "a@x.org", "birthday": "31/12/1990"}, new_record=True)
    with pytest.raises(ValidationError, match=r"^email: missing"):
        draft_from_fields({"name": "A"}, new_record=True)
    draft = draft_from_fields(
        {"name": "  Ann   Lee ", "email": "Ann@X.org", "custom.vat": "TH1"}, new_record=True
    )
    assert draft.name == "Ann Lee"
    assert draft.emails == ("ann@x.org",)
    assert draft.custom == {"vat": "TH1"}


# --- customer text: control characters and invisible names ---------------------------------


@pytest.mark.parametrize(
    ("field", "raw", "message"),
    [
        ("name", "Ann\x00", r"^name: contains a control character, U\+0000 \(NUL\), at character 4"),
        ("name", "\x1b[31mRed", r"^name: contains a control character, U\+001B \(ESC\), at character 1"),
        ("company", "Acme\x9b", r"^company: contains a control character, U\+009B \(CSI\)"),
        ("lead_source", "web\x07", r"^lead_source: contains a control character, U\+0007 \(BEL\)"),
        ("custom.note", "a\x7fb", r"^custom.note: contains a control character, U\+007F \(DEL\)"),
        ("name", "Ann\udcff", r"^name: contains a byte that is not UTF-8 text at character 4"),
        ("name", "\u200b", r"^name: has no visible character"),
        ("name", "\u200b\u200c\u200d\u2060\ufeff\u200e\u200f\u00a0\u3164", r"^name: has no visible"),
        ("name", "\u0301\u0301", r"^name: has no visible character"),
        ("company", "\u200b", r"^company: has no visible character"),
    ],
)
def test_control_characters_and_invisible_names_are_refused(field: str, raw: str, message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        draft_from_fields({"name": "Ann", "email": "a@x.org", field: raw}, new_record=True)


@pytest.mark.parametrize(
    ("raw", "stored"),
    [
        ("สมศรี ใจดี", "สมศรี ใจดี"),
        ("ស្រី\u200bមុំ", "ស្រី\u200bមុំ"),  # ZWSP between Khmer words, marks on the last letter
        ("می\u200cخواهم", "می\u200cخواهم"),  # ZWNJ is Persian spelling
        ("王芳", "王芳"),
        ("\u200b Ann \u200f", "Ann"),  # blanks at the edges go
        ("Ann\tLee\n", "Ann Lee"),  # tab and line breaks fold into spaces
        ("[bold red]x[/]", "[bold red]x[/]"),
    ],
)
def test_names_keep_what_people_write(raw: str, stored: str) -> None:
    assert draft_from_fields({"name": raw, "email": "a@x.org"}, new_record=True).name == stored


def test_custom_fields_keep_tabs_and_line_breaks() -> None:
    draft = draft_from_fields({"custom.note": "line 1\nline 2\tend"}, new_record=False)
    assert draft.custom == {"note": "line 1\nline 2\tend"}


def test_a_custom_value_has_the_same_length_limit_as_a_csv_cell() -> None:
    assert draft_from_fields({"custom.note": "x" * 65_536}, new_record=False).custom["note"] == "x" * 65_536
    with pytest.raises(ValidationError, match=r"^custom.note: is longer than 65,536 characters"):
        draft_from_fields({"custom.note": "x" * 65_537}, new_record=False)

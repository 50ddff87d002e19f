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

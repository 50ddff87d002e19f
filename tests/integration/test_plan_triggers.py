"""Every trigger and filter against a real database (SQLite and PostgreSQL).

Rules are written as YAML into a rules folder and loaded as the daemon loads them;
planning goes through `planner.plan` / `planner.forecast`, the functions behind the
daemon and `mailcrm plan`. Each test states who gets which email, when (UTC) and under
which occurrence key. The clock is fixed: every `now` and `at` is given explicitly.

Already covered in test_planner.py and not repeated here: `after: purchase` with a wait
and a send window, `no_reply_to: any_outbound` with one repeat stopped by a reply, the
`tags` filter with archived customers, Feb 29 birthdays, catch-up records as skipped.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from plan_fixtures import ALICE, BOB, Planned, World, make_settings

from mailcrm.store.db import Database


@pytest.fixture
def world(db: Database, tmp_path: Path) -> World:
    return World(db, make_settings(tmp_path))


# --- no_purchase_for (win-back) ----------------------------------------------------------

WIN_BACK = """
    rules:
      - name: win-back
        when: {no_purchase_for: 90d}
        template: win_back
"""


def test_win_back_when_the_period_since_the_last_purchase_has_passed(world: World) -> None:
    lapsed = world.customer("lapsed@x.example")
    world.purchase(lapsed, "2025-11-20T08:00")
    world.purchase(lapsed, "2026-03-12T08:00")  # the last one: 90 days later is 2026-06-10 08:00
    recent = world.customer("recent@x.example")
    world.purchase(recent, "2026-03-12T07:00")  # would lapse now, but ...
    world.purchase(recent, "2026-05-20T09:00")  # ... a later purchase re-arms the period
    # No purchase at all: no last purchase, so no lapse (the trigger counts from the last
    # purchase; leads who never bought are not win-back candidates).
    world.customer("never@x.example")
    # Lapsed long before this pass (2025-08-30): a lapse is one moment, not a state, and
    # that moment is older than the catch-up window, so nothing is planned for it.
    quiet = world.customer("long-quiet@x.example")
    world.purchase(quiet, "2025-06-01T08:00")
    rules = world.rules(WIN_BACK)

    assert world.plan(rules, "2026-06-10T06:00") == [
        Planned("win-back", "lapsed@x.example", "lapse:2026-03-12", "2026-06-10T08:00Z"),
    ]


def test_a_new_purchase_re_arms_the_win_back(world: World) -> None:
    customer = world.customer("again@x.example")
    world.purchase(customer, "2026-03-12T08:00")
    rules = world.rules(WIN_BACK)
    first = Planned("win-back", "again@x.example", "lapse:2026-03-12", "2026-06-10T08:00Z")
    assert world.plan(rules, "2026-06-10T06:00") == [first]

    world.purchase(customer, "2026-06-20T08:00")  # buys again; 90 days later: 2026-09-18
    assert world.forecast(rules, "2026-06-11T00:00", days=100) == [
        Planned("win-back", "again@x.example", "lapse:2026-06-20", "2026-09-18T08:00Z"),
    ]
    second = Planned("win-back", "again@x.example", "lapse:2026-06-20", "2026-09-18T08:00Z")
    assert world.plan(rules, "2026-09-18T06:00") == [first, second]
    assert world.plan(rules, "2026-09-18T07:00") == [first, second]  # planning again adds nothing


# --- event: opened / clicked / attended --------------------------------------------------


def test_timeline_events_trigger_once_per_event_after_the_wait(world: World) -> None:
    ann = world.customer("ann@x.example")
    bob = world.customer("bob@x.example")
    opened = world.event(ann, "opened", "2026-06-10T09:00")
    opened_again = world.event(ann, "opened", "2026-06-10T15:00")
    clicked = world.event(bob, "clicked", "2026-06-10T09:10")
    attended = world.event(bob, "attended", "2026-06-09T18:00")
    world.event(bob, "attended", "2026-06-08T12:00")  # its email was due before this range
    world.event(ann, "reply", "2026-06-10T10:00")  # other kinds trigger nothing
    world.event(bob, "bounced", "2026-06-10T10:00")
    rules = world.rules(
        """
        rules:
          - name: after-open
            when: {event: opened, wait: 2h}
            template: follow_up
          - name: after-click
            when: {event: clicked, wait: 30m}
            template: follow_up
          - name: after-seminar
            when: {event: attended, wait: 1d}
            template: thank_you
        """
    )

    assert world.forecast(rules, "2026-06-10T00:00", days=2) == [
        Planned("after-click", "bob@x.example", f"event:{clicked}", "2026-06-10T09:40Z"),
        Planned("after-open", "ann@x.example", f"event:{opened}", "2026-06-10T11:00Z"),
        Planned("after-open", "ann@x.example", f"event:{opened_again}", "2026-06-10T17:00Z"),
        Planned("after-seminar", "bob@x.example", f"event:{attended}", "2026-06-10T18:00Z"),
    ]


# --- anniversary_of ----------------------------------------------------------------------


def _anniversary_world(world: World) -> None:
    # First purchase 2023-06-11 20:00 UTC is 2023-06-12 03:00 in Bangkok: the anniversary
    # is the customer's local date.
    bkk = world.customer("first@x.example", timezone="Asia/Bangkok")
    world.purchase(bkk, "2023-06-11T20:00")
    world.purchase(bkk, "2024-02-01T08:00")
    world.purchase(bkk, "2025-06-14T05:00")  # last purchase: 12:00 on Jun 14 in Bangkok
    later = world.customer("second@x.example")  # UTC (the default zone)
    world.purchase(later, "2024-06-13T10:00")
    world.purchase(later, "2025-06-15T10:00")
    world.customer("birthday@x.example", birthday="1990-06-11", timezone="America/New_York")
    world.customer("since@x.example", since="2020-06-13T09:00")
    world.customer("contract@x.example", timezone="Europe/Berlin", **{"custom.contract_signed": "2021-06-15"})
    world.customer("nothing@x.example", birthday="1990-07-01", **{"custom.contract_signed": "2021-12-01"})


ANNIVERSARIES = [
    pytest.param(
        "{anniversary_of: first_purchase}",
        [
            ("first@x.example", "2026-06-12T03:00Z"),  # 10:00 in Bangkok
            ("second@x.example", "2026-06-13T10:00Z"),
        ],
        id="first_purchase",
    ),
    pytest.param(
        "{anniversary_of: last_purchase}",
        [
            ("first@x.example", "2026-06-14T03:00Z"),
            ("second@x.example", "2026-06-15T10:00Z"),
        ],
        id="last_purchase",
    ),
    pytest.param(
        "{anniversary_of: birthday}",
        [("birthday@x.example", "2026-06-11T14:00Z")],  # 10:00 EDT
        id="birthday",
    ),
    pytest.param(
        "{anniversary_of: customer_since}",
        [("since@x.example", "2026-06-13T10:00Z")],
        id="customer_since",
    ),
    pytest.param(
        "{anniversary_of: custom.contract_signed}",
        [("contract@x.example", "2026-06-15T08:00Z")],  # 10:00 CEST
        id="custom_field",
    ),
    pytest.param(
        "{anniversary_of: first_purchase, years: [3, 10]}",
        [("first@x.example", "2026-06-12T03:00Z")],  # 3 years; second@ is at 2 years
        id="years",
    ),
    pytest.param("{anniversary_of: birthday, years: [1, 5]}", [], id="years_none_round"),
]


@pytest.mark.parametrize(("when", "expected"), ANNIVERSARIES)
def test_anniversaries(world: World, when: str, expected: list[tuple[str, str]]) -> None:
    _anniversary_world(world)
    rules = world.rules(
        f"""
        rules:
          - name: yearly
            when: {when}
            template: anniversary
        """
    )
    planned = world.forecast(rules, "2026-06-10T00:00", days=7)
    assert planned == [Planned("yearly", email, "year:2026", due) for email, due in expected]


def test_anniversary_of_a_custom_field_with_a_dot_in_its_name(world: World) -> None:
    """`contract.signed` is one custom field (normalize_custom_key allows "."), not a
    field `signed` inside a field `contract`."""
    world.customer("dotted@x.example", **{"custom.contract.signed": "2021-06-15"})
    rules = world.rules(
        """
        rules:
          - name: contract
            when: {anniversary_of: custom.contract.signed}
            template: anniversary
        """
    )
    assert world.forecast(rules, "2026-06-10T00:00", days=7) == [
        Planned("contract", "dotted@x.example", "year:2026", "2026-06-15T10:00Z"),
    ]


# --- on: one-off campaign ----------------------------------------------------------------


def test_campaign_at_local_or_absolute_time(world: World) -> None:
    world.customer("bkk@x.example", timezone="Asia/Bangkok")
    world.customer("nyc@x.example", timezone="America/New_York")
    world.customer("plain@x.example")  # no timezone: defaults.timezone (UTC)
    rules = world.rules(
        """
        rules:
          - name: year-end
            when: {on: "2026-12-15T10:00"}
            template: thank_you
          - name: launch
            when: {on: "2026-12-15T10:00+00:00"}
            template: thank_you
          - name: day-only
            when: {on: 2026-12-16}
            send_time: "08:30"
            template: thank_you
          - name: long-ago
            when: {on: "2026-01-15T10:00"}
            template: thank_you
        """
    )
    expected = [
        Planned("year-end", "bkk@x.example", "campaign", "2026-12-15T03:00Z"),
        Planned("launch", "bkk@x.example", "campaign", "2026-12-15T10:00Z"),
        Planned("launch", "nyc@x.example", "campaign", "2026-12-15T10:00Z"),
        Planned("launch", "plain@x.example", "campaign", "2026-12-15T10:00Z"),
        Planned("year-end", "plain@x.example", "campaign", "2026-12-15T10:00Z"),
        Planned("year-end", "nyc@x.example", "campaign", "2026-12-15T15:00Z"),  # 10:00 EST
        Planned("day-only", "bkk@x.example", "campaign", "2026-12-16T01:30Z"),
        Planned("day-only", "plain@x.example", "campaign", "2026-12-16T08:30Z"),
        Planned("day-only", "nyc@x.example", "campaign", "2026-12-16T13:30Z"),
    ]
    assert world.forecast(rules, "2026-12-14T00:00", days=3) == expected

    # Each pass plans what falls due within its lookahead (24 hours) ...
    first = world.plan(rules, "2026-12-14T12:00")
    assert [p for p in first if p.rule == "year-end"] == [
        Planned("year-end", "bkk@x.example", "campaign", "2026-12-15T03:00Z"),
        Planned("year-end", "plain@x.example", "campaign", "2026-12-15T10:00Z"),
    ]
    # ... and a campaign is one email per customer however often planning runs.
    assert world.plan(rules, "2026-12-15T20:00") == expected
    assert world.plan(rules, "2026-12-17T20:00") == expected


# --- no_reply_to: a named rule, repeats, what a reply does -------------------------------


def test_follow_ups_of_a_named_rule_until_the_customer_replies(world: World) -> None:
    ann = world.customer("ann@x.example", tags="offer")
    bob = world.customer("bob@x.example", tags="offer")
    cy = world.customer("cy@x.example")
    rules = world.rules(
        """
        rules:
          - name: offer
            when: {on: "2026-06-10T09:00"}
            where: {tags: [offer]}
            template: thank_you
          - name: offer-follow-up
            when: {no_reply_to: offer, wait: 3d}
            repeat: {times: 2, every: 2d}
            template: follow_up
        """
    )
    world.plan(rules, "2026-06-10T08:00")
    sent = world.deliver("offer")
    assert sorted(sent) == ["ann@x.example", "bob@x.example"]
    ann_id = sent["ann@x.example"].strip("<>")
    world.outbound(cy, "<by-hand@acme.example>", "2026-06-10T09:00")  # not from `offer`: no follow-up
    world.event(ann, "reply", "2026-06-01T10:00")  # a reply before the offer changes nothing
    world.event(ann, "auto_reply", "2026-06-10T09:05")  # an out-of-office is not a reply
    world.event(bob, "reply", "2026-06-11T12:00")  # bob answered: no follow-ups for him

    assert world.forecast(rules, "2026-06-10T10:00", days=10) == [
        Planned("offer-follow-up", "ann@x.example", f"followup:{ann_id}:1", "2026-06-13T09:00Z"),
        Planned("offer-follow-up", "ann@x.example", f"followup:{ann_id}:2", "2026-06-15T09:00Z"),
        Planned("offer-follow-up", "ann@x.example", f"followup:{ann_id}:3", "2026-06-17T09:00Z"),
    ]

    offers = [p for p in world.outbox() if p.rule == "offer"]
    first = Planned("offer-follow-up", "ann@x.example", f"followup:{ann_id}:1", "2026-06-13T09:00Z")
    assert world.plan(rules, "2026-06-13T08:00") == [*offers, first]
    world.event(ann, "reply", "2026-06-14T10:00")  # ann answers the first follow-up
    assert world.forecast(rules, "2026-06-14T00:00", days=7) == []
    assert world.plan(rules, "2026-06-15T08:00") == [*offers, first]
    assert world.plan(rules, "2026-06-17T08:00") == [*offers, first]


# --- where: filters ----------------------------------------------------------------------

ALL = ("ann", "bob", "cho", "dan", "fay")


def _filter_world(world: World) -> None:
    ann = world.customer("ann@x.example", tags="vip", lead_source="Seminar", owner=ALICE, language="th")
    world.purchase(ann, "2026-01-05T10:00", product="Solar Panel", amount="1500", currency="THB")
    world.customer("bob@x.example", tags="regular", lead_source="referral", owner=BOB, language="en")
    cho = world.customer("cho@x.example", tags="VIP, early", lead_source="web", owner=ALICE, language="zh")
    world.purchase(cho, "2026-01-05T10:00", product="Inverter", amount="500", currency="THB")
    world.purchase(cho, "2026-02-05T10:00", product="Inverter", amount="100", currency="USD")
    dan = world.customer("dan@x.example", lead_source="seminar", owner=BOB, language="th")
    world.purchase(dan, "2026-01-05T10:00", product="Battery", amount="4000", currency="THB")
    world.purchase(dan, "2026-03-05T10:00", product="solar panel", amount="1000", currency="THB")
    world.customer("fay@x.example")  # no tags, source, owner or language; never bought: a lead


FILTERS = [
    pytest.param("", "where: {tags: [vip]}", ("ann", "cho"), id="tags"),
    pytest.param("", "where: {tags: [Early, regular]}", ("bob", "cho"), id="tags_any_of"),
    pytest.param("", "where: {lead_source: [seminar]}", ("ann", "dan"), id="lead_source"),
    pytest.param("", "where: {lead_source: [referral, web]}", ("bob", "cho"), id="lead_sources"),
    pytest.param("", f"where: {{owner: [{BOB}]}}", ("bob", "dan"), id="owner"),
    pytest.param(f"owner: {ALICE}", "", ("ann", "cho"), id="file_owner"),
    pytest.param("", "where: {language: [th]}", ("ann", "dan"), id="language"),
    pytest.param("", "where: {language: [en, zh]}", ("bob", "cho"), id="languages"),
    pytest.param("", "where: {status: [lead]}", ("bob", "fay"), id="status_lead"),
    pytest.param("", "where: {status: [customer]}", ("ann", "cho", "dan"), id="status_customer"),
    pytest.param("", "where: {status: [lead, customer]}", ALL, id="status_both"),
    pytest.param("", "where: {spend: {min: 1000, currency: THB}}", ("ann", "dan"), id="spend_min"),
    pytest.param("", "where: {spend: {max: 1000, currency: THB}}", ("bob", "cho", "fay"), id="spend_max"),
    pytest.param("", "where: {spend: {min: 1500, max: 1500, currency: THB}}", ("ann",), id="spend_inclusive"),
    pytest.param("", "where: {spend: {min: 600, currency: THB}}", ("ann", "dan"), id="spend_per_currency"),
    pytest.param("", "where: {spend: {min: 50, currency: usd}}", ("cho",), id="spend_usd"),
    pytest.param("", "where: {bought: [SOLAR PANEL]}", ("ann", "dan"), id="bought"),
    pytest.param("", "where: {bought: [Battery, Inverter]}", ("cho", "dan"), id="bought_any_of"),
    pytest.param("", "where: {tags: [vip], language: [th]}", ("ann",), id="all_must_match"),
    pytest.param("", "", ALL, id="no_filter"),
]


@pytest.mark.parametrize(("header", "where", "expected"), FILTERS)
def test_filters(world: World, header: str, where: str, expected: tuple[str, ...]) -> None:
    _filter_world(world)
    rules = world.rules(
        f"""
        {header}
        rules:
          - name: mailing
            when: {{on: "2026-06-12T10:00"}}
            template: thank_you
            {where}
        """
    )
    assert world.forecast(rules, "2026-06-10T00:00", days=7) == [
        Planned("mailing", f"{name}@x.example", "campaign", "2026-06-12T10:00Z") for name in expected
    ]


def test_bought_ignores_case_beyond_ascii(world: World) -> None:
    """Full Unicode case folding on every store (SQLite's lower() folds ASCII only,
    PostgreSQL's depends on the database's LC_CTYPE)."""
    ann = world.customer("ann@x.example")
    world.purchase(ann, "2026-01-05T10:00", product="ÖKO-Panel")
    world.customer("bob@x.example")
    cy = world.customer("cy@x.example")
    world.purchase(cy, "2026-01-05T10:00", product="FUSSMATTE")  # casefold("Fußmatte") == "fussmatte"
    dee = world.customer("dee@x.example")
    world.purchase(dee, "2026-01-05T10:00", product="Oko-Panel")  # another letter, not another case
    rules = world.rules(
        """
        rules:
          - name: mailing
            when: {on: "2026-06-12T10:00"}
            template: thank_you
            where: {bought: [öko-panel, Fußmatte]}
        """
    )
    assert world.forecast(rules, "2026-06-10T00:00", days=7) == [
        Planned("mailing", "ann@x.example", "campaign", "2026-06-12T10:00Z"),
        Planned("mailing", "cy@x.example", "campaign", "2026-06-12T10:00Z"),
    ]


WHOLE_CUSTOMER = [
    pytest.param(
        "{after: purchase, wait: 1h}",
        "{spend: {min: 1000, currency: THB}}",
        [("ann", "purchase:{cable}", "2026-06-10T10:00Z")],
        id="after_purchase-spend",
    ),
    pytest.param(
        "{after: purchase, wait: 1h}",
        "{bought: [Panel]}",
        [("ann", "purchase:{cable}", "2026-06-10T10:00Z")],
        id="after_purchase-bought",
    ),
    pytest.param(
        "{no_purchase_for: 90d}",
        "{spend: {min: 1000, currency: THB}}",
        [("cy", "lapse:2026-03-12", "2026-06-10T08:00Z")],
        id="no_purchase_for-spend",
    ),
    pytest.param(
        "{no_purchase_for: 90d}",
        "{bought: [Panel]}",
        [("cy", "lapse:2026-03-12", "2026-06-10T08:00Z")],
        id="no_purchase_for-bought",
    ),
    pytest.param(
        "{anniversary_of: first_purchase}",
        "{spend: {min: 1000, currency: THB}}",
        [("ann", "year:2026", "2026-06-12T10:00Z")],
        id="first_purchase-spend",
    ),
    pytest.param(
        "{anniversary_of: first_purchase}",
        "{bought: [Cable]}",
        [("ann", "year:2026", "2026-06-12T10:00Z")],
        id="first_purchase-bought",
    ),
]


@pytest.mark.parametrize(("when", "where", "expected"), WHOLE_CUSTOMER)
def test_purchase_filters_look_at_the_whole_customer_whatever_the_trigger(
    world: World, when: str, where: str, expected: list[tuple[str, str, str]]
) -> None:
    """`spend` is the customer's lifetime total and `bought` any product they ever bought
    (see Filters), also when the trigger itself is about purchases."""
    ann = world.customer("ann@x.example")
    world.purchase(ann, "2025-06-12T08:00", product="Panel", amount="800")
    cable = world.purchase(ann, "2026-06-10T09:00", product="Cable", amount="300")  # 1,100 THB in all
    bob = world.customer("bob@x.example")
    world.purchase(bob, "2026-06-10T09:00", product="Cable", amount="300")
    cy = world.customer("cy@x.example")
    world.purchase(cy, "2026-03-12T08:00", product="Panel", amount="2000")
    dee = world.customer("dee@x.example")
    world.purchase(dee, "2026-03-12T09:00", product="Cable", amount="100")
    rules = world.rules(
        f"""
        rules:
          - name: picked
            when: {when}
            where: {where}
            template: thank_you
        """
    )
    assert world.forecast(rules, "2026-06-10T00:00", days=3) == [
        Planned("picked", f"{name}@x.example", key.format(cable=cable), due) for name, key, due in expected
    ]


# --- enabled, start, end -----------------------------------------------------------------


def test_disabled_rules_and_start_end_dates(world: World) -> None:
    world.customer("d11@x.example", birthday="1990-06-11")
    world.customer("d12@x.example", birthday="1990-06-12")
    world.customer("d14@x.example", birthday="1990-06-14")
    world.customer("d15@x.example", birthday="1990-06-15")
    # Jun 12 10:00 in Auckland is Jun 11 22:00 UTC: the dates are the customer's own.
    world.customer("akl@x.example", birthday="1990-06-12", timezone="Pacific/Auckland")
    rules = world.rules(
        """
        rules:
          - name: birthday-card
            when: {anniversary_of: birthday}
            template: birthday
            start: 2026-06-12
            end: 2026-06-14
          - name: paused
            when: {anniversary_of: birthday}
            template: birthday
            enabled: false
        """
    )
    assert world.forecast(rules, "2026-06-10T00:00", days=7) == [
        Planned("birthday-card", "akl@x.example", "year:2026", "2026-06-11T22:00Z"),
        Planned("birthday-card", "d12@x.example", "year:2026", "2026-06-12T10:00Z"),
        Planned("birthday-card", "d14@x.example", "year:2026", "2026-06-14T10:00Z"),
    ]
    assert world.plan(rules, "2026-06-12T00:00") == [
        Planned("birthday-card", "akl@x.example", "year:2026", "2026-06-11T22:00Z"),
        Planned("birthday-card", "d12@x.example", "year:2026", "2026-06-12T10:00Z"),
    ]


def test_start_and_end_of_an_event_rule_refer_to_the_event(world: World) -> None:
    ann = world.customer("ann@x.example")
    bob = world.customer("bob@x.example")
    world.event(ann, "attended", "2026-06-11T12:00")  # before start; due on Jun 12
    world.event(bob, "attended", "2026-06-14T12:00")  # on end; due on Jun 15
    rules = world.rules(
        """
        rules:
          - name: seminar-thanks
            when: {event: attended, wait: 1d}
            template: thank_you
            start: 2026-06-12
            end: 2026-06-14
        """
    )
    planned = world.forecast(rules, "2026-06-10T00:00", days=7)
    assert [(p.customer, p.due) for p in planned] == [("bob@x.example", "2026-06-15T12:00Z")]


def test_start_and_end_refer_to_the_purchase_and_to_the_lapse(world: World) -> None:
    """The same for every trigger: `start`/`end` bound when the trigger happens (here the
    purchase, and the day the period without a purchase runs out), not the due date."""
    ann = world.customer("ann@x.example")
    world.purchase(ann, "2026-06-11T12:00")  # before start; due on Jun 12
    on_end = world.purchase(ann, "2026-06-14T12:00")  # on end; due on Jun 15
    bob = world.customer("bob@x.example")
    world.purchase(bob, "2026-03-13T12:00")  # lapses on Jun 11: before start
    cy = world.customer("cy@x.example")
    world.purchase(cy, "2026-03-16T12:00")  # lapses on Jun 14: on end
    dee = world.customer("dee@x.example")
    world.purchase(dee, "2026-03-17T12:00")  # lapses on Jun 15: after end
    rules = world.rules(
        """
        rules:
          - name: thank-you
            when: {after: purchase, wait: 1d}
            template: thank_you
            start: 2026-06-12
            end: 2026-06-14
          - name: win-back
            when: {no_purchase_for: 90d}
            template: win_back
            start: 2026-06-12
            end: 2026-06-14
        """
    )
    assert world.forecast(rules, "2026-06-10T00:00", days=7) == [
        Planned("win-back", "cy@x.example", "lapse:2026-03-16", "2026-06-14T12:00Z"),
        Planned("thank-you", "ann@x.example", f"purchase:{on_end}", "2026-06-15T12:00Z"),
    ]


# --- send window across timezones --------------------------------------------------------


def test_send_window_is_the_customers_local_time(world: World) -> None:
    bkk = world.customer("bkk@x.example", timezone="Asia/Bangkok", birthday="1985-06-13")  # a Saturday
    nyc = world.customer("nyc@x.example", timezone="America/New_York", birthday="1985-06-12")  # Friday
    world.customer("winter@x.example", timezone="America/New_York", birthday="1980-01-14")
    # Both buy at the same instant: 20:00 in Bangkok (window closed), 08:00 in New York.
    bkk_order = world.purchase(bkk, "2026-06-10T12:00")
    nyc_order = world.purchase(nyc, "2026-06-10T12:00")
    rules = world.rules(
        """
        send_window: {days: mon-fri, hours: "09:00-17:00"}
        rules:
          - name: thank-you
            when: {after: purchase, wait: 1h}
            template: thank_you
          - name: birthday-card
            when: {anniversary_of: birthday}
            template: birthday
            send_time: "09:30"
        """
    )
    assert world.plan(rules, "2026-06-10T12:30") == [
        Planned("thank-you", "nyc@x.example", f"purchase:{nyc_order}", "2026-06-10T13:00Z"),  # 09:00 EDT
        Planned("thank-you", "bkk@x.example", f"purchase:{bkk_order}", "2026-06-11T02:00Z"),  # Thu 09:00
    ]
    assert world.forecast(rules, "2026-06-11T12:00", days=7) == [
        Planned("birthday-card", "nyc@x.example", "year:2026", "2026-06-12T13:30Z"),  # Fri 09:30 EDT
        Planned("birthday-card", "bkk@x.example", "year:2026", "2026-06-15T02:00Z"),  # Sat → Mon 09:00
    ]
    assert world.forecast(rules, "2027-01-12T00:00", days=7) == [
        Planned("birthday-card", "winter@x.example", "year:2027", "2027-01-14T14:30Z"),  # 09:30 EST
    ]

"""Scoring `classify` on a bounce corpus, shared by the corpus unit tests and
`benchmarks/bounce_corpus.py`: `tests/data/bounces/` (written with the classifier) and
`tests/data/bounces-holdout/` (real notices collected independently of it, the honest
estimate; see each folder's PROVENANCE.md).

The measures are the ones the bounce handling is held to:

* recognised: a notice expected to be a bounce is classified BOUNCE, a delay DELAY;
* suppress agreement: per expected recipient of a bounce or delay, whether mailcrm
  suppresses it (`hard`) agrees with the industry's judgement (`suppress`);
* wrong-address suppressions: a `hard` address that is not one of the sample's
  expected recipients (the sender, a postmaster, a help desk...): must be zero;
* false bounces: a complaint, auto-reply, list or human message classified as a
  bounce or delay: must be zero.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from mailcrm.domain.classify import Classification, MessageKind, classify
from mailcrm.domain.messages import parse_message

CORPUS = Path(__file__).parent / "data" / "bounces"
HOLDOUT = Path(__file__).parent / "data" / "bounces-holdout"
FAILURES = frozenset({"bounce", "delay"})


@dataclass
class Score:
    samples: int = 0
    per_kind: dict[str, int] = field(default_factory=dict)
    expected_failures: int = 0
    recognised: int = 0
    recipients: int = 0
    suppress_agree: int = 0
    reason_agree: int = 0
    wrong_suppressions: list[str] = field(default_factory=list)
    false_bounces: list[str] = field(default_factory=list)
    misses: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def recognised_rate(self) -> float:
        return self.recognised / self.expected_failures if self.expected_failures else 1.0

    @property
    def suppress_rate(self) -> float:
        return self.suppress_agree / self.recipients if self.recipients else 1.0

    @property
    def reason_rate(self) -> float:
        return self.reason_agree / self.recipients if self.recipients else 1.0


def load(corpus: Path = CORPUS) -> dict[str, dict[str, Any]]:
    expected: dict[str, dict[str, Any]] = yaml.safe_load(
        (corpus / "expected.yaml").read_text(encoding="utf-8")
    )
    return expected


def _describe(result: Classification) -> str:
    found = ", ".join(f"{b.address} {b.reason.value}{' hard' if b.hard else ''}" for b in result.bounced)
    return f"{result.kind.value} [{found}]"


def judge(name: str, expect: dict[str, Any], result: Classification, score: Score) -> None:
    kind = expect["kind"]
    score.per_kind[kind] = score.per_kind.get(kind, 0) + 1
    wanted = {entry["address"]: entry for entry in expect.get("recipients") or []}
    for bounced in result.bounced:
        if bounced.hard and bounced.address not in wanted:
            score.wrong_suppressions.append(f"{name}: suppressed {bounced.address} ({_describe(result)})")
    if kind not in FAILURES:
        if result.kind in (MessageKind.BOUNCE, MessageKind.DELAY):
            score.false_bounces.append(f"{name}: expected {kind}, got {_describe(result)}")
        elif result.kind.value != kind:
            score.misses.append(f"{name}: expected {kind}, got {_describe(result)}")
        return
    score.expected_failures += 1
    if result.kind.value == kind:
        score.recognised += 1
    else:
        score.misses.append(f"{name}: expected {kind}, got {_describe(result)}")
    got = {bounced.address: bounced for bounced in result.bounced}
    for address, entry in wanted.items():
        score.recipients += 1
        found = got.get(address)
        hard = bool(found and found.hard and result.kind is MessageKind.BOUNCE)
        if hard == entry["suppress"]:
            score.suppress_agree += 1
        else:
            score.misses.append(
                f"{name}: {address} suppress expected {entry['suppress']}, got {_describe(result)}"
            )
        if found is not None and found.reason.value == entry["reason"]:
            score.reason_agree += 1
        elif found is None:
            score.misses.append(f"{name}: {address} not found, got {_describe(result)}")


def run(repeat: int = 1, corpus: Path = CORPUS) -> Score:
    """Classify every file of `corpus` (`repeat` times for timing) and score the answers."""
    expected = load(corpus)
    raws = {name: (corpus / name).read_bytes() for name in sorted(expected)}
    score = Score(samples=len(raws))
    results: dict[str, Classification] = {}
    started = time.perf_counter()
    for _ in range(repeat):
        for name, raw in raws.items():
            results[name] = classify(parse_message(raw))
    score.seconds = (time.perf_counter() - started) / repeat
    for name in raws:
        judge(name, expected[name], results[name], score)
    return score

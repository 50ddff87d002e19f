"""Benchmark: how `classify` judges the bounce corpus, and how fast.

Classifies every sample in `tests/data/bounces/` (see its PROVENANCE.md) and prints the
figures the bounce handling is held to: samples per kind, bounces recognised (a
bounce as a bounce, a delay as a delay), agreement with the industry on
suppress / not suppress, reason agreement, wrong-address suppressions, non-bounces
called bounces, throughput (parse + classify, one core), then every miss.

    python benchmarks/bounce_corpus.py [--repeat N] [--json] [--corpus DIR | --holdout]

`--holdout` scores `tests/data/bounces-holdout/` (real notices collected without reading
the classifier, the honest estimate); `--corpus DIR` any folder with the same layout
(`*.eml` files and an `expected.yaml`).

Exit code 1 when a bar is missed (>= 97% recognised, >= 95% suppress agreement, no
wrong address, no false bounce).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from bouncecorpus import CORPUS, HOLDOUT, run

RECOGNISED_BAR = 0.97
SUPPRESS_BAR = 0.95


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=20, help="passes over the corpus for the timing")
    parser.add_argument("--json", action="store_true")
    which = parser.add_mutually_exclusive_group()
    which.add_argument("--corpus", type=Path, default=CORPUS, help="folder with *.eml and expected.yaml")
    which.add_argument("--holdout", action="store_true", help="score tests/data/bounces-holdout/")
    args = parser.parse_args(argv)
    corpus: Path = HOLDOUT if args.holdout else args.corpus
    if not (corpus / "expected.yaml").is_file():
        parser.error(f"{corpus}: no expected.yaml there; point --corpus at a corpus folder")
    score = run(repeat=max(1, args.repeat), corpus=corpus)
    rate = score.samples / score.seconds if score.seconds else 0.0
    figures = {
        "samples": score.samples,
        "per_kind": dict(sorted(score.per_kind.items())),
        "recognised": score.recognised,
        "expected_bounces_and_delays": score.expected_failures,
        "recognised_rate": round(score.recognised_rate, 4),
        "suppress_agreement": round(score.suppress_rate, 4),
        "reason_agreement": round(score.reason_rate, 4),
        "wrong_address_suppressions": len(score.wrong_suppressions),
        "non_bounces_called_bounces": len(score.false_bounces),
        "messages_per_second": round(rate),
        "misses": [*score.wrong_suppressions, *score.false_bounces, *score.misses],
    }
    passed = (
        score.recognised_rate >= RECOGNISED_BAR
        and score.suppress_rate >= SUPPRESS_BAR
        and not score.wrong_suppressions
        and not score.false_bounces
    )
    if args.json:
        print(json.dumps(figures, indent=1))
        return 0 if passed else 1
    print(
        f"{score.samples} samples: "
        + ", ".join(f"{kind} {count}" for kind, count in figures["per_kind"].items())
    )
    print(
        f"  bounces recognised           {score.recognised}/{score.expected_failures} "
        f"({score.recognised_rate:.1%}, bar {RECOGNISED_BAR:.0%})"
    )
    print(
        f"  suppress agreement           {score.suppress_rate:.1%} of {score.recipients} recipients "
        f"(bar {SUPPRESS_BAR:.0%})"
    )
    print(f"  reason agreement             {score.reason_rate:.1%}")
    print(f"  wrong-address suppressions   {len(score.wrong_suppressions)} (bar 0)")
    print(f"  non-bounces called bounces   {len(score.false_bounces)} (bar 0)")
    print(f"  throughput                   {rate:,.0f} messages/s (parse + classify, one core)")
    for miss in figures["misses"]:
        print(f"  miss: {miss}")
    print("bars: met" if passed else "bars: NOT met")
    return 0 if passed else 1


if __name__ == "__main__":
    raise SystemExit(main())

"""The held-out bounce corpus (`tests/data/bounces-holdout/`): real notices from other projects.

Collected without reading the classifier (sisimai's set-of-emails, two PHP bounce
handlers' fixtures; see its PROVENANCE.md), so it estimates how bounce handling does on
notices nobody tuned it for. Protects the same bars as the written corpus: at least 97%
of bounces and delays recognised, at least 95% agreement on suppress / not suppress, no
suppressed address that is not the bounced recipient, and no complaint, auto-reply,
list or human message called a bounce. A failure lists every sample that missed and why.
"""

from __future__ import annotations

from bouncecorpus import HOLDOUT, load, run


def test_holdout_files_and_expectations_agree() -> None:
    files = {path.name for path in HOLDOUT.glob("*.eml")}
    assert files == set(load(HOLDOUT))
    provenance = (HOLDOUT / "PROVENANCE.md").read_text(encoding="utf-8")
    assert all(f"| {name} |" in provenance for name in files)


def test_holdout_has_the_negatives_the_bars_need() -> None:
    expected = load(HOLDOUT)
    failures = [entry for entry in expected.values() if entry["kind"] in ("bounce", "delay")]
    negatives = [
        entry for entry in expected.values() if entry["kind"] not in ("bounce", "delay", "delivered")
    ]
    assert len(failures) >= 90
    assert len(negatives) >= 30


def test_holdout_meets_the_bars() -> None:
    score = run(corpus=HOLDOUT)
    report = "\n".join([*score.wrong_suppressions, *score.false_bounces, *score.misses])
    assert not score.wrong_suppressions, report
    assert not score.false_bounces, report
    assert score.recognised_rate >= 0.97, report
    assert score.suppress_rate >= 0.95, report

"""The bounce corpus (`tests/data/bounces/`, 40+ MTAs and providers) judged as the industry does.

Protects the bars bounce handling is held to: at least 97% of bounces and delays
recognised as such, at least 95% agreement on suppress / not suppress, no suppressed
address that is not the bounced recipient, and no complaint, auto-reply, list or human
message called a bounce. A failure lists every sample that missed and why.
"""

from __future__ import annotations

import pickle

from bouncecorpus import CORPUS, load, run

from mailcrm.domain.matching import read_batch


def test_corpus_files_and_expectations_agree() -> None:
    files = {path.name for path in CORPUS.glob("*.eml")}
    assert files == set(load())
    provenance = (CORPUS / "PROVENANCE.md").read_text(encoding="utf-8")
    assert all(f"| {name} |" in provenance for name in files)


def test_corpus_covers_the_reason_families_and_negatives() -> None:
    expected = load()
    failures = [entry for entry in expected.values() if entry["kind"] in ("bounce", "delay")]
    negatives = [
        entry for entry in expected.values() if entry["kind"] not in ("bounce", "delay", "delivered")
    ]
    reasons = {recipient["reason"] for entry in failures for recipient in entry["recipients"]}
    assert len(failures) >= 150
    assert len(negatives) >= 40
    assert {
        "userunknown",
        "hostunknown",
        "hasmoved",
        "suspend",
        "notaccept",
        "mailboxfull",
        "blocked",
    } <= reasons
    assert {"spamdetected", "policyviolation", "authfailure", "expired", "norelaying", "speeding"} <= reasons


def test_corpus_meets_the_bars() -> None:
    score = run()
    report = "\n".join([*score.wrong_suppressions, *score.false_bounces, *score.misses])
    assert not score.wrong_suppressions, report
    assert not score.false_bounces, report
    assert score.recognised_rate >= 0.97, report
    assert score.suppress_rate >= 0.95, report


def test_every_sample_crosses_the_parsing_process_boundary() -> None:
    """Sync parses big folders in a second process: each result must pickle."""
    raws = [path.read_bytes() for path in sorted(CORPUS.glob("*.eml"))]
    for (parsed, classification), path in zip(read_batch(raws), sorted(CORPUS.glob("*.eml")), strict=True):
        copied = pickle.loads(pickle.dumps((parsed, classification)))
        assert copied == (parsed, classification), path.name

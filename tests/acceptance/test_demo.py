"""`mailcrm demo` is the first thing a new user runs: it must work with no setup."""

from __future__ import annotations

from pathlib import Path

from .conftest import CLI


def test_demo_builds_a_working_installation(cli: CLI, tmp_path: Path) -> None:
    result = cli("demo", "--dir", "crm-demo", "--json")
    assert result.code == 0, result.stderr
    report = result.json()
    summary = report["summary"]
    assert summary["customers"] == 20
    assert summary["purchases"] > 0 and summary["notes"] > 0 and summary["companies"] == 5
    assert {"en", "th", "fa", "km"} <= set(summary["by_language"])
    assert any(language.startswith("zh") for language in summary["by_language"])
    assert report["imports"]["customers"]["errors"] == []
    assert report["imports"]["purchases"]["errors"] == []
    assert report["timeline"]["entries"], "the demo shows one customer's timeline"

    config = str(tmp_path / "crm-demo" / "mailcrm.yaml")
    people = cli("--config", config, "customers", "list", "--json").json()
    names = " ".join(p["name"] for p in people)
    for sample in ("สมศรี", "王芳", "سارا", "ដារ៉ា"):
        assert sample in names
    customer_id = report["timeline"]["customer_id"]
    assert cli("--config", config, "timeline", str(customer_id), "--json").json()

    again = cli("demo", "--dir", "crm-demo", "--json")
    assert again.code == 0 and again.json()["summary"]["customers"] == 20


def test_demo_never_overwrites_a_foreign_folder(cli: CLI, tmp_path: Path) -> None:
    (tmp_path / "precious").mkdir()
    (tmp_path / "precious" / "notes.txt").write_text("keep me", encoding="utf-8")
    result = cli("demo", "--dir", "precious")
    assert result.code == 1
    assert "not a mailcrm demo folder" in result.stderr
    assert (tmp_path / "precious" / "notes.txt").read_text(encoding="utf-8") == "keep me"

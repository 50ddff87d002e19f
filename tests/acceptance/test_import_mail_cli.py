"""`mailcrm import mbox|maildir` on hostile files: what cannot be imported is named (file,
or mbox message number and offset), the rest is imported, nothing hangs or eats memory."""

from __future__ import annotations

import mailbox
import os
from pathlib import Path

import mailgen

from .conftest import CLI

ALICE = "alice@acme.example"
CAP = 65536  # sync.max_message_bytes in these tests (its smallest allowed value)


def _configure(tmp_path: Path) -> None:
    (tmp_path / "config").mkdir()
    (tmp_path / "config" / "mailcrm.yaml").write_text(
        f"salespeople:\n  - name: Alice\n    email: {ALICE}\nsync:\n  max_message_bytes: {CAP}\n",
        encoding="utf-8",
    )


def _small(subject: str) -> bytes:
    return mailgen.make(sender="wang@golden.example", to=ALICE, subject=subject)


def _oversized() -> bytes:
    return mailgen.make(
        sender="wang@golden.example", to=ALICE, subject="Drawings", body=("drawing data " * 6 + "\n") * 1200
    )


def _subjects(cli: CLI) -> list[str]:
    result = cli("timeline", "wang@golden.example", "--json")
    assert result.code == 0, result.stderr
    return sorted(event["subject"] for event in result.json())


def _maildir(tmp_path: Path) -> Path:
    folder = tmp_path / "Maildir"
    mailbox.Maildir(folder, create=True)
    return folder


def test_an_oversized_maildir_message_is_skipped_and_named(cli: CLI, tmp_path: Path) -> None:
    _configure(tmp_path)
    assert cli("customers", "add", "--name", "Wang Fang", "-e", "wang@golden.example").code == 0
    folder = _maildir(tmp_path)
    (folder / "new" / "1.first").write_bytes(_small("First"))
    (folder / "new" / "2.huge").write_bytes(_oversized())
    (folder / "cur" / "3.last:2,S").write_bytes(_small("Last"))
    result = cli("import", "maildir", "Maildir", "--json")
    assert result.code == 1
    skipped = result.json()["skipped"]
    assert [entry["where"] for entry in skipped] == ["Maildir/new/2.huge"]  # as given on the command line
    assert "larger than sync.max_message_bytes" in skipped[0]["why"]
    assert "WARNING" in result.stderr and "2.huge" in result.stderr
    assert result.json()["messages"] == 2
    assert _subjects(cli) == ["First", "Last"]


def test_an_oversized_mbox_message_is_named_by_number_and_offset(cli: CLI, tmp_path: Path) -> None:
    _configure(tmp_path)
    assert cli("customers", "add", "--name", "Wang Fang", "-e", "wang@golden.example").code == 0
    archive = mailbox.mbox(tmp_path / "takeout.mbox")
    for raw in (_small("First"), _oversized(), _small("Last")):
        archive.add(raw)
    archive.close()
    start_of_second = (tmp_path / "takeout.mbox").read_bytes().index(b"\nFrom ") + 1
    result = cli("import", "mbox", "takeout.mbox")
    assert result.code == 1
    assert f"takeout.mbox, message 2 at byte {start_of_second}" in result.stderr
    assert "1 skipped" in result.stderr
    assert _subjects(cli) == ["First", "Last"]


def test_special_files_in_a_maildir_are_refused_by_name_without_hanging(cli: CLI, tmp_path: Path) -> None:
    """A FIFO would block a reader forever and /dev/zero never ends: neither is read."""
    _configure(tmp_path)
    assert cli("customers", "add", "--name", "Wang Fang", "-e", "wang@golden.example").code == 0
    folder = _maildir(tmp_path)
    (folder / "new" / "1.good").write_bytes(_small("Good"))
    os.mkfifo(folder / "new" / "2.fifo")
    (folder / "new" / "3.zero").symlink_to("/dev/zero")
    (folder / "cur" / "4.folder").mkdir()
    (tmp_path / "elsewhere.eml").write_bytes(_small("Linked"))
    (folder / "cur" / "5.linked").symlink_to(tmp_path / "elsewhere.eml")
    result = cli("import", "maildir", "Maildir", "--json")  # the fixture bounds it to 60 s
    assert result.code == 1
    why = {Path(entry["where"].split(" (a link")[0]).name: entry["why"] for entry in result.json()["skipped"]}
    assert why == {
        "2.fifo": "a FIFO, not a message file",
        "3.zero": "a device, not a message file",
        "4.folder": "a directory, not a message file",
    }
    assert "/dev/zero" in result.stderr
    assert _subjects(cli) == ["Good", "Linked"]


def test_a_file_that_is_not_an_mbox_is_refused_and_nothing_imported(cli: CLI, tmp_path: Path) -> None:
    _configure(tmp_path)
    (tmp_path / "notes.txt").write_text("Dear Wang,\nthanks for the order.\n", encoding="utf-8")
    (tmp_path / "photo.mbox").write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(range(256)) * 4)
    (tmp_path / "single.eml").write_bytes(_small("Alone"))
    for name, why in (
        ("notes.txt", "does not start with a `From ` separator line"),
        ("photo.mbox", "a binary file, not an mbox"),
        ("single.eml", "does not start with a `From ` separator line"),
    ):
        result = cli("import", "mbox", name)
        assert result.code == 1, result
        assert f"error: {name}: " in result.stderr and why in result.stderr
        assert "nothing imported" in result.stderr and "Traceback" not in result.stderr
    assert cli("customers", "list", "--json").json() == []


def test_an_empty_mbox_imports_nothing_and_succeeds(cli: CLI, tmp_path: Path) -> None:
    _configure(tmp_path)
    (tmp_path / "empty.mbox").write_bytes(b"")
    result = cli("import", "mbox", "empty.mbox", "--json")
    assert result.code == 0, result.stderr
    assert result.json()["messages"] == 0 and result.json()["skipped"] == []

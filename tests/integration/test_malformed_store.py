"""`store.malformed`: the malformed messages `mailboxes status` lists, on both databases."""

from __future__ import annotations

from datetime import UTC, datetime

from mailcrm.store.db import Database
from mailcrm.store.malformed import malformed_counts, malformed_messages
from mailcrm.store.models import Message

ALICE = "alice@acme.example"
HASHED = "<" + "ab" * 32 + "@hash.mailcrm.invalid>"


def _message(message_id: str, folder: str, uid: int | None, **fields: object) -> Message:
    values: dict[str, object] = {
        "message_id": message_id,
        "direction": "in",
        "mailbox": ALICE,
        "folder": folder,
        "uid": uid,
        "from_address": "wang@golden.example",
        "subject": message_id,
        "sent_at": datetime(2026, 12, 1, tzinfo=UTC),
        "is_malformed": True,
        "created_at": datetime(2026, 12, 1, tzinfo=UTC),
    }
    values.update(fields)
    return Message(**values)


def test_malformed_messages_are_listed_by_folder_and_uid_with_what_the_row_shows(db: Database) -> None:
    with db.write() as session:
        session.add(_message("<fine@x>", "INBOX", 1, is_malformed=False))
        session.add(_message("<late@x>", "INBOX", 9, sent_at=None))
        session.add(_message("<early@x>", "INBOX", 3, from_address=None))
        session.add(_message(HASHED, "import:all.mbox", None))
        session.add(_message("<parts@x>", "Sent", 4))
    with db.read() as session:
        listed = malformed_messages(session)
        counts = malformed_counts(session)
    # Folders sort by the database's collation; within a folder, by UID.
    assert [(m.uid, m.why) for m in listed if m.folder == "INBOX"] == [
        (3, "no usable From address"),
        (9, "no readable Date"),
    ]
    assert {(m.folder, m.uid, m.why) for m in listed if m.folder != "INBOX"} == {
        ("Sent", 4, "a header or MIME part not as the standards say"),
        ("import:all.mbox", None, "no usable Message-ID"),
    }
    assert counts == {(ALICE, "INBOX"): 2, (ALICE, "Sent"): 1, (ALICE, "import:all.mbox"): 1}
    with db.read() as session:
        assert len(malformed_messages(session, limit=2)) == 2

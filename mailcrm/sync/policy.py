"""What the mailbox supervisor is given: the mailboxes to keep in sync and how to do it.

Plain typed values, so the sync does not read the configuration model: the daemon and
the commands cut them from the settings (`mailcrm.wiring`), a test or a benchmark
builds them directly. The defaults are the documented ones of `sync:` in mailcrm.yaml.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from mailcrm.domain.matching import DEFAULT_POLICY, MatchPolicy
from mailcrm.imap.params import ImapParams


@dataclass(frozen=True, slots=True)
class Mailbox:
    """One salesperson's IMAP mailbox: whose it is, where it is, and which extra folders to sync.

    ``email`` names the mailbox everywhere (cursors, messages, `mailboxes status`);
    ``name`` is the salesperson's, which `--mailbox` also accepts. INBOX and Sent are
    always synced; ``folders`` are the others.
    """

    email: str
    name: str
    imap: ImapParams
    folders: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class SyncPolicy:
    """How often and in what batches mailboxes are synced, and how messages are matched.

    ``poll_seconds``: the longest wait between passes (also the NOOP poll, capped at 30 s,
    where IDLE is missing); ``idle_renew_seconds``: IDLE is renewed this often;
    ``reconnect_max_seconds``: the cap of the reconnect backoff; ``auth_retry_seconds``:
    the wait after a refused login or an unreadable secret; ``batch_messages`` and
    ``batch_bytes`` bound one committed batch.
    """

    poll_seconds: float = 60.0
    idle_renew_seconds: float = 600.0
    reconnect_max_seconds: float = 300.0
    auth_retry_seconds: float = 900.0
    batch_messages: int = 250
    batch_bytes: int = 16 * 2**20
    match: MatchPolicy = field(default=DEFAULT_POLICY)

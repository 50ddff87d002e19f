"""The outbox: every SQL statement about planned emails, their claims and their outcomes.

Life of a row::

    due ──claim──> claimed ──mark_sending──> (in the SMTP transaction) ──mark_sent──> sent
     ^               │  │                          │
     │               │  └─ skipped / cancelled      ├─ mark_retry ──> due (later, backoff)
     │               │     (send-time checks)       ├─ mark_failed ─> failed
     └───release─────┘                              └─ unknown outcome ─> due once more, or
                                                       delivery_unknown (`sending.ambiguous`)

Claims are leases: `claim` sets `claimed_by` and `claimed_until`, the sender renews
them while it works (`extend_lease`), and a row whose lease ran out is claimable
again, so a crashed sender's rows are taken over. On PostgreSQL several senders
claim at once with `SELECT ... FOR UPDATE SKIP LOCKED`; on SQLite the claim is one
`BEGIN IMMEDIATE` transaction, and there is only one writer at a time anyway.

Crash policy. The Message-ID is fixed when the row is inserted. `mark_sending` is
committed just before the final "." of DATA is written: a sender that dies before
it leaves a row with `attempt_started_at` empty, which is simply sent again (the
server discards an unfinished transaction, so nothing is duplicated). A sender that
dies after it leaves a row whose delivery is unknown. With `sending.ambiguous:
resend` (the default) it is sent once more with the same Message-ID, so the
recipient's client can fold the copies; a second unknown outcome is held. With
`hold` it becomes `delivery_unknown` for a person to look at (`outbox retry` sends
it). A sender uses each connection for one transaction at a time, and a row's `sent`
is committed in the same transaction as the connection's next start or an earlier
one (`record`, the sender's group commit), so a kill leaves at most one such row per
open connection.

Every attempt that reached the server is kept in `outbox_attempt` (outcome, reply
code and text), which `outbox show` lists.

The pieces: `tables` (the tables, row states and attempt outcomes all of them share),
`views` (the values handed out), `planned` (the planner's insert), `claims` (leases and
rows left mid-send), `recording` (the sender's group commit), `outcomes` (how a claim
ends), `facts` (what the sender reads at send time), `suppression`, `admin` (the
`outbox` commands), `confirm` (delivery confirmed by a copy in a mailbox) and `bounces`
(bounces a sync found). This module re-exports their public names.
"""

from __future__ import annotations

from mailcrm.store.outbox.admin import cancel, count_by_state, get, history, list_rows, retry
from mailcrm.store.outbox.bounces import FoundBounce, record_bounces
from mailcrm.store.outbox.claims import INTERRUPTED_HOLD, INTERRUPTED_RESEND, claim, extend_lease, release
from mailcrm.store.outbox.confirm import confirm_from_mailbox, confirm_stored
from mailcrm.store.outbox.facts import (
    prepare,
    primary_addresses,
    send_checks,
    sent_since,
    soft_bounce_count,
    soft_bounces,
)
from mailcrm.store.outbox.outcomes import (
    SEND_FAILED_EVENT,
    defer,
    mark_failed,
    mark_retry,
    mark_sending,
    mark_sent,
    mark_skipped,
    mark_unknown,
    skip_late,
)
from mailcrm.store.outbox.planned import FALLBACK_ID_DOMAIN, insert_planned, planned_occurrences
from mailcrm.store.outbox.recording import RecordConnection, record
from mailcrm.store.outbox.suppression import suppress, unsuppress
from mailcrm.store.outbox.tables import (
    ATTEMPT_AMBIGUOUS,
    ATTEMPT_BOUNCED,
    ATTEMPT_CONFIRMED,
    ATTEMPT_FAILED,
    ATTEMPT_RETRY,
    ATTEMPT_SENT,
    ATTEMPT_SUPPRESSED,
    CANCELLED,
    CLAIMED,
    DUE,
    FAILED,
    SENT,
    SKIPPED,
    UNKNOWN,
)
from mailcrm.store.outbox.views import (
    AttemptView,
    ClaimedEmail,
    OutboxDetail,
    OutboxView,
    Prepared,
    SendCheck,
    SentRecord,
)

__all__ = [
    "ATTEMPT_AMBIGUOUS",
    "ATTEMPT_BOUNCED",
    "ATTEMPT_CONFIRMED",
    "ATTEMPT_FAILED",
    "ATTEMPT_RETRY",
    "ATTEMPT_SENT",
    "ATTEMPT_SUPPRESSED",
    "CANCELLED",
    "CLAIMED",
    "DUE",
    "FAILED",
    "FALLBACK_ID_DOMAIN",
    "INTERRUPTED_HOLD",
    "INTERRUPTED_RESEND",
    "SEND_FAILED_EVENT",
    "SENT",
    "SKIPPED",
    "UNKNOWN",
    "AttemptView",
    "ClaimedEmail",
    "FoundBounce",
    "OutboxDetail",
    "OutboxView",
    "Prepared",
    "RecordConnection",
    "SendCheck",
    "SentRecord",
    "cancel",
    "claim",
    "confirm_from_mailbox",
    "confirm_stored",
    "count_by_state",
    "defer",
    "extend_lease",
    "get",
    "history",
    "insert_planned",
    "list_rows",
    "mark_failed",
    "mark_retry",
    "mark_sending",
    "mark_sent",
    "mark_skipped",
    "mark_unknown",
    "planned_occurrences",
    "prepare",
    "primary_addresses",
    "record",
    "record_bounces",
    "release",
    "retry",
    "send_checks",
    "sent_since",
    "skip_late",
    "soft_bounce_count",
    "soft_bounces",
    "suppress",
    "unsuppress",
]

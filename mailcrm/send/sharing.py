"""Sharing one machine's sending among sender processes, and what each sender runs with.

This is where the configuration file meets the sender: `sender_config` cuts out the
part a sender runs with (`config.SenderConfig`) for sender `slot` of `count`, for the
daemon, a child process, the demo and the tests alike.

Per SMTP account limits must hold for the machine, not per process, so `share` gives
each process its part of them:

* `max_connections` and `per_minute` are enforced in memory per process: they are
  divided among the processes (the remainder goes to the lowest slots);
* `per_day` counts, in the database, sent rows and rows inside an SMTP transaction
  (attempt started), which every process sees; a process's own rows between its cap
  check and their start are reserved in its memory, invisible to the others (at most
  one per connection), so each process's cap is lowered by the connections the other
  processes hold to that account.

`resolve` lowers N (with a warning) until every account can be shared that way, so a
1-connection account keeps its limits exactly.
"""

from __future__ import annotations

import logging
import os
from datetime import timedelta

from mailcrm.errors import MailcrmError
from mailcrm.send.config import SenderConfig
from mailcrm.settings import Settings, SmtpAccount

log = logging.getLogger(__name__)

MAX_PROCESSES = 64


def cpu_count() -> int:
    """CPUs this process may run on (affinity and cgroup cpusets included where known)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def _split(total: int, count: int, slot: int) -> int:
    base, extra = divmod(total, count)
    return base + (1 if slot < extra else 0)


def _shared(account: SmtpAccount, count: int, slot: int) -> SmtpAccount | None:
    """This slot's part of the account's limits; None when it cannot have one."""
    connections = _split(account.max_connections, count, slot)
    if connections < 1:
        return None
    update: dict[str, int] = {"max_connections": connections}
    if account.per_minute is not None:
        update["per_minute"] = _split(account.per_minute, count, slot)
        if update["per_minute"] < 1:
            return None
    if account.per_day is not None:
        update["per_day"] = account.per_day - (account.max_connections - connections)
        if update["per_day"] < 1:
            return None
    return account.model_copy(update=update)


def _limit(settings: Settings, count: int) -> str | None:
    """Why `count` processes cannot share the accounts' limits (None: they can)."""
    for person in settings.salespeople:
        if person.smtp is not None and any(
            _shared(person.smtp, count, slot) is None for slot in range(count)
        ):
            return f"the SMTP account of {person.email} cannot be shared by {count} processes"
    return None


def resolve(settings: Settings) -> int:
    """How many sender processes to run: `sending.processes` (0: one per CPU), lowered
    until every account's limits can be shared (see the module docstring)."""
    sending = settings.sending
    wanted = sending.processes or cpu_count()
    count = min(wanted, MAX_PROCESSES)
    if count <= 1 or not sending.enabled:
        return 1
    url = settings.database_url()
    if url.startswith("sqlite") and (":memory:" in url or url.rstrip("/") in ("sqlite:", "sqlite:/")):
        log.warning(
            "sending.processes: %s ignored: an in-memory SQLite database is private to one process",
            wanted,
            extra={"action": "send_processes_reduced", "wanted": wanted, "processes": 1},
        )
        return 1
    reason = _limit(settings, count)
    first_reason = reason
    while reason is not None and count > 1:
        count -= 1
        reason = _limit(settings, count) if count > 1 else None
    if count < wanted:
        log.warning(
            "sending.processes: running %s sender processes instead of %s: %s "
            "(max_connections, per_minute and per_day are divided among the processes)",
            count,
            wanted,
            first_reason or "at most " + str(MAX_PROCESSES),
            extra={"action": "send_processes_reduced", "wanted": wanted, "processes": count},
        )
    return count


def share(settings: Settings, slot: int, count: int) -> Settings:
    """The settings sender `slot` of `count` runs with: its part of every account's limits."""
    if count <= 1:
        return settings
    people = []
    for person in settings.salespeople:
        if person.smtp is None:
            people.append(person)
            continue
        account = _shared(person.smtp, count, slot)
        if account is None:  # `resolve` keeps `count` low enough for this not to happen
            raise MailcrmError(
                f"the SMTP account of {person.email} cannot be shared by {count} sender processes",
                hint="lower sending.processes",
            )
        people.append(person.model_copy(update={"smtp": account}))
    return settings.model_copy(update={"salespeople": people})


def sender_config(settings: Settings, slot: int = 0, count: int = 1) -> SenderConfig:
    """What sender `slot` of `count` runs with: the sending policy, the salespeople with
    this slot's part of their accounts' limits (`share`), the planning grace and the defaults."""
    shared = share(settings, slot, count)
    return SenderConfig.of(
        shared.sending,
        shared.salespeople,
        grace=timedelta(hours=shared.planning.grace_hours),
        language=shared.defaults.language,
        timezone=shared.defaults.timezone,
    )

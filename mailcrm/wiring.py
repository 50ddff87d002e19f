"""The settings cut into the small typed parts each shell takes: configuration meets code here.

The shells (`imap`, `smtp`, `store`, `sync`) do not import `mailcrm.settings`; the
entry points (`daemon`, the commands, the demo) call these functions and hand each
shell only what it needs: an IMAP or SMTP account as `ImapParams`/`SmtpParams`, the
team as `TeamMember`s, the mailboxes and the `SyncPolicy`. Each function copies values
and decides nothing, so a setting means the same wherever it ends up.
"""

from __future__ import annotations

from mailcrm.domain.matching import MatchPolicy
from mailcrm.imap.params import ImapParams
from mailcrm.settings import ImapAccount, SecretRef, Settings, SmtpAccount
from mailcrm.smtp.params import SmtpParams
from mailcrm.store.salespeople import TeamMember
from mailcrm.sync.policy import Mailbox, SyncPolicy


def imap_params(account: ImapAccount) -> ImapParams:
    """What `ImapClient.connect` needs of a configured IMAP account (the secret stays a reference)."""
    return ImapParams(
        host=account.host,
        port=account.effective_port,
        username=account.username,
        secret=_secret(account),
        security=account.security,
        auth=account.auth,
        ca_file=account.ca_file,
        timeout_seconds=account.timeout_seconds,
    )


def smtp_params(account: SmtpAccount) -> SmtpParams:
    """What `SmtpPool` needs of a configured SMTP account (the secret stays a reference)."""
    return SmtpParams(
        host=account.host,
        port=account.effective_port,
        secret=_secret(account),
        security=account.security,
        username=account.username,
        auth=account.auth,
        ca_file=account.ca_file,
        max_connections=account.max_connections,
        per_minute=account.per_minute,
        per_day=account.per_day,
        timeout_seconds=account.timeout_seconds,
    )


def _secret(account: SecretRef) -> SecretRef:
    """Where the account's secret lives, and nothing else of the account (read at each login)."""
    return SecretRef(password_env=account.password_env, password_file=account.password_file)


def team(settings: Settings) -> list[TeamMember]:
    """Every configured salesperson, as their database row holds them."""
    return [
        TeamMember(email=person.email, name=person.name, language=person.language, timezone=person.timezone)
        for person in settings.salespeople
    ]


def mailboxes(settings: Settings) -> list[Mailbox]:
    """Every salesperson with an IMAP account, in the order of the file."""
    return [
        Mailbox(
            email=person.email,
            name=person.name,
            imap=imap_params(person.imap),
            folders=tuple(person.imap.folders),
        )
        for person in settings.salespeople
        if person.imap is not None
    ]


def match_policy(settings: Settings) -> MatchPolicy:
    """How synced and imported messages are matched to customers (`sync:`, soft bounces from `sending:`)."""
    return MatchPolicy(
        create_leads=settings.sync.create_leads,
        lead_source=settings.sync.lead_source,
        fold_addresses=settings.sync.fold_addresses,
        soft_bounce_limit=settings.sending.soft_bounce_limit,
        soft_bounce_window=settings.sending.soft_bounce_window,
    )


def sync_policy(settings: Settings) -> SyncPolicy:
    """How mailboxes are kept in sync (`sync:` in mailcrm.yaml)."""
    sync = settings.sync
    return SyncPolicy(
        poll_seconds=sync.poll_seconds,
        idle_renew_seconds=sync.idle_renew_seconds,
        reconnect_max_seconds=sync.reconnect_max_seconds,
        auth_retry_seconds=sync.auth_retry_seconds,
        batch_messages=sync.batch_messages,
        batch_bytes=sync.batch_bytes,
        match=match_policy(settings),
    )

"""IMAP for mailbox sync: the client (`client.ImapClient`, which owns a `connection.Connection`
and delegates to `login`, `folders`, `fetching`, `changes`, `append` and `idle`), what it
connects with (`params.ImapParams`), pure response parsing (`parse`), the aioimaplib
adaptations (`protocol`) and the errors the sync supervisor reacts to (`errors`, under
`MailcrmError`).

May import aioimaplib (the only package that does), `mailcrm.domain`, `mailcrm.errors`,
`mailcrm.credentials`, `mailcrm.oauth` and `mailcrm.netpolicy`; never the configuration
model (`mailcrm.settings`: callers pass `ImapParams`), the database (`sqlmodel`,
`sqlalchemy`, `mailcrm.store`) nor the code that uses it (sync, send);
`tests/unit/test_layers.py` guards this.

Nothing is re-exported here, so importing the pure `mailcrm.imap.parse` does not load
aioimaplib.
"""

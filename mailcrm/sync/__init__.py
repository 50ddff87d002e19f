"""Mailbox sync: folder engine, the per-mailbox supervisor, and file backfill.

The supervisor is given its `Mailbox`es, the team and a `SyncPolicy` (`policy`), never
the configuration model: `mailcrm.settings` is read at the edges (`mailcrm.wiring`;
`tests/unit/test_layers.py` guards this).
"""

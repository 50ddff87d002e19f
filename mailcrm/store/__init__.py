"""The database shell: table models, engine, migrations and the queries each concept needs.

Every SQL statement of mailcrm lives under this package; the rest of the code calls a
store function named after what it answers (tests/unit/test_layers.py guards it).

The handle rule: a store function takes a `Session` and never commits. The caller opens
the transaction with `db.read()` or `db.write()`, and several calls may share it.

A function takes the `Database` only when it must own its transactions, and its module
docstring says so: it commits before returning, or runs several transactions, and the
caller must not widen them. These are the outbox's state changes with their history
(`outbox.claims`, `outbox.outcomes`, `outbox.recording`, `outbox.admin.retry`/`cancel`),
the sender's reads that want a fresh snapshot of their own (`outbox.facts.sent_since`,
`soft_bounces`), bulk import (`importer`, a transaction per batch), migrations
(`migrate`) and the planner's candidate scan (`candidates.scan`, which opens the read
transaction its batches stream from).

A `Connection` never leaves the store: helpers for set-based SQL on the driver
(`importer.bulk`, `purchases.customer_zones`/`promote_leads`) take one from the session
of the store function that calls them.
"""

"""Mailbox sync: folder engine and the per-mailbox supervisor."""

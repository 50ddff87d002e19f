"""Sending the outbox: SMTP connection pools (`smtp`), the send loop (`worker`), Sent copies."""

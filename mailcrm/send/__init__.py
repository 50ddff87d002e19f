"""Sending the outbox: the send loop (`worker`) and its helpers, sender processes, Sent
copies. SMTP itself is `mailcrm.smtp`'s; this package is its only user."""

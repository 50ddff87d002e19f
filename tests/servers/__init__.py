"""Real servers (Dovecot, SMTP, PostgreSQL) started privately for integration tests."""

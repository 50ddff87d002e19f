"""SMTP client shell over aiosmtplib, used by the sender (`mailcrm.send`) and nothing else.

* `params`: what a pool connects with (`SmtpParams`: server, login, limits);
* `pool`: per-account pools of reused connections, one transaction at a time each, the
  per-minute spacing (`RateLimiter`) and the DATA block as sent;
* `login`: connect, TLS or STARTTLS, EHLO and AUTH (login, plain, xoauth2);
* `pipelining`: MAIL, RCPT and DATA in one write (RFC 2920) with every reply kept;
* `errors`: what leaves the shell instead of aiosmtplib's exceptions (`SmtpError` and
  below, all under `MailcrmError`).

May import aiosmtplib, `mailcrm.domain`, `mailcrm.errors`, `mailcrm.credentials`,
`mailcrm.oauth` and `mailcrm.netpolicy`; never the configuration model
(`mailcrm.settings`: callers pass `SmtpParams`), the database (`sqlmodel`, `sqlalchemy`,
`mailcrm.store`) nor the sender above it (`tests/unit/test_layers.py` guards this).
Nothing is re-exported here.
"""

"""Users, passwords, API tokens and the login throttle, as services the web layer and
the CLI call.

This is a package of its own rather than part of `domain/`: hashing a password costs
about 64 MiB and tens of milliseconds of argon2 by design, and logging in runs two
transactions around that hash, so it is neither pure nor instant. The arithmetic and
formats it relies on are pure and live in `domain/` (`access`, `passwords`, `tokens`,
`throttle`); the SQL lives in `store/` (`users`, `tokens`, `throttle`).

May import `domain`, `store`, `errors` and argon2; never `web`, `cli` or the mail shells.
The calls are synchronous like the store: an asyncio caller runs them in a thread
(`asyncio.to_thread`), so a hash never blocks the event loop.

- `passwords`: argon2id hashing with the policy, verification, rehash, the dummy hash.
- `accounts`: adding users, passwords, disabling, issuing and revoking tokens; each
  change is written to the audit log in the same transaction.
- `login`: `Authenticator.authenticate` (password logins, throttled) and
  `Authenticator.check_token` (API tokens and their scope).
"""

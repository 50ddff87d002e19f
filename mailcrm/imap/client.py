"""An IMAP connection for mailbox sync: connect, log in, list, select, search, fetch, wait, append.

Built on aioimaplib's protocol class (`protocol`). The commands live in one module per
concept and are joined here into the one class callers use:

* `connection`: state, the command lock, watchdog and "connection lost" guards, close;
* `login`: TCP/TLS/STARTTLS, LOGIN or AUTHENTICATE, CAPABILITY, ENABLE QRESYNC;
* `folders`: LIST and SELECT/EXAMINE;
* `fetching`: UID SEARCH and batched UID FETCH of bodies;
* `changes`: CONDSTORE/QRESYNC flag changes and expunges since a MODSEQ;
* `append`: APPEND;
* `idle`: IDLE (or NOOP polling) until the server announces a change.

One command runs at a time per client (an internal lock); `wait_for_changes` holds the
connection for its whole duration, so appends belong on another connection.
"""

from __future__ import annotations

from mailcrm.imap.append import Appending
from mailcrm.imap.changes import Changes
from mailcrm.imap.fetching import Fetching
from mailcrm.imap.folders import Folders
from mailcrm.imap.idle import Waiting
from mailcrm.imap.login import Login, TokenProvider

__all__ = ["ImapClient", "TokenProvider"]


class ImapClient(Login, Folders, Fetching, Changes, Appending, Waiting):
    """A logged-in IMAP connection; create it with `ImapClient.connect`."""

"""Reloading the rules when their files change, for the daemon.

The watcher reports what it finds itself: every reload that still finds a broken rule
file logs one ERROR line naming file:line and why (no traceback), however many times
the folder changes meanwhile, and the first reload that finds them good again logs
one INFO line. Between reloads the last good rules keep running.
"""

from __future__ import annotations

import hashlib
import logging
import time as clock
from collections.abc import Callable
from pathlib import Path

from mailcrm.domain.rules import RuleSet
from mailcrm.errors import ConfigError
from mailcrm.rules_yaml.loader import RuleError, rule_files
from mailcrm.textfile import MAX_SETTINGS_BYTES, read_bytes

log = logging.getLogger(__name__)

_Stamp = tuple[tuple[str, int, int], ...]
# A file changed this recently may change again within the clock's resolution: hash it.
_SETTLE_NS = 2_000_000_000


class RuleWatcher:
    """Reloads the rules when the files change; a broken edit keeps the last good set.

    Cheap when nothing changed (one `stat` per file); a changed stamp is confirmed by a
    content hash, so touching a file does not reload it.
    """

    def __init__(self, directory: Path, loader: Callable[[Path], RuleSet]) -> None:
        self.directory = directory
        self.loader = loader
        self.rules = RuleSet()
        self.error: ConfigError | None = None
        self._stamp: _Stamp | None = None
        self._digest: str | None = None

    def _stamp_now(self) -> _Stamp | None:
        """Name, mtime and size of every rule file; `None` when the folder cannot be listed."""
        try:
            return tuple(
                (path.name, info.st_mtime_ns, info.st_size)
                for path in rule_files(self.directory)
                for info in [path.stat()]
            )
        except OSError:
            return None

    def _digest_now(self) -> str:
        digest = hashlib.sha256()
        try:
            files = rule_files(self.directory)
        except OSError as exc:
            digest.update(f"unreadable folder: {exc.strerror}".encode())
            files = []
        for path in files:
            digest.update(path.name.encode("utf-8", "surrogateescape") + b"\0")
            try:
                digest.update(read_bytes(path, MAX_SETTINGS_BYTES))
            except OSError as exc:
                digest.update(f"unreadable: {exc.strerror}".encode())
            digest.update(b"\0")
        return digest.hexdigest()

    def reload_if_changed(self, *, force: bool = False) -> tuple[RuleSet, ConfigError | None]:
        """The rules to use now, and the problem of the current files (`None` when they are good).

        While the files stay unchanged the same error object is returned without reading
        them again. The stamp and hash are only remembered once a load has finished, so a
        loader that fails unexpectedly is tried (and fails visibly) again next time.
        """
        stamp = self._stamp_now()
        settled = stamp is not None and all(clock.time_ns() - mtime > _SETTLE_NS for _, mtime, _ in stamp)
        if not force and stamp is not None and stamp == self._stamp and settled:
            return self.rules, self.error
        digest = self._digest_now()
        if not force and digest == self._digest:
            self._stamp = stamp
            return self.rules, self.error
        try:
            rules = self.loader(self.directory)
        except ConfigError as exc:
            log.error(
                "rule files have errors; keeping the last good rules: %s",
                one_line(exc),
                extra={"action": "rules_invalid"},
            )
            self.error = exc
        else:
            if self.error is not None:
                log.info(
                    "rule files are valid again: %d rule(s) loaded",
                    len(rules.rules),
                    extra={"action": "rules_fixed"},
                )
            self.rules, self.error = rules, None
        self._stamp, self._digest = stamp, digest
        return self.rules, self.error


def one_line(error: ConfigError) -> str:
    """Every problem of a rule error on one line, `; `-joined: `file:line: why (hint: ...)`."""
    problems = error.problems if isinstance(error, RuleError) else (error,)
    parts = (p.message + (f" (hint: {p.hint})" if p.hint else "") for p in problems)
    return "; ".join(" ".join(part.splitlines()) for part in parts)

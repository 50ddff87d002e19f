"""What an import did: counts per row, and the reasons rows were refused."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

MAX_REPORTED_ERRORS = 10_000

ProgressCallback = Callable[[int, int], None]


@dataclass(frozen=True)
class RowError:
    """A refused record: `row` is the CSV line it starts on (the header is line 1)."""

    row: int
    reason: str


@dataclass
class ImportReport:
    """What an import did, row by row; `to_json` is a scripting interface."""

    file: str
    rows: int = 0
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    skipped: int = 0
    failed: int = 0
    errors: list[RowError] = field(default_factory=list)
    warnings: list[RowError] = field(default_factory=list)  # rows imported with a caveat
    ignored_columns: list[str] = field(default_factory=list)
    ignored_hint: str | None = None
    dry_run: bool = False

    def add_errors(self, errors: Iterable[RowError]) -> None:
        """Count every refused row; keep the first `MAX_REPORTED_ERRORS` reasons."""
        for error in errors:
            self.failed += 1
            if len(self.errors) < MAX_REPORTED_ERRORS:
                self.errors.append(error)

    def add_warnings(self, warnings: Iterable[RowError]) -> None:
        """Keep the first `MAX_REPORTED_ERRORS` warnings (the rows were imported)."""
        room = MAX_REPORTED_ERRORS - len(self.warnings)
        self.warnings.extend(list(warnings)[: max(room, 0)])

    def to_json(self) -> dict[str, Any]:
        return {
            "file": self.file,
            "rows": self.rows,
            "created": self.created,
            "updated": self.updated,
            "unchanged": self.unchanged,
            "skipped": self.skipped,
            "failed": self.failed,
            "errors": [{"row": e.row, "reason": e.reason} for e in self.errors],
            "warnings": [{"row": w.row, "reason": w.reason} for w in self.warnings],
            "ignored_columns": list(self.ignored_columns),
            "dry_run": self.dry_run,
        }

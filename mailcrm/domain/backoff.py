"""Reconnect delays: exponential with full jitter, so many clients do not retry in step."""

from __future__ import annotations

import random
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Backoff:
    """`delay(n)` for the n-th consecutive failure (n >= 1)."""

    base: float = 1.0
    cap: float = 300.0
    factor: float = 2.0

    def ceiling(self, attempt: int) -> float:
        """The largest delay for this attempt (without jitter)."""
        exponent = min(max(attempt, 1) - 1, 64)
        return float(min(self.cap, self.base * self.factor**exponent))

    def delay(self, attempt: int, rng: random.Random | None = None) -> float:
        """A delay in [ceiling/2, ceiling]: never zero, never above the cap."""
        top = self.ceiling(attempt)
        return top / 2 + (rng or random).random() * top / 2

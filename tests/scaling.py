"""Whether work grows in proportion to its input, measured so that a busy machine cannot fail it.

A wall-clock bound ("under 50 ms") flakes when other processes share the cores, and says
nothing a benchmark does not say better. What such a bound really protects against is an
algorithm that is quadratic (or worse) in hostile input. Timing the same work on n and 8n
units tells that apart on any machine: linear work takes about 8 times as long, quadratic
64 times. Each side is timed several times and the fastest run kept, since load only ever
adds time.
"""

from __future__ import annotations

import time
from collections.abc import Callable

FACTOR = 8


def best_time(run: Callable[[], object], repeats: int = 3) -> float:
    """The fastest of `repeats` runs, in seconds."""
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        run()
        best = min(best, time.perf_counter() - started)
    return best


def assert_linear(
    small: Callable[[], object],
    large: Callable[[], object],
    *,
    slack: float = 3.0,
    noise: float = 0.005,
) -> None:
    """`large` does FACTOR times the work of `small`; fail if it takes more than `slack`
    times the linear share (24x by default, where quadratic work takes 64x). `noise`
    seconds are allowed on top, so that sub-millisecond runs are not judged on timer jitter."""
    fast = best_time(small)
    slow = best_time(large)
    bound = slack * FACTOR * fast + noise
    assert slow <= bound, (
        f"{FACTOR}x the input took {slow * 1000:.1f} ms against {fast * 1000:.1f} ms "
        f"(bound {bound * 1000:.1f} ms): more than linear growth"
    )

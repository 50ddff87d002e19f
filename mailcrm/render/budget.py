"""Per-render state: the formatting locale, the timezone, and the work budget.

Held in a context variable so the helpers and the sandbox, which jinja2 calls without
the renderer, see the email being rendered.
"""

from __future__ import annotations

from contextvars import ContextVar
from dataclasses import dataclass

from mailcrm.render.errors import _LimitError

MAX_OUTPUT = 1024 * 1024  # characters per rendered part
MAX_STRING = 1024 * 1024  # characters in a string passed to a call or made by '*'
MAX_SEQUENCE = 10_000  # items in a list made by '*'
MAX_RANGE = 10_000  # items in one range()
MAX_STEPS = 100_000  # calls, loop iterations and range items per email
MAX_POWER_BITS = 4096  # size of an integer made by '**'


@dataclass(slots=True)
class _RenderState:
    locale_tag: str  # formatting locale of the helpers
    zone: str  # the customer's timezone
    steps: int = MAX_STEPS  # work left for this email


_STATE: ContextVar[_RenderState | None] = ContextVar("mailcrm_render_state", default=None)


def _state() -> _RenderState:
    state = _STATE.get()
    if state is None:
        return _RenderState("en", "UTC")
    return state


def _charge(steps: int, what: str) -> None:
    state = _STATE.get()
    if state is None:
        return
    state.steps -= steps
    if state.steps < 0:
        raise _LimitError(f"too much work in one email ({what}); the limit is {MAX_STEPS} steps")

"""`mailcrm demo`: placeholder until the demo module lands."""

from __future__ import annotations


def demo() -> None:
    """Run the demo."""

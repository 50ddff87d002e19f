"""Who may do what: roles, token scopes, and the principal a request runs as.

A salesperson sees and changes their own customers, an admin everyone's (the web layer
filters by `Principal.owner_filter`). An API token carries one scope: `write` includes
`read`, so a token for a shop's order webhook can also read back what it wrote, while a
`read` token for a dashboard can change nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Role(StrEnum):
    SALESPERSON = "salesperson"
    ADMIN = "admin"


class Scope(StrEnum):
    READ = "read"
    WRITE = "write"


_INCLUDES: dict[Scope, frozenset[Scope]] = {
    Scope.READ: frozenset({Scope.READ}),
    Scope.WRITE: frozenset({Scope.READ, Scope.WRITE}),
}


def allows(granted: Scope | None, needed: Scope) -> bool:
    """Whether a session with `granted` may do what needs `needed`.

    `granted` None is a password login (the dashboard): everything the role allows.
    """
    return granted is None or needed in _INCLUDES[granted]


@dataclass(frozen=True)
class Principal:
    """The user a request or command acts as, with the scope of the token it came with."""

    user_id: int
    email: str
    role: Role
    salesperson_id: int | None
    scope: Scope | None = None  # None: logged in with a password

    @property
    def is_admin(self) -> bool:
        return self.role is Role.ADMIN

    @property
    def owner_filter(self) -> int | None:
        """The salesperson whose customers this principal is limited to (None: all)."""
        return None if self.is_admin else self.salesperson_id

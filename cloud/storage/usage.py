"""What the API gateway keeps per token: rate-limit windows and the metered requests per day."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import Protocol


@dataclass(frozen=True, kw_only=True)
class UsageRecord:
    """Requests of one token on one UTC day to one route (its template) ending in one status
    class."""

    day: date
    token_id: str
    token_name: str | None  # None once the token row is gone
    method: str
    route: str
    status: str  # "2xx", "4xx", "5xx"
    count: int


@dataclass(frozen=True, kw_only=True)
class UsageCount:
    """One metered request, as counted."""

    day: date
    account: str
    token_id: str
    method: str
    route: str
    status: str  # "2xx", "4xx", "5xx"


class UsageStore(Protocol):
    def hit(self, token_id: str, kind: str, window_start: int) -> int:
        """Count one request in a rate-limit window atomically; the window's count including it."""
        ...

    def record(self, day: date, account: str, token_id: str, method: str, route: str,
               status: str) -> None:
        """Count one metered request."""
        ...

    def recount(self, counted: UsageCount, status: str) -> None:
        """Move a request counted before its answer (``counted``) to the status class it
        answered with."""
        ...

    def usage(self, account: str, since: date, until: date, token_id: str | None = None
              ) -> list[UsageRecord]:
        """An account's metered requests from ``since`` to ``until`` (both included)."""
        ...

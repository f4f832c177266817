"""Per-token request limits: a fixed-window counter per token and kind of request, kept in the
database so that every cloud process behind one database counts against the same limit.

A fixed window (aligned to multiples of its length) costs one atomic upsert per request; its known
weakness, up to twice the limit across a window boundary, is acceptable for protecting the hubs and
the database from a runaway client.
"""

from __future__ import annotations

import math
import re
import time
from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol

_UNITS = {"s": 1, "sec": 1, "second": 1, "m": 60, "min": 60, "minute": 60, "h": 3600,
          "hour": 3600, "d": 86400, "day": 86400}
_PER_UNIT = re.compile(r"^(\d+)\s*/\s*(\d*)\s*([a-z]+?)s?$")
_TWO_NUMBERS = re.compile(r"^(\d+)\s*[\s,]\s*(\d+)$")
OFF = ("off", "none", "unlimited")


class RequestKind(StrEnum):
    """Reads look (GET, HEAD); commands act (commands, pairing, rename, tokens: every other method)."""

    READS = "reads"
    COMMANDS = "commands"

    @classmethod
    def of(cls, method: str) -> RequestKind:
        return cls.READS if method in ("GET", "HEAD") else cls.COMMANDS


@dataclass(frozen=True)
class Rate:
    requests: int
    seconds: int

    def __str__(self) -> str:
        return f"{self.requests} per {self.seconds}s"


def parse_rate(text: str) -> Rate | None:
    """``120/minute``, ``10/second``, ``5/10s``, ``1000/h``, or two numbers ``120 60`` (requests,
    window seconds); ``off`` for no limit (None)."""
    value = text.strip().lower()
    if value in OFF:
        return None
    if match := _TWO_NUMBERS.match(value):
        requests, seconds = int(match.group(1)), int(match.group(2))
    elif (match := _PER_UNIT.match(value)) and match.group(3) in _UNITS:
        requests = int(match.group(1))
        seconds = int(match.group(2) or 1) * _UNITS[match.group(3)]
    else:
        raise ValueError(f"invalid rate limit {text!r} (e.g. 120/minute, 5/10s, '120 60' for "
                         "requests and window seconds, or off)")
    if requests < 1 or seconds < 1:
        raise ValueError(f"invalid rate limit {text!r}: requests and window must be at least 1")
    return Rate(requests, seconds)


class RateLimited(Exception):
    """The token used up its requests of this kind for the current window."""

    def __init__(self, kind: RequestKind, rate: Rate, retry_after: int) -> None:
        super().__init__(f"rate limit exceeded: at most {rate.requests} {kind.value} per "
                         f"{rate.seconds}s for this token; retry in {retry_after}s")
        self.retry_after = retry_after


class WindowCounter(Protocol):
    def hit(self, token_id: str, kind: str, window_start: int) -> int:
        """Count one request in this window atomically; the window's count including it."""
        ...


class Limiter:
    """Counts each request of a token against the limit of its kind; raises RateLimited beyond."""

    def __init__(self, counter: WindowCounter, reads: Rate | None, commands: Rate | None) -> None:
        self._counter = counter
        self._rates = {RequestKind.READS: reads, RequestKind.COMMANDS: commands}

    def admit(self, token_id: str, method: str) -> None:
        kind = RequestKind.of(method)
        rate = self._rates[kind]
        if rate is None:
            return
        now = time.time()
        start = int(now // rate.seconds) * rate.seconds
        if self._counter.hit(token_id, kind.value, start) > rate.requests:
            raise RateLimited(kind, rate, max(1, math.ceil(start + rate.seconds - now)))

"""The radio watchdog: when the stick stops answering (zigpy's watchdog) or goes away (a USB reset),
reconnect with backoff without losing a paired device, and keep the numbers of the outages."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable

from hub.radio import RadioError, Zigbee

LOGGER = logging.getLogger(__name__)


class RadioWatchdog:
    def __init__(self, start: Callable[[], Awaitable[Zigbee]], *, retry_min: float,
                 retry_max: float, on_down: Callable[[str], None],
                 on_up: Callable[[Zigbee], Awaitable[None]]) -> None:
        self._start = start
        self.retry_min = retry_min
        self.retry_max = retry_max
        self._on_down = on_down
        self._on_up = on_up
        self.up = False
        self.reason: str | None = None
        self.down_since: float | None = None
        self.outages = 0
        self.downtime = 0.0
        self._task: asyncio.Task[None] | None = None

    @property
    def downtime_now(self) -> float:
        """Seconds the radio was down in all, this outage included."""
        current = (time.monotonic() - self.down_since) if self.down_since is not None else 0.0
        return self.downtime + current

    def running(self) -> None:
        self.up, self.reason = True, None

    def lost(self, exc: Exception, old: Zigbee | None, listener: object) -> None:
        """zigpy: the radio stopped answering or went away. Start reconnecting (once)."""
        if self._task is not None and not self._task.done():
            return
        reason = str(exc) or type(exc).__name__
        LOGGER.error("radio down: %s; reconnecting", reason)
        self.up, self.reason = False, f"radio down: {reason}"
        self.down_since = time.monotonic()
        self.outages += 1
        self._on_down(reason)
        self._task = asyncio.create_task(self._reconnect(reason, old, listener),
                                         name="radio-reconnect")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    async def _reconnect(self, reason: str, old: Zigbee | None, listener: object) -> None:
        if old is not None:
            old.app.remove_listener(listener)
            with contextlib.suppress(Exception):
                await old.app.shutdown()
        delay = self.retry_min
        attempts = 0
        while True:
            attempts += 1
            try:
                zigbee = await self._start()
                break
            except RadioError as exc:
                LOGGER.warning("radio reconnect attempt %d failed: %s; next in %.0f s", attempts,
                               exc, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, self.retry_max)
        down = time.monotonic() - (self.down_since or time.monotonic())
        self.downtime += down
        self.down_since = None
        self.up = True
        self.reason = (f"radio was down for {down:.1f} s ({reason}); back after {attempts} "
                       "attempt(s)")
        LOGGER.warning(self.reason)
        await self._on_up(zigbee)

"""What the hub's paho clients share: the link to the cloud's broker (``hub.link``) and the one
to Home Assistant's (``hub.ha_bridge``)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import threading
from collections.abc import Callable

import paho.mqtt.client as mqtt

LOGGER = logging.getLogger(__name__)
LOOP_STOP_TIMEOUT = 5.0  # seconds a stopping hub waits for paho's network thread to end


class LoopHandoff:
    """Hands paho's callbacks (its network thread) to the asyncio loop; once the client's owner
    has stopped, nothing handed over runs any more."""

    _loop: asyncio.AbstractEventLoop | None
    _stopped: bool

    def _call(self, fn: Callable[..., object], *args: object) -> None:
        if self._loop is not None and not self._loop.is_closed() and not self._stopped:
            with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
                self._loop.call_soon_threadsafe(self._unless_stopped, fn, *args)

    def _unless_stopped(self, fn: Callable[..., object], *args: object) -> None:
        """Handed over before the owner stopped, run after: a stopped hub takes nothing in."""
        if not self._stopped:
            fn(*args)


def no_delay(client: mqtt.Client, userdata: object, sock: object) -> None:
    """Small MQTT packets must not wait for Nagle's algorithm (40 ms per exchange otherwise)."""
    with contextlib.suppress(OSError, AttributeError):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # type: ignore[attr-defined]


async def joined(fn: Callable[[], object], within: float) -> None:
    """Run a blocking call in a daemon thread and wait for it at most ``within`` seconds: unlike
    the loop's executor, a thread that hangs (a socket that never answers) does not hold the
    process at exit."""
    loop = asyncio.get_running_loop()
    done = loop.create_future()

    def run() -> None:
        try:
            fn()
        except Exception as exc:  # e.g. not connected: nothing to wait for
            LOGGER.debug("%s: %r", getattr(fn, "__name__", fn), exc)
        finally:
            with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
                loop.call_soon_threadsafe(finished)

    def finished() -> None:
        if not done.done():
            done.set_result(None)

    threading.Thread(target=run, name="mqtt-stop", daemon=True).start()
    try:
        await asyncio.wait_for(done, within)
    except TimeoutError:
        LOGGER.warning("MQTT: %s did not finish within %.0f s; going on without it",
                       getattr(fn, "__name__", "a call"), within)

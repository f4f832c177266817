"""The hub's local control channel: JSON lines over a Unix socket in the hub's data directory.

`spoke hub pair`, `spoke hub backup`, `spoke simulate join` and tests use it on the machine the hub
runs on; the file's permissions (owner only) are its access control. One request per connection;
``pair`` streams progress events until permit-join closes (or the client hangs up, which closes it).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from hub.pairing import PairingReporter

LOGGER = logging.getLogger(__name__)
MAX_REQUEST = 64 * 1024


class ControlError(Exception):
    """A request the hub refuses; the message goes back to the client."""


class PermitJoin(Protocol):
    """The permit-join window a ``pair`` request opens and closes."""

    @property
    def pairing_open(self) -> bool: ...

    async def permit(self, duration: int) -> None: ...


class ControlServer:
    """Serves the control channel: ``pair`` here, every other operation through ``handle``."""

    def __init__(self, path: Path, handle: Callable[[dict[str, Any]], Awaitable[dict[str, Any]]],
                 management: PermitJoin, pairing: PairingReporter,
                 device_info: Callable[[str], dict[str, Any] | None]) -> None:
        self.path = path
        self._handle = handle
        self.management = management
        self.pairing = pairing
        self.device_info = device_info
        self._server: asyncio.AbstractServer | None = None

    async def start(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()
        self._server = await asyncio.start_unix_server(self._serve, path=str(self.path),
                                                       limit=MAX_REQUEST)
        os.chmod(self.path, 0o600)

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 2)
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            line = await reader.readline()
            try:
                request = json.loads(line)
                if not isinstance(request, dict) or not isinstance(request.get("op"), str):
                    raise ControlError("a request is a JSON object with an 'op'")
                if request["op"] == "pair":
                    await self._pair(request, reader, writer)
                else:
                    result = await self._handle(request)
                    await _send(writer, {"ok": True, **result})
            except (ControlError, ValueError) as exc:
                await _send(writer, {"ok": False, "error": str(exc)})
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        except Exception as exc:
            LOGGER.exception("control request failed")
            with contextlib.suppress(Exception):
                await _send(writer, {"ok": False, "error": f"internal error: {exc}"})
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    async def _pair(self, request: dict[str, Any], reader: asyncio.StreamReader,
                    writer: asyncio.StreamWriter) -> None:
        duration = int(request.get("duration", 120))
        if not 1 <= duration <= 254:
            raise ControlError("duration must be 1-254 seconds")
        queue = self.pairing.subscribe()
        adopted: list[str] = []
        hangup = asyncio.ensure_future(reader.read(1))  # the client closing = Ctrl-C
        try:
            await self.management.permit(duration)
            while True:
                getter = asyncio.ensure_future(queue.get())
                done, _ = await asyncio.wait({getter, hangup},
                                             return_when=asyncio.FIRST_COMPLETED)
                if hangup in done:
                    getter.cancel()
                    break
                event = getter.result()
                await _send(writer, {"event": json.loads(event.to_bytes())})
                if event.step == "adopted" and event.ieee:
                    adopted.append(event.ieee)
                if event.step == "permit_closed":
                    break
            devices = [self.device_info(ieee) for ieee in adopted]
            await _send(writer, {"ok": True, "done": True,
                                 "devices": [d for d in devices if d is not None]})
        finally:
            hangup.cancel()
            self.pairing.unsubscribe(queue)
            if self.management.pairing_open:
                await self.management.permit(0)


async def _send(writer: asyncio.StreamWriter, message: dict[str, Any]) -> None:
    writer.write(json.dumps(message, default=str).encode() + b"\n")
    await writer.drain()


async def request(path: Path, message: dict[str, Any], wait: float = 30.0) -> dict[str, Any]:
    """Send one request to a running hub and return its answer (client side)."""
    reader, writer = await _connect(path)
    try:
        writer.write(json.dumps(message).encode() + b"\n")
        await writer.drain()
        line = await asyncio.wait_for(reader.readline(), wait)
        if not line:
            raise ControlError("the hub closed the control channel without an answer")
        return json.loads(line)  # type: ignore[no-any-return]
    finally:
        writer.close()


async def stream(path: Path, message: dict[str, Any]) -> Any:
    """Send a streaming request (pair) and yield each message until the final one."""
    reader, writer = await _connect(path)
    try:
        writer.write(json.dumps(message).encode() + b"\n")
        await writer.drain()
        while True:
            line = await reader.readline()
            if not line:
                return
            data = json.loads(line)
            yield data
            if "event" not in data:
                return
    finally:
        writer.close()


async def _connect(path: Path) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    try:
        return await asyncio.open_unix_connection(str(path), limit=MAX_REQUEST)
    except (FileNotFoundError, ConnectionRefusedError) as exc:
        raise ControlError(f"no hub is running with data dir {path.parent} "
                           f"(no control socket at {path}): start it with `spoke hub run`") from exc

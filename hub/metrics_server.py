"""The hub's /metrics listener: a small HTTP/1.1 server on the hub's own event loop.

Only ``GET /metrics`` with ``Authorization: Bearer <token>`` is answered (the Prometheus text
format); the token is read from a 0600 file, made with a random token on the first start. Anything
else gets a short 4xx and the connection is closed. One request per connection (Prometheus opens a
new one or reuses none); a caller that sends nothing in time is dropped. The token is never logged.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
import os
import secrets
from pathlib import Path

from prometheus_client import CollectorRegistry, generate_latest

from private_files import private_file

LOGGER = logging.getLogger(__name__)
MAX_HEAD = 8192  # request line and headers; a scraper sends a few hundred bytes
READ_TIMEOUT = 5.0
MIN_TOKEN_CHARS = 16
# The text format every Prometheus reads (the hub's names and labels need nothing newer).
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class MetricsTokenError(ValueError):
    """The metrics token file holds a token too short to protect anything."""


def ensure_metrics_token(path: Path) -> str:
    """The token in ``path``; a missing or empty file gets a new random one (0600)."""
    private_file(path)  # exists, the owner's alone (tightened if it was readable by others)
    token = path.read_text(encoding="utf-8").strip()
    if not token:
        token = secrets.token_urlsafe(32)
        fd = os.open(path, os.O_WRONLY | os.O_TRUNC)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(token + "\n")
    if len(token) < MIN_TOKEN_CHARS:
        raise MetricsTokenError(f"the metrics token in {path} is shorter than {MIN_TOKEN_CHARS} "
                                "characters: empty the file and a strong one is made at start")
    return token


def _response(status: str, body: bytes = b"", content_type: str = "text/plain; charset=utf-8",
              extra: str = "") -> bytes:
    head = (f"HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\n"
            f"Content-Length: {len(body)}\r\nCache-Control: no-store\r\nConnection: close\r\n"
            f"{extra}\r\n")
    return head.encode("ascii") + body


UNAUTHORIZED = _response("401 Unauthorized", b"a bearer token is required\n",
                         extra='WWW-Authenticate: Bearer realm="spoke-hub-metrics"\r\n')
BAD_REQUEST = _response("400 Bad Request", b"bad request\n")
TOO_LARGE = _response("431 Request Header Fields Too Large", b"request head too large\n")
NOT_FOUND = _response("404 Not Found", b"only /metrics is served here\n")
NOT_ALLOWED = _response("405 Method Not Allowed", b"only GET\n", extra="Allow: GET\r\n")


class MetricsServer:
    def __init__(self, registry: CollectorRegistry, host: str, port: int, token_file: Path) -> None:
        self.registry = registry
        self.host = host
        self.port = port
        self.token_file = token_file
        self._token = b""
        self._server: asyncio.Server | None = None
        self._clients: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        """Listen (``port`` 0 takes a free one, then in ``self.port``); OSError if it cannot."""
        token = await asyncio.to_thread(ensure_metrics_token, self.token_file)
        self._token = token.encode("utf-8")
        self._server = await asyncio.start_server(self._client, self.host, self.port,
                                                  limit=MAX_HEAD)
        self.port = int(self._server.sockets[0].getsockname()[1])
        LOGGER.info("hub metrics on http://%s:%d/metrics (bearer token in %s)", self.host,
                    self.port, self.token_file)

    async def stop(self) -> None:
        if self._server is None:
            return
        self._server.close()
        for task in list(self._clients):
            task.cancel()
        await asyncio.gather(*self._clients, return_exceptions=True)
        await self._server.wait_closed()
        self._server = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}/metrics"

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._clients.add(task)
        try:
            try:
                async with asyncio.timeout(READ_TIMEOUT):
                    head = await reader.readuntil(b"\r\n\r\n")
            except asyncio.LimitOverrunError:
                answer = TOO_LARGE
            except (asyncio.IncompleteReadError, TimeoutError):
                return  # the caller went away or sent nothing in time: nothing to answer
            else:
                answer = self._answer(head)
            writer.write(answer)
            await writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            self._clients.discard(task)
            writer.close()
            with contextlib.suppress(ConnectionError, OSError, asyncio.CancelledError):
                await writer.wait_closed()

    def _answer(self, head: bytes) -> bytes:
        try:
            lines = head.decode("latin-1").split("\r\n")
            method, target, version = lines[0].split(" ")
        except ValueError:
            return BAD_REQUEST
        if not version.startswith("HTTP/1."):
            return BAD_REQUEST
        headers: dict[str, str] = {}
        for line in lines[1:]:
            if line:
                name, sep, value = line.partition(":")
                if not sep:
                    return BAD_REQUEST
                headers[name.strip().lower()] = value.strip()
        if not self._authorized(headers.get("authorization", "")):
            return UNAUTHORIZED
        if target.split("?", 1)[0] != "/metrics":
            return NOT_FOUND
        if method != "GET":
            return NOT_ALLOWED
        return _response("200 OK", generate_latest(self.registry), CONTENT_TYPE)

    def _authorized(self, authorization: str) -> bool:
        scheme, _, given = authorization.partition(" ")
        if scheme.lower() != "bearer":
            return False
        # Constant time: how much of a guess matched must not show in how long the answer takes.
        return hmac.compare_digest(given.strip().encode("latin-1"), self._token)

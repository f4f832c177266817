"""A small client for Spoke's REST API, used by the CLI commands that talk to the cloud.

It is the standard library's urllib: a command makes a few requests and exits, and importing an
async-capable client (httpx pulls in its own command line, anyio, h11 and more) took several times
longer than the requests themselves."""

from __future__ import annotations

import functools
import http.client
import json
import ssl
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from email.message import Message
from typing import Any

from spoke.console import fail

PAGE = 1000  # items per page of a list (the API's largest)


@dataclass
class Response:
    status: int
    headers: Message
    content: bytes

    def json(self) -> Any:
        return json.loads(self.content)


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    """A redirect is an error: following one would hand the bearer token to another address."""

    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


class _TlsWhenAsked(urllib.request.HTTPSHandler):
    """https as urllib does it, with the default (verifying) context made at the first https
    request rather than when the opener is built: a command against http:// never loads the CA
    store."""

    def __init__(self) -> None:
        urllib.request.AbstractHTTPHandler.__init__(self)

    @functools.cached_property
    def _tls(self) -> ssl.SSLContext:
        return ssl.create_default_context()

    def https_open(self, req: urllib.request.Request) -> http.client.HTTPResponse:
        return self.do_open(http.client.HTTPSConnection, req,  # type: ignore[no-any-return]
                            context=self._tls)


class ApiClient:
    def __init__(self, api_url: str, token: str | None, timeout: float = 30.0) -> None:
        if not token:
            fail("no API token: pass --token or set SPOKE_API_TOKEN "
                 "(`spoke demo` prints one; `spoke cloud token create NAME` makes one)")
        self.base = api_url.rstrip("/")
        self.timeout = timeout
        self.headers = {"Authorization": f"Bearer {token}", "Accept": "application/json"}
        self.opener = urllib.request.build_opener(_NoRedirects, _TlsWhenAsked)

    def _send(self, method: str, path: str, *, params: dict[str, Any] | None = None,
              json_body: Any = None) -> Response:
        url = self.base + path + (f"?{urllib.parse.urlencode(params)}" if params else "")
        headers = dict(self.headers)
        data = None
        if json_body is not None:
            data = json.dumps(json_body).encode()
            headers["Content-Type"] = "application/json"
        request = urllib.request.Request(url, data=data, headers=headers, method=method)
        try:
            with self.opener.open(request, timeout=self.timeout) as answer:
                response = Response(answer.status, answer.headers, answer.read())
        except urllib.error.HTTPError as exc:  # an answer all the same: 4xx, 5xx, a redirect
            try:
                content = exc.read()
            except OSError:
                content = b""
            finally:
                exc.close()
            response = Response(exc.code, exc.headers, content)
        except TimeoutError:
            fail(f"the API at {self.base} did not answer in time")
        except urllib.error.URLError as exc:
            if isinstance(exc.reason, TimeoutError):
                fail(f"the API at {self.base} did not answer in time")
            fail(f"cannot reach the API at {self.base}: {exc.reason}")
        except (OSError, ValueError) as exc:  # a reset connection; a URL that is not one
            fail(f"cannot reach the API at {self.base}: {exc}")
        if response.status >= 400:
            fail(f"{method} {path}: HTTP {response.status}: {_detail(response)}")
        if response.status >= 300:
            fail(f"{method} {path}: HTTP {response.status}: redirected to "
                 f"{response.headers.get('Location')} (pass that address as --api-url)")
        return response

    def request(self, method: str, path: str, *, json: Any = None) -> Any:
        response = self._send(method, path, json_body=json)
        return response.json() if response.content else None

    def get(self, path: str, **params: Any) -> Any:
        response = self._send("GET", path,
                              params={k: v for k, v in params.items() if v is not None})
        return response.json() if response.content else None

    def get_all(self, path: str, *, page: int = PAGE, **params: Any) -> list[Any]:
        """Every item of a paged list: its pages of ``page`` items in turn, following
        ``X-Next-Cursor``."""
        query = {k: v for k, v in params.items() if v is not None} | {"limit": page}
        items: list[Any] = []
        while True:
            response = self._send("GET", path, params=query)
            items.extend(response.json())
            cursor = response.headers.get("X-Next-Cursor")
            if not cursor or cursor == query.get("cursor"):
                return items
            query["cursor"] = cursor

    def post(self, path: str, body: dict[str, Any]) -> Any:
        return self.request("POST", path, json=body)


def _detail(response: Response) -> str:
    try:
        body = response.json()
    except ValueError:  # not JSON, or not UTF-8
        return response.content[:200].decode(errors="replace")
    if isinstance(body, dict):
        detail = body.get("detail", body)
        if isinstance(detail, list):  # FastAPI validation errors
            return "; ".join(f"{'.'.join(str(p) for p in d.get('loc', []))}: {d.get('msg')}"
                             for d in detail)
        extra = f" ({body['error_code']})" if body.get("error_code") else ""
        return f"{detail}{extra}"
    return str(body)


def parse_args(pairs: list[str]) -> dict[str, Any]:
    """key=value pairs; values are JSON when they parse (21.5, true), else strings (heat)."""
    args: dict[str, Any] = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        if not sep or not key:
            fail(f"arguments are key=value, got {pair!r}")
        try:
            args[key] = json.loads(raw)
        except json.JSONDecodeError:
            args[key] = raw
    return args

"""A small client for Spoke's REST API, used by the CLI commands that talk to the cloud."""

from __future__ import annotations

import json
from typing import Any

import httpx

from spoke.console import fail

PAGE = 1000  # items per page of a list (the API's largest)


class ApiClient:
    def __init__(self, api_url: str, token: str | None, timeout: float = 30.0) -> None:
        if not token:
            fail("no API token: pass --token or set SPOKE_API_TOKEN "
                 "(`spoke demo` prints one; `spoke cloud token create NAME` makes one)")
        self.base = api_url.rstrip("/")
        self.http = httpx.Client(base_url=self.base, timeout=timeout,
                                 headers={"Authorization": f"Bearer {token}"})

    def _send(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            response = self.http.request(method, path, **kwargs)
        except httpx.TimeoutException:
            fail(f"the API at {self.base} did not answer in time")
        except httpx.HTTPError as exc:
            fail(f"cannot reach the API at {self.base}: {exc}")
        if response.status_code >= 400:
            fail(f"{method} {path}: HTTP {response.status_code}: {_detail(response)}")
        return response

    def request(self, method: str, path: str, **kwargs: Any) -> Any:
        response = self._send(method, path, **kwargs)
        return response.json() if response.content else None

    def get(self, path: str, **params: Any) -> Any:
        return self.request("GET", path, params={k: v for k, v in params.items() if v is not None})

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


def _detail(response: httpx.Response) -> str:
    try:
        body = response.json()
    except json.JSONDecodeError:
        return response.text[:200]
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

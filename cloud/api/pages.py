"""Keyset pagination of the list routes: ``limit`` and an opaque ``cursor`` in, a page of at most
``limit`` items out as a plain JSON list, the next page's address in the ``Link`` (rel="next") and
``X-Next-Cursor`` headers (absent on the last page). A client that knows nothing of pages still gets
a list; one that follows the header gets every item exactly once, however the list grows meanwhile.

A cursor is the base64url of the list's name and the last item's sort key: the client may not make
one up, and one that is not the server's own (or another list's) is a 422, never a 500."""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Callable, Sequence
from typing import Annotated
from urllib.parse import urlencode

from fastapi import Query, Request, Response

from cloud.api.errors import invalid
from cloud.api.responses import Responses

PAGE_DEFAULT = 100
PAGE_MAX = 1000
_SEP = "\n"
_KEY = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}")  # hub and device ids, as the cloud makes them
_CURSOR_MAX = 400  # characters: a list name and two ids of 128 characters, in base64

Limit = Annotated[int, Query(ge=1, le=PAGE_MAX, description=f"items per page (at most {PAGE_MAX})")]
Cursor = Annotated[str | None, Query(
    min_length=1, max_length=_CURSOR_MAX, pattern=r"^[A-Za-z0-9_-]+$",
    description="where the page starts: the `X-Next-Cursor` of the previous page (absent: the "
                "first page)")]

PAGED: Responses = {200: {
    "description": "one page, in a stable order; the next page's address is in the headers",
    "headers": {
        "Link": {"description": 'the next page as `<url>; rel="next"` (relative to this '
                                "request); absent on the last page",
                 "schema": {"type": "string"}},
        "X-Next-Cursor": {"description": "the next page's `cursor`; absent on the last page",
                          "schema": {"type": "string"}},
    },
}}


def encode_cursor(kind: str, *key: str) -> str:
    raw = _SEP.join((kind, *key)).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str, kind: str, parts: int) -> list[str]:
    """The sort key a cursor of the list ``kind`` holds (``parts`` ids); a 422 for anything else."""
    try:
        text = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError):
        text = ""
    found, *key = text.split(_SEP)
    if found != kind or len(key) != parts or not all(_KEY.fullmatch(k) for k in key):
        raise invalid(("query", "cursor"), "not a cursor of this list: pass the X-Next-Cursor "
                      "of its previous page, or none for the first page", "cursor_invalid")
    return key


def page[T](items: Sequence[T], limit: int, request: Request, response: Response,
            cursor_of: Callable[[T], str]) -> list[T]:
    """The first ``limit`` of ``items``, fetched as ``limit + 1`` to know whether more follow; when
    they do, the headers say where the next page starts (after the last item kept)."""
    if len(items) <= limit:
        return list(items)
    cursor = cursor_of(items[limit - 1])
    query = [(k, v) for k, v in request.query_params.multi_items() if k != "cursor"]
    response.headers["Link"] = (f"<{request.url.path}?{urlencode([*query, ('cursor', cursor)])}>; "
                                'rel="next"')
    response.headers["X-Next-Cursor"] = cursor
    return list(items[:limit])

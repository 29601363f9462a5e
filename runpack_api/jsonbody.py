"""Request bodies parsed with orjson: fast, strict UTF-8, and bounded nesting depth."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Coroutine
from typing import Any

import orjson
from fastapi import Request, Response
from fastapi.routing import APIRoute
from starlette.background import BackgroundTask

#: orjson reads integers of 2**64 and more as floats, silently rounded. A body with a run
#: of this many digits is read again exactly, so such integers are refused like any other
#: beyond JSON's safe range instead of being rounded.
_LONG_DIGITS = re.compile(rb"[0-9]{20,}")


def _exact_json(body: bytes) -> Any:
    """The standard library's reading of ``body``: slower, but integers stay exact."""
    try:
        return json.loads(body)
    except RecursionError:
        raise json.JSONDecodeError(
            "nested too deeply", body.decode("utf-8", "replace"), 0
        ) from None


def parse_json(body: bytes) -> Any:
    """A body's JSON: orjson's reading, or the exact one when it holds a very long number.

    Raises ``json.JSONDecodeError`` (orjson's errors are a subclass) for malformed JSON.
    """
    value = orjson.loads(body)
    return _exact_json(body) if _LONG_DIGITS.search(body) else value


class OrjsonRequest(Request):
    """A request whose ``json()`` is ``parse_json``."""

    async def json(self) -> Any:
        if not hasattr(self, "_json"):
            self._json = parse_json(await self.body())
        return self._json


class OrjsonRoute(APIRoute):
    """A route that hands its endpoint an ``OrjsonRequest``."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def orjson_handler(request: Request) -> Response:
            return await handler(OrjsonRequest(request.scope, request.receive))

        return orjson_handler


def json_response(
    body: Any,
    status_code: int = 200,
    headers: dict[str, str] | None = None,
    background: BackgroundTask | None = None,
) -> Response:
    """A response from already-built JSON-able data (``background`` runs after it is sent)."""
    return Response(
        orjson.dumps(body),
        status_code=status_code,
        headers=headers,
        media_type="application/json",
        background=background,
    )


def raw_json_response(encoded: bytes, status_code: int = 200) -> Response:
    """A response from already-encoded JSON."""
    return Response(encoded, status_code=status_code, media_type="application/json")

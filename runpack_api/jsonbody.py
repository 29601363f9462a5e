"""Request bodies parsed with orjson (fast, strict UTF-8, exact integers), and JSON answers."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

import orjson
from fastapi import Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute
from pydantic import BaseModel, ValidationError
from starlette.background import BackgroundTask
from starlette.requests import ClientDisconnect

from runpack_tasks.errors import InvalidRequest

Model = TypeVar("Model", bound=BaseModel)

#: Said for any body that is not declared as JSON, by every route.
NOT_JSON = "the request body must be JSON, sent with Content-Type: application/json"

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


def declares_json(content_type: str | None) -> bool:
    """FastAPI's strict rule: a body is JSON only when its content type says so
    (``application/json`` or ``application/*+json``); a body without one is not, so that a
    page on another origin cannot post one without a CORS preflight."""
    if not content_type:
        return False
    mime = content_type.split(";", 1)[0].strip().lower()
    main, _, sub = mime.partition("/")
    return main == "application" and (sub == "json" or sub.endswith("+json"))


async def _whole_body(request: Request) -> bytes:
    """The request's body, read straight from ``receive`` (what ``Request.body()`` does,
    without its stream generator, on the path every submit and check takes)."""
    chunks = []
    while True:
        message = await request.receive()
        if message["type"] == "http.disconnect":
            raise ClientDisconnect()
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            return b"".join(chunks)


async def read_json(request: Request) -> Any:
    """The request's JSON body, read by the same rules FastAPI applies to the other routes'
    bodies; errors are the ones FastAPI raises, so they are rendered alike."""
    body = await _whole_body(request)
    if not body:
        raise RequestValidationError(
            [{"type": "missing", "loc": ("body",), "msg": "Field required", "input": None}]
        )
    if not declares_json(request.headers.get("content-type")):
        raise InvalidRequest(NOT_JSON)
    try:
        document = parse_json(body)
    except json.JSONDecodeError as exc:
        raise RequestValidationError(
            [
                {
                    "type": "json_invalid",
                    "loc": ("body", exc.pos),
                    "msg": "JSON decode error",
                    "input": {},
                    "ctx": {"error": exc.msg},
                }
            ]
        ) from None
    return document


def validated(model: type[Model], document: Any) -> Model:
    """A JSON body as ``model``; refused as FastAPI refuses a body its model does not take."""
    try:
        return model.model_validate(document)
    except ValidationError as exc:
        errors = [{**error, "loc": ("body", *error["loc"])} for error in exc.errors()]
        raise RequestValidationError(errors) from None


def encode(model: BaseModel) -> bytes:
    """A response model as JSON, with the fields it was given (an absent field stays absent,
    as in the seed's bodies)."""
    return orjson.dumps(model.model_dump(exclude_unset=True))


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

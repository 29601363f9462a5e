"""Every error rendered once, as ``{"error": ...}`` with its status code."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import FastAPI, Request, Response
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException

from runpack_api.jsonbody import NOT_JSON, json_response
from runpack_tasks.errors import RateLimited, RunpackError, TransitionRejected

log = logging.getLogger(__name__)


def error_response(
    status_code: int, message: str, headers: dict[str, str] | None = None
) -> Response:
    """The one error body."""
    return json_response({"error": message}, status_code, headers)


def _describe(error: dict[str, Any]) -> str:
    location = [str(part) for part in error.get("loc", ()) if part not in ("body", "query")]
    where = ".".join(location)
    if error.get("type") == "json_invalid":
        reason = (error.get("ctx") or {}).get("error", "")
        return f"malformed JSON body: {reason}".rstrip(": ")
    if error.get("type") == "missing":
        return f"missing field: {where}" if where else "missing request body"
    if not where and isinstance(error.get("input"), bytes):  # a body FastAPI did not read
        return NOT_JSON
    message = str(error.get("msg", "invalid value"))
    return f"{where}: {message}" if where else message


def runpack_error_response(exc: RunpackError) -> Response:
    """The response for one of Runpack's own errors.

    A refused transition also carries the seed's ``{success: false, message}``, which
    runners read."""
    if isinstance(exc, TransitionRejected):
        body = {"success": False, "message": exc.message, "error": exc.message}
        return json_response(body, exc.status_code)
    headers = {"Retry-After": str(exc.retry_after_s)} if isinstance(exc, RateLimited) else None
    return error_response(exc.status_code, exc.message, headers)


async def _runpack_error(_request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RunpackError)
    return runpack_error_response(exc)


def validation_message(exc: RequestValidationError) -> str:
    """What a 400 for this validation error says (its first three problems)."""
    return "; ".join(_describe(error) for error in exc.errors()[:3]) or "invalid request"


async def _validation_error(_request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    return error_response(400, validation_message(exc))


async def _http_error(_request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    detail = exc.detail if isinstance(exc.detail, str) else str(exc.detail)
    return error_response(exc.status_code, detail, dict(exc.headers or {}) or None)


async def _unexpected_error(_request: Request, exc: Exception) -> Response:
    log.exception("unhandled error", exc_info=exc)
    return error_response(500, "internal server error")


Handler = Callable[[Request, Exception], Awaitable[Response]]
#: Each error class and its renderer; the nearest class in an error's MRO applies.
HANDLERS: dict[type[Exception], Handler] = {
    RunpackError: _runpack_error,
    RequestValidationError: _validation_error,
    HTTPException: _http_error,
    Exception: _unexpected_error,
}


async def render(request: Request, exc: Exception) -> Response:
    """The response the application's handlers give ``exc``."""
    handler = next(HANDLERS[cls] for cls in type(exc).__mro__ if cls in HANDLERS)
    return await handler(request, exc)


def install_error_handlers(app: FastAPI) -> None:
    """Map the RunpackError tree, validation and HTTP errors to ``{"error": ...}``."""
    for error, handler in HANDLERS.items():
        app.add_exception_handler(error, handler)

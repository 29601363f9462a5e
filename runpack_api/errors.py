"""Every error rendered once, as ``{"error": ...}`` with its status code."""

from __future__ import annotations

import logging
import re
from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import FastAPI, Request, Response
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException
from starlette.routing import compile_path

from runpack_api.jsonbody import NOT_JSON, json_response
from runpack_tasks.errors import RateLimited, RunpackError, TransitionRejected
from runpack_tasks.jobstore.db import database_unavailable

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


def _methods_by_path(app: Any) -> list[tuple[re.Pattern[str], int, set[str]]]:
    """Each documented path's pattern, its number of parameters, and the methods served
    there, from the app's own OpenAPI document (read once per process)."""
    found: list[tuple[re.Pattern[str], int, set[str]]] | None = getattr(
        app.state, "methods_by_path", None
    )
    if found is None:
        found = []
        for path, operations in app.openapi().get("paths", {}).items():
            pattern, _, convertors = compile_path(path)
            found.append((pattern, len(convertors), {method.upper() for method in operations}))
        app.state.methods_by_path = found
    return found


def allowed_methods(request: Request) -> str | None:
    """The methods of the path the request names, as OpenAPI matches paths (a path without
    parameters before a templated one): Starlette's 405 names only the first route's
    methods where several routes share a path. None when no documented path matches."""
    path = request.scope.get("path", "")
    matches = [
        (n, methods) for pattern, n, methods in _methods_by_path(request.app) if pattern.match(path)
    ]
    if not matches:
        return None
    fewest = min(n for n, _ in matches)
    methods: set[str] = set().union(*(m for n, m in matches if n == fewest))
    return ", ".join(sorted(methods))


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    detail = exc.detail if isinstance(exc.detail, str) else str(exc.detail)
    headers = dict(exc.headers or {})
    if exc.status_code == 405 and (allowed := allowed_methods(request)):
        headers["Allow"] = allowed
    return error_response(exc.status_code, detail, headers or None)


#: What a client is told while PostgreSQL cannot be reached (restarting, down, overloaded).
DATABASE_UNAVAILABLE = "the database is unavailable; try again"


async def _unexpected_error(_request: Request, exc: Exception) -> Response:
    if database_unavailable(exc):  # nothing the client sent: a 503 it may retry
        log.warning("database unavailable: %s", exc)
        return error_response(503, DATABASE_UNAVAILABLE, {"Retry-After": "1"})
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

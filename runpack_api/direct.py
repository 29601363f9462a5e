"""A declared stage of the routing: chosen routes' endpoints called without FastAPI's
per-request machinery.

``/api/jobs`` carries most of the traffic and its cache hits cost less than FastAPI's
request handling around them (router tree, dependency solving, exit stacks). Its endpoints
therefore take the raw ``Request`` and do their whole pipeline themselves (key, rate
limit, body, answer: see ``routes/jobs.py``), and this stage hands them the requests
their routes match, using the routes' own ``matches``. It decides nothing else: a request
no route matches in full (another path, a wrong method) goes on to the application, and an
error is rendered by the application's own exception handlers (``errors.render``). The
routes stay in the router, so ``/docs`` describes them as it describes every other.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from fastapi import APIRouter
from fastapi.routing import APIRoute
from starlette._utils import get_route_path
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from runpack_api.errors import render


@dataclass(frozen=True)
class _Served:
    """One route as this stage serves it: the route's own compiled path pattern and
    parameter convertors, its methods, and its endpoint."""

    route: APIRoute

    def params(self, path: str, method: str) -> dict[str, Any] | None:
        """The path parameters when the route matches ``path`` and ``method`` in full
        (Starlette's ``Route.matches``, without building a child scope)."""
        found = self.route.path_regex.match(path)
        if found is None or method not in (self.route.methods or ()):
            return None
        convertors = self.route.param_convertors
        return {name: convertors[name].convert(value) for name, value in found.groupdict().items()}


class DirectRoutes:
    """ASGI middleware serving the routes of ``router``, included at ``prefix``, directly."""

    def __init__(self, app: ASGIApp, prefix: str, router: APIRouter) -> None:
        self.app = app
        self.prefix = prefix
        served = [_Served(route) for route in router.routes if isinstance(route, APIRoute)]
        #: Routes without path parameters, found by their path; the others by their pattern.
        self.fixed = {s.route.path: s for s in served if not s.route.param_convertors}
        self.patterned = [s for s in served if s.route.param_convertors]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = get_route_path(scope) if scope["type"] == "http" else ""
        if path.startswith(self.prefix):
            tail, method = path[len(self.prefix) :], scope["method"]
            fixed = self.fixed.get(tail)
            for served in [fixed] if fixed is not None else self.patterned:
                if (params := served.params(tail, method)) is not None:
                    scope["path_params"] = params
                    request = Request(scope, receive)
                    try:
                        response: Response = await served.route.endpoint(request, **params)
                    except Exception as exc:  # rendered as the application would render it
                        response = await render(request, exc)
                    await response(scope, receive, send)
                    return
        await self.app(scope, receive, send)

"""CORS for the JSON API: which web pages, served from other origins, may call it."""

from __future__ import annotations

from starlette._utils import get_route_path
from starlette.middleware.cors import CORSMiddleware
from starlette.types import ASGIApp, Receive, Scope, Send

#: The headers a client sends beyond the CORS-safelisted ones.
ALLOWED_HEADERS = ["Authorization", "Content-Type", "X-Runner-ID"]
#: Every method a route of the API answers.
ALLOWED_METHODS = ["GET", "POST", "DELETE"]
#: Response headers a page may read beyond the safelisted ones (a 429's wait).
EXPOSED_HEADERS = ["Retry-After"]
#: How long a browser may reuse a preflight's answer.
PREFLIGHT_MAX_AGE_S = 600


def serves_cors(path: str) -> bool:
    """Whether ``path`` is one the API opens to other origins: ``/api/...`` and ``/health``.

    The dashboard, ``/docs`` and ``/metrics`` stay same-origin: nothing of theirs is meant
    for another site's scripts."""
    return path.startswith("/api/") or path == "/health"


def _has_origin(scope: Scope) -> bool:
    """Whether the request names its origin: without one there is nothing CORS adds (a
    script, a runner, the CLI), and the request goes straight on."""
    return any(name == b"origin" for name, _ in scope["headers"])


class APICORSMiddleware(CORSMiddleware):
    """Starlette's CORS middleware on the paths ``serves_cors`` names, with Runpack's
    choices: bearer keys (no credentials mode), ``Retry-After`` readable.

    Placed outermost, so that every answer of those paths carries
    ``Access-Control-Allow-Origin``, the 4xx of the inner middlewares included."""

    def __init__(self, app: ASGIApp, origins: list[str]) -> None:
        super().__init__(
            app,
            allow_origins=origins,
            allow_methods=ALLOWED_METHODS,
            allow_headers=ALLOWED_HEADERS,
            expose_headers=EXPOSED_HEADERS,
            allow_credentials=False,
            max_age=PREFLIGHT_MAX_AGE_S,
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and _has_origin(scope) and serves_cors(get_route_path(scope)):
            await super().__call__(scope, receive, send)
        else:
            await self.app(scope, receive, send)

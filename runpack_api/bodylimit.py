"""Caps on raw request bodies, enforced before anything parses them (413)."""

from __future__ import annotations

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from runpack_api.errors import runpack_error_response
from runpack_api.schemas import MAX_ID_LENGTH
from runpack_tasks.errors import PayloadTooLarge
from runpack_tasks.settings import RunpackSettings

#: Room for the JSON around the limited fields (keys, other small fields).
ENVELOPE_BYTES = 4096
#: Any body of a route not listed in ``body_caps``.
DEFAULT_CAP_BYTES = 64 * 1024


def body_caps(settings: RunpackSettings) -> dict[str, int]:
    """Raw body cap by the last path segment of the routes that take large bodies."""
    return {
        "submit": settings.max_input_bytes + ENVELOPE_BYTES,
        "check": settings.max_input_bytes + ENVELOPE_BYTES,
        "submit-batch": settings.max_batch_bytes,
        # a job id in JSON, quoted and escaped at worst, and its comma
        "status-batch": settings.max_batch_jobs * (MAX_ID_LENGTH * 6 + 3) + ENVELOPE_BYTES,
        "heartbeat": settings.max_console_bytes + ENVELOPE_BYTES,
        "complete": settings.max_output_bytes + settings.max_console_bytes + ENVELOPE_BYTES,
        "error": settings.max_error_bytes + settings.max_console_bytes + ENVELOPE_BYTES,
    }


def _too_large(cap: int) -> PayloadTooLarge:
    return PayloadTooLarge(f"request body over the limit of {cap} bytes")


class _TooLarge(HTTPException):
    """Raised from ``receive`` once a body passes its cap: FastAPI turns any other error
    while reading a body into a 400, but lets HTTPExceptions through to this middleware."""

    def __init__(self, cap: int) -> None:
        super().__init__(413, _too_large(cap).message)


class BodyLimitMiddleware:
    """Answer 413 to a body over its route's cap, from Content-Length or while streaming."""

    def __init__(self, app: ASGIApp, caps: dict[str, int]) -> None:
        self.app = app
        self.caps = caps

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        cap = self.caps.get(scope["path"].rstrip("/").rsplit("/", 1)[-1], DEFAULT_CAP_BYTES)
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > cap:
            await self._refuse(cap, scope, receive, send)
            return
        received = 0
        started = False

        async def counting_receive() -> Message:
            nonlocal received
            message = await receive()
            received += len(message.get("body", b""))
            if received > cap:
                raise _TooLarge(cap)
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counting_receive, tracking_send)
        except _TooLarge:
            if not started:
                await self._refuse(cap, scope, receive, send)

    @staticmethod
    async def _refuse(cap: int, scope: Scope, receive: Receive, send: Send) -> None:
        await runpack_error_response(_too_large(cap))(scope, receive, send)

"""The size limits on what a run reports, and how a report is brought within them.

One rule for Celery workers and HTTP runners, with the limits of ``RunpackSettings``:

- the error message keeps its beginning: cut to ``RUNPACK_MAX_ERROR_BYTES``, ending with a
  marker that says it was cut and how long it was;
- the console output keeps its end, the most recent lines, within
  ``RUNPACK_MAX_CONSOLE_BYTES``;
- the output is never cut: one over ``RUNPACK_MAX_OUTPUT_BYTES`` fails the run with a
  message giving its size and the limit.

Sizes are bytes of UTF-8 (the output's: of its compact JSON), as the API measures them.
Text is made storable first (``payloads.storable``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from runpack_tasks.errors import InvalidRequest, PayloadTooLarge
from runpack_tasks.jobstore.payloads import check_json, storable
from runpack_tasks.settings import RunpackSettings


def _cut_to_bytes(text: str, max_bytes: int) -> str:
    """The longest start of ``text`` within ``max_bytes`` (never half a character)."""
    return text.encode("utf-8")[:max_bytes].decode("utf-8", "ignore")


def truncate_error(message: str, max_bytes: int) -> str:
    """``message`` made storable, its beginning kept within ``max_bytes`` with a marker."""
    text = storable(message)
    size = len(text.encode("utf-8"))
    if size <= max_bytes:
        return text
    marker = f" [truncated: {size} bytes, over the limit of {max_bytes} (RUNPACK_MAX_ERROR_BYTES)]"
    head = _cut_to_bytes(text, max(0, max_bytes - len(marker.encode("utf-8"))))
    return _cut_to_bytes(head + marker, max_bytes)  # a limit shorter than the marker


def tail_console(text: str, max_bytes: int) -> str:
    """``text``'s end within ``max_bytes``: the most recent output is kept."""
    encoded = text.encode("utf-8", "replace")
    if len(encoded) <= max_bytes:
        return text
    return encoded[-max_bytes:].decode("utf-8", "ignore")


def output_failure(output: dict[str, Any], max_bytes: int) -> str | None:
    """Why ``output`` is over the limit, or None when it is within it.

    Only the size is judged (by the API's own rule, ``payloads.check_json``): an output
    nested too deeply or that cannot be encoded as JSON at all (an integer beyond 64 bits)
    is left to that check where the result is stored, which refuses it.
    """
    try:
        check_json("output", output, max_bytes)
    except PayloadTooLarge as exc:
        return f"{exc.message} (RUNPACK_MAX_OUTPUT_BYTES)"
    except InvalidRequest:
        return None
    return None


@dataclass(frozen=True)
class ReportLimits:
    """The three limits a report is held to, and the rules above applied with them."""

    max_output_bytes: int
    max_console_bytes: int
    max_error_bytes: int

    @classmethod
    def from_settings(cls, settings: RunpackSettings) -> ReportLimits:
        """The limits this process is configured with (``RUNPACK_MAX_*_BYTES``)."""
        return cls(
            max_output_bytes=settings.max_output_bytes,
            max_console_bytes=settings.max_console_bytes,
            max_error_bytes=settings.max_error_bytes,
        )

    def error_text(self, message: str) -> str:
        """The error as it is reported: storable, cut to the error limit with a marker."""
        return truncate_error(message, self.max_error_bytes)

    def output_failure(self, output: dict[str, Any]) -> str | None:
        """Why the output is over the output limit, or None."""
        return output_failure(output, self.max_output_bytes)

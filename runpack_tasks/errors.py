"""The RunpackError tree: every failure a client can cause, with its HTTP status."""

from __future__ import annotations


class RunpackError(Exception):
    """Raised for any failure Runpack reports to a client; the base of the tree."""

    status_code = 500

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidRequest(RunpackError):
    """Raised when a request is malformed, has wrong types or misses fields."""

    status_code = 400


class NotAuthenticated(RunpackError):
    """Raised when the API key is missing, malformed, wrong or of another role."""

    status_code = 401


class JobNotFound(RunpackError):
    """Raised when no job has the given id."""

    status_code = 404


class RunnerNotFound(RunpackError):
    """Raised when no runner has the given id."""

    status_code = 404


class TransitionRejected(RunpackError):
    """Raised when a job is not in a state that allows the requested transition."""

    status_code = 409


class PayloadTooLarge(RunpackError):
    """Raised when a body or one of its fields is over its size limit."""

    status_code = 413


class RateLimited(RunpackError):
    """Raised when a client or runner is over its rate limit."""

    status_code = 429

    def __init__(self, message: str, retry_after_s: int) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class SubmitContended(RunpackError):
    """Raised when a submitted job's row was deleted each time between its insert and its
    read, so the submit could not settle; submitting again later succeeds."""

    status_code = 503

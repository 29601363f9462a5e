"""RunpackClient: the Python client of the HTTP API (submit, check, status, wait, admin)."""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable, Iterable
from functools import partial
from typing import Any, TypeVar

import httpx
from pydantic import BaseModel, ValidationError

from runpack_api.schemas import (
    BatchItem,
    BatchResponse,
    CheckResponse,
    JobDetail,
    JobList,
    JobRequest,
    JobStatusResponse,
    Outcome,
    RunnerDetail,
    RunnerList,
    Stats,
    StatusBatchResponse,
    SubmitResponse,
)
from runpack_tasks.jobstore.states import JobStatus
from runpack_tasks.settings import DEFAULT_API_URL

FINISHED = {JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.EXPIRED}
#: The status route allows 60 requests a minute per client by default.
DEFAULT_POLL_INTERVAL_S = 1.2
#: Jobs per submit-batch (and ids per status-batch) request: the server's default maximum.
DEFAULT_BATCH_SIZE = 1000

Model = TypeVar("Model", bound=BaseModel)


class RunpackConnectionError(Exception):
    """Raised when no Runpack API answers at the URL: it is malformed, nothing listens there,
    the connection fails (TLS to a plain HTTP server, say), or what answers is not Runpack."""

    def __init__(self, url: str, reason: str):
        super().__init__(f"{url}: {reason}")
        self.url = url
        self.reason = reason


def check_api_url(url: str) -> None:
    """Raise RunpackConnectionError unless ``url`` is an http:// or https:// URL with a host."""
    try:
        parsed = httpx.URL(url)
    except httpx.InvalidURL as exc:
        raise RunpackConnectionError(url, f"not a valid URL ({exc})") from None
    if parsed.scheme not in ("http", "https") or not parsed.host:
        raise RunpackConnectionError(
            url, f"not an http:// or https:// URL (for example {DEFAULT_API_URL})"
        )


def transport_failure(exc: httpx.TransportError) -> str:
    """What went wrong, in a few words, for a request that got no HTTP answer."""
    detail = str(exc) or type(exc).__name__
    if isinstance(exc, httpx.ConnectError) and "SSL" in detail:
        return f"TLS handshake failed; is it a plain http:// server? ({detail})"
    if isinstance(exc, httpx.ConnectError):
        return f"cannot connect ({detail}); is the API running?"
    if isinstance(exc, httpx.TimeoutException):
        return f"no answer in time ({detail})"
    if isinstance(exc, httpx.RemoteProtocolError):
        return f"the answer is not HTTP; is this Runpack's port? ({detail})"
    return detail


def not_runpack(response: httpx.Response) -> str:
    """The reason given for an answer that is not one of Runpack's."""
    kind = response.headers.get("content-type", "no content type").split(";")[0]
    return (
        f"answered HTTP {response.status_code} with {kind}, not Runpack's JSON; "
        "is this Runpack's URL and port?"
    )


def retry_after_s(response: httpx.Response) -> float | None:
    """The server's Retry-After in seconds, when it gives one as a number."""
    try:
        return max(0.0, float(response.headers["Retry-After"]))
    except (KeyError, ValueError):
        return None


class RunpackAPIError(Exception):
    """Raised for every error answer; carries the status code and the server's message."""

    def __init__(self, status_code: int, message: str, retry_after_s: float | None = None):
        super().__init__(f"{status_code}: {message}")
        self.status_code = status_code
        self.message = message
        self.retry_after_s = retry_after_s


class RunpackClient:
    """Talks to one Runpack API with the keys it is given (each call needs its role's key).

    Raises RunpackConnectionError for a URL that is not http(s) (at once) and for a call
    that reaches no Runpack API; RunpackAPIError for the API's own error answers.
    """

    def __init__(
        self,
        url: str = DEFAULT_API_URL,
        *,
        submit_key: str | None = None,
        admin_key: str | None = None,
        timeout_s: float = 30,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        check_api_url(url)
        self._url = url
        self._keys = {"submit": submit_key, "admin": admin_key}
        self._http = httpx.Client(base_url=url.rstrip("/"), timeout=timeout_s, transport=transport)

    def __enter__(self) -> RunpackClient:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the connection pool."""
        self._http.close()

    def _call(self, role: str, method: str, path: str, model: type[Model], **kwargs: Any) -> Model:
        key = self._keys[role]
        if not key:
            raise RunpackAPIError(401, f"no {role} key given to the client")
        try:
            response = self._http.request(
                method, path, headers={"Authorization": f"Bearer {key}"}, **kwargs
            )
        except httpx.TransportError as exc:
            raise RunpackConnectionError(self._url, transport_failure(exc)) from exc
        try:
            body = response.json()
        except ValueError:
            raise RunpackConnectionError(self._url, not_runpack(response)) from None
        if response.is_error:
            if not isinstance(body, dict) or "error" not in body:
                raise RunpackConnectionError(self._url, not_runpack(response))
            raise RunpackAPIError(response.status_code, str(body["error"]), retry_after_s(response))
        try:
            return model.model_validate(body)
        except ValidationError:
            raise RunpackConnectionError(self._url, not_runpack(response)) from None

    # -- submitting and following jobs --------------------------------------------------

    def submit(self, job_type: str, params: dict[str, Any]) -> SubmitResponse:
        """Submit a job: the new one, the one in flight, or the cached result."""
        return self._job("/api/jobs/submit", SubmitResponse, job_type, params)

    def check(self, job_type: str, params: dict[str, Any]) -> CheckResponse:
        """Whether this job exists (never creates it)."""
        return self._job("/api/jobs/check", CheckResponse, job_type, params)

    def _job(self, path: str, model: type[Model], job_type: str, params: dict[str, Any]) -> Model:
        """A submit or check of this job (validated by the server, not here)."""
        body = JobRequest.model_construct(job_type=job_type, input_params=params)
        return self._call("submit", "POST", path, model, json=body.model_dump())

    def submit_many(
        self,
        jobs: Iterable[tuple[str, dict[str, Any]]],
        *,
        batch_size: int = DEFAULT_BATCH_SIZE,
        on_batch: Callable[[list[BatchItem]], None] | None = None,
    ) -> list[BatchItem]:
        """Submit (job_type, params) pairs through ``submit-batch``, ``batch_size`` at a time
        (at most the server's ``RUNPACK_MAX_BATCH_JOBS``): one answer per job, in order, each
        with ``created``. A rate-limited batch is sent again after the wait the server asks
        for; ``on_batch`` sees each batch's answers. A batch the server refuses (a bad job:
        its index is in the message, counted within that batch) raises RunpackAPIError, and
        the batches before it stay submitted."""
        if batch_size < 1:
            raise ValueError("batch_size must be at least 1")
        answers: list[BatchItem] = []
        pending = iter(jobs)
        while chunk := list(itertools.islice(pending, batch_size)):
            body = {"jobs": [{"job_type": t, "input_params": p} for t, p in chunk]}
            done = self._patiently(
                partial(
                    self._call, "submit", "POST", "/api/jobs/submit-batch", BatchResponse, json=body
                )
            ).results
            if on_batch is not None:
                on_batch(done)
            answers.extend(done)
        return answers

    def statuses(self, job_ids: list[str]) -> list[JobStatusResponse | None]:
        """The status of each job id, in order (None for an unknown id), asked for in
        ``status-batch`` requests of up to ``DEFAULT_BATCH_SIZE`` ids; a rate-limited
        request is sent again after the wait the server asks for."""
        found: list[JobStatusResponse | None] = []
        for start in range(0, len(job_ids), DEFAULT_BATCH_SIZE):
            body = {"job_ids": job_ids[start : start + DEFAULT_BATCH_SIZE]}
            found.extend(
                self._patiently(
                    partial(
                        self._call,
                        "submit",
                        "POST",
                        "/api/jobs/status-batch",
                        StatusBatchResponse,
                        json=body,
                    )
                ).results
            )
        return found

    def wait_many(
        self,
        job_ids: list[str],
        *,
        timeout_s: float | None = None,
        poll_interval_s: float = DEFAULT_POLL_INTERVAL_S,
        on_finished: Callable[[list[JobStatusResponse | None]], None] | None = None,
    ) -> dict[str, JobStatusResponse | None]:
        """Poll until every job is completed, failed or expired (or gone: None), reading only
        those still running, a batch per request; ``on_finished`` sees each poll's newly
        finished ones. Raises TimeoutError after ``timeout_s``."""
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        running = list(dict.fromkeys(job_ids))
        final: dict[str, JobStatusResponse | None] = {}
        while True:
            finished = []
            still = []
            for job_id, current in zip(running, self.statuses(running), strict=True):
                if current is None or current.status in FINISHED:
                    final[job_id] = current
                    finished.append(current)
                else:
                    still.append(job_id)
            running = still
            if on_finished is not None and finished:
                on_finished(finished)
            if not running:
                return final
            if deadline is not None and time.monotonic() > deadline:
                raise TimeoutError(f"{len(running)} job(s) still running")
            time.sleep(poll_interval_s)

    def _patiently(self, call: Callable[[], Model]) -> Model:
        """``call``, made again after the server's Retry-After while it is rate limited."""
        while True:
            try:
                return call()
            except RunpackAPIError as exc:
                if exc.status_code != 429:
                    raise
                time.sleep(exc.retry_after_s or DEFAULT_POLL_INTERVAL_S)

    def status(self, job_id: str) -> JobStatusResponse:
        """A job's status, progress and result."""
        return self._call("submit", "GET", f"/api/jobs/{job_id}", JobStatusResponse)

    def wait(
        self,
        job_id: str,
        *,
        timeout_s: float | None = None,
        poll_interval_s: float = DEFAULT_POLL_INTERVAL_S,
        on_progress: Callable[[JobStatusResponse], None] | None = None,
    ) -> JobStatusResponse:
        """Poll until the job is completed, failed or expired; ``on_progress`` sees each poll.

        Rate-limited polls wait as long as the server asks. Raises TimeoutError after
        ``timeout_s``.
        """
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        while True:
            current = self._patiently(lambda: self.status(job_id))
            if on_progress is not None:
                on_progress(current)
            if current.status in FINISHED:
                return current
            if deadline is not None and time.monotonic() > deadline:
                raise TimeoutError(f"job {job_id} still {current.status.value}")
            time.sleep(poll_interval_s)

    # -- admin ----------------------------------------------------------------------------

    def jobs(
        self,
        *,
        status: str | None = None,
        job_type: str | None = None,
        limit: int = 50,
        offset: int = 0,
    ) -> JobList:
        """Jobs, newest first."""
        query = {k: v for k, v in (("status", status), ("job_type", job_type)) if v}
        return self._call(
            "admin",
            "GET",
            "/api/admin/jobs",
            JobList,
            params={**query, "limit": limit, "offset": offset},
        )

    def job(self, job_id: str) -> JobDetail:
        """Everything stored about a job."""
        return self._call("admin", "GET", f"/api/admin/jobs/{job_id}", JobDetail)

    def cancel(self, job_id: str) -> Outcome:
        """Fail a pending or running job with "cancelled" (RunpackAPIError 409 if it
        already finished, 404 if there is no such job)."""
        return self._call("admin", "POST", f"/api/admin/jobs/{job_id}/cancel", Outcome)

    def runners(self, *, limit: int = 100, offset: int = 0) -> RunnerList:
        """A page of HTTP runners and Celery workers, most recently seen first."""
        return self._call(
            "admin",
            "GET",
            "/api/admin/runners",
            RunnerList,
            params={"limit": limit, "offset": offset},
        )

    def runner(self, runner_id: str) -> RunnerDetail:
        """One runner and its recent jobs."""
        return self._call("admin", "GET", f"/api/admin/runners/{runner_id}", RunnerDetail)

    def stats(self) -> Stats:
        """Jobs per state and runners."""
        return self._call("admin", "GET", "/api/admin/stats", Stats)

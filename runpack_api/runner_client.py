"""The HTTP runner: registers, long-polls, claims, runs plugins and reports their outcome.

For machines that can only speak HTTPS to the API. It runs the same plugins with the same
context as the Celery workers, and holds what it reports to the same limits
(``runpack_tasks.report_limits``, with this host's ``RUNPACK_MAX_*_BYTES``): the error is
cut with a marker, the console output keeps its most recent part, and an output over the
limit fails the job instead of being sent.

A request is retried, with exponential backoff and jitter, on a transport error, a 5xx
or a 429 (after the server's Retry-After when it gives one), so an API restart loses no
result; a heartbeat is not retried but sent again at the next flush. Any other 4xx is
final: it is logged once (the job, the route, the server's message) and the runner goes
on with the next job. A result the server refuses (400 or 413) is reported as the job's
error instead ("the server refused the result: ..."), so the job fails rather than
staying claimed until it is reaped. A 404 or 409 on a report means
the job is no longer this runner's (cancelled, taken back, deleted, or this runner
forgotten): that report is dropped.

A heartbeat answered 404 or 409 tells the running plugin through its context
(``ctx.is_cancelled()``); a plugin still running ``CANCEL_GRACE_S`` later is interrupted
(``JobAbandoned`` is raised in it, as a signal handler raises ``ReleaseRequested``) when the
runner installed its signal handlers, as ``runpack runner`` does. Either way what the plugin
would report is refused, and the runner goes on with the next job.

The first SIGTERM (or Ctrl-C) stops taking jobs and lets the current one finish; a second
one gives the current job back to the queue (release) and exits. On the way out the runner
tells the server it stopped (``POST /api/runner/stop``, one try), so the admin views show it
inactive; a runner killed outright turns inactive once it goes unseen for
``RUNPACK_RUNNER_ACTIVE_S``.
"""

from __future__ import annotations

import json
import logging
import random
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

import httpx
from pydantic import BaseModel

from runner_plugins import get_plugin
from runpack_api.client import not_runpack, retry_after_s
from runpack_api.schemas import CompleteRequest, ErrorRequest, HeartbeatRequest, RegisterRequest
from runpack_tasks.execute import JobOutcome, RunContext, run_plugin
from runpack_tasks.report_limits import ReportLimits
from runpack_tasks.settings import RunpackSettings

log = logging.getLogger("runpack.runner")

LONG_POLL_S = 25
#: A heartbeat at least this often while a job runs, progress or not.
KEEPALIVE_S = 15
#: How long a stopping runner waits for the server to note the stop.
SIGN_OFF_S = 5.0
BACKOFF_FIRST_S = 0.5
BACKOFF_MAX_S = 30.0
#: Answers that mean a report's job is no longer this runner's.
NOT_OURS = (404, 409)
#: How long a plugin may go on after its job was cancelled before it is interrupted.
CANCEL_GRACE_S = 5.0
#: The signal the heartbeat thread sends the main thread to interrupt such a plugin.
ABANDON_SIGNAL = getattr(signal, "SIGUSR1", None)
#: Answers refusing a result as invalid or too large.
REFUSED = (400, 413)
#: The reports whose console output can be left out when the server finds them too large.
Report = CompleteRequest | ErrorRequest


class ReleaseRequested(BaseException):
    """Raised in the running job by a second SIGTERM (a BaseException: plugins don't catch it)."""


class JobAbandoned(BaseException):
    """Raised in a plugin that goes on after its job was cancelled (see the module's
    docstring); a BaseException, so a plugin's ``except Exception`` does not keep it."""


class ServerRefused(RuntimeError):
    """Raised when the server finally refuses what the runner cannot go on without
    (registering, or asking for jobs): a wrong key, a job type it rejects."""


@dataclass
class RunnerConfig:
    """What a runner needs to know."""

    url: str
    key: str
    job_types: list[str]
    name: str
    state_file: Path
    #: Seconds each poll may wait for a job; 0 polls plainly every ``poll_interval_s``.
    long_poll_s: float = LONG_POLL_S
    poll_interval_s: float = 1.0
    #: What reports are held to; by default this host's ``RUNPACK_MAX_*_BYTES``.
    limits: ReportLimits = field(
        default_factory=lambda: ReportLimits.from_settings(RunpackSettings())
    )


class Backoff:
    """Exponential backoff with full jitter."""

    def __init__(self, first_s: float = BACKOFF_FIRST_S, max_s: float = BACKOFF_MAX_S) -> None:
        self.first_s, self.max_s, self.failures = first_s, max_s, 0

    def next_delay_s(self) -> float:
        """The next delay; grows with each failure."""
        self.failures += 1
        return random.uniform(0, min(self.max_s, self.first_s * 2 ** (self.failures - 1)))

    def reset(self) -> None:
        """After a success."""
        self.failures = 0


def is_retryable(status_code: int) -> bool:
    """Whether an answer is worth sending the request again: 5xx and 429."""
    return status_code == 429 or status_code >= 500


def server_error(response: httpx.Response) -> str:
    """The server's error message in a refusal (its ``error`` field), else the raw body."""
    try:
        message = response.json().get("error")
    except (ValueError, AttributeError):
        message = None
    return str(message) if message else response.text[:500]


def encode(body: BaseModel) -> bytes:
    """A request model as the JSON body sent (compact UTF-8, as httpx's ``json=`` sends it).

    Raises ValueError or TypeError for what cannot be sent as JSON.
    """
    return json.dumps(
        body.model_dump(mode="json"), ensure_ascii=False, separators=(",", ":"), allow_nan=False
    ).encode("utf-8")


class HttpRunner:
    """One runner process."""

    def __init__(self, config: RunnerConfig, sleep: Callable[[float], None] = time.sleep) -> None:
        self.config = config
        self._sleep = sleep
        self._http = httpx.Client(
            base_url=config.url.rstrip("/"),
            timeout=LONG_POLL_S + 10,
            headers={"Authorization": f"Bearer {config.key}"},
        )
        self.runner_id: str | None = None
        self.stopping = False
        #: "idle" while polling, "busy" while claiming or reporting, "running" a plugin.
        self._phase = "idle"
        self._current_job: str | None = None
        #: Whether a cancelled job's plugin may be interrupted (the handler is installed).
        self._interrupts = False
        self._abandoning: str | None = None

    # -- HTTP with retries ----------------------------------------------------------------

    def _request(
        self,
        method: str,
        path: str,
        *,
        body: bytes | None = None,
        retry: bool = True,
        **kwargs: Any,
    ) -> httpx.Response:
        """Send ``body`` (JSON) until the server gives a final answer: anything but a 5xx
        or a 429. Transport errors and those answers are retried, unless ``retry`` is
        False: then a transport error is raised and the answer returned."""
        backoff = Backoff()
        headers = {"X-Runner-ID": self.runner_id} if self.runner_id else {}
        if body is not None:
            headers["Content-Type"] = "application/json"
        while True:
            try:
                response = self._http.request(method, path, headers=headers, content=body, **kwargs)
            except httpx.TransportError as exc:
                if not retry:
                    raise
                delay = backoff.next_delay_s()
                log.warning("retrying %s %s in %.1f s: %s", method, path, delay, exc)
                self._sleep(delay)
                continue
            if is_retryable(response.status_code) and retry:
                asked = retry_after_s(response)
                delay = backoff.next_delay_s() if asked is None else asked
                log.warning(
                    "retrying %s %s in %.1f s: HTTP %d", method, path, delay, response.status_code
                )
                self._sleep(delay)
                continue
            return response

    @staticmethod
    def _log_final(job_id: str, route: str, answer: httpx.Response) -> None:
        """The one line a final refusal of a job's request gets."""
        meaning = " (the job is no longer this runner's)" if answer.status_code in NOT_OURS else ""
        log.error(
            "job %s: %s answered HTTP %d%s: %s",
            job_id,
            route,
            answer.status_code,
            meaning,
            server_error(answer),
        )

    # -- identity ---------------------------------------------------------------------------

    def _saved_id(self) -> str | None:
        try:
            saved = json.loads(self.config.state_file.read_text())
        except (FileNotFoundError, ValueError):
            return None
        if saved.get("url") != self.config.url:
            return None
        runner_id = saved.get("runner_id")
        return runner_id if isinstance(runner_id, str) else None

    def register(self, retry: bool = True) -> str:
        """Reuse the id in the state file if the server still knows it, else register.

        Raises ServerRefused if the server refuses the registration or is not Runpack's;
        with ``retry`` False (the first contact), a transport error is raised at once.
        """
        self.runner_id = self._saved_id()
        if self.runner_id is not None:
            if self._request("GET", "/api/runner/verify", retry=retry).status_code == 200:
                log.info("registered: reusing runner id %s", self.runner_id)
                return self.runner_id
            log.info("the server forgot runner %s; registering again", self.runner_id)
            self.runner_id = None
        request = RegisterRequest(name=self.config.name, capabilities=self.config.job_types)
        answer = self._request("POST", "/api/runner/register", body=encode(request), retry=retry)
        if "json" not in answer.headers.get("content-type", ""):
            raise ServerRefused(f"no Runpack API at {self.config.url}: {not_runpack(answer)}")
        if answer.status_code != 201:
            raise ServerRefused(
                f"registration refused: HTTP {answer.status_code} {server_error(answer)}"
            )
        self.runner_id = str(answer.json()["runner_id"])
        self.config.state_file.parent.mkdir(parents=True, exist_ok=True)
        self.config.state_file.write_text(
            json.dumps(
                {"runner_id": self.runner_id, "url": self.config.url, "name": self.config.name}
            )
        )
        log.info(
            "registered as %s (%s) for %s",
            self.runner_id,
            self.config.name,
            ", ".join(self.config.job_types),
        )
        return self.runner_id

    # -- the loop ---------------------------------------------------------------------------

    def available(self) -> list[dict[str, Any]]:
        """Pending jobs of this runner's types (long poll).

        A 404 (this runner forgotten) registers again; any other refusal raises
        ServerRefused, as asking again would be refused again.
        """
        answer = self._request(
            "GET",
            "/api/runner/jobs/available",
            params={"types[]": self.config.job_types, "wait": self.config.long_poll_s},
        )
        if answer.status_code == 404:  # forgotten while running: register again
            self.register()
            return []
        if answer.status_code != 200:
            raise ServerRefused(
                f"asking for jobs refused: HTTP {answer.status_code} {server_error(answer)}"
            )
        jobs: list[dict[str, Any]] = answer.json().get("jobs", [])
        return jobs

    def claim(self, job_id: str) -> dict[str, Any] | None:
        """The job if this runner won it, else None (a lost race, 409, is not logged)."""
        answer = self._request("POST", f"/api/runner/jobs/{job_id}/claim")
        if answer.status_code != 200:
            if answer.status_code != 409:
                self._log_final(job_id, "claim", answer)
            return None
        job: dict[str, Any] = answer.json()["job"]
        log.info("claimed %s (%s)", job_id, job["job_type"])
        return job

    def _heartbeat(self, job_id: str) -> Callable[[float | None, float | None, str], bool]:
        """The job's heartbeat sink: True while the job is still this runner's.

        A heartbeat the server refuses (or that cannot be sent as it is, such as a
        negative progress) is logged once for the job and replaced by a bare one, which
        keeps the claim alive. A transport error, a 5xx or a 429 raises: the context
        sends again at its next flush.
        """
        route = f"/api/runner/jobs/{job_id}/heartbeat"
        refused_before = False

        def note_refusal(reason: str) -> None:
            nonlocal refused_before
            if not refused_before:
                log.error("job %s: heartbeat refused, sending bare ones: %s", job_id, reason)
                refused_before = True

        def full(current: float | None, total: float | None, console: str) -> httpx.Response:
            """The heartbeat with progress and console, or a bare one if it is refused."""
            try:
                request = HeartbeatRequest(
                    progress_current=current, progress_total=total, console_output=console
                )
            except ValueError as exc:
                note_refusal(str(exc))
                return bare()
            answer = self._request("POST", route, body=encode(request), retry=False)
            if 400 <= answer.status_code < 500 and answer.status_code not in (*NOT_OURS, 429):
                note_refusal(f"HTTP {answer.status_code} {server_error(answer)}")
                return bare()
            return answer

        def bare() -> httpx.Response:
            return self._request("POST", route, body=encode(HeartbeatRequest()), retry=False)

        def send(current: float | None, total: float | None, console: str) -> bool:
            # once refused, a full heartbeat would be refused again: bare ones from then on
            answer = bare() if refused_before else full(current, total, console)
            if is_retryable(answer.status_code):
                raise RuntimeError(f"heartbeat answered {answer.status_code}")
            if current is not None:
                log.info("progress %s: %s/%s", job_id, current, total)
            return answer.status_code == 200

        return send

    def _job_lost(self, job_id: str) -> None:
        """A heartbeat found the job cancelled or no longer this runner's: its plugin sees
        ``ctx.is_cancelled()``, and is interrupted if it still runs after the grace."""
        log.warning(
            "job %s was cancelled or is no longer this runner's (its heartbeat was refused): "
            "stopping its plugin",
            job_id,
        )
        if self._interrupts:
            timer = threading.Timer(CANCEL_GRACE_S, self._abandon, (job_id,))
            timer.daemon = True
            timer.start()

    def _abandon(self, job_id: str) -> None:
        """Interrupt the main thread if it still runs ``job_id``'s plugin."""
        if self._phase == "running" and self._current_job == job_id and ABANDON_SIGNAL:
            self._abandoning = job_id
            signal.pthread_kill(threading.main_thread().ident or 0, ABANDON_SIGNAL)

    def run_job(self, job: dict[str, Any]) -> JobOutcome:
        """Run a claimed job's plugin, heartbeating as it goes."""
        job_id, sink = job["job_id"], self._heartbeat(job["job_id"])
        lost = False

        def heartbeat(current: float | None, total: float | None, console: str) -> bool:
            nonlocal lost
            ours = sink(current, total, console)
            if not ours and not lost:
                lost = True
                self._job_lost(job_id)
            return ours

        context = RunContext(
            job_id,
            heartbeat,
            keepalive_s=KEEPALIVE_S,
            max_console_bytes=self.config.limits.max_console_bytes,
        )
        return run_plugin(get_plugin(job["job_type"]), job["input_params"], context)

    def _post_report(
        self, job_id: str, route: str, request: Report, body: bytes | None = None
    ) -> httpx.Response:
        """Send a report (``body``: ``request`` already encoded) until the server's final
        answer, logged once when it is a refusal. A report refused as too large is sent once
        more without its console output (the server's console limit may be smaller than
        this runner's)."""
        path = f"/api/runner/jobs/{job_id}/{route}"
        answer = self._request("POST", path, body=body or encode(request))
        if answer.status_code == 413 and request.console_output is not None:
            bare = request.model_copy(update={"console_output": None})
            answer = self._request("POST", path, body=encode(bare))
        if answer.status_code != 200:
            self._log_final(job_id, route, answer)
        return answer

    def _fail(self, job_id: str, message: str, console: str | None) -> None:
        """Report the job failed with ``message`` (cut to the error limit)."""
        error = self.config.limits.error_text(message)
        request = ErrorRequest(error_message=error, console_output=console)
        if self._post_report(job_id, "error", request).status_code == 200:
            log.info("failed %s: %s", job_id, error)

    def _complete_body(
        self, outcome: JobOutcome
    ) -> tuple[CompleteRequest, bytes] | tuple[None, str]:
        """The complete request and its body, or why the output cannot be sent."""
        output = outcome.output_data if outcome.output_data is not None else {}
        failure = self.config.limits.output_failure(output)
        if failure is not None:
            return None, failure
        try:
            request = CompleteRequest(
                output_data=output,
                console_output=outcome.console_output,
                cache_version=outcome.cache_version,
            )
            return request, encode(request)
        except (ValueError, TypeError) as exc:
            return None, f"the output cannot be sent as JSON: {exc}"

    def report(self, job_id: str, outcome: JobOutcome) -> None:
        """Complete the job, or fail it with its error; returns after the server's final
        answer to each report sent (transport errors, 5xx and 429 are retried without end).

        An output over this runner's limit, or not sendable as JSON, is reported as the
        job's error instead. A result the server refuses (400 or 413) is reported as the
        job's error with the server's reason. A report answered 404 or 409 is dropped: the
        job is no longer this runner's.
        """
        console = outcome.console_output
        if outcome.error_message is not None:
            self._fail(job_id, outcome.error_message, console)
            return
        request, sent = self._complete_body(outcome)
        if request is None or isinstance(sent, str):
            self._fail(job_id, str(sent), console)
            return
        answer = self._post_report(job_id, "complete", request, sent)
        if answer.status_code == 200:
            log.info("completed %s", job_id)
        elif answer.status_code in REFUSED:
            self._fail(job_id, f"the server refused the result: {server_error(answer)}", console)

    def release(self, job_id: str) -> None:
        """Give the job back to the queue."""
        answer = self._request("POST", f"/api/runner/jobs/{job_id}/release")
        log.info("released %s (HTTP %d)", job_id, answer.status_code)

    def run_one(self, job_id: str) -> bool:
        """Claim, run and report one job; False if this runner did not get it."""
        self._phase, self._current_job = "busy", job_id
        try:
            job = self.claim(job_id)
            if job is None:
                return False
            self._phase = "running"
            try:
                outcome = self.run_job(job)
                self._phase = "busy"
            except ReleaseRequested:
                self._phase = "busy"
                self.release(job_id)
                raise
            except JobAbandoned:
                self._phase = "busy"
                log.warning("job %s: its plugin went on after the cancellation: stopped", job_id)
                return True
            self.report(job_id, outcome)
            return True
        finally:
            self._phase, self._current_job = "idle", None

    def serve(self) -> None:
        """Register, then take jobs until asked to stop (or refused, see ``available``);
        tell the server when stopping. A first contact that fails raises at once
        (httpx.TransportError, ServerRefused): nothing was taken yet, and a wrong URL would
        fail forever."""
        self.register(retry=False)
        try:
            self._take_jobs()
        finally:
            self.sign_off()

    def sign_off(self) -> None:
        """Tell the server this runner stopped (one try: a server away has nothing to show)."""
        try:
            answer = self._request("POST", "/api/runner/stop", retry=False, timeout=SIGN_OFF_S)
        except httpx.HTTPError as exc:
            log.warning("could not tell the server this runner stopped: %s", exc)
            return
        if answer.status_code != 200:
            log.warning("the server did not record the stop: HTTP %d", answer.status_code)

    def _take_jobs(self) -> None:
        while not self.stopping:
            jobs = self.available()
            # every runner is offered the same oldest jobs: trying them in another order
            # than the others spares most of the claims that would lose with 409
            random.shuffle(jobs)
            for job in jobs:
                if self.stopping:
                    break
                if self.run_one(job["job_id"]):
                    break  # ask again: others may have taken the rest meanwhile
            if not jobs and self.config.long_poll_s == 0:
                self._sleep(self.config.poll_interval_s)

    # -- signals ------------------------------------------------------------------------------

    def on_signal(self, signum: int, _frame: FrameType | None) -> None:
        """First signal: finish the current job, then stop. Second: release it now.

        Claims and reports in flight are never interrupted by a signal.
        """
        if self._phase == "running" and self.stopping:
            log.info("second %s: releasing %s", signal.Signals(signum).name, self._current_job)
            raise ReleaseRequested
        first = not self.stopping
        self.stopping = True
        if self._phase == "idle":
            log.info("stopping")
            raise ReleaseRequested  # interrupts the long poll; nothing is held
        if first:
            log.info("stopping after %s finishes (signal again to release it)", self._current_job)

    def on_abandon_signal(self, _signum: int, _frame: FrameType | None) -> None:
        """Interrupt the plugin of a cancelled job (sent by ``_abandon``)."""
        if self._phase == "running" and self._abandoning == self._current_job:
            raise JobAbandoned

    def install_signal_handlers(self) -> None:
        """SIGTERM and SIGINT stop the runner as described above; SIGUSR1 interrupts a
        cancelled job's plugin."""
        signal.signal(signal.SIGTERM, self.on_signal)
        signal.signal(signal.SIGINT, self.on_signal)
        if ABANDON_SIGNAL is not None:
            signal.signal(ABANDON_SIGNAL, self.on_abandon_signal)
            self._interrupts = True

"""The HTTP runner: registers, long-polls, claims, runs plugins, reports, never drops a result.

For machines that can only speak HTTPS to the API. It runs the same plugins with the same
context as the Celery workers. Network failures are retried with exponential backoff and
jitter; a finished result is retried until the server answers 200 or 409. The first
SIGTERM (or Ctrl-C) stops taking jobs and lets the current one finish; a second one gives
the current job back to the queue (release) and exits.
"""

from __future__ import annotations

import json
import logging
import random
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any

import httpx

from runner_plugins import get_plugin
from runpack_tasks.execute import JobOutcome, RunContext, run_plugin

log = logging.getLogger("runpack.runner")

LONG_POLL_S = 25
#: A heartbeat at least this often while a job runs, progress or not.
KEEPALIVE_S = 15
BACKOFF_FIRST_S = 0.5
BACKOFF_MAX_S = 30.0
MAX_CONSOLE_BYTES = 1_048_576


class ReleaseRequested(BaseException):
    """Raised in the running job by a second SIGTERM (a BaseException: plugins don't catch it)."""


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

    # -- HTTP with retries ----------------------------------------------------------------

    def _request(
        self, method: str, path: str, *, retry: bool = True, **kwargs: Any
    ) -> httpx.Response:
        """Send until the server answers (any status) unless ``retry`` is False."""
        backoff = Backoff()
        headers = {"X-Runner-ID": self.runner_id} if self.runner_id else {}
        while True:
            try:
                response = self._http.request(method, path, headers=headers, **kwargs)
            except httpx.TransportError as exc:
                if not retry:
                    raise
                delay = backoff.next_delay_s()
                log.warning("retrying %s %s in %.1f s: %s", method, path, delay, exc)
                self._sleep(delay)
                continue
            if response.status_code == 429 or response.status_code >= 500:
                if not retry:
                    return response
                delay = float(response.headers.get("Retry-After") or backoff.next_delay_s())
                log.warning(
                    "retrying %s %s in %.1f s: HTTP %d", method, path, delay, response.status_code
                )
                self._sleep(delay)
                continue
            return response

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

    def register(self) -> str:
        """Reuse the id in the state file if the server still knows it, else register."""
        self.runner_id = self._saved_id()
        if self.runner_id is not None:
            if self._request("GET", "/api/runner/verify").status_code == 200:
                log.info("registered: reusing runner id %s", self.runner_id)
                return self.runner_id
            log.info("the server forgot runner %s; registering again", self.runner_id)
            self.runner_id = None
        answer = self._request(
            "POST",
            "/api/runner/register",
            json={"name": self.config.name, "capabilities": self.config.job_types},
        )
        if answer.status_code != 201:
            raise RuntimeError(f"registration refused: {answer.status_code} {answer.text}")
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
        """Pending jobs of this runner's types (long poll)."""
        answer = self._request(
            "GET",
            "/api/runner/jobs/available",
            params={"types[]": self.config.job_types, "wait": self.config.long_poll_s},
        )
        if answer.status_code == 404:  # forgotten while running: register again
            self.register()
            return []
        jobs: list[dict[str, Any]] = answer.json().get("jobs", [])
        return jobs

    def claim(self, job_id: str) -> dict[str, Any] | None:
        """The job if this runner won it, else None."""
        answer = self._request("POST", f"/api/runner/jobs/{job_id}/claim")
        if answer.status_code != 200:
            return None
        job: dict[str, Any] = answer.json()["job"]
        log.info("claimed %s (%s)", job_id, job["job_type"])
        return job

    def _heartbeat(self, job_id: str) -> Callable[[int | None, int | None, str], bool]:
        def send(current: int | None, total: int | None, console: str) -> bool:
            answer = self._request(
                "POST",
                f"/api/runner/jobs/{job_id}/heartbeat",
                retry=False,
                json={
                    "progress_current": current,
                    "progress_total": total,
                    "console_output": console,
                },
            )
            if answer.status_code >= 500 or answer.status_code == 429:
                raise RuntimeError(f"heartbeat answered {answer.status_code}")
            if current is not None:
                log.info("progress %s: %s/%s", job_id, current, total)
            return answer.status_code == 200

        return send

    def run_job(self, job: dict[str, Any]) -> JobOutcome:
        """Run a claimed job's plugin, heartbeating as it goes."""
        context = RunContext(
            job["job_id"],
            self._heartbeat(job["job_id"]),
            keepalive_s=KEEPALIVE_S,
            max_console_bytes=MAX_CONSOLE_BYTES,
        )
        return run_plugin(get_plugin(job["job_type"]), job["input_params"], context)

    def report(self, job_id: str, outcome: JobOutcome) -> None:
        """Complete or fail the job; retried until the server answers 200 or 409."""
        if outcome.error_message is None:
            path, body = (
                "complete",
                {"output_data": outcome.output_data, "console_output": outcome.console_output},
            )
        else:
            path, body = (
                "error",
                {"error_message": outcome.error_message, "console_output": outcome.console_output},
            )
        backoff = Backoff()
        while True:
            answer = self._request("POST", f"/api/runner/jobs/{job_id}/{path}", json=body)
            if answer.status_code in (200, 409):
                break
            if answer.status_code == 404:  # forgotten runner: it cannot report any more
                log.error("cannot report %s: this runner is unknown to the server", job_id)
                return
            delay = backoff.next_delay_s()
            log.warning(
                "retrying %s of %s in %.1f s: HTTP %d %s",
                path,
                job_id,
                delay,
                answer.status_code,
                answer.text[:200],
            )
            self._sleep(delay)
        if answer.status_code == 409:
            log.warning("%s: the server no longer counts %s as ours", path, job_id)
        elif path == "complete":
            log.info("completed %s", job_id)
        else:
            log.info("failed %s: %s", job_id, outcome.error_message)

    def release(self, job_id: str) -> None:
        """Give the job back to the queue."""
        answer = self._request("POST", f"/api/runner/jobs/{job_id}/release")
        log.info("released %s (HTTP %d)", job_id, answer.status_code)

    def run_one(self, job_id: str) -> bool:
        """Claim, run and report one job; False if another runner had it."""
        self._phase, self._current_job = "busy", job_id
        try:
            job = self.claim(job_id)
            if job is None:
                return False
            self._phase = "running"
            try:
                outcome = self.run_job(job)
            except ReleaseRequested:
                self._phase = "busy"
                self.release(job_id)
                raise
            self._phase = "busy"
            self.report(job_id, outcome)
            return True
        finally:
            self._phase, self._current_job = "idle", None

    def serve(self) -> None:
        """Register, then take jobs until asked to stop."""
        self.register()
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

        Claims and reports in flight are never interrupted, so no result is dropped.
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

    def install_signal_handlers(self) -> None:
        """SIGTERM and SIGINT stop the runner as described above."""
        signal.signal(signal.SIGTERM, self.on_signal)
        signal.signal(signal.SIGINT, self.on_signal)

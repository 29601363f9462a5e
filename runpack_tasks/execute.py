"""Running a plugin with its context; shared by Celery workers and HTTP runners.

The context collects progress and log lines and sends them as heartbeats through a sink:
at most once a second while they change, every ``keepalive_s`` while they do not (so a
long silent step is not mistaken for a dead runner), and once more at the end.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from runner_plugins import Plugin
from runpack_tasks.jobstore.payloads import storable
from runpack_tasks.report_limits import tail_console

#: A heartbeat: (progress_current, progress_total, console_output) -> still ours?
HeartbeatSink = Callable[[float | None, float | None, str], bool]

FLUSH_INTERVAL_S = 1.0


@dataclass
class JobOutcome:
    """What a run produced: output on success, error on failure, and the whole log; and
    the plugin's ``cache_version``, recorded with the result."""

    output_data: dict[str, Any] | None
    error_message: str | None
    console_output: str
    cache_version: str | None = None


class RunContext:
    """The ``JobContext`` a plugin runs with; thread-safe, throttled, flushed at the end."""

    def __init__(
        self, job_id: str, sink: HeartbeatSink, *, keepalive_s: float, max_console_bytes: int
    ) -> None:
        self.job_id = job_id
        self._sink = sink
        self._keepalive_s = keepalive_s
        self._max_console_bytes = max_console_bytes
        self._lock = threading.Lock()
        self._lines: list[str] = []
        self._console_bytes = 0
        self._current: float | None = None
        self._total: float | None = None
        self._dirty = False
        self._last_sent = 0.0
        self._flushing = threading.Lock()  # the flusher thread and the final flush
        #: False once the server said the job is no longer this runner's.
        self.still_ours = True

    # -- JobContext ---------------------------------------------------------------------

    def progress(self, current: float, total: float | None = None) -> None:
        """Record progress (any numbers >= 0: 3 of 10, or 0.42 of 1)."""
        with self._lock:
            self._current, self._dirty = float(current), True
            if total is not None:
                self._total = float(total)

    def log(self, line: str) -> None:
        """Append a line to the console output, dropping the oldest beyond the size limit."""
        line = storable(line)
        with self._lock:
            self._lines.append(line)
            self._console_bytes += len(line.encode("utf-8", "replace")) + 1
            while self._console_bytes > self._max_console_bytes and len(self._lines) > 1:
                dropped = self._lines.pop(0)
                self._console_bytes -= len(dropped.encode("utf-8", "replace")) + 1
            self._dirty = True

    def heartbeat(self) -> None:
        """Send a heartbeat with the next flush even if nothing changed."""
        with self._lock:
            self._dirty = True

    def is_cancelled(self) -> bool:
        """True once a heartbeat was refused: the job was cancelled, or is no longer this
        runner's. A plugin may poll it and stop; whatever it reports then is refused."""
        return not self.still_ours

    # -- the runner's side ---------------------------------------------------------------

    @property
    def console_output(self) -> str:
        """The log so far, newest lines kept within the size limit (``tail_console``)."""
        with self._lock:
            text = "\n".join(self._lines)
        return tail_console(text, self._max_console_bytes)

    def flush(self, force: bool = False) -> None:
        """Send a heartbeat if something changed, the keepalive is due, or ``force``."""
        now = time.monotonic()
        with self._lock:
            due = force or self._dirty or now - self._last_sent >= self._keepalive_s
            if not due:
                return
            self._dirty, self._last_sent = False, now
            current, total = self._current, self._total
        try:
            self.still_ours = self._sink(current, total, self.console_output) and self.still_ours
        except Exception:  # a failed heartbeat is retried at the next flush
            with self._lock:
                self._dirty = True

    def __enter__(self) -> RunContext:
        self._last_sent = time.monotonic()
        _flusher.add(self)
        return self

    def __exit__(self, *_exc: object) -> None:
        _flusher.remove(self)
        with self._flushing:  # waits for a flush the flusher may be doing now
            self.flush()  # the last progress, if unsent; the final report carries the log


class _Flusher:
    """One thread per process flushing every running context each second (a thread per
    job cost more than a short job). Registering is a dict insertion: atomic, no lock."""

    def __init__(self) -> None:
        self._contexts: dict[RunContext, None] = {}
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        os.register_at_fork(after_in_child=self._after_fork)

    def _after_fork(self) -> None:
        """A forked child has none of its parent's threads, nor its running jobs."""
        self._contexts, self._lock, self._thread = {}, threading.Lock(), None

    def add(self, context: RunContext) -> None:
        self._contexts[context] = None
        if self._thread is None or not self._thread.is_alive():
            with self._lock:
                if self._thread is None or not self._thread.is_alive():
                    self._thread = threading.Thread(
                        target=self._loop, name="runpack-heartbeats", daemon=True
                    )
                    self._thread.start()

    def remove(self, context: RunContext) -> None:
        self._contexts.pop(context, None)

    def _loop(self) -> None:
        while True:
            time.sleep(FLUSH_INTERVAL_S)
            for context in list(self._contexts):
                with context._flushing:
                    if context in self._contexts:
                        context.flush()


_flusher = _Flusher()


def run_plugin(plugin: Plugin, params: dict[str, Any], ctx: RunContext) -> JobOutcome:
    """Validate and run; a plugin's exception becomes the job's error, never escapes."""
    with ctx:
        try:
            output = plugin.run(plugin.validate(params), ctx)
        except Exception as exc:  # any plugin failure is reported, not raised
            ctx.log(f"{type(exc).__name__}: {exc}")
            return JobOutcome(None, f"{type(exc).__name__}: {exc}", ctx.console_output)
    if not isinstance(output, dict):
        return JobOutcome(
            None,
            f"plugin {plugin.name} returned {type(output).__name__}, not a JSON object",
            ctx.console_output,
        )
    return JobOutcome(output, None, ctx.console_output, plugin.cache_version)

"""Whether a completed result may still be served (SPEC §8): its age, the ``cache_version``
it was made with, and its plugin's ``result_valid`` hook, judged without blocking the loop.

The hook runs in this module's own thread pool, never on the event loop's thread nor in the
pool the routes' database calls share, and a request waits for it at most
``RUNPACK_VALIDITY_TIMEOUT_S``: a hook that sleeps keeps its thread (Python cannot stop
it) but not the request, and jobs whose plugin has no hook never wait for the pool.
Concurrent requests for the same result share one call of its hook, and a True is trusted
for ``RUNPACK_VALIDITY_CACHE_S``.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import OrderedDict
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from runner_plugins import Plugin
from runpack_tasks.jobstore.models import JobRow, now_ms
from runpack_tasks.settings import RunpackSettings

#: Threads that run hooks; a hook past its timeout holds one until it returns.
HOOK_THREADS = 32
#: How much of a hook's exception message a submit's answer repeats.
MAX_REASON_CHARS = 200
#: Results whose hook's True is remembered at most (the oldest are forgotten first).
MAX_TRUSTED = 100_000

#: A result, as its hook judges it: the job's id and when the result finished.
ResultKey = tuple[str, int | None]


@dataclass(frozen=True)
class Verdict:
    """Whether a result may be served; why not; and for how long it may be served without
    judging it again (None: no limit of its own)."""

    valid: bool
    reason: str = ""
    valid_for_s: float | None = None


def run_time_s(job: JobRow) -> float:
    """How long the job ran (claim to finish): what serving it from the cache saved."""
    if job.finished_at is None or job.claimed_at is None:
        return 0.0
    return max(0, job.finished_at - job.claimed_at) / 1000


def has_hook(plugin: Plugin) -> bool:
    """Whether the plugin overrides ``result_valid`` (the default answers True at once)."""
    return type(plugin).result_valid is not Plugin.result_valid


def _call_hook(plugin: Plugin, output_data: dict[str, Any]) -> tuple[bool, str]:
    """The hook's answer as (valid, why not); an exception is an answer too."""
    try:
        if plugin.result_valid(output_data):
            return True, ""
        return False, f"{plugin.name}'s result_valid answered False"
    except Exception as exc:  # any failure of a plugin's hook makes the result invalid
        said = str(exc)
        if len(said) > MAX_REASON_CHARS:
            said = f"{said[:MAX_REASON_CHARS]}..."
        return False, f"{plugin.name}'s result_valid raised {type(exc).__name__}: {said}"


class Validity:
    """Judges completed results for one API process."""

    def __init__(self, settings: RunpackSettings) -> None:
        self._settings = settings
        self._pool = ThreadPoolExecutor(HOOK_THREADS, thread_name_prefix="runpack-validity")
        self._lock = threading.RLock()  # a hook done already runs its callback at once
        #: Results whose hook answered True, until when (``time.monotonic()``).
        self._trusted: OrderedDict[ResultKey, float] = OrderedDict()
        #: Hooks running now, shared by the requests waiting for the same result.
        self._running: dict[ResultKey, Future[tuple[bool, str]]] = {}

    def ttl_s(self, plugin: Plugin | None) -> float:
        """Seconds a result is served after it finished (0: forever)."""
        if plugin is not None and plugin.result_ttl_s is not None:
            return plugin.result_ttl_s
        return self._settings.result_ttl_s

    def without_hook(self, job: JobRow, plugin: Plugin | None) -> Verdict:
        """The age and version rules alone (no thread, no wait)."""
        valid_for_s: float | None = None
        ttl_s = self.ttl_s(plugin)
        if ttl_s > 0 and job.finished_at is not None:
            valid_for_s = (job.finished_at + ttl_s * 1000 - now_ms()) / 1000
            if valid_for_s <= 0:
                return Verdict(False, f"its result is older than its time to live of {ttl_s:g} s")
        recorded = job.cache_version
        if plugin is not None and recorded is not None and recorded != plugin.cache_version:
            return Verdict(
                False,
                f"its result was made by cache_version {recorded!r} of {plugin.name}, "
                f"which is now {plugin.cache_version!r}",
            )
        return Verdict(True, valid_for_s=valid_for_s)

    async def judge(self, job: JobRow, plugin: Plugin | None) -> Verdict:
        """Whether this completed job's result may be served now; never blocks the loop for
        longer than a dictionary lookup, and waits for a hook at most the timeout."""
        verdict = self.without_hook(job, plugin)
        if not verdict.valid or plugin is None or not has_hook(plugin):
            return verdict
        key: ResultKey = (job.id, job.finished_at)
        trusted_s = self._trusted_for_s(key)
        if trusted_s is None:
            valid, reason = await self._hook_answer(key, plugin, job.output_data or {})
            if not valid:
                return Verdict(False, reason)
            trusted_s = self._trust(key)
        limits = [s for s in (verdict.valid_for_s, trusted_s) if s is not None]
        return Verdict(True, valid_for_s=min(limits) if limits else None)

    def _trusted_for_s(self, key: ResultKey) -> float | None:
        with self._lock:
            until = self._trusted.get(key)
            if until is None:
                return None
            left = until - time.monotonic()
            if left <= 0:
                del self._trusted[key]
                return None
            return left

    def _trust(self, key: ResultKey) -> float | None:
        """Remember a True; the seconds it is trusted (0 when nothing is remembered)."""
        trust_s = self._settings.validity_cache_s
        if trust_s <= 0:
            return 0.0
        with self._lock:
            self._trusted[key] = time.monotonic() + trust_s
            self._trusted.move_to_end(key)
            while len(self._trusted) > MAX_TRUSTED:
                self._trusted.popitem(last=False)
        return trust_s

    async def _hook_answer(
        self, key: ResultKey, plugin: Plugin, output_data: dict[str, Any]
    ) -> tuple[bool, str]:
        with self._lock:
            running = self._running.get(key)
            if running is None:
                running = self._pool.submit(_call_hook, plugin, output_data)
                self._running[key] = running
                running.add_done_callback(lambda _done: self._finished(key, running))
        timeout_s = self._settings.validity_timeout_s
        waiting = asyncio.wrap_future(running)
        # asyncio.wait, not wait_for: a timeout must not cancel the hook other requests share
        done, _ = await asyncio.wait({waiting}, timeout=timeout_s)
        if not done or waiting.cancelled():
            # (a hook still queued is cancelled; one running cannot be, and its late answer
            # is dropped, even once the loop is closed)
            waiting.cancel()
            return False, f"{plugin.name}'s result_valid gave no answer within {timeout_s:g} s"
        return waiting.result()

    def _finished(self, key: ResultKey, future: Future[tuple[bool, str]]) -> None:
        with self._lock:
            if self._running.get(key) is future:
                del self._running[key]

    def close(self) -> None:
        """Stop taking hooks; those running are not waited for."""
        self._pool.shutdown(wait=False, cancel_futures=True)

"""The context plugins report through: heartbeats throttled to one a second, the last flushed."""

from __future__ import annotations

import itertools
import threading
import time

from runner_plugins import get_plugin
from runpack_tasks.execute import RunContext, run_plugin
from tests.support import wait_for


class Sink:
    """Records heartbeats as the store would receive them."""

    def __init__(self, still_ours: bool = True) -> None:
        self.beats: list[tuple[float, int | None, int | None, str]] = []
        self.still_ours = still_ours
        self.lock = threading.Lock()

    def __call__(self, current: int | None, total: int | None, console: str) -> bool:
        with self.lock:
            self.beats.append((time.monotonic(), current, total, console))
        return self.still_ours


def context(sink: Sink, keepalive_s: float = 30, max_console_bytes: int = 1000) -> RunContext:
    return RunContext("job", sink, keepalive_s=keepalive_s, max_console_bytes=max_console_bytes)


def test_rapid_progress_is_sent_at_most_once_a_second_and_the_last_state_always() -> None:
    sink = Sink()
    with context(sink) as ctx:
        deadline = time.monotonic() + 2.5
        step = 0
        while time.monotonic() < deadline:
            step += 1
            ctx.progress(step, 10_000)
            time.sleep(0.001)
    times = [beat[0] for beat in sink.beats]
    assert 2 <= len(times) <= 5  # ~2.5 s of progress: a few beats, not thousands
    # every gap but the last (the exit flush comes whenever the job ends) is a second or more
    assert all(later - earlier >= 0.9 for earlier, later in itertools.pairwise(times[:-1]))
    assert sink.beats[-1][1] == step  # the final state is flushed on exit


def test_a_silent_job_still_sends_keepalive_heartbeats() -> None:
    sink = Sink()
    with context(sink, keepalive_s=0.5):
        # one per flush interval (1 s) although nothing changed
        wait_for(lambda: len(sink.beats) >= 2, timeout_s=10, what="two keepalive heartbeats")
    assert all(beat[1] is None for beat in sink.beats)


def test_console_output_keeps_the_newest_lines_within_the_limit() -> None:
    ctx = context(Sink(), max_console_bytes=50)
    for n in range(100):
        ctx.log(f"line {n:03d}")
    assert ctx.console_output.endswith("line 099")
    assert len(ctx.console_output.encode()) <= 50
    ctx.log("with a \x00 NUL")
    assert "\x00" not in ctx.console_output


def test_a_job_taken_away_is_noticed() -> None:
    sink = Sink(still_ours=False)
    with context(sink) as ctx:
        assert ctx.is_cancelled() is False  # nothing refused yet
        ctx.progress(1, 2)
    assert ctx.still_ours is False
    assert ctx.is_cancelled() is True  # what a plugin polls


def test_run_plugin_turns_a_plugin_exception_into_the_error() -> None:
    sink = Sink()
    outcome = run_plugin(
        get_plugin("hello_world"), {"processing_time": 0, "test_exception": True}, context(sink)
    )
    assert outcome.output_data is None
    assert outcome.error_message == "RuntimeError: Test exception requested"
    assert "Step 5/10" in outcome.console_output
    assert sink.beats[-1][1] == 5

"""The plugin registry and the built-in plugins."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from runner_plugins import InvalidParams, UnknownPlugin, get_plugin, installed_plugins


class RecordingContext:
    """A JobContext that keeps what the plugin reported."""

    job_id = "test-job"

    def __init__(self, cancelled_after: int | None = None) -> None:
        self.progress_seen: list[tuple[int, int | None]] = []
        self.lines: list[str] = []
        #: Progress reports after which the context says the job was cancelled.
        self.cancelled_after = cancelled_after

    def progress(self, current: int, total: int | None = None) -> None:
        self.progress_seen.append((current, total))

    def log(self, line: str) -> None:
        self.lines.append(line)

    def heartbeat(self) -> None:
        pass

    def is_cancelled(self) -> bool:
        after = self.cancelled_after
        return after is not None and len(self.progress_seen) >= after


def run(job_type: str, params: dict[str, Any]) -> tuple[dict[str, Any], RecordingContext]:
    plugin = get_plugin(job_type)
    ctx = RecordingContext()
    return plugin.run(plugin.validate(params), ctx), ctx


def test_builtins_are_installed() -> None:
    assert {"artifact", "hello_world", "noop", "primes"} <= set(installed_plugins())


def test_an_unknown_type_names_the_installed_ones() -> None:
    with pytest.raises(UnknownPlugin, match="installed: artifact, hello_world, noop, primes"):
        get_plugin("no_such_type")


def test_hello_world_greets_with_progress() -> None:
    output, ctx = run("hello_world", {"name": "Ada", "processing_time": 0})
    assert output["greeting"] == "Hello, Ada!"
    assert ctx.progress_seen == [(step, 10) for step in range(1, 11)]
    assert ctx.lines[-1] == "Hello, Ada!"


def test_hello_world_keeps_the_seed_parameters() -> None:
    plugin = get_plugin("hello_world")
    assert plugin.validate({}) == {
        "name": "World",
        "processing_time": 10.0,
        "test_exception": False,
    }
    with pytest.raises(InvalidParams, match="processing_time"):
        plugin.validate({"processing_time": 301})
    with pytest.raises(RuntimeError, match="Test exception requested"):
        run("hello_world", {"processing_time": 0, "test_exception": True})


def test_noop_returns_its_params() -> None:
    assert run("noop", {"a": [1, 2]})[0] == {"params": {"a": [1, 2]}}


def test_primes_counts_correctly_with_progress() -> None:
    output, ctx = run("primes", {"limit": 1_000_000, "largest": 3})
    assert output["count"] == 78498
    assert output["largest"] == [999961, 999979, 999983]
    assert ctx.progress_seen[-1][0] == ctx.progress_seen[-1][1]
    assert run("primes", {"limit": 2})[0]["count"] == 0
    assert run("primes", {"limit": 100})[0]["count"] == 25
    with pytest.raises(InvalidParams, match="limit"):
        get_plugin("primes").validate({"limit": 1})


def test_an_installed_package_adds_its_plugin_through_the_entry_point(plugin_dir: Path) -> None:
    # Given the example plugin package installed where Python looks
    env = {**os.environ, "PYTHONPATH": str(plugin_dir)}
    # When a process lists the plugins, and runs the new one
    script = (
        "from runner_plugins import get_plugin, installed_plugins\n"
        "print(sorted(installed_plugins()))\n"
        "p = get_plugin('tally')\n"
        "print(type(p).__module__, p.validate({'log': 'x'}))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    # Then it is found beside the built-ins, from its own package
    listed, detail = done.stdout.splitlines()
    assert listed == "['artifact', 'hello_world', 'noop', 'primes', 'tally']"
    assert detail.startswith("runpack_example_plugin {'log': 'x'")


def test_hello_world_stops_at_the_step_after_its_job_is_cancelled() -> None:
    plugin = get_plugin("hello_world")
    ctx = RecordingContext(cancelled_after=3)
    with pytest.raises(RuntimeError, match="cancelled"):
        plugin.run(plugin.validate({"processing_time": 0}), ctx)
    assert [current for current, _ in ctx.progress_seen] == [1, 2, 3]
    assert ctx.lines[-1] == "Cancelled"

"""What an HTTP runner reports, held to the limits, and what it does with a refused result.

One real ``runpack api`` and one real ``runpack runner`` per backend. The server allows a
smaller output than the runner does, so an output can pass the runner's check and be
refused by the server. Every case ends with the same runner completing a next job.
"""

from __future__ import annotations

import shutil
import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import pytest

from tests.support import Backend, Cluster, Keys, running_server, server_env, wait_for

PLUGIN_SOURCE = Path(__file__).with_name("contract_plugin.py")
PLUGIN_MODULE = "runpack_contract_plugin"
#: The runner's limits: a larger output than the server's, a smaller error.
RUNNER_MAX_OUTPUT_BYTES = 8000
RUNNER_MAX_ERROR_BYTES = 1000
SERVER_MAX_OUTPUT_BYTES = 4000


def install_contract_plugin(target: Path) -> Path:
    """The ``contract`` job type as an installed distribution in ``target`` (for PYTHONPATH)."""
    target.mkdir(parents=True, exist_ok=True)
    shutil.copy(PLUGIN_SOURCE, target / f"{PLUGIN_MODULE}.py")
    dist_info = target / f"{PLUGIN_MODULE}-1.0.dist-info"
    dist_info.mkdir()
    (dist_info / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: runpack-contract-plugin\nVersion: 1.0\n"
    )
    (dist_info / "entry_points.txt").write_text(
        f"[runpack.plugins]\ncontract = {PLUGIN_MODULE}:Contract\n"
    )
    return target


@dataclass
class RunnerUnderTest:
    """The module's server and its one runner."""

    cluster: Cluster
    process: subprocess.Popen[bytes]
    runner_id: str

    def run(self, **params: Any) -> dict[str, Any]:
        """Submit a ``contract`` job and wait until it completed or failed."""
        answer = self.cluster.submit("contract", {"tag": uuid.uuid4().hex, **params})
        assert answer.status_code == 201, answer.text
        job = self.cluster.wait_for_status(answer.json()["job_id"], "completed", "failed")
        assert job["claimed_by"] == self.runner_id
        return job

    def log(self) -> str:
        """What the runner printed so far."""
        return self.cluster.log_of(self.process)

    def assert_takes_the_next_job(self) -> None:
        """The runner is still up and completes a next job."""
        job = self.run(output_bytes=10)
        assert job["status"] == "completed", job
        assert job["output_data"] == {"blob": "x" * 10}
        assert job["cache_version"] == "contract-1"  # recorded from the runner's plugin
        assert self.process.poll() is None


@pytest.fixture(scope="module")
def runner(
    backend: Backend, module_database_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RunnerUnderTest]:
    """A server with a 4000-byte output limit, and a runner allowing 8000 (errors: 1000)."""
    tmp_dir = tmp_path_factory.mktemp("contract")
    plugin_path = str(install_contract_plugin(tmp_dir / "plugins"))
    keys = Keys()
    server_extra = {
        "PYTHONPATH": plugin_path,
        "RUNPACK_MAX_OUTPUT_BYTES": str(SERVER_MAX_OUTPUT_BYTES),
    }
    runner_env = server_env(
        module_database_url,
        keys,
        backend,
        {
            "PYTHONPATH": plugin_path,
            "RUNPACK_MAX_OUTPUT_BYTES": str(RUNNER_MAX_OUTPUT_BYTES),
            "RUNPACK_MAX_ERROR_BYTES": str(RUNNER_MAX_ERROR_BYTES),
        },
    )
    with running_server(module_database_url, backend, tmp_dir, server_extra, keys=keys) as server:
        cluster = Cluster(server, runner_env, tmp_dir, broker_url="")
        state_file = tmp_dir / "runner.json"
        process = cluster.start_runner("contract", state_file, name="contract", long_poll_s=1)
        try:
            saved = wait_for(
                lambda: orjson.loads(state_file.read_bytes()),
                timeout_s=30,
                what="the runner to register",
            )
            yield RunnerUnderTest(cluster, process, saved["runner_id"])
        finally:
            cluster.stop(process)


def test_an_output_over_the_runner_s_limit_fails_the_job(runner: RunnerUnderTest) -> None:
    # When a job's output is over the runner's output limit
    job = runner.run(output_bytes=10_000)

    # Then the job failed, saying the output's size and the limit it is over
    size = len(orjson.dumps({"blob": "x" * 10_000}))
    assert job["status"] == "failed"
    assert job["error_message"] == (
        f"output is {size} bytes, over the limit of {RUNNER_MAX_OUTPUT_BYTES}"
        " (RUNPACK_MAX_OUTPUT_BYTES)"
    )
    assert "contract job running" in job["console_output"]
    runner.assert_takes_the_next_job()


def test_an_error_over_the_limit_is_stored_cut_with_a_marker(runner: RunnerUnderTest) -> None:
    # When a job fails with a message over the runner's error limit
    job = runner.run(error_bytes=5000)

    # Then the job failed with the message's beginning, cut within the limit, and marked
    error = job["error_message"]
    size = len("RuntimeError: ") + 5000
    marker = (
        f" [truncated: {size} bytes, over the limit of {RUNNER_MAX_ERROR_BYTES}"
        " (RUNPACK_MAX_ERROR_BYTES)]"
    )
    assert job["status"] == "failed"
    assert error.startswith("RuntimeError: EEEE")
    assert error.endswith(marker)
    assert len(error.encode()) <= RUNNER_MAX_ERROR_BYTES
    assert set(error.removesuffix(marker).removeprefix("RuntimeError: ")) == {"E"}
    runner.assert_takes_the_next_job()


def test_a_result_the_server_refuses_as_too_large_fails_the_job(
    runner: RunnerUnderTest,
) -> None:
    # When a job's output is within the runner's limit but over the server's (413)
    job = runner.run(output_bytes=6000)

    # Then the job failed with the server's refusal, logged once by the runner
    size = len(orjson.dumps({"blob": "x" * 6000}))
    assert job["status"] == "failed"
    assert job["error_message"] == (
        "the server refused the result: "
        f"output_data is {size} bytes, over the limit of {SERVER_MAX_OUTPUT_BYTES}"
    )
    assert "contract job running" in job["console_output"]
    refusals = [line for line in runner.log().splitlines() if job["job_id"] in line]
    assert sum("complete answered HTTP 413" in line for line in refusals) == 1, refusals
    runner.assert_takes_the_next_job()


def test_a_result_the_server_refuses_as_invalid_fails_the_job(runner: RunnerUnderTest) -> None:
    # When a job's output holds an integer beyond 64 bits, which the server refuses (400)
    job = runner.run(huge_integer=True)

    # Then the job failed with the server's refusal, logged once by the runner
    assert job["status"] == "failed"
    assert job["error_message"] == (
        "the server refused the result: "
        "output_data holds an integer beyond +-9007199254740991 (2^53 - 1)"
    )
    refusals = [line for line in runner.log().splitlines() if job["job_id"] in line]
    assert sum("complete answered HTTP 400" in line for line in refusals) == 1, refusals
    runner.assert_takes_the_next_job()

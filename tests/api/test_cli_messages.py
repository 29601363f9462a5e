"""The command line explains itself: a bad URL, an API that is not there or not Runpack, a
missing key or database, a job type nothing serves, a runner shown by name and as stopped.

Each failure is one line on stderr and exit code 2, never a traceback. Real processes
check that (exit code, stderr); the whole command x failure matrix runs in process.
"""

from __future__ import annotations

import http.server
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from runpack_api.cli import app
from tests.support import EMBEDDED, ServerProcess, free_port, plain_http, running_server, wait_for

KEY_VARIABLES = ("RUNPACK_SUBMIT_API_KEY", "RUNPACK_RUNNER_API_KEY", "RUNPACK_ADMIN_API_KEY")


@pytest.fixture(scope="module")
def closed_port() -> int:
    """A loopback port nothing listens on."""
    return free_port()


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    """A file server's handler that logs nothing (it would log into the commands' stderr)."""

    def log_message(self, *_args: object) -> None:
        pass


@pytest.fixture(scope="module")
def other_http_server() -> Iterator[str]:
    """A plain HTTP file server: something that is not Runpack answers on this port."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), QuietHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """A real ``runpack api`` on the embedded default, no worker: nothing serves any type."""
    tmp = tmp_path_factory.mktemp("cli-messages")
    with EMBEDDED.fresh_database(tmp) as url, running_server(url, EMBEDDED, tmp) as server:
        yield server


def clean_env(**extra: str) -> dict[str, str]:
    """This environment without RUNPACK_* variables, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("RUNPACK_")}
    return {**env, **extra}


def with_keys(**extra: str) -> dict[str, str]:
    return clean_env(**dict.fromkeys(KEY_VARIABLES, "some-key"), **extra)


def run_all(commands: list[tuple[list[str], dict[str, str]]], cwd: Path) -> list[tuple[int, str]]:
    """Run ``runpack`` commands at the same time; (exit code, stderr) of each."""
    processes = [
        subprocess.Popen(
            [sys.executable, "-m", "runpack_api.cli", *args],
            env=env,
            cwd=cwd,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        for args, env in commands
    ]
    results = []
    for process in processes:
        try:
            _, stderr = process.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()
            _, stderr = process.communicate()
        results.append((process.returncode, stderr))
    return results


def assert_one_line(code: int, stderr: str, *expected: str) -> None:
    assert code == 2, stderr
    assert "Traceback" not in stderr
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    for part in expected:
        assert part in lines[0], lines[0]


# -- no Runpack API at the URL -----------------------------------------------------------------

CLIENT_COMMANDS = [
    ["submit", "hello_world", "name=Ada"],
    ["status", "some-job"],
    ["cancel", "some-job"],
    ["jobs"],
    ["runners"],
    ["stats"],
    ["runner", "--types", "hello_world"],
]


def test_processes_exit_2_with_one_line_naming_the_url(
    tmp_path: Path, closed_port: int, other_http_server: str
) -> None:
    # Given a port nobody listens on, a plain HTTP server, and a database nobody serves
    refused = f"http://127.0.0.1:{closed_port}"
    no_database = f"postgresql://postgres@127.0.0.1:{closed_port}/runpack"
    not_a_file = tmp_path / "a-file"
    not_a_file.write_text("")
    unopenable = f"sqlite:///{not_a_file / 'runpack.db'}"
    state = ["--state-file", str(tmp_path / "runner.json")]
    # When client commands and server commands meet each of them
    cases = [
        (["runner", "--types", "hello_world", *state, "--url", refused], with_keys(), [refused]),
        (["submit", "hello_world", "--url", other_http_server], with_keys(), ["not Runpack"]),
        (["api"], with_keys(RUNPACK_DATABASE_URL=no_database), ["RUNPACK_DATABASE_URL"]),
        (["worker"], with_keys(RUNPACK_DATABASE_URL=unopenable), ["unable to open"]),
        (["up", "--port", str(free_port())], clean_env(RUNPACK_DATABASE_URL=no_database), []),
    ]
    results = run_all([(args, env) for args, env, _ in cases], tmp_path)
    # Then each says what went wrong in one line, exits 2, and shows no traceback
    for (args, _, expected), (code, stderr) in zip(cases, results, strict=True):
        lines = [line for line in stderr.splitlines() if line.startswith("error:")]
        assert code == 2, (args, stderr)
        assert "Traceback" not in stderr, (args, stderr)
        assert len(lines) == 1 and all(part in lines[0] for part in expected), (args, stderr)
    # (runpack up prints its URL and keys before it opens the database)
    assert "Connection refused" in results[-1][1]


@pytest.mark.parametrize("command", CLIENT_COMMANDS, ids=lambda c: c[0])
@pytest.mark.parametrize("failure", ["refused", "no scheme", "https to http", "not runpack"])
def test_every_client_command_explains_an_api_it_cannot_use(
    command: list[str],
    failure: str,
    closed_port: int,
    other_http_server: str,
    tmp_path: Path,
) -> None:
    url = {
        "refused": f"http://127.0.0.1:{closed_port}",
        "no scheme": f"127.0.0.1:{closed_port}",
        "https to http": other_http_server.replace("http://", "https://"),
        "not runpack": other_http_server,
    }[failure]
    args = [*command, "--url", url]
    if command[0] == "runner":
        args += ["--state-file", str(tmp_path / "runner.json")]
    result = CliRunner().invoke(app, args, env=with_keys())
    assert isinstance(result.exception, SystemExit), result.exception
    assert_one_line(result.exit_code, result.stderr, f"no Runpack API at {url}")


# -- keys ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("command", "variable"),
    [
        (["submit", "hello_world"], "RUNPACK_SUBMIT_API_KEY"),
        (["status", "some-job"], "RUNPACK_SUBMIT_API_KEY"),
        (["jobs"], "RUNPACK_ADMIN_API_KEY"),
        (["cancel", "some-job"], "RUNPACK_ADMIN_API_KEY"),
        (["runner"], "RUNPACK_RUNNER_API_KEY"),
    ],
)
def test_a_missing_key_names_its_variable_the_option_and_the_keys_file(
    command: list[str], variable: str
) -> None:
    result = CliRunner().invoke(app, command, env=clean_env())
    assert_one_line(
        result.exit_code, result.stderr, variable, "--key", "export $(cat runpack.keys)"
    )


# -- a type nothing serves -------------------------------------------------------------------


def submit(api: ServerProcess, job_type: str) -> httpx.Response:
    return plain_http.post(
        f"{api.url}/api/jobs/submit",
        headers=api.headers("submit"),
        json={"job_type": job_type, "input_params": {"n": uuid.uuid4().hex}},
    )


def test_submit_says_when_nothing_serves_the_type(api: ServerProcess) -> None:
    job_type = f"unserved_{uuid.uuid4().hex[:8]}"
    answer = submit(api, job_type)
    assert answer.status_code == 201
    assert f"serves job type '{job_type}' yet" in answer.json()["message"]
    assert answer.json()["served"] is False
    # And once an HTTP runner serving it registered, new submits no longer say so
    with api.client("runner") as runner:
        registered = runner.post(
            "/api/runner/register", json={"name": "by-hand", "capabilities": [job_type]}
        )
    assert registered.status_code == 201
    again = submit(api, job_type).json()
    assert "served" not in again and again["message"] == "Job created and queued"


def test_submit_wait_warns_once_then_keeps_waiting(api: ServerProcess) -> None:
    job_type = f"unserved_{uuid.uuid4().hex[:8]}"
    env = clean_env(**api.keys.env(), RUNPACK_URL=api.url)
    process = subprocess.Popen(
        [sys.executable, "-m", "runpack_api.cli", "submit", job_type, "x=1", "--wait"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stderr is not None
        lines: list[str] = []
        deadline = time.monotonic() + 30
        while not any(line.startswith("pending") for line in lines):
            assert time.monotonic() < deadline, lines
            lines.append(process.stderr.readline())
        assert process.poll() is None  # still waiting
    finally:
        process.kill()
        process.wait()
    warnings = [line for line in lines if line.startswith("warning:")]
    assert len(warnings) == 1 and f"'{job_type}'" in warnings[0], lines


# -- runners by name, and stopped ------------------------------------------------------------


def test_jobs_show_the_runner_by_name(api: ServerProcess) -> None:
    job_type = f"named_{uuid.uuid4().hex[:8]}"
    name = f"lap-{uuid.uuid4().hex[:4]}"  # short: the table folds long cells
    job_id = submit(api, job_type).json()["job_id"]
    with api.client("runner") as runner:
        runner_id = runner.post(
            "/api/runner/register", json={"name": name, "capabilities": [job_type]}
        ).json()["runner_id"]
        claim = runner.post(f"/api/runner/jobs/{job_id}/claim", headers={"X-Runner-ID": runner_id})
    assert claim.status_code == 200
    with api.client("admin") as admin:
        listed = admin.get("/api/admin/jobs", params={"job_type": job_type}).json()["jobs"]
        detail = admin.get(f"/api/admin/jobs/{job_id}").json()
        recent = admin.get(f"/api/admin/runners/{runner_id}").json()["jobs"]
    assert [job["claimed_by_name"] for job in listed] == [name]
    assert detail["claimed_by_name"] == name and detail["claimed_by"] == runner_id
    assert [job["claimed_by_name"] for job in recent] == [name]
    env = clean_env(**api.keys.env(), RUNPACK_URL=api.url)
    shown = CliRunner().invoke(app, ["jobs", "--type", job_type], env=env)
    assert shown.exit_code == 0 and name in shown.stdout and runner_id[:8] not in shown.stdout


def test_a_stopped_runner_is_inactive_and_its_last_seen_is_true(
    api: ServerProcess, tmp_path: Path
) -> None:
    name = f"stopping-{uuid.uuid4().hex[:6]}"
    env = clean_env(**api.keys.env())
    command = [
        "runner",
        "--url",
        api.url,
        "--types",
        "hello_world",
        "--name",
        name,
        "--long-poll",
        "1",
    ]
    process = subprocess.Popen(
        [sys.executable, "-m", "runpack_api.cli", *command, "--state-file", "r.json"],
        env=env,
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )

    def mine() -> dict[str, object] | None:
        with api.client("admin") as admin:
            runners = admin.get("/api/admin/runners").json()["runners"]
        return next((r for r in runners if r["name"] == name), None)

    try:
        assert wait_for(lambda: (found := mine()) and found["is_active"], timeout_s=30)
    finally:
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=30)
    assert process.returncode == 0, stderr
    stopped = mine()
    assert stopped is not None and stopped["is_active"] is False
    with api.client("admin") as admin:
        detail = admin.get(f"/api/admin/runners/{stopped['runner_id']}").json()
    assert detail["last_seen"] >= detail["registered_at"]

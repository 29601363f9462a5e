"""``runpack up`` on the embedded default: keys made and kept, API served, clean stop."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
from pathlib import Path

import httpx

from tests.support import free_port, plain_http, wait_for


def start_up(directory: Path, port: int) -> subprocess.Popen[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RUNPACK_")}
    return subprocess.Popen(
        [sys.executable, "-m", "runpack_api.cli", "up", "--port", str(port)],
        cwd=directory,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,  # its own process group, as a terminal gives it
    )


def descendants(pid: int) -> set[int]:
    """Every process below ``pid`` (from /proc)."""
    found: set[int] = set()
    for task in Path(f"/proc/{pid}/task").glob("*"):
        children = (task / "children").read_text().split()
        for child in map(int, children):
            found |= {child} | descendants(child)
    return found


def alive(pid: int) -> bool:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return False
    return "State:\tZ" not in status


def stop(process: subprocess.Popen[str]) -> str:
    """Ctrl-C, as a person would, to the whole foreground process group (SIGKILL to the
    group if it has not stopped within a minute, so a failing test leaves nothing behind)."""
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGINT)
    try:
        output, _ = process.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        output, _ = process.communicate()
        raise AssertionError(f"runpack up did not stop on Ctrl-C:\n{output}") from None
    return output


def celery_workers(runners: httpx.Response) -> list[str]:
    """The active Celery workers in an admin runner listing."""
    return [
        r["runner_id"]
        for r in runners.json()["runners"]
        if r["kind"] == "celery" and r["is_active"]
    ]


def test_up_generates_keys_serves_and_keeps_them(tmp_path: Path) -> None:
    # Given an empty directory and no RUNPACK_* variables
    port = free_port()
    process = start_up(tmp_path, port)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for(
            lambda: plain_http.get(f"{url}/health").status_code == 200,
            timeout_s=60,
            what="runpack up",
        )
        keys_file = tmp_path / "runpack.keys"
        keys = dict(line.split("=", 1) for line in keys_file.read_text().splitlines())
        submit_key = {"Authorization": f"Bearer {keys['RUNPACK_SUBMIT_API_KEY']}"}
        admin_key = {"Authorization": f"Bearer {keys['RUNPACK_ADMIN_API_KEY']}"}
        # And the worker that up started has registered (so the job is sent to it at once,
        # not on beat's next round)
        wait_for(
            lambda: celery_workers(plain_http.get(f"{url}/api/admin/runners", headers=admin_key)),
            timeout_s=60,
            interval_s=0.5,
            what="the worker to register",
        )
        # When a client submits a job with the generated submit key
        params = {"name": "Ada", "processing_time": 0.5}
        answer = plain_http.post(
            f"{url}/api/jobs/submit",
            headers=submit_key,
            json={"job_type": "hello_world", "input_params": params},
        )
        assert answer.status_code == 201
        job_url = f"{url}/api/jobs/{answer.json()['job_id']}"
        # Then the worker that up started runs it
        done = wait_for(
            lambda: plain_http.get(job_url, headers=submit_key).json()["status"] == "completed",
            timeout_s=60,
            interval_s=0.5,  # runpack up keeps the default status rate limit (60/min)
            what="the job to complete",
        )
        assert done
        result = plain_http.get(job_url, headers=submit_key).json()["result"]
        assert result["output_data"]["greeting"] == "Hello, Ada!"
        children = descendants(process.pid)
        assert len(children) >= 3  # the worker (and its pool) and beat
    finally:
        output = stop(process)
    # And Ctrl-C stopped all of it
    assert not [pid for pid in children if alive(pid)]
    # Then it printed the URL and the keys, kept them private, and made the SQLite database
    assert url in output
    for name in ("SUBMIT", "RUNNER", "ADMIN"):
        assert keys[f"RUNPACK_{name}_API_KEY"] in output
    assert oct(keys_file.stat().st_mode & 0o777) == "0o600"
    assert (tmp_path / "runpack.db").exists()
    assert process.returncode == 0

    # And a second start reuses the same keys and sees the same job
    process = start_up(tmp_path, port)
    try:
        wait_for(
            lambda: plain_http.get(f"{url}/health").status_code == 200,
            timeout_s=60,
            what="runpack up, again",
        )
        again = plain_http.post(
            f"{url}/api/jobs/submit",
            json={"job_type": "hello_world", "input_params": params},
            headers={"Authorization": f"Bearer {keys['RUNPACK_SUBMIT_API_KEY']}"},
        )
        assert again.status_code == 200 and again.json()["job_id"] == answer.json()["job_id"]
        assert wait_for(lambda: len(descendants(process.pid)) >= 3, timeout_s=60)
        children = descendants(process.pid)  # the worker (and its pool) and beat
        # When a supervisor stops it with SIGTERM to runpack up alone
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=60)
        # Then its worker and beat stop with it, and it exits cleanly
        assert wait_for(lambda: not [pid for pid in children if alive(pid)], timeout_s=30)
        assert process.returncode == 0
    finally:
        stop(process)


def test_up_on_a_taken_port_fails_and_stops_its_worker_and_beat(tmp_path: Path) -> None:
    # Given a port something else listens on
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        # When runpack up is started on it
        process = start_up(tmp_path, port)
        try:
            output, _ = process.communicate(timeout=120)
        finally:
            stop(process)
    # Then it says so and fails, as uvicorn does (exit status 3)
    assert process.returncode == 3, output
    assert "address already in use" in output.lower()
    # And it left no worker or beat running (they would still have this folder's broker)
    left = _processes_in(tmp_path)
    assert not left, left


def _processes_in(directory: Path) -> list[str]:
    """The command lines of the processes whose working folder is ``directory``."""
    found = []
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            if (proc / "cwd").resolve() == directory.resolve():
                found.append((proc / "cmdline").read_text().replace("\0", " "))
        except OSError:  # gone, or not ours to look at
            continue
    return found


def test_api_refuses_to_start_without_keys(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RUNPACK_")}
    done = subprocess.run(
        [sys.executable, "-m", "runpack_api.cli", "api"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert re.search(r"RUNPACK_SUBMIT_API_KEY.*not set", done.stderr)
    assert not (tmp_path / "runpack.db").exists()


def test_db_upgrade_creates_the_schema(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RUNPACK_")}
    env["RUNPACK_DATABASE_URL"] = f"sqlite:///{tmp_path / 'fresh.db'}"
    done = subprocess.run(
        [sys.executable, "-m", "runpack_api.cli", "db", "upgrade"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert "up to date" in done.stderr
    assert (tmp_path / "fresh.db").stat().st_size > 0

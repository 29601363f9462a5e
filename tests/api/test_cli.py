"""``runpack up`` on the embedded default: keys made and kept, API served, clean stop."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import httpx

from tests.support import free_port, wait_for


def start_up(directory: Path, port: int) -> subprocess.Popen[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RUNPACK_")}
    return subprocess.Popen(
        [sys.executable, "-m", "runpack_api.cli", "up", "--port", str(port)],
        cwd=directory,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def stop(process: subprocess.Popen[str]) -> str:
    process.send_signal(signal.SIGINT)
    output, _ = process.communicate(timeout=30)
    return output


def test_up_generates_keys_serves_and_keeps_them(tmp_path: Path) -> None:
    # Given an empty directory and no RUNPACK_* variables
    port = free_port()
    process = start_up(tmp_path, port)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for(
            lambda: httpx.get(f"{url}/health").status_code == 200, timeout_s=60, what="runpack up"
        )
        keys_file = tmp_path / "runpack.keys"
        keys = dict(line.split("=", 1) for line in keys_file.read_text().splitlines())
        # When a client submits with the generated submit key
        answer = httpx.post(
            f"{url}/api/jobs/submit",
            json={"job_type": "hello_world", "input_params": {"name": "Ada"}},
            headers={"Authorization": f"Bearer {keys['RUNPACK_SUBMIT_API_KEY']}"},
        )
        assert answer.status_code == 201
    finally:
        output = stop(process)
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
            lambda: httpx.get(f"{url}/health").status_code == 200,
            timeout_s=60,
            what="runpack up, again",
        )
        again = httpx.post(
            f"{url}/api/jobs/submit",
            json={"job_type": "hello_world", "input_params": {"name": "Ada"}},
            headers={"Authorization": f"Bearer {keys['RUNPACK_SUBMIT_API_KEY']}"},
        )
        assert again.status_code == 200 and again.json()["job_id"] == answer.json()["job_id"]
    finally:
        stop(process)


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

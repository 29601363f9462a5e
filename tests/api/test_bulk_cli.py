"""``runpack submit TYPE --params-file F`` with JSON lines, against a real ``runpack api``:
the jobs go in batches, and ``--wait`` follows them all to a summary."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path

import orjson
import sqlalchemy as sa
from sqlalchemy import Engine

from runpack_tasks.jobstore.hashing import job_hash
from runpack_tasks.jobstore.models import JOBS
from tests.support import ServerProcess, register, wait_for


def cli(server: ServerProcess, *args: str) -> subprocess.Popen[str]:
    env = {name: value for name, value in os.environ.items() if not name.startswith("RUNPACK_")}
    env.update(server.keys.env(), RUNPACK_URL=server.url)
    return subprocess.Popen(
        [sys.executable, "-m", "runpack_api.cli", "submit", *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def params_file(tmp_path: Path, rows: list[dict[str, object]]) -> Path:
    path = tmp_path / "jobs.jsonl"
    path.write_bytes(b"\n".join(orjson.dumps(row) for row in rows) + b"\n")
    return path


def stored_ids(engine: Engine, job_type: str, rows: list[dict[str, object]]) -> list[str]:
    """The job ids of these parameter sets, in order (those stored)."""
    digests = [job_hash(job_type, row) for row in rows]
    with engine.connect() as conn:
        query = sa.select(JOBS.c.job_hash, JOBS.c.id).where(JOBS.c.job_hash.in_(digests))
        found = {digest: job_id for digest, job_id in conn.execute(query)}
    return [found[digest] for digest in digests if digest in found]


def test_a_file_of_json_lines_is_submitted_in_batches(
    live_server: ServerProcess, server_engine: Engine, tmp_path: Path
) -> None:
    job_type = f"lines_{uuid.uuid4().hex[:8]}"
    rows: list[dict[str, object]] = [{"n": n} for n in range(1500)] + [{"n": 7}]
    process = cli(live_server, job_type, "--params-file", str(params_file(tmp_path, rows)))
    out, err = process.communicate(timeout=60)
    assert process.returncode == 0, err
    assert out.strip() == "submitted 1501 job(s): 1500 created, 1 already there"
    assert len(stored_ids(server_engine, job_type, rows[:1500])) == 1500


def test_wait_follows_every_job_to_a_summary(
    live_server: ServerProcess, server_engine: Engine, tmp_path: Path
) -> None:
    # Given a --wait submission of four jobs
    job_type = f"waited_{uuid.uuid4().hex[:8]}"
    rows: list[dict[str, object]] = [{"n": n} for n in range(4)]
    process = cli(
        live_server, job_type, "--params-file", str(params_file(tmp_path, rows)), "--wait"
    )
    try:
        wait_for(lambda: len(stored_ids(server_engine, job_type, rows)) == 4, timeout_s=30)
        assert process.poll() is None  # still following them
        # When a runner completes three and fails one
        ids = stored_ids(server_engine, job_type, rows)
        with live_server.client("runner", register(live_server, [job_type])) as runner:
            for n, job_id in enumerate(ids):
                assert runner.post(f"/api/runner/jobs/{job_id}/claim").status_code == 200
                report = (
                    runner.post(f"/api/runner/jobs/{job_id}/error", json={"error_message": "x"})
                    if n == 3
                    else runner.post(
                        f"/api/runner/jobs/{job_id}/complete", json={"output_data": {"n": n}}
                    )
                )
                assert report.status_code == 200
        out, err = process.communicate(timeout=30)
    finally:
        process.kill()
    # Then it says how many completed and failed, and exits 1 as one failed
    assert out.strip() == "4 job(s): 3 completed, 1 failed", err
    assert process.returncode == 1

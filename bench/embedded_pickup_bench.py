"""``runpack up``: how soon a worker picks a submitted job up, and what an idle one costs.

Starts ``runpack up`` (API, a worker for every installed plugin, beat; SQLite and the
filesystem broker) in a scratch folder, then:

1. idle CPU: the CPU time of its whole process tree (every process it started) over
   ``--idle-s`` seconds with nothing submitted, in % of one core;
2. pickup: ``--jobs`` new ``noop`` jobs submitted one at a time, ``--gap-s`` apart; for each,
   the time from its creation to its claim by the worker (``claimed_at - created_at`` of
   the jobs table, both written by the processes on this machine's clock): p50, p90, max;
3. stop: SIGTERM to ``runpack up`` alone (as a supervisor stops it), until every process
   of its tree has exited.

The machine may be shared: a busy neighbour shows in both figures.

    /work/venv/bin/python bench/embedded_pickup_bench.py
"""

from __future__ import annotations

import argparse
import os
import secrets
import signal
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx
import sqlalchemy as sa
from harness import (
    HOST,
    HZ,
    cpu_ticks,
    free_port,
    process_tree,
    running,
    runpack_env,
    spawn,
    stop,
)

KEYS = {"submit": "pickup-submit", "runner": "pickup-runner", "admin": "pickup-admin"}


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--idle-s", type=float, default=10.0)
    parser.add_argument("--jobs", type=int, default=40)
    parser.add_argument("--gap-s", type=float, default=0.15)
    return parser.parse_args()


def wait_until(condition: object, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if condition():  # type: ignore[operator]
                return
        except (httpx.HTTPError, sa.exc.SQLAlchemyError):
            pass
        time.sleep(0.1)
    raise RuntimeError(f"timed out waiting for {what}")


def tree_ticks(pid: int) -> int:
    return sum(cpu_ticks(child) for child in process_tree(pid))


def main() -> int:
    args = parse_args()
    with tempfile.TemporaryDirectory(prefix="pickup-bench-") as tmp:
        folder = Path(tmp)
        port = free_port()
        env = runpack_env(KEYS)
        url = f"http://{HOST}:{port}"
        up = spawn(
            [sys.executable, "-m", "runpack_api.cli", "up", "--port", str(port)],
            env,
            folder / "up.log",
            folder,
        )
        engine = sa.create_engine(f"sqlite:///{folder / 'runpack.db'}")
        try:
            headers = {"Authorization": f"Bearer {KEYS['submit']}"}
            wait_until(lambda: httpx.get(f"{url}/health").status_code == 200, 60, "the API")
            admin = {"Authorization": f"Bearer {KEYS['admin']}"}
            # the worker is up once it registered its types
            wait_until(
                lambda: "noop" in str(httpx.get(f"{url}/api/admin/runners", headers=admin).json()),
                60,
                "the worker",
            )
            with httpx.Client(base_url=url, headers=headers) as client:
                # one job first: the worker's pool and connections are warm
                client.post("/api/jobs/submit", json={"job_type": "noop", "input_params": {}})
                time.sleep(2.0)
                before, started = tree_ticks(up.pid), time.monotonic()
                time.sleep(args.idle_s)
                idle = (tree_ticks(up.pid) - before) / HZ / (time.monotonic() - started)
                prefix = secrets.token_hex(4)
                ids = []
                for n in range(args.jobs):
                    body = {"job_type": "noop", "input_params": {"n": n, "run": prefix}}
                    ids.append(client.post("/api/jobs/submit", json=body).json()["job_id"])
                    time.sleep(args.gap_s)

            def claimed() -> list[int]:
                with engine.connect() as conn:
                    rows = conn.execute(
                        sa.text(
                            "SELECT claimed_at - created_at FROM jobs "
                            "WHERE claimed_at IS NOT NULL AND id IN ("
                            + ", ".join(f"'{job_id}'" for job_id in ids)
                            + ")"
                        )
                    ).all()
                return [row[0] for row in rows]

            wait_until(lambda: len(claimed()) == len(ids), 60, "every job to be claimed")
            delays = sorted(claimed())
            tree, stopping = process_tree(up.pid), time.monotonic()
            up.send_signal(signal.SIGTERM)
            wait_until(lambda: not [pid for pid in tree if running(pid)], 60, "runpack up to stop")
            stop_s = time.monotonic() - stopping
        finally:
            engine.dispose()
            stop(up)
    p90 = delays[int(len(delays) * 0.9) - 1]
    print(f"host: {os.cpu_count()} cores, shared")
    print(
        f"idle `runpack up` (API + worker + beat): {idle * 100:.1f}% of a core, {args.idle_s:g} s"
    )
    print(
        f"submit to claim, {len(delays)} jobs {args.gap_s:g} s apart: "
        f"p50 {statistics.median(delays):.0f} ms, p90 {p90} ms, max {delays[-1]} ms"
    )
    print(f"stop (SIGTERM to `runpack up` until its every process has exited): {stop_s:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())

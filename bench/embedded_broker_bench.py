"""Which server-free broker `runpack up` should use: kombu's filesystem transport (with
Runpack's atomic writes) against kombu's SQLAlchemy transport on SQLite.

For each broker, a real Celery worker (prefork, concurrency 2, late acks, prefetch 1, as
Runpack configures it) drains N no-op tasks published from this process, and runs single
tasks sent to it while idle. Completion is seen through a counter file each task appends to.

    python bench/embedded_broker_bench.py [--tasks 1000] [--latency-samples 20] [--prefetch 1 4]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

WORKER_APP = """
import os
from celery import Celery
from runpack_tasks import fsbroker
fsbroker.register()
app = Celery("bench", broker=os.environ["BENCH_BROKER"])
app.conf.update(
    broker_transport_options={
        "data_folder_in": os.environ["BENCH_FOLDER"],
        "data_folder_out": os.environ["BENCH_FOLDER"],
        "control_folder": os.environ["BENCH_CONTROL"],
        "polling_interval": 0.1,
    } if "BENCH_FOLDER" in os.environ else {},  # SQLAlchemy: these go to create_engine
    task_acks_late=True, task_reject_on_worker_lost=True,
    worker_prefetch_multiplier=int(os.environ.get("BENCH_PREFETCH", "1")),
    task_ignore_result=True,
)

@app.task(name="bench.noop")
def noop(path):
    with open(path, "a") as f:
        f.write("x")
"""


def count(path: Path) -> int:
    return path.stat().st_size if path.exists() else 0


def wait_until(condition: object, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise TimeoutError("the worker did not finish in time")
        time.sleep(0.002)


def measure(
    name: str, env: dict[str, str], tasks: int, samples: int, tmp: Path
) -> dict[str, float]:
    sys.path.insert(0, str(tmp))
    os.environ.update(env)
    import importlib

    module = importlib.import_module(f"bench_app_{name}")
    counter = tmp / f"{name}.count"
    worker = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "celery",
            "-A",
            f"bench_app_{name}",
            "worker",
            "--pool=prefork",
            "--concurrency=2",
            "--loglevel=WARNING",
            "--without-mingle",
            "--without-gossip",
        ],
        cwd=tmp,
        env={**os.environ, "PYTHONPATH": f"{tmp}:{os.environ.get('PYTHONPATH', '')}"},
    )
    try:
        module.noop.delay(str(counter))
        wait_until(lambda: count(counter) == 1, 60)  # the worker is up and consuming
        start = time.monotonic()
        for _ in range(tasks):
            module.noop.delay(str(counter))
        published = time.monotonic()
        wait_until(lambda: count(counter) == tasks + 1, 600)
        drained = time.monotonic()
        latencies = []
        for n in range(samples):
            time.sleep(0.3)  # let the worker go idle
            sent = time.monotonic()
            module.noop.delay(str(counter))
            wait_until(lambda n=n: count(counter) == tasks + 2 + n, 30)
            latencies.append(time.monotonic() - sent)
    finally:
        worker.terminate()
        worker.wait(30)
    return {
        "publish/s": tasks / (published - start),
        "e2e/s": tasks / (drained - start),
        "idle latency p50 ms": statistics.median(latencies) * 1000,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=1000)
    parser.add_argument("--latency-samples", type=int, default=20)
    parser.add_argument(
        "--prefetch", type=int, nargs="+", default=[1, 4], help="prefetch multipliers to compare"
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        (tmp / "queue").mkdir()
        (tmp / "control").mkdir()
        brokers = {
            "filesystem": {
                "BENCH_BROKER": "runpackfs://",
                "BENCH_FOLDER": str(tmp / "queue"),
                "BENCH_CONTROL": str(tmp / "control"),
            },
            "sqlite": {"BENCH_BROKER": f"sqla+sqlite:///{tmp / 'broker.db'}"},
        }
        results = {}
        for prefetch in args.prefetch:
            for name, env in brokers.items():
                label = f"{name}_p{prefetch}"
                (tmp / f"bench_app_{label}.py").write_text(WORKER_APP)
                for key in ("BENCH_FOLDER", "BENCH_CONTROL"):
                    os.environ.pop(key, None)
                env = {**env, "BENCH_PREFETCH": str(prefetch)}
                results[label] = measure(label, env, args.tasks, args.latency_samples, tmp)
    print(f"{'broker, prefetch':<18} {'publish/s':>10} {'e2e/s':>8} {'idle latency p50 ms':>20}")
    for label, figures in results.items():
        name, prefetch = label.rsplit("_p", 1)
        print(
            f"{name + ', ' + prefetch:<18} {figures['publish/s']:>10.0f} "
            f"{figures['e2e/s']:>8.0f} {figures['idle latency p50 ms']:>20.0f}"
        )


if __name__ == "__main__":
    main()

"""HTTP throughput of the Runpack API's hot paths, measured with wrk beside a bare endpoint.

What it measures, for each backend (``embedded``: the SQLite-file default; ``postgres``:
a fresh PostgreSQL database plus the Redis on 127.0.0.1:6379):

- ``bare``        GET /bare of ``bench/bare_app.py``: FastAPI ``async def`` returning constant
                  JSON. The reference every other row is divided by ("x bare").
- ``submit-hit``  POST /api/jobs/submit of a job that is already completed (200 + result).
- ``check``       POST /api/jobs/check of that completed job.
- ``status``      GET /api/jobs/{id} of that completed job.
- ``submit-new``  POST /api/jobs/submit where every request carries parameters never seen
                  before (``lua/new_submit.lua``), so every request creates a job (201).

Both servers run as uvicorn subprocesses with the same options (``--loop uvloop --http
httptools --no-access-log --no-proxy-headers --workers N``) on loopback, for the same
backend, in the same run. The completed job is made through the HTTP API itself (submit,
register a runner, claim, complete). Every measurement is one wrk run (``-t2 -c32 -d10s``
by default) after a short warm-up of the same endpoint; repetitions are interleaved over
the scenarios so a slow period of this noisy VM hits every row alike. The table shows
``median [min-max]`` over the repetitions; "non-2xx" is the total over them of responses
with a status >= 400 (wrk's counter), "sock err" the connect/read/write errors and
timeouts (wrk's timeout is 2 s). "x bare" divides the median req/s by the bare endpoint's
median req/s of the same backend in this run. wrk shares the machine's cores with the
server, PostgreSQL and Redis, so compare rows within one run, not across runs.

This VM is noisy and may be shared: before each measurement the script waits (up to
``--quiet-wait``) until processes outside the benchmark use under 0.2 cores, and "other
cpu" is the median CPU (in cores) such foreign processes used during the measurements
(PostgreSQL, Redis and wrk count as part of the benchmark). Rows with a high figure there
are not trustworthy.

Run it (from the repository root, with the venv's Python, which has everything installed):

    /work/venv/bin/python bench/http_bench.py                       # defaults: 3 reps of 10 s
    /work/venv/bin/python bench/http_bench.py --reps 1 -d 5s        # quick look
    /work/venv/bin/python bench/http_bench.py --backends postgres --scenarios submit-hit \\
        --workers 2 -t2 -c64

``--baseline DIR`` also serves the API from another checkout of the repository (a git
worktree of an older commit: ``git worktree add /tmp/base <commit>``), on a database of its
own, and measures its scenarios interleaved with the current code's, so a change shows its
before and after in one run: rows marked ``(base)`` are the baseline's, and a last table
divides the current code's median req/s by the baseline's.

PostgreSQL is reached at ``--pg-url`` (a database to connect to for CREATE/DROP DATABASE);
the benchmark creates ``runpack_bench_<random>`` and drops it at the end. Every process it
starts is stopped on exit, including on Ctrl-C and errors.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import httpx
from harness import (
    HOST,
    free_port,
    fresh_database,
    print_table,
    raise_on_signals,
    runpack_env,
    spawn,
    spread,
    stop,
    wait_for_quiet,
)
from harness import log as harness_log

from runpack_tasks.jobstore.schema import upgrade

BENCH_DIR = Path(__file__).resolve().parent
LUA_DIR = BENCH_DIR / "lua"
PYTHON = sys.executable

KEYS = {"submit": "bench-submit-key", "runner": "bench-runner-key", "admin": "bench-admin-key"}
REDIS_SERVER = "redis://127.0.0.1:6379"
DEFAULT_PG_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
COMPLETED_JOB = {"job_type": "noop", "input_params": {"n": 1, "name": "bench"}}

STARTUP_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 10.0
#: wrk gets this much longer than its -d before it is killed.
WRK_GRACE_S = 30.0
TARGET_BACKEND, TARGET_SCENARIO, TARGET_RATIO = "postgres", "submit-hit", 0.4

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
#: Processes whose CPU counts as part of the benchmark, not as foreign load.
BENCH_COMMANDS = {"postgres", "redis-server", "wrk"}
#: Foreign load (in cores) under which the host counts as quiet.
QUIET_CORES = 0.2
#: Process groups this benchmark started (uvicorn and its workers), plus its own.
OUR_GROUPS: set[int] = {os.getpgid(0)}


@dataclass(frozen=True)
class Scenario:
    """One endpoint under load: which server, which request, which status proves it works."""

    name: str
    server: str  # "bare" or "app"
    method: str
    path: str  # "{job_id}" is replaced by the completed job's id
    body: str | None
    expected_status: int
    script: str = "fixed.lua"


JOB_BODY = json.dumps(COMPLETED_JOB, separators=(",", ":"))
SCENARIOS = {
    s.name: s
    for s in [
        Scenario("bare", "bare", "GET", "/bare", None, 200),
        Scenario("submit-hit", "app", "POST", "/api/jobs/submit", JOB_BODY, 200),
        Scenario("check", "app", "POST", "/api/jobs/check", JOB_BODY, 200),
        Scenario("status", "app", "GET", "/api/jobs/{job_id}", None, 200),
        Scenario("submit-new", "app", "POST", "/api/jobs/submit", None, 201, "new_submit.lua"),
    ]
}
APP_SCENARIOS = [name for name in SCENARIOS if name != "bare"]
#: The label of the server running ``--baseline``'s code.
BASE = "base"
BACKENDS = ["embedded", "postgres"]


@dataclass(frozen=True)
class LoadOptions:
    """How hard and how long wrk pushes."""

    threads: int
    connections: int
    seconds: int
    warmup_s: int
    quiet_wait_s: int


@dataclass(frozen=True)
class WrkResult:
    """One wrk run."""

    rps: float
    p50_ms: float
    p99_ms: float
    non_2xx: int
    socket_errors: int
    #: CPU used meanwhile by processes that are not part of the benchmark, in cores.
    foreign_cores: float = 0.0


@dataclass(frozen=True)
class Target:
    """A running server under test and what its scenarios need."""

    base_url: str
    job_id: str = ""


# --- command line ---------------------------------------------------------------------


def seconds(text: str) -> int:
    """wrk-style duration ('10s', '2m', '10') as whole seconds."""
    match = re.fullmatch(r"(\d+)\s*([smh]?)", text.strip())
    if not match:
        raise argparse.ArgumentTypeError(f"{text!r} is not a duration such as 10s or 1m")
    return int(match.group(1)) * {"": 1, "s": 1, "m": 60, "h": 3600}[match.group(2)]


def name_list(choices: list[str]) -> Callable[[str], list[str]]:
    """An argparse type: comma-separated names, each one of ``choices``."""

    def parse(text: str) -> list[str]:
        names = [part.strip() for part in text.split(",") if part.strip()]
        unknown = [name for name in names if name not in choices]
        if unknown or not names:
            raise argparse.ArgumentTypeError(f"choose from {','.join(choices)}")
        return names

    return parse


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line (see the module docstring)."""
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument(
        "--backends",
        type=name_list(BACKENDS),
        default=BACKENDS,
        help="comma-separated: embedded,postgres (default: both)",
    )
    parser.add_argument(
        "--scenarios",
        type=name_list(list(SCENARIOS)),
        default=APP_SCENARIOS,
        help=f"comma-separated from {','.join(APP_SCENARIOS)} "
        "(default: all; bare is always measured)",
    )
    parser.add_argument("--workers", type=int, default=1, help="uvicorn workers (default 1)")
    parser.add_argument("-t", "--threads", type=int, default=2, help="wrk threads (default 2)")
    parser.add_argument(
        "-c", "--connections", type=int, default=32, help="wrk connections (default 32)"
    )
    parser.add_argument(
        "-d",
        "--duration",
        type=seconds,
        default=10,
        help="wrk duration per measurement, e.g. 10s (default 10s)",
    )
    parser.add_argument(
        "--warmup",
        type=seconds,
        default=2,
        help="wrk warm-up before each measurement, 0 for none (default 2s)",
    )
    parser.add_argument(
        "--quiet-wait",
        type=seconds,
        default=20,
        help=f"wait up to this long before each measurement for other processes to use "
        f"under {QUIET_CORES} cores, 0 for no wait (default 20s)",
    )
    parser.add_argument("--reps", type=int, default=3, help="repetitions (default 3)")
    parser.add_argument(
        "--baseline",
        type=Path,
        default=None,
        help="another checkout of this repository to measure side by side (before/after)",
    )
    parser.add_argument(
        "--pg-url",
        default=DEFAULT_PG_URL,
        help=f"PostgreSQL database used to create/drop the bench database "
        f"(default {DEFAULT_PG_URL})",
    )
    parser.add_argument(
        "--redis-db",
        type=int,
        default=0,
        help="Redis database of the PostgreSQL backend (the baseline's: the next one; default 0)",
    )
    args = parser.parse_args(argv)
    if args.baseline is not None and not (args.baseline / "runpack_api").is_dir():
        parser.error(f"--baseline {args.baseline} is not a checkout of this repository")
    if min(args.workers, args.threads, args.connections, args.reps, args.duration) < 1:
        parser.error("--workers, --threads, --connections, --reps and -d must be >= 1")
    args.scenarios = ["bare", *[name for name in args.scenarios if name != "bare"]]
    return args


# --- processes --------------------------------------------------------------------------


def wait_until_up(proc: subprocess.Popen[bytes], url: str, log_path: Path) -> None:
    """Poll ``url`` until it answers 200; fail (with the server's log) at the deadline."""
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    last = "no answer"
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            break
        try:
            answer = httpx.get(url, timeout=5.0)
            if answer.status_code == 200:
                return
            last = f"{answer.status_code} {answer.text[:200]}"
        except httpx.HTTPError as exc:
            last = repr(exc)
        time.sleep(0.1)
    log = log_path.read_text(errors="replace")[-3000:]
    raise RuntimeError(f"server for {url} did not come up (last: {last}); its log:\n{log}")


@contextlib.contextmanager
def uvicorn(
    app: list[str],
    health_path: str,
    env: dict[str, str],
    workdir: Path,
    workers: int,
    log_name: str,
) -> Iterator[str]:
    """Run uvicorn on a free loopback port; yield its base URL; stop it on the way out."""
    port = free_port()
    command = [
        PYTHON,
        "-m",
        "uvicorn",
        *app,
        "--host",
        HOST,
        "--port",
        str(port),
        "--loop",
        "uvloop",
        "--http",
        "httptools",
        "--no-access-log",
        "--no-proxy-headers",
        "--workers",
        str(workers),
    ]
    log_path = workdir / f"{log_name}.log"
    proc = spawn(command, env, log_path, workdir)
    OUR_GROUPS.add(proc.pid)
    try:
        base_url = f"http://{HOST}:{port}"
        wait_until_up(proc, base_url + health_path, log_path)
        yield base_url
    finally:
        stop(proc, STOP_TIMEOUT_S)


# --- backends ---------------------------------------------------------------------------


@contextlib.contextmanager
def embedded_backend(workdir: Path) -> Iterator[dict[str, str]]:
    """The embedded default: a SQLite file, and the default broker (folder in ``workdir``)."""
    url = f"sqlite:///{workdir / 'bench.db'}"
    upgrade(url)
    yield runpack_env(KEYS, url)


@contextlib.contextmanager
def postgres_backend(admin_url: str, redis_url: str) -> Iterator[dict[str, str]]:
    """A fresh PostgreSQL database (dropped afterwards) and the loopback Redis."""
    with fresh_database(admin_url) as url:
        yield runpack_env(KEYS, url, redis_url)


def backend(name: str, workdir: Path, args: argparse.Namespace) -> Any:
    """The context manager setting up backend ``name``; it yields the servers' environment."""
    if name == "embedded":
        return embedded_backend(workdir)
    return postgres_backend(args.pg_url, f"{REDIS_SERVER}/{args.redis_db}")


# --- the completed job ------------------------------------------------------------------


def auth(role: str) -> dict[str, str]:
    """The Authorization header for an API key role."""
    return {"Authorization": f"Bearer {KEYS[role]}"}


def expect(response: httpx.Response, *statuses: int) -> dict[str, object]:
    """The response's JSON body, or an error naming what came back instead."""
    if response.status_code not in statuses:
        raise RuntimeError(
            f"{response.request.method} {response.request.url.path} answered "
            f"{response.status_code} {response.text[:300]}"
        )
    body: dict[str, object] = response.json()
    return body


def make_completed_job(base_url: str) -> str:
    """Submit, claim and complete COMPLETED_JOB through the HTTP API; return its id."""
    with httpx.Client(base_url=base_url, timeout=10.0) as client:
        job_id = str(
            expect(
                client.post("/api/jobs/submit", json=COMPLETED_JOB, headers=auth("submit")), 201
            )["job_id"]
        )
        registered = client.post(
            "/api/runner/register",
            headers=auth("runner"),
            json={"name": "bench", "capabilities": ["noop"]},
        )
        runner = auth("runner") | {"X-Runner-ID": str(expect(registered, 201)["runner_id"])}
        expect(client.post(f"/api/runner/jobs/{job_id}/claim", headers=runner), 200)
        expect(
            client.post(
                f"/api/runner/jobs/{job_id}/complete",
                headers=runner,
                json={"output_data": {"ok": True}},
            ),
            200,
        )
    return job_id


def probe(scenario: Scenario, target: Target) -> None:
    """One request of ``scenario`` must answer its expected status before it is loaded."""
    body = scenario.body
    if scenario.name == "submit-new":
        body = json.dumps({"job_type": "noop", "input_params": {"probe": secrets.token_hex(8)}})
    response = httpx.request(
        scenario.method,
        target.base_url + scenario.path.format(job_id=target.job_id),
        content=body,
        timeout=10.0,
        headers={"Content-Type": "application/json", **auth("submit")},
    )
    answer = expect(response, scenario.expected_status)
    if scenario.name in {"submit-hit", "check", "status"} and "result" not in answer:
        raise RuntimeError(f"{scenario.name}: no result in {answer}")


# --- wrk --------------------------------------------------------------------------------


def wrk_command(
    scenario: Scenario, target: Target, load: LoadOptions, duration_s: int
) -> list[str]:
    """The wrk command line for one run of ``scenario``."""
    url = target.base_url + scenario.path.format(job_id=target.job_id)
    command = [
        shutil.which("wrk") or "/usr/bin/wrk",
        f"-t{load.threads}",
        f"-c{load.connections}",
        f"-d{duration_s}s",
        "-s",
        str(LUA_DIR / scenario.script),
    ]
    if scenario.server == "app":
        command += [
            "-H",
            "Content-Type: application/json",
            "-H",
            f"Authorization: Bearer {KEYS['submit']}",
        ]
    return [*command, url, "--", secrets.token_hex(6)]  # the run prefix for new_submit.lua


def run_wrk(scenario: Scenario, target: Target, load: LoadOptions, duration_s: int) -> WrkResult:
    """Load ``scenario`` for ``duration_s`` seconds and return what wrk's done() reported."""
    env = os.environ | {"BENCH_METHOD": scenario.method, "BENCH_BODY": scenario.body or ""}
    if scenario.body is None:
        env.pop("BENCH_BODY")
    completed = subprocess.run(
        wrk_command(scenario, target, load, duration_s),
        env=env,
        capture_output=True,
        text=True,
        timeout=duration_s + WRK_GRACE_S,
        check=False,
    )
    line = next((ln for ln in completed.stdout.splitlines() if ln.startswith("BENCH_JSON ")), "")
    if completed.returncode != 0 or not line:
        raise RuntimeError(
            f"wrk failed ({completed.returncode}): {completed.stderr[-2000:]}"
            f"{completed.stdout[-2000:]}"
        )
    report = json.loads(line.removeprefix("BENCH_JSON "))
    return WrkResult(
        rps=report["requests"] / (report["duration_us"] / 1e6),
        p50_ms=report["p50_us"] / 1000,
        p99_ms=report["p99_us"] / 1000,
        non_2xx=report["status"],
        socket_errors=sum(report[k] for k in ("connect", "read", "write", "timeout")),
    )


def measure(scenario: Scenario, target: Target, load: LoadOptions) -> WrkResult:
    """Wait for a quiet host, warm ``scenario`` up, then measure it once."""
    if load.quiet_wait_s:
        busy = wait_for_quiet(foreign_load, load.quiet_wait_s, QUIET_CORES)
        if busy >= QUIET_CORES:
            log(
                f"  host still busy after {load.quiet_wait_s}s (other processes: {busy:.2f} "
                "cores); going on"
            )
    if load.warmup_s:
        run_wrk(scenario, target, load, load.warmup_s)
    before, started = foreign_cpu_ticks(), time.monotonic()
    result = run_wrk(scenario, target, load, load.seconds)
    foreign = foreign_cores(before, foreign_cpu_ticks(), time.monotonic() - started)
    return replace(result, foreign_cores=foreign)


# --- foreign load -----------------------------------------------------------------------


def foreign_cpu_ticks() -> dict[int, int]:
    """CPU ticks so far of every process outside the benchmark, by pid."""
    ticks = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, ValueError, IndexError):
            text = stat.read_text()
            command = text[text.index("(") + 1 : text.rindex(")")]
            fields = text[text.rindex(")") + 2 :].split()  # state ppid pgrp ... utime stime
            if int(fields[2]) not in OUR_GROUPS and command not in BENCH_COMMANDS:
                ticks[int(stat.parent.name)] = int(fields[11]) + int(fields[12])
    return ticks


def foreign_cores(before: dict[int, int], after: dict[int, int], elapsed_s: float) -> float:
    """Cores used by foreign processes between two samples (ones that exited are missed)."""
    used = sum(max(0, ticks - before.get(pid, 0)) for pid, ticks in after.items())
    return used / CLOCK_TICKS / max(elapsed_s, 1e-9)


def foreign_load() -> float:
    """Cores foreign processes use over the next second."""
    before = foreign_cpu_ticks()
    time.sleep(1.0)
    return foreign_cores(before, foreign_cpu_ticks(), 1.0)


# --- one backend ------------------------------------------------------------------------


def app_server(
    stack: contextlib.ExitStack, name: str, args: argparse.Namespace, workdir: Path, label: str
) -> Target:
    """The API on a database of its own (from ``--baseline`` when ``label`` is BASE), with
    its completed job."""
    folder = workdir / label
    folder.mkdir()
    env = stack.enter_context(backend(name, folder, args))
    if label == BASE:
        env = env | {"PYTHONPATH": str(args.baseline.resolve())}
        if env.get("RUNPACK_BROKER_URL", "").startswith(REDIS_SERVER):
            # the baseline's rate-limit counters and broker are its own
            env["RUNPACK_BROKER_URL"] = f"{REDIS_SERVER}/{args.redis_db + 1}"
    url = stack.enter_context(
        uvicorn(
            ["--factory", "runpack_api.app:app_from_env"],
            "/health",
            env,
            folder,
            args.workers,
            label,
        )
    )
    return Target(url, make_completed_job(url))


def bench_backend(
    name: str, args: argparse.Namespace, load: LoadOptions
) -> dict[str, list[WrkResult]]:
    """Start the bare server and the API (and its baseline) on backend ``name``; measure
    every scenario, interleaving the API's and the baseline's runs."""
    labels = ["app"] if args.baseline is None else ["app", BASE]
    runs = [("bare", "bare")] + [
        (scenario, label) for scenario in args.scenarios if scenario != "bare" for label in labels
    ]
    results: dict[str, list[WrkResult]] = {row_name(*run): [] for run in runs}
    with contextlib.ExitStack() as stack:
        workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="runpack-bench-")))
        bare_env = stack.enter_context(backend(name, workdir, args))
        bare_url = stack.enter_context(
            uvicorn(
                ["--app-dir", str(BENCH_DIR), "bare_app:app"],
                "/bare",
                bare_env,
                workdir,
                args.workers,
                "bare",
            )
        )
        targets = {"bare": Target(bare_url)}
        targets.update({label: app_server(stack, name, args, workdir, label) for label in labels})
        for scenario_name, label in runs:
            probe(SCENARIOS[scenario_name], targets[label])
        for rep in range(1, args.reps + 1):
            order = runs if rep % 2 else [runs[0], *reversed(runs[1:])]
            for scenario_name, label in order:
                result = measure(SCENARIOS[scenario_name], targets[label], load)
                row = row_name(scenario_name, label)
                results[row].append(result)
                log(
                    f"{name:8} rep {rep}/{args.reps} {row:17} {result.rps:8.0f} req/s "
                    f"p50 {result.p50_ms:6.1f} ms p99 {result.p99_ms:7.1f} ms "
                    f"non-2xx {result.non_2xx} sock err {result.socket_errors} "
                    f"other cpu {result.foreign_cores:.2f}"
                )
    return results


def row_name(scenario: str, label: str) -> str:
    """A table row's name: the scenario, marked when it ran on the baseline."""
    return f"{scenario} (base)" if label == BASE else scenario


# --- report -----------------------------------------------------------------------------


def log(message: str) -> None:
    """Progress, on stderr so stdout holds only the report."""
    harness_log(message, stamp=False, file=sys.stderr)


def table_rows(all_results: dict[str, dict[str, list[WrkResult]]]) -> list[list[str]]:
    """One row per backend and scenario, with the ratio to that backend's bare endpoint."""
    header = ["backend", "scenario", "req/s", "p50 ms", "p99 ms", "non-2xx", "sock err"]
    rows = [[*header, "x bare", "other cpu"]]
    for backend_name, results in all_results.items():
        bare_rps = statistics.median(r.rps for r in results["bare"])
        for scenario, runs in results.items():
            rps = [r.rps for r in runs]
            rows.append(
                [
                    backend_name,
                    scenario,
                    spread(rps, ".0f", bare_single=True),
                    spread([r.p50_ms for r in runs], ".1f", bare_single=True),
                    spread([r.p99_ms for r in runs], ".1f", bare_single=True),
                    str(sum(r.non_2xx for r in runs)),
                    str(sum(r.socket_errors for r in runs)),
                    f"{statistics.median(rps) / bare_rps:.2f}",
                    f"{statistics.median(r.foreign_cores for r in runs):.2f}",
                ]
            )
    return rows


def print_target(all_results: dict[str, dict[str, list[WrkResult]]], workers: int) -> None:
    """Whether cache-hit submit on PostgreSQL reaches TARGET_RATIO of the bare endpoint."""
    results = all_results.get(TARGET_BACKEND, {})
    if TARGET_SCENARIO not in results:
        return
    ratio = statistics.median(r.rps for r in results[TARGET_SCENARIO]) / statistics.median(
        r.rps for r in results["bare"]
    )
    verdict = "MET" if ratio >= TARGET_RATIO else "NOT MET"
    note = "" if workers == 1 else f" (the target is stated for 1 worker; this run used {workers})"
    print(
        f"\ntarget: {TARGET_SCENARIO} on {TARGET_BACKEND} >= {TARGET_RATIO}x bare: "
        f"{ratio:.2f}x -> {verdict}{note}"
    )


def print_before_after(all_results: dict[str, dict[str, list[WrkResult]]]) -> None:
    """Each scenario's median req/s on the current code divided by the baseline's."""
    rows = [["backend", "scenario", "base req/s", "now req/s", "now / base"]]
    for backend_name, results in all_results.items():
        for row, runs in results.items():
            base_runs = results.get(row_name(row, BASE))
            if row == "bare" or base_runs is None:
                continue
            before = statistics.median(r.rps for r in base_runs)
            after = statistics.median(r.rps for r in runs)
            rows.append(
                [backend_name, row, f"{before:.0f}", f"{after:.0f}", f"{after / before:.2f}"]
            )
    if len(rows) > 1:
        print("\nbefore (--baseline) and after (this checkout), interleaved in this run:")
        print_table(rows, style="columns")


def print_header(args: argparse.Namespace, load: LoadOptions) -> None:
    """What was run, on what."""
    print(
        f"Runpack HTTP bench {time.strftime('%Y-%m-%d %H:%M:%S')}: nproc={os.cpu_count()}, "
        f"uvicorn --workers {args.workers} (uvloop, httptools, no access log); "
        f"wrk -t{load.threads} -c{load.connections} -d{load.seconds}s after a "
        f"{load.warmup_s}s warm-up, {args.reps} rep(s), median [min-max]\n"
    )


# --- main -------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    """Run every requested backend, then print the table."""
    args = parse_args(argv)
    raise_on_signals(as_exit=True)  # SIGTERM: every context manager stops its part
    load = LoadOptions(args.threads, args.connections, args.duration, args.warmup, args.quiet_wait)
    all_results: dict[str, dict[str, list[WrkResult]]] = {}
    try:
        for name in args.backends:
            log(f"--- {name}: starting (load average {os.getloadavg()[0]:.2f})")
            all_results[name] = bench_backend(name, args, load)
    except KeyboardInterrupt:
        log("interrupted; every server was stopped")
        return 130
    print_header(args, load)
    print_table(table_rows(all_results), style="columns")
    print_before_after(all_results)
    print_target(all_results, args.workers)
    return 0


if __name__ == "__main__":
    sys.exit(main())

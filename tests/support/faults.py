"""The fault matrix: Runpack's production processes under load while one thing breaks.

Each row starts the production pieces (``runpack api`` x2, ``runpack worker`` x2,
``runpack beat``, ``runpack runner`` x2) on a fresh database of a private PostgreSQL and on
a private Redis (``private_services.py``), submits ``jobs`` ``hello_world`` and ``noop`` jobs
at a steady pace through both APIs, breaks one thing while they are submitted, and waits
until every job is finished or the deadline passes. What a row reports:

- **jobs**: distinct job ids the submits answered (each job has its own parameters);
- **completed**: of those, jobs whose status is ``completed``;
- **lost**: jobs not ``completed`` by the deadline (still pending or running, failed, or
  missing). No fault here may fail a job: ``hello_world`` and ``noop`` never fail on their
  own, and no row takes ``RUNPACK_MAX_ATTEMPTS`` (3) runs from one job, so every failed job
  counts as lost;
- **completed twice**: jobs whose row was written ``completed`` more than once. A trigger on
  the ``jobs`` table of the private database (installed by this harness, not by Runpack)
  appends a line to ``job_completions`` for every write that makes a job completed or
  changes a completed job's result, whichever process wrote it;
- **max to terminal**: the longest time, over the jobs, from the later of its submit and
  the fault's end to its ``finished_at`` (as Runpack recorded it); 0 when every job
  finished before the fault ended;
- the target for that time: ``RUNPACK_HEARTBEAT_TIMEOUT_S`` + 2 x ``RUNPACK_REAP_INTERVAL_S``.

The deadline is the fault's end plus ``SETTLE_S``. A submit that fails (an API process
killed under it, a 5xx, a timeout) is sent again to the other API process, as a client
behind a load balancer would; Runpack's deduplication gives back the job the first try
created, if it created one.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import sqlalchemy as sa
from sqlalchemy.pool import NullPool

from runpack_tasks.jobstore.db import normalize_url
from runpack_tasks.jobstore.schema import upgrade
from tests.support import plain_http
from tests.support.private_services import PrivatePostgres, PrivateRedis
from tests.support.process import start_runpack
from tests.support.server import GENEROUS_RATES, LOOPBACK, Keys
from tests.support.waiting import free_port, wait_for

HEARTBEAT_TIMEOUT_S = 5.0
REAP_INTERVAL_S = 1.0
#: Every job should be finished this long after its fault ended (or after its submit).
TARGET_S = HEARTBEAT_TIMEOUT_S + 2 * REAP_INTERVAL_S
#: How long after the fault's end a row waits for its jobs before counting the rest lost.
SETTLE_S = 90.0
#: A job's run time: ``hello_world`` runs this long (in ten steps), ``noop`` returns at once.
HELLO_SECONDS = 0.1
#: Submits in flight at once (each in its own thread, with its own connections).
SUBMITTERS = 8
#: Pool processes of each worker.
WORKER_CONCURRENCY = 3
#: How long a submit may take before the client gives up on that try.
SUBMIT_TIMEOUT_S = 10.0

AUDIT_SQL = """
CREATE TABLE job_completions (
    job_id varchar(36) NOT NULL,
    claimed_by varchar(64),
    written_at timestamptz NOT NULL DEFAULT clock_timestamp()
);
CREATE FUNCTION record_completion() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO job_completions (job_id, claimed_by) VALUES (NEW.id, NEW.claimed_by);
    RETURN NEW;
END $$;
CREATE TRIGGER job_completed AFTER UPDATE ON jobs FOR EACH ROW
    WHEN (NEW.status = 'completed' AND (
        OLD.status IS DISTINCT FROM 'completed'
        OR OLD.finished_at IS DISTINCT FROM NEW.finished_at
        OR OLD.output_data::text IS DISTINCT FROM NEW.output_data::text))
    EXECUTE FUNCTION record_completion();
CREATE TRIGGER job_inserted_completed AFTER INSERT ON jobs FOR EACH ROW
    WHEN (NEW.status = 'completed') EXECUTE FUNCTION record_completion();
"""


def job_specs(label: str, count: int) -> list[dict[str, Any]]:
    """``count`` distinct jobs, alternately ``hello_world`` (HELLO_SECONDS) and ``noop``."""
    nonce = uuid.uuid4().hex[:8]
    return [
        {
            "job_type": "hello_world",
            "input_params": {"name": f"{label}-{nonce}-{i}", "processing_time": HELLO_SECONDS},
        }
        if i % 2 == 0
        else {"job_type": "noop", "input_params": {"row": label, "nonce": nonce, "i": i}}
        for i in range(count)
    ]


# --- the processes of one row ------------------------------------------------------------


@dataclass
class Deployment:
    """The production pieces of one row, each in its own process group."""

    env: dict[str, str]
    folder: Path
    database_url: str
    keys: Keys
    api_ports: list[int]
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    runner_ids: dict[str, str] = field(default_factory=dict)

    @property
    def api_urls(self) -> list[str]:
        """Both API processes' base URLs."""
        return [f"http://{LOOPBACK}:{port}" for port in self.api_ports]

    def spawn(self, name: str, *args: str) -> subprocess.Popen[bytes]:
        """Start ``runpack <args>`` as ``name`` (replacing a dead one of that name)."""
        log = self.folder / f"{name}.log"
        process = start_runpack(*args, env=self.env, cwd=self.folder, log=log)
        self.processes[name] = process
        return process

    def start_api(self, index: int) -> None:
        """API process ``api<index+1>`` on its port."""
        port = str(self.api_ports[index])
        self.spawn(f"api{index + 1}", "api", "--host", LOOPBACK, "--port", port, "--no-access-log")

    def start_worker(self, name: str) -> None:
        """A worker serving hello_world and noop, its runner id ``<name>@faults``."""
        self.spawn(
            name,
            *("worker", "--types", "hello_world,noop", "--name", f"{name}@faults"),
            *("--concurrency", str(WORKER_CONCURRENCY)),
        )

    def start_runner(self, name: str, api_index: int) -> None:
        """An HTTP runner speaking to one API process."""
        self.spawn(
            name,
            *("runner", "--url", self.api_urls[api_index], "--types", "hello_world,noop"),
            *("--state-file", str(self.folder / f"{name}.json"), "--name", name),
            *("--long-poll", "5"),
        )

    def api_healthy(self, index: int) -> bool:
        """Whether that API process answers /health with its database reachable."""
        try:
            answer = plain_http.get(f"{self.api_urls[index]}/health", timeout=2)
        except httpx.HTTPError:
            return False
        return bool(answer.json().get("database") == "ok")

    def start(self) -> None:
        """Everything; returns once the APIs answer and the workers and runners registered."""
        for index in range(len(self.api_ports)):
            self.start_api(index)
        for name in ("worker1", "worker2"):
            self.start_worker(name)
        self.spawn("beat", "beat")
        wait_for(
            lambda: all(self.api_healthy(i) for i in range(len(self.api_ports))),
            timeout_s=90,
            interval_s=0.2,
            what="both API processes",
        )
        self.start_runner("runner1", 0)
        self.start_runner("runner2", 1)
        for name in ("runner1", "runner2"):
            self.runner_ids[name] = wait_for(
                lambda name=name: self._saved_runner_id(name), timeout_s=60, what=name
            )
        wait_for(self._workers_registered, timeout_s=90, interval_s=0.2, what="both workers")

    def _saved_runner_id(self, name: str) -> str | None:
        with contextlib.suppress(FileNotFoundError, ValueError):
            runner_id = json.loads((self.folder / f"{name}.json").read_text()).get("runner_id")
            return str(runner_id) if runner_id else None
        return None

    def _workers_registered(self) -> bool:
        with database(self.database_url) as conn:
            ids = set(conn.execute(sa.text("SELECT id FROM runners")).scalars())
        return {"worker1@faults", "worker2@faults"} <= ids

    def kill(self, name: str) -> None:
        """SIGKILL the process and its group (a worker's pool too), like a crash."""
        process = self.processes[name]
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()

    def signal_group(self, name: str, signum: int) -> None:
        """Send ``signum`` to the process's group."""
        os.killpg(self.processes[name].pid, signum)

    def stop_all(self) -> None:
        """SIGKILL everything (a row is over; nothing it does on the way out is measured)."""
        for name in list(self.processes):
            self.kill(name)

    def log_of(self, name: str) -> str:
        """What that process printed."""
        return (self.folder / f"{name}.log").read_text(errors="replace")


@contextmanager
def database(url: str) -> Iterator[sa.Connection]:
    """A connection of its own (no pool: the server may have restarted since the last)."""
    engine = sa.create_engine(normalize_url(url), poolclass=NullPool)
    try:
        with engine.connect() as conn:
            yield conn
    finally:
        engine.dispose()


def active_job_of(deployment: Deployment, runner_id: str) -> str | None:
    """A job that runner holds claimed or in progress now, if any."""
    with database(deployment.database_url) as conn:
        found = conn.execute(
            sa.text(
                "SELECT id FROM jobs WHERE claimed_by = :runner"
                " AND status IN ('claimed', 'in_progress') LIMIT 1"
            ),
            {"runner": runner_id},
        ).scalar()
    return str(found) if found else None


def wait_mid_job(deployment: Deployment, runner_id: str) -> str:
    """Wait until that runner (or worker) runs a job; its id."""
    return wait_for(
        lambda: active_job_of(deployment, runner_id),
        timeout_s=30,
        interval_s=0.01,
        what=f"{runner_id} to run a job",
    )


# --- submitting ----------------------------------------------------------------------------


@dataclass
class Submitted:
    """One job's submit, as the client saw it."""

    job_id: str
    first_try_at: float
    tries: int
    #: The HTTP status of the try that succeeded (201 created, 200 it existed).
    status_code: int
    #: When that try was answered, and by which API process (0 or 1).
    answered_at: float
    api: int


class Submitter:
    """Submits the jobs at a steady pace over ``window_s``, alternating API processes;
    a failed try goes to the other one."""

    def __init__(self, urls: list[str], key: str, specs: list[dict[str, Any]], window_s: float):
        self.urls = urls
        self.key = key
        self.specs = specs
        self.window_s = window_s
        self.results: list[Submitted | None] = [None] * len(specs)
        self.errors: list[str] = []
        self._thread = threading.Thread(target=self._run, name="submitter", daemon=True)
        self._local = threading.local()

    def start(self) -> None:
        """Begin submitting in the background."""
        self._started = time.time()
        self._thread.start()

    def join(self) -> None:
        """Wait until every job was submitted (or given up on)."""
        self._thread.join()

    def _client(self, index: int) -> httpx.Client:
        clients = getattr(self._local, "clients", None)
        if clients is None:
            clients = self._local.clients = [
                httpx.Client(
                    base_url=url,
                    headers={"Authorization": f"Bearer {self.key}"},
                    timeout=SUBMIT_TIMEOUT_S,
                    verify=plain_http.TLS,
                )
                for url in self.urls
            ]
        return clients[index]  # type: ignore[no-any-return]

    def _run(self) -> None:
        with ThreadPoolExecutor(SUBMITTERS) as pool:
            list(pool.map(self._submit, range(len(self.specs))))

    def _submit(self, i: int) -> None:
        due = self._started + i * self.window_s / len(self.specs)
        time.sleep(max(0.0, due - time.time()))
        first_try_at = time.time()
        give_up_at = first_try_at + SETTLE_S
        tries = 0
        while time.time() < give_up_at:
            api = (i + tries) % len(self.urls)
            tries += 1
            try:
                answer = self._client(api).post("/api/jobs/submit", json=self.specs[i])
            except httpx.HTTPError:
                time.sleep(0.2)
                continue
            if answer.status_code in (200, 201):
                self.results[i] = Submitted(
                    answer.json()["job_id"],
                    first_try_at,
                    tries,
                    answer.status_code,
                    time.time(),
                    api,
                )
                return
            if answer.status_code < 500 and answer.status_code != 429:
                self.errors.append(f"job {i}: HTTP {answer.status_code} {answer.text[:200]}")
                return
            time.sleep(0.2)
        self.errors.append(f"job {i}: no submit answered within {SETTLE_S} s")


# --- the faults ----------------------------------------------------------------------------


@dataclass
class Services:
    """The private PostgreSQL and Redis every row runs on."""

    postgres: PrivatePostgres
    redis: PrivateRedis


@dataclass
class Context:
    """What a fault can act on, and what it noted."""

    deployment: Deployment
    services: Services
    notes: list[str] = field(default_factory=list)
    #: Checks run once the row's jobs are finished: each returns a note, or raises.
    checks: list[Callable[[], str]] = field(default_factory=list)


def kill_worker_mid_job(context: Context) -> None:
    """SIGKILL worker1 while it runs a job, restart it; then the same to worker2 (as soon
    as it runs a job: with a short load, later there may be none left)."""
    deployment = context.deployment
    for name in ("worker1", "worker2"):
        job_id = wait_mid_job(deployment, f"{name}@faults")
        deployment.kill(name)
        context.notes.append(f"{name} killed running {job_id[:8]}")
        deployment.start_worker(name)


def kill_runner_mid_job(context: Context) -> None:
    """SIGKILL runner1 while it runs a job, then start it again."""
    deployment = context.deployment
    job_id = wait_mid_job(deployment, deployment.runner_ids["runner1"])
    deployment.kill("runner1")
    context.notes.append(f"runner1 killed running {job_id[:8]}")
    deployment.start_runner("runner1", 0)


def restart_redis(context: Context) -> None:
    """Kill Redis and start an empty one on its port (no persistence: messages gone)."""
    context.services.redis.restart()


def pause_redis(context: Context) -> None:
    """SIGSTOP Redis for 20 s."""
    context.services.redis.pause(20)


def restart_postgres(context: Context) -> None:
    """``pg_ctl restart -m fast`` while jobs are submitted and run."""
    context.services.postgres.restart()


def pause_postgres(context: Context) -> None:
    """SIGSTOP PostgreSQL (every backend) for 10 s."""
    context.services.postgres.pause(10)


def kill_api_mid_submit(context: Context) -> None:
    """SIGKILL api1 while submits go to it; start it again once it is gone."""
    deployment = context.deployment
    deployment.kill("api1")
    deployment.start_api(0)
    wait_for(lambda: deployment.api_healthy(0), timeout_s=60, interval_s=0.1, what="api1 back")


def partition_runner(context: Context) -> None:
    """SIGSTOP runner1 mid-job past the heartbeat timeout, then SIGCONT: its late report
    must be refused and the job completed once, by someone else."""
    deployment = context.deployment
    runner_id = deployment.runner_ids["runner1"]
    job_id = wait_mid_job(deployment, runner_id)
    deployment.signal_group("runner1", signal.SIGSTOP)
    time.sleep(HEARTBEAT_TIMEOUT_S + 2 * REAP_INTERVAL_S + 1)
    deployment.signal_group("runner1", signal.SIGCONT)

    def refused() -> str:
        line = wait_for(
            lambda: next(
                (
                    line
                    for line in deployment.log_of("runner1").splitlines()
                    if job_id in line and "HTTP 409" in line
                ),
                None,
            ),
            timeout_s=30,
            what=f"runner1's late report of {job_id} to be refused",
        )
        with database(deployment.database_url) as conn:
            holder = conn.execute(
                sa.text("SELECT claimed_by FROM jobs WHERE id = :id"), {"id": job_id}
            ).scalar()
        assert holder != runner_id, f"{job_id} was completed by the partitioned runner"
        route = "complete" if ": complete answered" in line else "late report"
        return f"runner1's {route} of {job_id[:8]} refused (409), done by another"

    context.checks.append(refused)


#: How long beat is down in its row of the matrix.
BEAT_DOWN_S = 60


def stop_beat(context: Context) -> None:
    """Beat down for ``BEAT_DOWN_S``, then back: the outage is the fault, so it is timed,
    not waited on."""
    context.deployment.kill("beat")
    time.sleep(BEAT_DOWN_S)
    context.deployment.spawn("beat", "beat")


@dataclass(frozen=True)
class Fault:
    """One row of the matrix."""

    name: str
    act: Callable[[Context], None]
    #: Seconds from the first submit to the fault.
    after_s: float = 2.0


FAULTS = [
    Fault("worker kill -9 mid-job, twice", kill_worker_mid_job),
    Fault("runner kill -9 mid-job", kill_runner_mid_job),
    Fault("Redis restarted, empty", restart_redis),
    Fault("Redis paused 20 s", pause_redis),
    Fault("PostgreSQL restarted", restart_postgres),
    Fault("PostgreSQL paused 10 s", pause_postgres),
    Fault("API kill -9 mid-submit", kill_api_mid_submit),
    Fault("runner partitioned", partition_runner),
    Fault("beat down 60 s", stop_beat),
]
#: The faults the test suite runs (with fewer jobs).
QUICK_FAULTS = [FAULTS[0], FAULTS[2], FAULTS[4]]


# --- one row -------------------------------------------------------------------------------


@dataclass
class Row:
    """What one fault did to its jobs."""

    fault: str
    jobs: int
    completed: int
    lost: int
    completed_twice: int
    max_to_terminal_s: float | None
    notes: list[str]
    #: Why jobs were lost or duplicated, for the report (ids and states).
    problems: list[str]

    @property
    def ok(self) -> bool:
        """No job lost and none completed twice."""
        return self.lost == 0 and self.completed_twice == 0 and not self.problems

    @property
    def within_target(self) -> bool:
        """Every job finished within TARGET_S of its fault's end (or its submit)."""
        return self.max_to_terminal_s is not None and self.max_to_terminal_s <= TARGET_S


def fresh_database(services: Services, label: str) -> str:
    """A new database on the private server, migrated, with the completion audit."""
    name = f"faults_{label}_{uuid.uuid4().hex[:6]}"
    with database(services.postgres.url()) as conn:
        conn.execution_options(isolation_level="AUTOCOMMIT").execute(
            sa.text(f'CREATE DATABASE "{name}"')
        )
    url = services.postgres.url(name)
    upgrade(url)
    with database(url) as conn:
        conn.exec_driver_sql(AUDIT_SQL)
        conn.commit()
    return url


def row_env(database_url: str, redis_url: str, keys: Keys) -> dict[str, str]:
    """The environment of every process of a row."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("RUNPACK_")}
    env.update(
        {
            **keys.env(),
            **GENEROUS_RATES,
            "RUNPACK_DATABASE_URL": database_url,
            "RUNPACK_BROKER_URL": redis_url,
            "RUNPACK_HEARTBEAT_TIMEOUT_S": str(HEARTBEAT_TIMEOUT_S),
            "RUNPACK_REAP_INTERVAL_S": str(REAP_INTERVAL_S),
        }
    )
    return env


def _finished(url: str, job_ids: list[str]) -> dict[str, Any]:
    with database(url) as conn:
        rows = conn.execute(
            sa.text(
                "SELECT id, status, finished_at, attempts, created_at, claimed_at"
                " FROM jobs WHERE id = ANY(:ids)"
            ),
            {"ids": job_ids},
        ).all()
    return {row.id: row for row in rows}


def _all_finished(url: str, job_ids: list[str]) -> bool:
    rows = _finished(url, job_ids).values()
    return all(row.status in ("completed", "failed", "expired") for row in rows)


@contextmanager
def deployed(services: Services, folder: Path, label: str) -> Iterator[Deployment]:
    """A started deployment on a fresh database and an empty Redis; killed afterwards."""
    folder.mkdir(parents=True, exist_ok=True)
    services.redis.flush()
    url = fresh_database(services, label)
    keys = Keys()
    deployment = Deployment(
        row_env(url, services.redis.url, keys), folder, url, keys, [free_port(), free_port()]
    )
    try:
        deployment.start()
        yield deployment
    finally:
        deployment.stop_all()


def run_row(
    fault: Fault,
    services: Services,
    deployment: Deployment,
    jobs: int,
    window_s: float,
    label: str,
) -> Row:
    """Submit ``jobs`` over ``window_s`` while ``fault`` happens, wait for them, count."""
    url = deployment.database_url
    context = Context(deployment, services)
    started_ms = int(time.time() * 1000)
    submitter = Submitter(
        deployment.api_urls, deployment.keys.submit, job_specs(label, jobs), window_s
    )
    submitter.start()
    time.sleep(fault.after_s)
    fault.act(context)
    fault_ended_at = time.time()
    submitter.join()
    submitted = [s for s in submitter.results if s is not None]
    job_ids = sorted({s.job_id for s in submitted})
    with contextlib.suppress(AssertionError):
        wait_for(
            lambda: _all_finished(url, job_ids),
            timeout_s=max(0.0, fault_ended_at + SETTLE_S - time.time()),
            interval_s=0.5,
            what="every job to finish",
        )
    notes = [*context.notes, *(check() for check in context.checks)]
    return _count(fault, url, submitter, submitted, job_ids, fault_ended_at, started_ms, notes)


def _count(
    fault: Fault,
    url: str,
    submitter: Submitter,
    submitted: list[Submitted],
    job_ids: list[str],
    fault_ended_at: float,
    started_ms: int,
    notes: list[str],
) -> Row:
    finished = _finished(url, job_ids)
    with database(url) as conn:
        twice = conn.execute(
            sa.text(
                "SELECT job_id, count(*) AS n FROM job_completions WHERE job_id = ANY(:ids)"
                " GROUP BY job_id HAVING count(*) > 1"
            ),
            {"ids": job_ids},
        ).all()
        stored = int(
            conn.execute(
                sa.text("SELECT count(*) FROM jobs WHERE created_at >= :started"),
                {"started": started_ms},
            ).scalar_one()
        )
    lost = [job_id for job_id in job_ids if _status(finished, job_id) != "completed"]
    problems = [*submitter.errors]
    problems += [f"lost {job_id}: {_status(finished, job_id)}" for job_id in lost[:5]]
    problems += [f"{row.job_id} completed {row.n} times" for row in twice]
    if len(job_ids) != len(submitter.specs) or stored != len(job_ids):
        problems.append(
            f"{len(submitter.specs)} jobs sent, {len(job_ids)} job ids answered, {stored} stored"
        )
    first_try = {s.job_id: s.first_try_at for s in submitted}
    delays = {
        job_id: max(0.0, job.finished_at / 1000 - max(first_try[job_id], fault_ended_at))
        for job_id, job in finished.items()
        if job.status == "completed" and job.finished_at is not None
    }
    if delays:
        slowest = finished[max(delays, key=lambda job_id: delays[job_id])]
        notes.append(
            f"slowest {slowest.id[:8]}: {slowest.attempts} attempt(s), created"
            f" {slowest.created_at / 1000 - fault_ended_at:+.1f} s, claimed"
            f" {slowest.claimed_at / 1000 - fault_ended_at:+.1f} s, finished"
            f" {slowest.finished_at / 1000 - fault_ended_at:+.1f} s from the fault's end"
        )
    slowest_submit = max(submitted, key=lambda s: s.answered_at - s.first_try_at, default=None)
    if slowest_submit is not None and slowest_submit.answered_at - slowest_submit.first_try_at > 1:
        notes.append(
            f"slowest submit: {slowest_submit.answered_at - slowest_submit.first_try_at:.1f} s"
            f" ({slowest_submit.tries} tries, answered by api{slowest_submit.api + 1})"
        )
    retried = [s for s in submitted if s.tries > 1]
    if retried:
        existing = sum(1 for s in retried if s.status_code == 200)
        notes.append(
            f"{len(retried)} submits retried, {existing} of them answered with the job"
            " their first try created"
        )
    return Row(
        fault=fault.name,
        jobs=len(job_ids),
        completed=sum(1 for job in finished.values() if job.status == "completed"),
        lost=len(lost) + (len(submitter.specs) - len(job_ids)),
        completed_twice=len(twice),
        max_to_terminal_s=max(delays.values(), default=None),
        notes=notes,
        problems=problems,
    )


def _status(finished: dict[str, Any], job_id: str) -> str:
    job = finished.get(job_id)
    return "missing" if job is None else str(job.status)


# --- the matrix ----------------------------------------------------------------------------


@contextmanager
def private_services(folder: Path) -> Iterator[Services]:
    """A private PostgreSQL and Redis for the whole matrix."""
    postgres = PrivatePostgres()
    redis_server = PrivateRedis(folder / "redis")
    postgres.start()
    try:
        redis_server.start()
        try:
            yield Services(postgres, redis_server)
        finally:
            redis_server.kill()
    finally:
        postgres.stop()


def run_matrix(
    faults: list[Fault],
    folder: Path,
    jobs: int,
    window_s: float,
    report: Callable[[Row], None] = lambda _row: None,
    fresh_per_row: bool = True,
) -> list[Row]:
    """Every fault's row, one after the other, on one private PostgreSQL and Redis; each
    row on a deployment of its own (``fresh_per_row``), or all on one."""
    rows = []
    with private_services(folder) as services, contextlib.ExitStack() as stack:
        shared = None if fresh_per_row else stack.enter_context(deployed(services, folder, "all"))
        for number, fault in enumerate(faults, 1):
            label = f"r{number}"
            with contextlib.ExitStack() as row_stack:
                deployment = shared or row_stack.enter_context(
                    deployed(services, folder / f"row{number}", label)
                )
                row = run_row(fault, services, deployment, jobs, window_s, label)
            report(row)
            rows.append(row)
    return rows


def format_table(rows: list[Row]) -> str:
    """The rows as a Markdown table."""
    lines = [
        "| fault | jobs | completed | lost | completed twice | max to terminal | within target |",
        "|---|---:|---:|---:|---:|---:|---|",
    ]
    for row in rows:
        to_terminal = "-" if row.max_to_terminal_s is None else f"{row.max_to_terminal_s:.1f} s"
        lines.append(
            f"| {row.fault} | {row.jobs} | {row.completed} | {row.lost} | "
            f"{row.completed_twice} | {to_terminal} | "
            f"{'yes' if row.within_target else 'no'} (≤ {TARGET_S:.0f} s) |"
        )
    return "\n".join(lines)

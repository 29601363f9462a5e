"""Server commands: ``runpack up`` (everything, embedded), and the production pieces
``api``, ``worker``, ``beat`` and ``flower``, one process each."""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
import signal
import socket
import subprocess
import sys
import uuid
from collections.abc import Callable
from types import FrameType
from typing import Annotated, Any

import typer

from runpack_api.cli.common import (
    KEYS_FILE,
    HostOption,
    PortOption,
    console,
    installed_job_types,
    load_settings,
    open_database,
)
from runpack_tasks.settings import DEFAULT_API_HOST, DEFAULT_API_PORT

KEY_NAMES = ("RUNPACK_SUBMIT_API_KEY", "RUNPACK_RUNNER_API_KEY", "RUNPACK_ADMIN_API_KEY")
#: How long ``up`` gives its worker and beat to stop before it kills them.
CHILD_STOP_TIMEOUT_S = 20

#: Celery's loggers of "Task ... received" and "Task ... succeeded" (failures are errors).
PER_TASK_LOGGERS = ("celery.worker.strategy", "celery.app.trace")

TypesOption = Annotated[
    str | None,
    typer.Option("--types", help="Comma-separated job types (default: every installed plugin)."),
]


#: The API's ASGI app, made by uvicorn from the environment's settings.
API_APP = "runpack_api.app:app_from_env"


def _uvicorn_options(host: str, port: int, access_log: bool) -> dict[str, Any]:
    return {
        "factory": True,
        "host": host,
        "port": port,
        "proxy_headers": False,  # the API decides itself which proxies to trust
        "log_level": "info",
        "access_log": access_log,
    }


def _serve_api(host: str, port: int, workers: int, access_log: bool = True) -> None:
    """uvicorn serving the API; the caller has opened (and migrated) the database."""
    import uvicorn

    uvicorn.run(API_APP, workers=workers, **_uvicorn_options(host, port, access_log))


def _serve_api_here(host: str, port: int, on_stop: Callable[[], None]) -> None:
    """``_serve_api`` in this process, calling ``on_stop`` as soon as a stop signal arrives,
    before the API finishes its requests and shuts down, so that what it stops stops
    meanwhile."""
    import uvicorn
    from uvicorn.config import STARTUP_FAILURE

    class Server(uvicorn.Server):
        def handle_exit(self, sig: int, frame: FrameType | None) -> None:
            on_stop()
            super().handle_exit(sig, frame)

    server = Server(uvicorn.Config(API_APP, **_uvicorn_options(host, port, access_log=True)))
    with contextlib.suppress(KeyboardInterrupt):  # as uvicorn.run: Ctrl-C is a normal stop
        server.run()
    if not server.started:  # as uvicorn.run: the port was taken, or the app did not start
        sys.exit(STARTUP_FAILURE)


def _ensure_keys() -> None:
    """Fill unset API keys from ./runpack.keys, generating that file on first use."""
    if all(os.environ.get(name) for name in KEY_NAMES):
        return
    saved: dict[str, str] = {}
    if KEYS_FILE.exists():
        for line in KEYS_FILE.read_text().splitlines():
            name, _, value = line.partition("=")
            if name in KEY_NAMES and value:
                saved[name] = value
    missing = [name for name in KEY_NAMES if name not in saved]
    if missing:
        saved.update({name: secrets.token_urlsafe(24) for name in missing})
        KEYS_FILE.write_text("".join(f"{name}={saved[name]}\n" for name in KEY_NAMES))
        KEYS_FILE.chmod(0o600)
    for name in KEY_NAMES:
        os.environ.setdefault(name, saved[name])


def _start_child(*args: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-m", "runpack_api.cli", *args])


def _signal_children(children: list[subprocess.Popen[bytes]]) -> None:
    """SIGTERM to each child still running (a warm shutdown; a second one changes nothing)."""
    for child in children:
        if child.poll() is None:
            child.send_signal(signal.SIGTERM)


def _stop_children(children: list[subprocess.Popen[bytes]]) -> None:
    _signal_children(children)
    for child in children:
        try:
            child.wait(timeout=CHILD_STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()


def _exit_on_sigterm(_signum: int, _frame: FrameType | None) -> None:
    """SIGTERM to ``runpack up`` alone (a supervisor's stop, ``kill``): uvicorn shuts the
    API down, then raises the signal again; exiting here goes through ``up``'s ``finally``,
    so the worker and beat stop too instead of running on as orphans."""
    raise SystemExit(0)


def up(host: HostOption = DEFAULT_API_HOST, port: PortOption = DEFAULT_API_PORT) -> None:
    """Everything on this machine, no server to install: API, a worker for every
    installed job type, and beat, on SQLite and the filesystem broker."""
    _ensure_keys()
    settings = load_settings()
    url = f"http://{host}:{port}"
    console.print(f"[bold]Runpack[/bold] on {url}  (API docs: {url}/docs)")
    for role in ("submit", "runner", "admin"):
        key = getattr(settings, f"{role}_api_key")
        console.print(f"  {role:<6} key: {key.get_secret_value()}", highlight=False)
    if KEYS_FILE.exists():
        console.print(f"  keys are kept in {KEYS_FILE.resolve()}")

    open_database(settings, migrate=True)
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    children = [_start_child("worker"), _start_child("beat")]
    try:
        # the worker and beat stop while the API finishes its requests, not after
        _serve_api_here(host, port, on_stop=lambda: _signal_children(children))
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)  # a second one does not cut this short
        _stop_children(children)


def api(
    host: HostOption = DEFAULT_API_HOST,
    port: PortOption = DEFAULT_API_PORT,
    workers: Annotated[int, typer.Option(help="uvicorn worker processes.", min=1)] = 1,
    access_log: Annotated[
        bool, typer.Option(help="Log every request (a proxy in front may log them instead).")
    ] = True,
) -> None:
    """Serve the HTTP API (migrates the database first)."""
    open_database(load_settings(), migrate=True)
    _serve_api(host, port, workers, access_log)


def worker(
    types: TypesOption = None,
    concurrency: Annotated[
        int | None, typer.Option(help="Pool processes or threads (default: CPU count).", min=1)
    ] = None,
    pool: Annotated[str, typer.Option(help="Celery pool: prefork, threads or solo.")] = "prefork",
    name: Annotated[str | None, typer.Option(help="Node name (default: unique).")] = None,
    loglevel: Annotated[
        str,
        typer.Option(
            help="DEBUG also logs every task received and finished (the job store records "
            "each job anyway; those lines cost about half a millisecond per job)."
        ),
    ] = "INFO",
) -> None:
    """A Celery worker consuming exactly the given job types' queues."""
    from runpack_tasks.celery_app import make_celery
    from runpack_tasks.routing import queue_for

    settings = load_settings()
    job_types = installed_job_types(types)
    open_database(settings, migrate=False)
    app = make_celery(settings)
    node = name or f"runpack-{uuid.uuid4().hex[:8]}@{socket.gethostname()}"
    app.conf.runpack_job_types = job_types
    app.conf.runpack_runner_id = node
    argv = [
        "worker",
        f"--queues={','.join(queue_for(t) for t in job_types)}",
        f"--hostname={node}",
        f"--pool={pool}",
        f"--loglevel={loglevel.upper()}",
        "--without-mingle",
    ]
    if loglevel.upper() != "DEBUG":
        for logger in PER_TASK_LOGGERS:
            logging.getLogger(logger).setLevel(logging.WARNING)
    if concurrency:
        argv.append(f"--concurrency={concurrency}")
    app.worker_main(argv)


def beat() -> None:
    """Celery beat: reaps stale claims and publishes jobs whose message is missing.
    A second one idles until the first stops."""
    from runpack_tasks.beat import RunpackScheduler
    from runpack_tasks.celery_app import make_celery

    settings = load_settings()
    open_database(settings, migrate=False)
    app = make_celery(settings)
    app.Beat(scheduler=RunpackScheduler, loglevel="INFO").run()


def flower(
    port: Annotated[int, typer.Option(help="Port to listen on.", min=1, max=65535)] = 5555,
    host: HostOption = "127.0.0.1",
) -> None:
    """Flower, the live view of the Celery side (HTTP basic auth: admin / the admin key)."""
    from runpack_tasks.celery_app import make_celery

    settings = load_settings()
    assert settings.admin_api_key is not None
    app = make_celery(settings)
    app.start(
        [
            "flower",
            f"--port={port}",
            f"--address={host}",
            f"--basic-auth=admin:{settings.admin_api_key.get_secret_value()}",
        ]
    )


def register(app: typer.Typer) -> None:
    """Add the server commands to ``app``."""
    for command in (up, api, worker, beat, flower):
        app.command()(command)

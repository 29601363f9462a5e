"""Client commands: ``runner`` (an HTTP runner), ``submit``, ``status``, ``cancel``, ``jobs``,
``runners``, ``stats``. URL and keys come from the environment or flags."""

from __future__ import annotations

import contextlib
import json
import logging
import socket
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Annotated, Any

import orjson
import typer
from pydantic import BaseModel
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskProgressColumn,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table

from runpack_api.cli.common import (
    KEYS_FILE,
    console,
    fail,
    installed_job_types,
    load_settings,
    warn,
)
from runpack_tasks.settings import DEFAULT_API_URL

out = Console(soft_wrap=True)

UrlOption = Annotated[str, typer.Option("--url", envvar="RUNPACK_URL", help="The API's URL.")]
SubmitKeyOption = Annotated[
    str | None, typer.Option("--key", envvar="RUNPACK_SUBMIT_API_KEY", help="The submit key.")
]
AdminKeyOption = Annotated[
    str | None,
    typer.Option(
        "--key",
        envvar=["RUNPACK_ADMIN_API_KEY", "RUNPACK_RUNNER_API_KEY"],
        help="The admin key (the runner key can read too).",
    ),
]
AdminWriteKeyOption = Annotated[
    str | None, typer.Option("--key", envvar="RUNPACK_ADMIN_API_KEY", help="The admin key.")
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON, for scripts.")]

#: Exit code when the job failed or expired (0: completed; 2: a usage or API error).
EXIT_JOB_FAILED = 1

#: Where each role's key comes from, as the "no key" error names it.
KEY_SOURCES = {
    "submit": "RUNPACK_SUBMIT_API_KEY",
    "admin": "RUNPACK_ADMIN_API_KEY (or RUNPACK_RUNNER_API_KEY, which can read)",
    "admin write": "RUNPACK_ADMIN_API_KEY",
    "runner": "RUNPACK_RUNNER_API_KEY",
}


def require_key(key: str | None, role: str) -> str:
    """``key``, or exit 2 with one line saying where a ``role`` key comes from."""
    if key:
        return key
    raise fail(
        f"no {role} key given: set {KEY_SOURCES[role]} or pass --key; the keys of "
        f"'runpack up' are in {KEYS_FILE} where it ran: export $(cat {KEYS_FILE})"
    )


@contextlib.contextmanager
def api_errors() -> Iterator[None]:
    """Turn the client's errors into one line on stderr and exit code 2."""
    from runpack_api.client import RunpackAPIError, RunpackConnectionError

    try:
        yield
    except RunpackConnectionError as exc:
        raise fail(f"no Runpack API at {exc.url}: {exc.reason}") from None
    except RunpackAPIError as exc:
        raise fail(exc.message) from None


def _print_json(value: BaseModel | dict[str, Any]) -> None:
    data = value.model_dump(mode="json") if isinstance(value, BaseModel) else value
    out.print_json(json.dumps(data), highlight=False)


def _pairs(pairs: list[str]) -> dict[str, Any]:
    """``key=value`` pairs; a value is JSON if it parses, else text."""
    params: dict[str, Any] = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        if not sep or not key:
            raise ValueError(f"{pair!r} is not key=value")
        try:
            params[key] = json.loads(raw)
        except ValueError:
            params[key] = raw
    return params


def parse_params(pairs: list[str], params_file: Path | None) -> list[dict[str, Any]]:
    """The parameters of each job to submit: the file's JSON object (one job), or its JSON
    lines (one object a line, one job each; blank lines skipped), else none; ``key=value``
    pairs (a value is JSON if it parses, else text) are set over each."""
    given = _pairs(pairs)
    if params_file is None:
        return [given]
    text = params_file.read_text()
    try:
        whole = json.loads(text)
    except ValueError:
        whole = None
    if isinstance(whole, dict):
        return [{**whole, **given}]
    jobs = []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            loaded = orjson.loads(line)
        except orjson.JSONDecodeError as exc:
            raise ValueError(f"{params_file} line {number} is not JSON: {exc}") from None
        if not isinstance(loaded, dict):
            raise ValueError(f"{params_file} line {number} is not a JSON object")
        jobs.append({**loaded, **given})
    if not jobs:
        raise ValueError(f"{params_file} holds no JSON object")
    return jobs


def runner(
    url: UrlOption = DEFAULT_API_URL,
    types: Annotated[
        str | None,
        typer.Option(
            "--types", help="Comma-separated job types (default: every installed plugin)."
        ),
    ] = None,
    name: Annotated[str | None, typer.Option(help="Shown in the admin views.")] = None,
    state_file: Annotated[Path, typer.Option(help="Keeps the runner id across restarts.")] = Path(
        "runpack-runner.json"
    ),
    key: Annotated[
        str | None, typer.Option("--key", envvar="RUNPACK_RUNNER_API_KEY", help="The runner key.")
    ] = None,
    long_poll: Annotated[
        float,
        typer.Option(
            min=0, max=30, help="Seconds a poll may wait for a job; 0 polls every --poll-interval."
        ),
    ] = 25,
    poll_interval: Annotated[
        float, typer.Option(min=0.05, help="Seconds between plain polls (with --long-poll 0).")
    ] = 1.0,
) -> None:
    """An HTTP runner: claims jobs of its types over HTTP and runs their plugins here."""
    import httpx

    from runpack_api.client import check_api_url, transport_failure
    from runpack_api.runner_client import HttpRunner, ReleaseRequested, RunnerConfig, ServerRefused
    from runpack_tasks.report_limits import ReportLimits

    key = require_key(key, "runner")
    with api_errors():
        check_api_url(url)
    job_types = installed_job_types(types)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", stream=sys.stderr)
    logging.getLogger("httpx").setLevel(
        logging.WARNING
    )  # one line per runner event, not per request
    config = RunnerConfig(
        url=url,
        key=key,
        job_types=job_types,
        name=name or f"{socket.gethostname()}-runner",
        state_file=state_file,
        long_poll_s=long_poll,
        poll_interval_s=poll_interval,
        limits=ReportLimits.from_settings(load_settings(require_keys=False)),
    )
    http_runner = HttpRunner(config)
    http_runner.install_signal_handlers()
    try:
        with contextlib.suppress(ReleaseRequested):  # a signal while idle, or the second one
            http_runner.serve()
    except ServerRefused as exc:
        raise fail(str(exc)) from None
    except httpx.TransportError as exc:
        raise fail(f"no Runpack API at {url}: {transport_failure(exc)}") from None
    logging.getLogger("runpack.runner").info("stopped")


def _progress_text(progress: Any) -> str:
    """``current/total`` with fractions rounded to three places, or ``None/None``."""

    def amount(value: float | None) -> str:
        return str(round(value, 3) if isinstance(value, float) else value)

    if progress is None:
        return "None/None"
    return f"{amount(progress.current)}/{amount(progress.total)}"


def _progress_printer(json_mode: bool) -> tuple[Any, Any]:
    """A callback showing progress (a bar on a terminal, lines otherwise) and a closer."""
    if json_mode or not sys.stderr.isatty():
        last: list[Any] = [None]

        def print_line(status: Any) -> None:
            seen = (
                status.status,
                status.progress and (status.progress.current, status.progress.total),
            )
            if seen != last[0]:
                last[0] = seen
                text = _progress_text(status.progress)
                console.print(f"{status.status.value} {text}", highlight=False)

        return print_line, lambda: None

    bar = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        TaskProgressColumn(),
        console=console,
        transient=True,
    )
    task = bar.add_task("pending", total=None)
    bar.start()

    def update(status: Any) -> None:
        total = status.progress.total if status.progress else None
        current = status.progress.current if status.progress else 0
        bar.update(task, description=status.status.value, completed=current or 0, total=total)

    return update, bar.stop


def submit(
    job_type: Annotated[str, typer.Argument(help="The job type.")],
    params: Annotated[
        list[str] | None,
        typer.Argument(help="key=value parameters; a value is JSON when it parses as JSON."),
    ] = None,
    params_file: Annotated[
        Path | None,
        typer.Option(
            help="A JSON object of parameters, or JSON lines: one object a line, one job each, "
            "submitted in batches (key=value pairs are set over each)."
        ),
    ] = None,
    wait: Annotated[bool, typer.Option(help="Follow the job(s) until they finish.")] = False,
    url: UrlOption = DEFAULT_API_URL,
    key: SubmitKeyOption = None,
    json_mode: JsonOption = False,
) -> None:
    """Submit a job (or one per line of --params-file); with --wait, show progress and print
    the result (or, for several, a summary of completed and failed)."""
    from runpack_api.client import RunpackClient

    try:
        jobs = parse_params(params or [], params_file)
    except (ValueError, OSError) as exc:
        raise fail(str(exc)) from None
    key = require_key(key, "submit")
    if len(jobs) > 1:
        with api_errors(), RunpackClient(url, submit_key=key) as client:
            _submit_many(client, job_type, jobs, wait=wait, json_mode=json_mode)
        return
    with api_errors(), RunpackClient(url, submit_key=key) as client:
        answer = client.submit(job_type, jobs[0])
        if not wait or answer.status.value == "completed":
            _print_json(answer)
            return
        if answer.served is False:
            warn(
                f"nothing serves job type {job_type!r} yet (no active HTTP runner or Celery "
                "worker); waiting for one to start"
            )
        show, close = _progress_printer(json_mode)
        try:
            final = client.wait(answer.job_id, on_progress=show)
        finally:
            close()
    _print_json(final)
    if final.status.value != "completed":
        raise typer.Exit(EXIT_JOB_FAILED)


def _bar(json_mode: bool) -> Progress:
    """One progress bar over many jobs, on stderr when it is a terminal."""
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        disable=json_mode or not console.is_terminal,
    )


def _submit_many(
    client: Any, job_type: str, jobs: list[dict[str, Any]], *, wait: bool, json_mode: bool
) -> None:
    """Submit the jobs in batches under a progress bar; with ``wait``, follow them all under
    another, then print how many completed and failed (exit 1 unless all completed)."""
    with _bar(json_mode) as bar:
        task = bar.add_task("submitting", total=len(jobs))
        answers = client.submit_many(
            ((job_type, params) for params in jobs),
            on_batch=lambda done: bar.advance(task, len(done)),
        )
    created = sum(answer.created for answer in answers)
    ids = list(dict.fromkeys(answer.job_id for answer in answers))
    if not wait:
        if json_mode:
            _print_json({"results": [answer.model_dump(mode="json") for answer in answers]})
        else:
            out.print(
                f"submitted {len(answers)} job(s): {created} created, "
                f"{len(answers) - created} already there",
                highlight=False,
            )
        return
    if any(answer.served is False for answer in answers):
        warn(
            f"nothing serves job type {job_type!r} yet (no active HTTP runner or Celery "
            "worker); waiting for one to start"
        )
    with _bar(json_mode) as bar:
        task = bar.add_task("finished", total=len(ids))
        final = client.wait_many(ids, on_finished=lambda done: bar.advance(task, len(done)))
    counts = {state: 0 for state in ("completed", "failed", "expired", "deleted")}
    for current in final.values():
        counts["deleted" if current is None else current.status.value] += 1
    if json_mode:
        _print_json({"jobs": len(ids), **counts})
    else:
        out.print(
            f"{len(ids)} job(s): "
            + ", ".join(
                f"{count} {state}"
                for state, count in counts.items()
                if count or state in ("completed", "failed")
            ),
            highlight=False,
        )
    if counts["completed"] != len(ids):
        raise typer.Exit(EXIT_JOB_FAILED)


def status(
    job_id: Annotated[str, typer.Argument(help="The job id.")],
    url: UrlOption = DEFAULT_API_URL,
    key: SubmitKeyOption = None,
) -> None:
    """A job's status, progress and result, as JSON."""
    from runpack_api.client import RunpackClient

    key = require_key(key, "submit")
    with api_errors(), RunpackClient(url, submit_key=key) as client:
        found = client.status(job_id)
    _print_json(found)
    if found.status.value in ("failed", "expired"):
        raise typer.Exit(EXIT_JOB_FAILED)


def cancel(
    job_id: Annotated[str, typer.Argument(help="The job id.")],
    url: UrlOption = DEFAULT_API_URL,
    key: AdminWriteKeyOption = None,
    json_mode: JsonOption = False,
) -> None:
    """Cancel a pending or running job: it fails with "cancelled" and its runner stops it."""
    from runpack_api.client import RunpackClient

    key = require_key(key, "admin write")
    with api_errors(), RunpackClient(url, admin_key=key) as client:
        done = client.cancel(job_id)
    if json_mode:
        _print_json(done)
    else:
        out.print(f'{done.message}: it is now failed ("cancelled")', highlight=False)


def _admin_view(url: str, key: str | None, fetch: Callable[[Any], Any], json_mode: bool) -> Any:
    """Run an admin call; print it as JSON with --json (returning None), else return it."""
    from runpack_api.client import RunpackClient

    key = require_key(key, "admin")
    with api_errors(), RunpackClient(url, admin_key=key) as client:
        found = fetch(client)
    if json_mode:
        _print_json(found)
        return None
    return found


def _print_table(title: str, columns: list[str], rows: list[list[str]]) -> None:
    table = Table(title=title)
    for column in columns:
        table.add_column(column, overflow="fold")
    for row in rows:
        table.add_row(*row)
    out.print(table)


def jobs(
    status_filter: Annotated[str | None, typer.Option("--status", help="Only this status.")] = None,
    job_type: Annotated[str | None, typer.Option("--type", help="Only this job type.")] = None,
    limit: Annotated[int, typer.Option(min=1, max=500)] = 50,
    url: UrlOption = DEFAULT_API_URL,
    key: AdminKeyOption = None,
    json_mode: JsonOption = False,
) -> None:
    """Jobs, newest first."""
    page = _admin_view(
        url,
        key,
        lambda client: client.jobs(status=status_filter, job_type=job_type, limit=limit),
        json_mode,
    )
    if page is None:
        return
    _print_table(
        f"{len(page.jobs)} of {page.total} jobs",
        ["job id", "type", "status", "progress", "attempts", "claimed by"],
        [
            [
                job.job_id,
                job.job_type,
                job.status.value,
                _progress_text(job.progress) if job.progress else "",
                str(job.attempts),
                job.claimed_by_name or job.claimed_by or "",
            ]
            for job in page.jobs
        ],
    )


def runners(
    url: UrlOption = DEFAULT_API_URL, key: AdminKeyOption = None, json_mode: JsonOption = False
) -> None:
    """HTTP runners and Celery workers, most recently seen first (the first page)."""
    found = _admin_view(url, key, lambda client: client.runners(), json_mode)
    if found is None:
        return
    _print_table(
        f"{len(found.runners)} of {found.total} runners",
        ["runner id", "name", "kind", "job types", "active", "running"],
        [
            [
                r.runner_id,
                r.name,
                r.kind.value,
                ", ".join(r.capabilities),
                "yes" if r.is_active else "no",
                r.current_job or "",
            ]
            for r in found.runners
        ],
    )
    more = found.total - found.offset - len(found.runners)
    if more > 0:
        out.print(f"{more} more runners not shown (GET /api/admin/runners pages through them)")


def stats(
    url: UrlOption = DEFAULT_API_URL, key: AdminKeyOption = None, json_mode: JsonOption = False
) -> None:
    """Jobs per state, runners, and the compute the API process's cache hits saved."""
    found = _admin_view(url, key, lambda client: client.stats(), json_mode)
    if found is None:
        return
    _print_table(
        "Runpack",
        ["", "count"],
        [[f"jobs {name}", str(count)] for name, count in found.jobs.model_dump().items()]
        + [
            ["runners active", str(found.runners.active)],
            ["runners total", str(found.runners.total)],
            ["compute saved by cache hits (s)", f"{found.compute_saved_s:.1f}"],
        ],
    )


def register(app: typer.Typer) -> None:
    """Add the client commands to ``app``."""
    for command in (runner, submit, status, cancel, jobs, runners, stats):
        app.command()(command)

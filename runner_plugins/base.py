"""The plugin interface: what a job type implements, and the context it reports through."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, ClassVar, Protocol

from pydantic import BaseModel, ValidationError


class InvalidParams(ValueError):
    """Raised by a plugin's ``validate`` when parameters cannot be run; the message says why."""


class JobContext(Protocol):
    """What a running plugin reports through. Celery workers and HTTP runners provide it."""

    job_id: str

    def progress(self, current: float, total: float | None = None) -> None:
        """Record progress (3 of 10, or 0.42 of 1); it reaches the server at most once a second."""

    def log(self, line: str) -> None:
        """Append a line to the job's console output."""

    def heartbeat(self) -> None:
        """Tell the server the job is alive without changing its progress."""

    def is_cancelled(self) -> bool:
        """True once the job was cancelled (or is no longer this runner's), as learnt from
        the answer to a heartbeat: a long plugin should poll it and stop (return or raise;
        what it reports is refused). One that ignores it is stopped or abandoned."""


class Plugin(ABC):
    """A job type. Subclass it, set ``name`` and ``version``, implement ``run``.

    Declare ``Params`` (a pydantic model) to have parameters validated before they are
    queued, on the API host, and again before they run.

    Three optional attributes govern how long a completed result is served (their defaults
    change nothing): ``result_ttl_s``, ``cache_version`` and ``result_valid``.
    """

    #: The ``job_type`` this plugin runs.
    name: ClassVar[str]
    #: The plugin's release, shown to operators; changing it does not touch stored results.
    version: ClassVar[str] = "0"
    #: Recorded with each result the plugin computes; an API host that has the plugin
    #: serves only results recorded with its current value (or with none). Bump it when
    #: results made by earlier code are wrong: they are recomputed on their next submit.
    cache_version: ClassVar[str | None] = None
    #: Seconds a result is served after it finished (None: ``RUNPACK_RESULT_TTL_S``;
    #: 0: forever).
    result_ttl_s: ClassVar[float | None] = None
    #: One line for humans (the dashboard, ``runpack plugins``).
    description: ClassVar[str] = ""
    #: The parameters' model, or None to accept any JSON object.
    Params: ClassVar[type[BaseModel] | None] = None

    def validate(self, params: dict[str, Any]) -> dict[str, Any]:
        """The parameters to run with (defaults filled in); raise InvalidParams if unusable."""
        if self.Params is None:
            return params
        try:
            return self.Params.model_validate(params).model_dump()
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(part) for part in first["loc"]) or "input_params"
            raise InvalidParams(f"{where}: {first['msg']}") from None

    @abstractmethod
    def run(self, params: dict[str, Any], ctx: JobContext) -> dict[str, Any]:
        """Compute the job's result (a JSON object) from its validated parameters."""

    def result_valid(self, output_data: dict[str, Any]) -> bool:
        """Whether a stored result may still be served (for results that point at something
        outside Runpack that can disappear). Runs on API hosts in a worker thread, within
        ``RUNPACK_VALIDITY_TIMEOUT_S``; False, an exception or a timeout expire the result."""
        return True

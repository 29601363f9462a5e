"""artifact: writes a text file and returns where it is; the example of a validity hook.

Its result points at something outside Runpack that can disappear (like the seed's figpack
URLs): a cleaned-up folder or a web server that forgot the file. ``result_valid`` checks
that the file, or the URL it is published under, still exists, so a result whose file is
gone is computed again instead of being served.
"""

from __future__ import annotations

import functools
import hashlib
import os
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from pydantic import BaseModel, Field

from runner_plugins.base import JobContext, Plugin

if TYPE_CHECKING:
    import httpx


class ArtifactParams(BaseModel):
    """The file's content."""

    text: str = Field(max_length=100_000)


@functools.cache
def _http() -> httpx.Client:
    """This process's client for the checks, made on first use: a client loads the
    certificate store when it is made, about 28 ms of CPU, which every check paid when each
    made its own. Its connections are kept between checks of the same server."""
    # imported here: every API, worker and beat process imports the installed plugins, and
    # httpx (with the command-line helpers it loads) adds a sixth of a second to each start
    import httpx

    return httpx.Client(follow_redirects=True)


def url_exists(url: str, timeout_s: float) -> bool:
    """Whether ``url`` answers a HEAD (a GET where HEAD is not allowed) with a status below
    400; a 404 or 410 is False, and an unreachable server raises."""
    client = _http()
    status = client.head(url, timeout=timeout_s).status_code
    if status == 405:
        with client.stream("GET", url, timeout=timeout_s) as answer:  # the status, not the body
            status = answer.status_code
    return status < 400


class Artifact(Plugin):
    """Writes ``text`` to ``<directory>/<sha256 of text>.txt`` and returns its path (and its
    URL when ``base_url`` is set); the result is valid while that file or URL exists.

    The check runs on the API host: a ``path`` is only checked there when the API host sees
    the same folder (``runpack up``, a shared volume); otherwise publish ``directory`` with a
    web server and set ``base_url`` (subclass the plugin and register it as your own type).
    """

    name = "artifact"
    version = "1.0"
    description = "Writes text to a file and returns its path; served while the file exists."
    Params: ClassVar[type[BaseModel] | None] = ArtifactParams

    #: Where the files are written, on the host that runs the job.
    directory: ClassVar[Path] = Path(tempfile.gettempdir()) / "runpack-artifacts"
    #: The URL ``directory`` is published under by a web server (None: not published).
    base_url: ClassVar[str | None] = None
    #: How long the URL check waits for an answer.
    check_timeout_s: ClassVar[float] = 3.0

    def run(self, params: dict[str, Any], ctx: JobContext) -> dict[str, Any]:
        data = params["text"].encode()
        name = f"{hashlib.sha256(data).hexdigest()}.txt"
        self.directory.mkdir(parents=True, exist_ok=True)
        path = self.directory / name
        partial = path.with_name(f"{name}.{os.getpid()}.partial")
        partial.write_bytes(data)
        partial.replace(path)  # whole or absent, even with two jobs writing it at once
        ctx.log(f"wrote {len(data)} bytes to {path}")
        result: dict[str, Any] = {"path": str(path), "bytes": len(data)}
        if self.base_url is not None:
            result["url"] = f"{self.base_url.rstrip('/')}/{name}"
        return result

    def result_valid(self, output_data: dict[str, Any]) -> bool:
        url = output_data.get("url")
        if isinstance(url, str):
            return url_exists(url, self.check_timeout_s)
        path = output_data.get("path")
        return isinstance(path, str) and Path(path).exists()

"""An example third-party plugin: ``tally`` appends a line to a file each time it runs.

Installed with ``pip install ./examples/runpack-example-plugin``, it is found through the
``runpack.plugins`` entry-point group by every Runpack process on that host. The tests use
it to count how often a job really ran.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, ClassVar

from pydantic import BaseModel, Field

from runner_plugins import JobContext, Plugin


class TallyParams(BaseModel):
    """Where to tally, how long to take, and whether to fail after tallying."""

    log: str
    seconds: float = Field(0, ge=0, le=60)
    fail: bool = False


class Tally(Plugin):
    """Appends "ran <job id>" to ``log``; returns how many lines it holds now."""

    name = "tally"
    version = "1.0"
    #: Recorded with each result; bump it when earlier results are wrong.
    cache_version = "1"
    description = "Counts its own executions in a file (an example plugin)."
    Params: ClassVar[type[BaseModel] | None] = TallyParams

    def run(self, params: dict[str, Any], ctx: JobContext) -> dict[str, Any]:
        path = Path(params["log"])
        with path.open("a") as log:
            log.write(f"ran {ctx.job_id}\n")
        steps = max(1, int(params["seconds"] * 4))
        for step in range(steps):
            time.sleep(params["seconds"] / steps)
            ctx.progress(step + 1, steps)
        if params["fail"]:
            raise RuntimeError("tally asked to fail")
        count = len(path.read_text().splitlines())
        ctx.log(f"tallied {count}")
        return {"count": count}

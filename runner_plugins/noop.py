"""noop: returns its parameters at once; what benchmarks measure Runpack's overhead with."""

from __future__ import annotations

from typing import Any

from runner_plugins.base import JobContext, Plugin


class Noop(Plugin):
    """Does nothing and returns its parameters."""

    name = "noop"
    version = "1.0"
    description = "Returns its parameters at once (for benchmarks and smoke tests)."

    def run(self, params: dict[str, Any], ctx: JobContext) -> dict[str, Any]:
        return {"params": params}

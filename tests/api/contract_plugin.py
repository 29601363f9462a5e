"""The ``contract`` job type: a result or an error of a chosen size or kind.

Installed into a temporary folder by tests/api/test_runner_contract.py (as a module with
an entry point), for the processes it starts; never imported by the tests themselves.
"""

from __future__ import annotations

from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field

from runner_plugins import JobContext, Plugin


class ContractParams(BaseModel):
    """What to produce; any other key just makes the job unique."""

    model_config = ConfigDict(extra="allow")

    output_bytes: int = Field(0, ge=0)
    error_bytes: int = Field(0, ge=0)
    huge_integer: bool = False


class Contract(Plugin):
    """Fails with ``error_bytes`` of message, or returns ``output_bytes`` of output, or
    an integer beyond 64 bits."""

    name = "contract"
    version = "1.0"
    cache_version = "contract-1"
    description = "Produces a result or an error of a chosen size (for tests)."
    Params: ClassVar[type[BaseModel] | None] = ContractParams

    def run(self, params: dict[str, Any], ctx: JobContext) -> dict[str, Any]:
        ctx.log("contract job running")
        if params["error_bytes"]:
            raise RuntimeError("E" * params["error_bytes"])
        if params["huge_integer"]:
            return {"n": 2**64}
        return {"blob": "x" * params["output_bytes"]}

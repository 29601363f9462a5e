"""hello_world: the seed's demonstration job, a greeting after a paced countdown."""

from __future__ import annotations

import time
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field

from runner_plugins.base import JobContext, Plugin

STEPS = 10


class HelloParams(BaseModel):
    """The seed's parameters."""

    model_config = ConfigDict(extra="allow")

    name: str = "World"
    processing_time: float = Field(10.0, ge=0, le=300)
    test_exception: bool = False


class HelloWorld(Plugin):
    """Greets ``name`` after ``processing_time`` seconds, in ten steps of progress."""

    name = "hello_world"
    version = "1.0"
    description = "Greets someone after a delay; set test_exception to make it fail."
    Params: ClassVar[type[BaseModel] | None] = HelloParams

    def run(self, params: dict[str, Any], ctx: JobContext) -> dict[str, Any]:
        ctx.log(f"Hello world job starting for {params['name']}")
        for step in range(1, STEPS + 1):
            time.sleep(params["processing_time"] / STEPS)
            ctx.progress(step, STEPS)
            ctx.log(f"Step {step}/{STEPS}")
            if ctx.is_cancelled():  # its result would be refused: stop now
                ctx.log("Cancelled")
                raise RuntimeError("cancelled")
            if params["test_exception"] and step == STEPS // 2:
                raise RuntimeError("Test exception requested")
        greeting = f"Hello, {params['name']}!"
        ctx.log(greeting)
        return {"greeting": greeting, "processing_time": params["processing_time"]}

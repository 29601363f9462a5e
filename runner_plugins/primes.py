"""primes: counts the primes below a bound with a segmented sieve, reporting progress."""

from __future__ import annotations

import math
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field

from runner_plugins.base import JobContext, Plugin

SEGMENT = 1 << 18


class PrimesParams(BaseModel):
    """Up to what bound, and how many of the largest primes to return."""

    model_config = ConfigDict(extra="forbid")

    limit: int = Field(ge=2, le=2_000_000_000)
    largest: int = Field(10, ge=0, le=1000)


def _small_primes(bound: int) -> list[int]:
    sieve = bytearray([1]) * (bound + 1)
    sieve[0:2] = b"\x00\x00"
    for n in range(2, math.isqrt(bound) + 1):
        if sieve[n]:
            sieve[n * n :: n] = bytearray(len(range(n * n, bound + 1, n)))
    return [n for n in range(bound + 1) if sieve[n]]


class Primes(Plugin):
    """Counts the primes below ``limit`` and returns the ``largest`` of them."""

    name = "primes"
    version = "1.0"
    description = "Counts primes below a limit with a segmented sieve."
    Params: ClassVar[type[BaseModel] | None] = PrimesParams

    def run(self, params: dict[str, Any], ctx: JobContext) -> dict[str, Any]:
        limit, largest = params["limit"], params["largest"]
        base = _small_primes(math.isqrt(limit))
        segments = math.ceil(limit / SEGMENT)
        count, tail = 0, list[int]()
        for index in range(segments):
            low, high = index * SEGMENT, min((index + 1) * SEGMENT, limit)
            found = _sieve_segment(low, high, base)
            count += len(found)
            tail = (tail + found)[-largest:] if largest else []
            ctx.progress(index + 1, segments)
        ctx.log(f"{count} primes below {limit}")
        return {"limit": limit, "count": count, "largest": tail}


def _sieve_segment(low: int, high: int, base: list[int]) -> list[int]:
    """The primes in [low, high)."""
    marks = bytearray([1]) * (high - low)
    for prime in base:
        start = max(prime * prime, (low + prime - 1) // prime * prime)
        if start >= high:
            continue
        marks[start - low :: prime] = bytearray(len(range(start, high, prime)))
    return [low + i for i, flag in enumerate(marks) if flag and low + i >= 2]

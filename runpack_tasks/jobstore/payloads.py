"""Shape and size limits on what clients and runners send (SPEC §4 limits)."""

from __future__ import annotations

import re
from typing import Any

import orjson

from runpack_tasks.errors import InvalidRequest, PayloadTooLarge

JOB_TYPE_PATTERN = r"^[A-Za-z0-9_.:-]{1,128}$"
#: The largest integer a JSON number holds exactly everywhere (JavaScript's safe range).
MAX_SAFE_INTEGER = 2**53 - 1
#: PostgreSQL text cannot hold NUL, and UTF-8 no lone surrogate; what runners print is
#: stored with this instead.
NUL_REPLACEMENT = "\ufffd"
_LONE_SURROGATE = re.compile("[\ud800-\udfff]")
#: Deeper JSON is refused: no real parameters need it, and encoders recurse.
MAX_JSON_DEPTH = 64


def _scan(value: Any) -> tuple[int, str | None]:
    """How deeply ``value`` nests objects and arrays (a scalar is depth 0), and what in it
    cannot be stored as JSON everywhere (None: nothing)."""
    deepest, unstorable = 0, None
    stack: list[tuple[Any, int]] = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, str):
            if "\x00" in item:
                unstorable = "contains a NUL character, which cannot be stored"
            continue
        if isinstance(item, int | float) and not isinstance(item, bool):
            # 1e20 is an integer too, however it is written
            if abs(item) > MAX_SAFE_INTEGER and (isinstance(item, int) or item.is_integer()):
                unstorable = f"holds an integer beyond +-{MAX_SAFE_INTEGER} (2^53 - 1)"
            continue
        if isinstance(item, dict):
            children: Any = [*item.keys(), *item.values()]
        elif isinstance(item, list):
            children = item
        else:
            continue
        deepest = max(deepest, depth + 1)
        stack.extend((child, depth + 1) for child in children)
    return deepest, unstorable


def _storable_scalar(item: Any) -> bool:
    """Whether ``item`` is a string, number, boolean or null that ``_scan`` finds nothing
    wrong with (False also for anything else)."""
    kind = type(item)
    if kind is str:
        return "\x00" not in item
    if kind is int:
        return bool(-MAX_SAFE_INTEGER <= item <= MAX_SAFE_INTEGER)
    if kind is float:
        return not (abs(item) > MAX_SAFE_INTEGER and item.is_integer())
    return kind is bool or item is None


def _flat_and_storable(value: Any) -> bool:
    """Whether ``value`` is an object whose keys and values are all storable scalars: what
    ``_scan`` answers ``(1, None)`` for, told without building its stack (most parameters
    are such an object; a batch checks a thousand). False says nothing: scan it."""
    return type(value) is dict and all(
        type(key) is str and "\x00" not in key and _storable_scalar(item)
        for key, item in value.items()
    )


def json_depth(value: Any) -> int:
    """How deeply ``value`` nests objects and arrays (a scalar is depth 0)."""
    return _scan(value)[0]


def check_json(name: str, value: Any, max_bytes: int) -> None:
    """Refuse ``value`` if it nests too deeply, holds a NUL character (PostgreSQL cannot
    store one, so no backend does) or an integer beyond JSON's safe range (400), or
    encodes to over ``max_bytes`` (413)."""
    depth, unstorable = (1, None) if _flat_and_storable(value) else _scan(value)
    if depth > MAX_JSON_DEPTH:
        raise InvalidRequest(f"{name} nests deeper than {MAX_JSON_DEPTH} levels")
    if unstorable is not None:
        raise InvalidRequest(f"{name} {unstorable}")
    try:
        size = len(orjson.dumps(value))
    except TypeError as exc:  # an integer beyond 64 bits
        raise InvalidRequest(f"{name} cannot be encoded as JSON: {exc}") from None
    if size > max_bytes:
        raise PayloadTooLarge(f"{name} is {size} bytes, over the limit of {max_bytes}")


def check_text(name: str, value: str | None, max_bytes: int) -> None:
    """Refuse a string whose UTF-8 encoding is over ``max_bytes`` (413)."""
    if value is None:
        return
    size = len(value.encode("utf-8", "surrogatepass"))
    if size > max_bytes:
        raise PayloadTooLarge(f"{name} is {size} bytes, over the limit of {max_bytes}")


def refuse_nul(value: str) -> str:
    """``value`` if it holds no NUL character (text columns cannot store one)."""
    if "\x00" in value:
        raise ValueError("contains a NUL character, which cannot be stored")
    return value


def storable(text: str) -> str:
    """Text a runner produced, with NUL characters and lone surrogates (which UTF-8 cannot
    encode) replaced so it can be sent and stored."""
    return _LONE_SURROGATE.sub(NUL_REPLACEMENT, text.replace("\x00", NUL_REPLACEMENT))

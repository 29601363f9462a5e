"""Job identity: the SHA-256 of the RFC 8785 canonical JSON of a job's type and parameters.

``rfc8785`` is the reference encoder, but it is pure Python (about 80 us per KB). Most
parameters are plain JSON that orjson with sorted keys encodes to the very same bytes, so
``canonical_job`` tries that first and falls back to ``rfc8785`` whenever a value could
encode differently: a float orjson would write in exponent form, a number outside
JavaScript's safe integer range, or a key whose UTF-16 order may differ from its code-point order.
A property-based test holds the two paths byte-identical.
"""

from __future__ import annotations

import hashlib
from typing import Any

import orjson
import rfc8785

from runpack_tasks.jobstore.payloads import MAX_SAFE_INTEGER

#: orjson writes non-integral floats below this magnitude in exponent form, as JCS does
#: only below 1e-6.
_SMALLEST_PLAIN_FLOAT = 1e-5
#: Below this magnitude JCS writes an integral float as the exact integer; above, it
#: writes the shortest round-trip digits padded with zeros (or exponent form from 1e21).
_LARGEST_EXACT_INTEGRAL = float(MAX_SAFE_INTEGER)
#: Code points from here on may sort differently by UTF-16 unit than by code point.
_FIRST_UNSAFE_KEY_CHAR = "\ud800"


class _NeedsReferenceEncoder(Exception):
    """Raised inside the fast path when a value may not encode as JCS does."""


def _normalized_number(value: int | float) -> int | float:
    if not isinstance(value, float):
        if -MAX_SAFE_INTEGER <= value <= MAX_SAFE_INTEGER:
            return value
    elif value.is_integer():
        if abs(value) <= _LARGEST_EXACT_INTEGRAL:
            return int(value)
    elif abs(value) >= _SMALLEST_PLAIN_FLOAT:
        return value
    raise _NeedsReferenceEncoder


#: Types of the values orjson always encodes as JCS does, as they are.
_PLAIN_KINDS = (str, bool, type(None))


def _normalized(value: Any) -> Any:
    """``value`` with integral floats as ints, if orjson will then encode it as JCS does.

    A container that needs no change is returned itself, not copied (most parameters are
    strings and small integers: hashing a batch of a thousand jobs copied each)."""
    kind = type(value)
    if kind in _PLAIN_KINDS:
        return value
    if kind is int or kind is float:
        return _normalized_number(value)
    if kind is dict:
        return _normalized_object(value)
    if kind is list:
        items = [_normalized(item) for item in value]
        return value if all(new is old for new, old in zip(items, value, strict=True)) else items
    raise _NeedsReferenceEncoder


def _normalized_object(value: dict[Any, Any]) -> dict[str, Any]:
    for key in value:
        if type(key) is not str or (not key.isascii() and max(key) >= _FIRST_UNSAFE_KEY_CHAR):
            raise _NeedsReferenceEncoder
    changed: dict[str, Any] | None = None
    for key, item in value.items():
        if type(item) in _PLAIN_KINDS:
            continue
        normalized = _normalized(item)
        if normalized is not item:
            if changed is None:
                changed = dict(value)
            changed[key] = normalized
    return value if changed is None else changed


def canonical_json(value: Any) -> bytes:
    """The RFC 8785 (JCS) encoding of ``value``; raises ValueError for what JCS cannot encode."""
    try:
        return orjson.dumps(_normalized(value), option=orjson.OPT_SORT_KEYS)
    except _NeedsReferenceEncoder:
        pass
    try:
        return bytes(rfc8785.dumps(value))
    except (rfc8785.CanonicalizationError, TypeError) as exc:
        raise ValueError(f"cannot be canonicalized: {exc}") from None


def canonical_job(job_type: str, input_params: dict[str, Any]) -> bytes:
    """The canonical bytes that identify a job."""
    return canonical_json({"job_type": job_type, "input_params": input_params})


def job_hash(job_type: str, input_params: dict[str, Any]) -> str:
    """The job's identity: hex SHA-256 of its canonical bytes (SPEC §3)."""
    return hashlib.sha256(canonical_job(job_type, input_params)).hexdigest()

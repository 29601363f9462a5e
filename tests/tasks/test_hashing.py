"""Job identity (SPEC §3): canonical JSON, pinned hashes, and the fast path's equivalence."""

from __future__ import annotations

import json
from typing import Any

import orjson
import pytest
import rfc8785
from hypothesis import given, settings
from hypothesis import strategies as st

from runpack_tasks.jobstore.hashing import canonical_job, canonical_json, job_hash

PINNED = [
    (
        "hello_world",
        {"processing_time": 10.0, "name": "Alice"},
        b'{"input_params":{"name":"Alice","processing_time":10},"job_type":"hello_world"}',
        "02a3b895d1aeb88876e60d9c5516c6ebd014105201d19e35679f276e581554d2",
    ),
    (
        "x",
        {"b": [1, 2.5, "é", None, True], "a": {"z": 1e2}},
        '{"input_params":{"a":{"z":100},"b":[1,2.5,"é",null,true]},"job_type":"x"}'.encode(),
        "3e1897f2d969ac837f2288015c3975eb851ead6cb95945670ae2fce0e1bcc7a8",
    ),
]


@pytest.mark.parametrize(("job_type", "params", "canonical", "digest"), PINNED)
def test_pinned_vectors_never_drift(
    job_type: str, params: dict[str, Any], canonical: bytes, digest: str
) -> None:
    assert canonical_job(job_type, params) == canonical
    assert job_hash(job_type, params) == digest


def test_key_order_whitespace_and_number_spelling_do_not_matter() -> None:
    texts = [
        '{"a": 1, "b": {"c": [1, 2]}}',
        '{"b":{"c":[1.0,2]},"a":1e0}',
        '{\n  "b" : { "c" : [ 1e0 , 2.00 ] } ,\n  "a" : 1.0\n}',
        '{"a": 100e-2, "b": {"c": [10e-1, 0.2e1]}}',
    ]
    assert len({job_hash("t", json.loads(text)) for text in texts}) == 1
    assert len({job_hash("t", orjson.loads(text)) for text in texts}) == 1


@pytest.mark.parametrize(
    "changed",
    [
        {"a": 2, "b": "x"},  # another value
        {"a": 1, "b": "X"},  # a string's case
        {"a": 1, "b": "x "},  # a string's whitespace
        {"a": 1, "b": "x", "c": None},  # one more key
        {"a": "1", "b": "x"},  # a number as a string
        {"A": 1, "b": "x"},  # a key's case
    ],
)
def test_any_changed_value_changes_the_hash(changed: dict[str, Any]) -> None:
    assert job_hash("t", changed) != job_hash("t", {"a": 1, "b": "x"})


def test_job_type_is_part_of_the_identity() -> None:
    assert job_hash("a", {}) != job_hash("b", {})


def test_values_jcs_cannot_encode_are_refused() -> None:
    with pytest.raises(ValueError, match="canonicalized"):
        canonical_json({"n": 2**60})


# Floats where orjson and JCS disagree are the interesting ones: tiny, integral, huge.
interesting_floats = st.one_of(
    st.floats(allow_nan=False, allow_infinity=False),
    st.floats(min_value=1e-7, max_value=1e-4, allow_nan=False),
    st.integers(min_value=-(2**60), max_value=2**60).map(float),
    st.sampled_from([0.0, -0.0, 1e21, 1e20, 9007199254740992.0, 1e-6, 1e-5, 5e-324]),
)
json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.text(),
    st.integers(min_value=-(2**53) + 1, max_value=2**53 - 1),
    interesting_floats,
)
json_values = st.recursive(
    json_scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=5),
        st.dictionaries(st.text(), children, max_size=5),
    ),
    max_leaves=30,
)


@settings(deadline=None)  # examples: the Hypothesis profile (tests/conftest.py)
@given(st.dictionaries(st.text(), json_values, max_size=6))
def test_fast_path_is_byte_identical_to_rfc8785(params: dict[str, Any]) -> None:
    document = {"job_type": "t", "input_params": params}
    before = repr(document)
    assert canonical_json(document) == rfc8785.dumps(document)
    assert repr(document) == before  # the parameters hashed are left as they were

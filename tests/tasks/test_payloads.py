"""The shape checks of what clients and runners send: the flat-object shortcut agrees with
the full scan."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from runpack_tasks.errors import InvalidRequest
from runpack_tasks.jobstore.payloads import (
    MAX_SAFE_INTEGER,
    _flat_and_storable,
    _scan,
    check_json,
)

edge_numbers = st.sampled_from(
    [
        MAX_SAFE_INTEGER,
        -MAX_SAFE_INTEGER,
        MAX_SAFE_INTEGER + 1,
        -(2**63),
        2**70,
        1e16,
        -1e20,
        9007199254740991.0,
        0.5,
        float("inf"),
        float("nan"),
    ]
)
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.text(alphabet=st.sampled_from(["a", "\x00", "é", " "])),
    st.integers(),
    st.floats(),
    edge_numbers,
)
keys = st.one_of(st.text(alphabet=st.sampled_from(["k", "\x00"])), st.integers())
values = st.recursive(
    scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=4), st.dictionaries(keys, children, max_size=4)
    ),
    max_leaves=12,
)


@settings(deadline=None)
@given(values)
def test_the_shortcut_only_answers_what_the_scan_would(value: Any) -> None:
    if _flat_and_storable(value):
        assert _scan(value) == (1, None)


@settings(deadline=None)
@given(st.dictionaries(st.text(), st.one_of(scalars, edge_numbers), max_size=8))
def test_a_flat_object_is_judged_as_the_scan_judges_it(value: dict[str, Any]) -> None:
    assert _flat_and_storable(value) == (_scan(value) == (1, None))


@pytest.mark.parametrize(
    ("params", "said"),
    [
        ({"a": "x\x00"}, "NUL"),
        ({"a\x00": 1}, "NUL"),
        ({"n": MAX_SAFE_INTEGER + 1}, "beyond"),
        ({"n": -1e20}, "beyond"),
    ],
)
def test_a_flat_object_that_cannot_be_stored_is_refused(params: dict[str, Any], said: str) -> None:
    with pytest.raises(InvalidRequest, match=said):
        check_json("input_params", params, 1000)

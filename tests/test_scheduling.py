"""The suite's own scheduling (tests/support/scheduling.py): what it names exists, and a
module's two backends are two work units."""

from __future__ import annotations

from pathlib import Path

from tests.support.scheduling import LONGEST_FIRST, work_unit

ROOT = Path(__file__).parents[1]


def test_every_module_it_sends_first_exists() -> None:
    assert [module for module in LONGEST_FIRST if not (ROOT / module).is_file()] == []


def test_a_module_s_tests_on_each_backend_are_a_unit_of_their_own() -> None:
    units = {
        work_unit(f"tests/api/test_fuzz_schema.py::{test}")
        for test in (
            "test_a[embedded-admin]",
            "test_b[embedded-runner]",
            "test_a[postgres-admin]",
            "test_c[admin-postgres]",
        )
    }
    assert units == {
        "tests/api/test_fuzz_schema.py[embedded]",
        "tests/api/test_fuzz_schema.py[postgres]",
    }
    assert work_unit("tests/api/test_cli.py::test_up") == "tests/api/test_cli.py"
    assert work_unit("tests/x.py::Case::test_y[postgres]") == "tests/x.py::Case[postgres]"

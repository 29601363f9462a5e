"""The limits on what a run reports: the pure rules both Celery workers and HTTP runners apply."""

from __future__ import annotations

import orjson
import pytest

from runpack_tasks.jobstore.payloads import NUL_REPLACEMENT
from runpack_tasks.report_limits import (
    ReportLimits,
    output_failure,
    tail_console,
    truncate_error,
)
from runpack_tasks.settings import RunpackSettings


def test_an_error_within_the_limit_is_kept_whole() -> None:
    assert truncate_error("boom", 4) == "boom"


def test_an_error_over_the_limit_keeps_its_beginning_and_ends_with_a_marker() -> None:
    cut = truncate_error("a" * 500, 200)
    marker = " [truncated: 500 bytes, over the limit of 200 (RUNPACK_MAX_ERROR_BYTES)]"
    assert cut.endswith(marker)
    assert cut == "a" * (200 - len(marker)) + marker
    assert len(cut.encode()) == 200


def test_an_error_is_cut_by_bytes_never_inside_a_character() -> None:
    cut = truncate_error("é" * 300, 150)  # 600 bytes of UTF-8
    assert len(cut.encode()) <= 150
    assert set(cut.split(" [truncated")[0]) == {"é"}
    assert "600 bytes" in cut


def test_a_limit_shorter_than_the_marker_still_holds() -> None:
    assert len(truncate_error("x" * 100, 10).encode()) <= 10


def test_an_error_is_made_storable() -> None:
    assert truncate_error("a\x00b\ud800", 100) == f"a{NUL_REPLACEMENT}b{NUL_REPLACEMENT}"


def test_console_output_keeps_its_most_recent_part() -> None:
    text = "\n".join(f"line {n}" for n in range(100))
    kept = tail_console(text, 20)
    assert len(kept.encode()) <= 20
    assert text.endswith(kept)
    assert kept.endswith("line 99")
    assert tail_console("short", 20) == "short"


def test_console_output_is_cut_by_bytes_never_inside_a_character() -> None:
    kept = tail_console("é" * 10, 5)
    assert kept == "éé"


def test_an_output_within_the_limit_passes() -> None:
    output = {"blob": "x" * 100}
    assert output_failure(output, len(orjson.dumps(output))) is None


def test_an_output_over_the_limit_says_its_size_the_limit_and_the_setting() -> None:
    output = {"blob": "x" * 100}
    size = len(orjson.dumps(output))
    assert output_failure(output, size - 1) == (
        f"output is {size} bytes, over the limit of {size - 1} (RUNPACK_MAX_OUTPUT_BYTES)"
    )


@pytest.mark.parametrize("output", [{"n": 2**64}, {"s": "\ud800"}], ids=["int", "surrogate"])
def test_an_output_that_is_not_json_is_left_to_validation(output: dict[str, object]) -> None:
    assert output_failure(output, 1) is None


def test_the_limits_come_from_the_settings() -> None:
    settings = RunpackSettings(max_output_bytes=10, max_console_bytes=20, max_error_bytes=100)
    limits = ReportLimits.from_settings(settings)
    assert limits == ReportLimits(max_output_bytes=10, max_console_bytes=20, max_error_bytes=100)
    assert limits.output_failure({"blob": "x" * 10}) is not None
    assert len(limits.error_text("z" * 500).encode()) <= 100

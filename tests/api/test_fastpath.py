"""The fast path's reading of requests, which must agree with the routes' (FastAPI's)."""

from __future__ import annotations

import pytest

from runpack_api.fastpath import _declares_json, _parse


def _scope(method: str, path: str, content_type: bytes | None = None) -> dict[str, object]:
    headers = [] if content_type is None else [(b"content-type", content_type)]
    return {"type": "http", "method": method, "path": path, "headers": headers}


@pytest.mark.parametrize(
    ("content_type", "json"),
    [
        (None, True),  # FastAPI reads a body without a content type as JSON
        (b"application/json", True),
        (b"Application/JSON; charset=utf-8", True),
        (b"application/merge-patch+json", True),
        (b"text/plain", False),
        (b"application/x-www-form-urlencoded", False),
        (b"multipart/form-data; boundary=x", False),
    ],
)
def test_json_bodies_are_those_fastapi_reads_as_json(
    content_type: bytes | None, json: bool
) -> None:
    assert _declares_json(_scope("POST", "/api/jobs/submit", content_type)) is json


def test_a_submit_body_is_validated_as_the_route_would() -> None:
    good = _parse(_scope("POST", "/api/jobs/submit"), b'{"job_type":"t","input_params":{"a":1}}')
    assert good is not None and good.body is not None
    assert good.body.input_params == {"a": 1} and good.key[0] == "submit"
    unnamed = b'{"job_type":"","input_params":{}}'  # JobRequest refuses an empty type
    assert _parse(_scope("POST", "/api/jobs/submit"), unnamed) is None
    as_text = _scope("POST", "/api/jobs/submit", b"text/plain")
    assert _parse(as_text, b'{"job_type":"t","input_params":{}}') is None


def test_check_and_status_are_read_for_their_cache_key_only() -> None:
    check = _parse(_scope("POST", "/api/jobs/check"), b'{"job_type":"t","input_params":{}}')
    assert check is not None and check.key[0] == "check" and check.body is None
    status = _parse(_scope("GET", "/api/jobs/some-id"), b"")
    assert status is not None and status.key == ("status", "some-id")
    assert _parse(_scope("GET", "/api/jobs/some-id/extra"), b"") is None

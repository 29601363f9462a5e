"""The dashboard's answers carry its security headers (SPEC §9); the API's do not need them."""

from __future__ import annotations

import re
from collections.abc import Iterator

import httpx
import pytest

from runpack_api.dashboard.views import PAGES
from tests.support.inprocess import InProcessServer

#: An attribute such as onclick= or onerror=, which a CSP without 'unsafe-inline' blocks.
INLINE_HANDLER = re.compile(r"\son[a-z]+\s*=", re.IGNORECASE)
DASHBOARD_PATHS = [*PAGES, "/jobs/some-job", "/runners/some-runner", "/static/app.js"]


@pytest.fixture
def client(server: InProcessServer) -> Iterator[httpx.Client]:
    """A client of the in-process app, with no key (these pages need none)."""
    with server.client(None) as client:
        yield client


@pytest.mark.parametrize("path", DASHBOARD_PATHS)
def test_a_dashboard_answer_carries_the_security_headers(client: httpx.Client, path: str) -> None:
    answer = client.get(path)

    assert answer.status_code == 200
    policy = dict(
        part.strip().split(" ", 1) for part in answer.headers["content-security-policy"].split(";")
    )
    assert policy["script-src"] == "'self'"
    assert policy["style-src"] == "'self'"
    assert policy["frame-ancestors"] == "'none'"
    assert all("http" not in sources and "unsafe" not in sources for sources in policy.values())
    assert answer.headers["x-frame-options"] == "DENY"
    assert answer.headers["x-content-type-options"] == "nosniff"
    assert answer.headers["referrer-policy"] == "no-referrer"


def test_dashboard_pages_hold_no_inline_script_or_style(client: httpx.Client) -> None:
    for path in DASHBOARD_PATHS[:-1]:
        page = client.get(path).text
        assert "<script>" not in page and "<style" not in page and " style=" not in page, path
        assert not INLINE_HANDLER.search(page), path


def test_api_answers_are_not_dashboard_pages(client: httpx.Client, server: InProcessServer) -> None:
    headers = server.headers("admin")
    for path in ("/api/admin/stats", "/health"):
        assert "content-security-policy" not in client.get(path, headers=headers).headers

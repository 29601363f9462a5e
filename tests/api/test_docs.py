"""/docs works with no internet access: Swagger UI's files come from the API itself."""

from __future__ import annotations

import re
from collections.abc import Iterator

import httpx
import pytest

from tests.support.inprocess import InProcessServer

#: Where a page loads a script, a style or an icon from.
ASSET_URL = re.compile(r'(?:src|href)="([^"]+)"')


@pytest.fixture
def client(server: InProcessServer) -> Iterator[httpx.Client]:
    """A client of the in-process app, with no key (these pages need none)."""
    with server.client(None) as client:
        yield client


def test_docs_load_everything_from_the_api(client: httpx.Client) -> None:
    # Given the /docs page
    page = client.get("/docs")
    assert page.status_code == 200

    # Then it names no other host, and each file it loads answers from the API
    assert not re.search(r"https?://", page.text)
    assets = ASSET_URL.findall(page.text)
    assert {url.rsplit(".", 1)[-1] for url in assets} == {"css", "js", "png"}
    for url in [*assets, "/openapi.json", "/docs/oauth2-redirect"]:
        assert client.get(url).status_code == 200, url


def test_redoc_is_not_served(client: httpx.Client) -> None:
    assert client.get("/redoc").status_code == 404

"""/docs works with no internet access: Swagger UI's files come from the API itself."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from runpack_api.app import create_app
from tests.support import EMBEDDED
from tests.support.direct_app import settings_for

#: Where a page loads a script, a style or an icon from.
ASSET_URL = re.compile(r'(?:src|href)="([^"]+)"')


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    tmp: Path = tmp_path_factory.mktemp("docs")
    with (
        EMBEDDED.fresh_database(tmp) as url,
        TestClient(create_app(settings_for(url, EMBEDDED, tmp))) as client,
    ):
        yield client


def test_docs_load_everything_from_the_api(client: TestClient) -> None:
    # Given the /docs page
    page = client.get("/docs")
    assert page.status_code == 200

    # Then it names no other host, and each file it loads answers from the API
    assert not re.search(r"https?://", page.text)
    assets = ASSET_URL.findall(page.text)
    assert {url.rsplit(".", 1)[-1] for url in assets} == {"css", "js", "png"}
    for url in [*assets, "/openapi.json", "/docs/oauth2-redirect"]:
        assert client.get(url).status_code == 200, url


def test_redoc_is_not_served(client: TestClient) -> None:
    assert client.get("/redoc").status_code == 404

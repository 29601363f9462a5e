"""The artifact plugin: its result is valid while its file, or the URL it is published
under, still exists."""

from __future__ import annotations

import functools
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

from runner_plugins.artifact import Artifact
from tests.plugins.test_registry import RecordingContext
from tests.support import plain_http


class QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


@contextmanager
def serving_folder(folder: Path) -> Iterator[str]:
    """``folder`` served over HTTP on a loopback port; its URL."""
    handler = functools.partial(QuietHandler, directory=str(folder))
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()


@pytest.fixture
def web_folder(tmp_path: Path) -> Iterator[tuple[Path, str]]:
    """A folder served over HTTP on loopback: (the folder, its URL)."""
    folder = tmp_path / "published"
    folder.mkdir()
    with serving_folder(folder) as url:
        yield folder, url


def artifact_in(folder: Path, base_url: str | None = None) -> Artifact:
    """The plugin writing into ``folder`` (published under ``base_url``)."""
    configured = type("LocalArtifact", (Artifact,), {"directory": folder, "base_url": base_url})
    plugin: Artifact = configured()
    return plugin


def run(plugin: Artifact, text: str) -> dict[str, Any]:
    return plugin.run(plugin.validate({"text": text}), RecordingContext())


def test_a_result_is_valid_while_its_file_exists(tmp_path: Path) -> None:
    plugin = artifact_in(tmp_path / "files")
    output = run(plugin, "hello")
    assert Path(output["path"]).read_text() == "hello" and output["bytes"] == 5
    assert "url" not in output
    assert plugin.result_valid(output) is True
    Path(output["path"]).unlink()
    assert plugin.result_valid(output) is False


def test_a_published_result_is_valid_while_its_url_answers(web_folder: tuple[Path, str]) -> None:
    folder, url = web_folder
    plugin = artifact_in(folder, base_url=url)
    output = run(plugin, "published")
    assert output["url"].startswith(f"{url}/")
    assert plain_http.get(output["url"]).text == "published"
    assert plugin.result_valid(output) is True
    Path(output["path"]).unlink()  # the web server now answers 404
    assert plain_http.get(output["url"]).status_code == 404
    assert plugin.result_valid(output) is False


def test_an_unreachable_url_raises(tmp_path: Path) -> None:
    plugin = artifact_in(tmp_path)
    with pytest.raises(httpx.HTTPError):  # an exception makes the result invalid, too
        plugin.result_valid({"url": "http://127.0.0.1:9/gone.txt"})

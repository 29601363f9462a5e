"""Browsers against a real API process and HTTP runner, with nothing but loopback reachable:
a web page of another origin uses the API through CORS, a page of an origin not allowed is
refused, /docs renders from the API's own files, and the dashboard runs under its CSP."""

from __future__ import annotations

import functools
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest

from tests.support import EMBEDDED, Cluster, plain_http, running_cluster
from tests.support.browser import launched_chromium

#: A page that submits a job, follows it and reads the stats (index.html + client.js).
PAGE_DIR = Path(__file__).parent / "cross_origin_page"
#: Every host name resolves to nothing: only 127.0.0.1 can be reached.
LOOPBACK_ONLY = "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1"


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


@contextmanager
def static_site(directory: Path) -> Iterator[str]:
    """``directory`` served on a free loopback port; yields its origin."""
    handler = functools.partial(_QuietHandler, directory=str(directory))
    site = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=site.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{site.server_address[1]}"
    finally:
        site.shutdown()
        site.server_close()
        thread.join()


@pytest.fixture(scope="module")
def sites() -> Iterator[tuple[str, str]]:
    """Two origins serving the page: the one the API allows, and a third one."""
    with static_site(PAGE_DIR) as allowed, static_site(PAGE_DIR) as other:
        yield allowed, other


@pytest.fixture(scope="module")
def cluster(sites: tuple[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """`runpack api` allowing the first site's origin only, beat, and an HTTP runner."""
    tmp = tmp_path_factory.mktemp("browser-clients")
    no_plugins = tmp / "plugins"
    no_plugins.mkdir()
    with (
        EMBEDDED.fresh_database(tmp) as url,
        running_cluster(
            EMBEDDED, url, tmp, no_plugins, workers=0, api_env={"RUNPACK_CORS_ORIGINS": sites[0]}
        ) as running,
    ):
        running.start_runner("hello_world", tmp / "runner.json", long_poll_s=1)
        yield running


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with launched_chromium(LOOPBACK_ONLY) as launched:
        yield launched


@pytest.fixture
def tab(browser: Any) -> Iterator[Any]:
    """A fresh page that keeps its console messages and the URLs it requested."""
    context = browser.new_context()
    page = context.new_page()
    page.console_lines = []
    page.requested = []
    page.on("console", lambda message: page.console_lines.append(message.text))
    page.on("request", lambda request: page.requested.append(request.url))
    yield page
    context.close()


def jobs_total(cluster: Cluster) -> int:
    with cluster.server.client("admin") as admin:
        total: int = admin.get("/api/admin/stats").json()["jobs"]["total"]
    return total


def open_client_page(tab: Any, origin: str, cluster: Cluster, name: str) -> None:
    """Open the page on ``origin``, pointed at the cluster's API; wait until it is done."""
    keys = cluster.server.keys
    query = {"api": cluster.server.url, "submit": keys.submit, "admin": keys.admin, "name": name}
    tab.goto(f"{origin}/index.html?{urlencode(query)}")
    tab.wait_for_function(
        "() => document.getElementById('done').textContent === 'done'", timeout=30_000
    )


def test_a_page_of_an_allowed_origin_submits_follows_and_reads_stats(
    tab: Any, cluster: Cluster, sites: tuple[str, str]
) -> None:
    # Given a web page served from the origin the API allows
    name = f"Cross {uuid.uuid4().hex[:6]}"

    # When it submits a job, follows it and reads the stats
    open_client_page(tab, sites[0], cluster, name)

    # Then the runner's result reached the page, and so did the stats
    assert tab.text_content("#error") == "", cluster.logs()
    assert tab.text_content("#status") == "completed"
    assert f"Hello, {name}!" in tab.text_content("#output")
    assert int(tab.text_content("#jobs-total")) >= 1
    assert cluster.job(tab.text_content("#job-id"))["status"] == "completed"


def test_a_page_of_another_origin_is_refused_by_the_browser(
    tab: Any, cluster: Cluster, sites: tuple[str, str]
) -> None:
    # Given a web page served from an origin the API does not name
    before = jobs_total(cluster)

    # When it tries the same calls
    open_client_page(tab, sites[1], cluster, "refused")

    # Then its first fetch fails, and no job was submitted (the preflight was refused)
    assert tab.text_content("#error") == "TypeError: Failed to fetch"
    assert tab.text_content("#job-id") == ""
    assert any("CORS policy" in line for line in tab.console_lines), tab.console_lines
    assert jobs_total(cluster) == before


def test_docs_render_with_only_loopback_reachable(tab: Any, cluster: Cluster) -> None:
    # Given a browser that can reach nothing but loopback, when it opens /docs
    tab.goto(f"{cluster.server.url}/docs")

    # Then the operations are listed, and everything came from the API
    tab.wait_for_selector(".opblock", timeout=20_000)
    assert "/api/jobs/submit" in tab.text_content("#swagger-ui")
    fetched = [url for url in tab.requested if not url.startswith("data:")]
    assert fetched and all(url.startswith(cluster.server.url) for url in fetched), fetched
    # (and a CDN would indeed have been out of reach)
    remote = "fetch('https://cdn.jsdelivr.net/').then(() => 'reached', (error) => error.message)"
    assert tab.evaluate(remote) == "Failed to fetch"


def test_the_dashboard_runs_under_its_content_security_policy(tab: Any, cluster: Cluster) -> None:
    # Given the settings page, served with its policy
    answer = tab.goto(f"{cluster.server.url}/settings")
    assert "script-src 'self'" in answer.headers["content-security-policy"]

    # When a person saves the keys and opens the playground
    tab.fill("#key-submit", cluster.server.keys.submit)
    tab.fill("#key-runner", cluster.server.keys.runner)
    tab.fill("#key-admin", cluster.server.keys.admin)
    tab.click("#save-keys")
    tab.wait_for_function(
        "() => document.getElementById('keys-status').textContent.includes('admin: ok; submit: ok')"
    )
    tab.goto(f"{cluster.server.url}/playground")
    tab.wait_for_selector("#pg-type option[value=hello_world]", state="attached")

    # Then the scripts ran and fetched the API, and the policy refused nothing
    assert not [line for line in tab.console_lines if "Content Security Policy" in line]
    assert (
        plain_http.get(f"{cluster.server.url}/static/app.js").headers["x-frame-options"] == "DENY"
    )

"""The dashboard in a real browser (Debian's Chromium driven by Playwright) against a real
API, worker and beat; screenshots of each page go to a temporary folder, or refresh
docs/screenshots/ when RUNPACK_UPDATE_SCREENSHOTS=1."""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support import EMBEDDED, Cluster, plain_http, running_cluster
from tests.support.browser import launched_chromium

DOC_SCREENSHOTS = Path(__file__).parents[2] / "docs" / "screenshots"
UPDATE_SCREENSHOTS = os.environ.get("RUNPACK_UPDATE_SCREENSHOTS") == "1"
# Conditions given to wait_for_function are arrow functions: Playwright polls a bare
# expression with eval(), which the dashboard's Content-Security-Policy refuses.
SCRIPT = "<script>alert(1)</script>"
IMAGE = "<img src=x onerror=alert(2)>"


@pytest.fixture(scope="module")
def cluster(plugin_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    tmp = tmp_path_factory.mktemp("dashboard")
    with (
        EMBEDDED.fresh_database(tmp) as url,
        running_cluster(EMBEDDED, url, tmp, plugin_dir) as running,
    ):
        yield running


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with launched_chromium() as launched:
        yield launched


@pytest.fixture
def page(browser: Any, cluster: Cluster) -> Iterator[Any]:
    """A page with the keys entered in Settings, failing the test on any dialog."""
    context = browser.new_context(viewport={"width": 1280, "height": 860})
    tab = context.new_page()
    tab.dialogs = []
    tab.on("dialog", lambda dialog: (tab.dialogs.append(dialog.message), dialog.dismiss()))
    tab.goto(f"{cluster.server.url}/settings")
    tab.fill("#key-submit", cluster.server.keys.submit)
    tab.fill("#key-runner", cluster.server.keys.runner)
    tab.fill("#key-admin", cluster.server.keys.admin)
    tab.click("#save-keys")
    tab.wait_for_function(
        "() => document.getElementById('keys-status').textContent.includes('admin: ok; submit: ok')"
    )
    yield tab
    assert tab.dialogs == []
    context.close()


Shoot = Callable[[Any, str], None]


@pytest.fixture(scope="module")
def shoot(tmp_path_factory: pytest.TempPathFactory) -> Shoot:
    """Screenshots a page, into docs/screenshots/ only when asked to refresh them."""
    folder = DOC_SCREENSHOTS if UPDATE_SCREENSHOTS else tmp_path_factory.mktemp("screenshots")

    def screenshot(page: Any, name: str) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=folder / f"{name}.png", full_page=True)

    return screenshot


def test_keys_never_reach_a_page_or_url(page: Any, cluster: Cluster, shoot: Shoot) -> None:
    for path in ("/", "/jobs", "/runners", "/playground", "/settings"):
        source = plain_http.get(f"{cluster.server.url}{path}").text
        assert cluster.server.keys.admin not in source
        assert cluster.server.keys.submit not in source
    page.goto(f"{cluster.server.url}/settings")
    assert cluster.server.keys.admin not in page.url
    assert page.evaluate("localStorage.getItem('runpack.key.admin')") == cluster.server.keys.admin
    shoot(page, "settings")


def test_a_person_submits_follows_and_finds_a_job(
    page: Any, cluster: Cluster, shoot: Shoot
) -> None:
    url = cluster.server.url
    name = f"Dashboard {uuid.uuid4().hex[:6]}"
    # Given the playground, a hello_world job is submitted
    page.goto(f"{url}/playground")
    page.wait_for_selector("#pg-type option[value=hello_world]", state="attached")
    page.select_option("#pg-type", "hello_world")
    page.fill("#pg-params", "{not json")
    assert "Not valid" in page.text_content("#pg-params-error")
    assert page.is_disabled("#pg-submit")
    page.fill("#pg-params", f'{{"name": "{name}", "processing_time": 3}}')
    page.evaluate("window.sameDocument = true")
    page.click("#pg-submit")

    # Then its progress and status update live, to 100% and completed, without a reload
    page.wait_for_function(
        "() => /^[1-9]\\d?% /.test(document.getElementById('pg-progress-text').textContent)",
        timeout=30_000,
    )
    shoot(page, "playground")
    page.wait_for_function(
        "() => document.getElementById('pg-status').textContent === 'completed'", timeout=30_000
    )
    assert page.text_content("#pg-progress-text") == "100% (10/10)"
    assert page.evaluate("window.sameDocument") is True
    assert f"Hello, {name}!" in page.text_content("#pg-output")

    # And its page shows the output
    page.click("#pg-job-link")
    page.wait_for_function(
        "() => document.getElementById('job-output').textContent.includes('greeting')"
    )
    assert f"Hello, {name}!" in page.text_content("#job-output")
    assert "completed" in page.text_content("#job-status")
    shoot(page, "job")

    # And the jobs list, filtered, lists it
    page.goto(f"{url}/jobs")
    page.select_option("#filters select[name=status]", "failed")
    page.click("#filters button")
    page.wait_for_function("() => document.getElementById('page-info').textContent === 'no jobs'")
    page.select_option("#filters select[name=status]", "completed")
    page.fill("#filters input[name=job_type]", "hello_world")
    page.click("#filters button")
    page.wait_for_selector("#jobs-table tbody tr")
    assert "status=completed" in page.url
    rows = page.locator("#jobs-table tbody tr")
    assert all("completed" in rows.nth(i).text_content() for i in range(rows.count()))
    shoot(page, "jobs")

    # And the overview counts it, and the runner that ran it has a page
    page.goto(f"{url}/")
    page.wait_for_selector("#job-counts .card")
    page.wait_for_function(
        "() => [...document.querySelectorAll('#throughput rect')]"
        ".some((bar) => Number(bar.getAttribute('height')) > 0)"
    )
    shoot(page, "overview")
    page.goto(f"{url}/runners")
    page.wait_for_selector("#runners-table tbody tr")
    assert "Celery worker" in page.text_content("#runners-table")
    shoot(page, "runners")
    page.click("#runners-table tbody tr a")
    page.wait_for_selector("#runner-jobs tbody tr")
    assert "Celery worker" in page.text_content("#runner-kind")
    shoot(page, "runner")


def test_html_in_jobs_is_shown_as_text_everywhere(page: Any, cluster: Cluster) -> None:
    # Given jobs whose parameters, console output and error hold HTML, run by a runner
    # whose name holds HTML too
    url = cluster.server.url
    payload = {"script": SCRIPT, "img": IMAGE, "n": uuid.uuid4().hex}
    with cluster.server.client("runner") as runner:
        runner_id = runner.post(
            "/api/runner/register", json={"name": f"evil {IMAGE}", "capabilities": ["probe"]}
        ).json()["runner_id"]
    running = cluster.submit("probe", payload).json()["job_id"]
    failing = cluster.submit("probe", {**payload, "fail": True}).json()["job_id"]
    with cluster.server.client("runner", runner_id) as runner:
        for job_id in (running, failing):
            assert runner.post(f"/api/runner/jobs/{job_id}/claim").status_code == 200
        runner.post(
            f"/api/runner/jobs/{running}/heartbeat",
            json={
                "progress_current": 1,
                "progress_total": 3,
                "console_output": f"{SCRIPT}\n{IMAGE}",
            },
        )
        runner.post(
            f"/api/runner/jobs/{failing}/error",
            json={"error_message": f"{IMAGE} {SCRIPT}", "console_output": SCRIPT},
        )

    # When every page shows them, then nothing runs and the text is visible as written
    page.goto(f"{url}/jobs/{running}")
    page.wait_for_function("() => document.getElementById('job-console').textContent.length > 0")
    assert SCRIPT in page.text_content("#job-params") and IMAGE in page.text_content("#job-params")
    assert page.text_content("#job-console") == f"{SCRIPT}\n{IMAGE}"
    page.goto(f"{url}/jobs/{failing}")
    page.wait_for_function("() => document.getElementById('job-error').textContent.length > 0")
    assert page.text_content("#job-error") == f"{IMAGE} {SCRIPT}"
    assert page.is_visible("#job-error")
    page.goto(f"{url}/runners")
    page.wait_for_selector("#runners-table tbody tr")
    assert f"evil {IMAGE}" in page.text_content("#runners-table")
    page.goto(f"{url}/runners/{runner_id}")
    page.wait_for_function("() => document.getElementById('runner-name').textContent.length > 0")
    assert page.text_content("#runner-name") == f"evil {IMAGE}"
    page.goto(f"{url}/jobs?job_type=probe")
    page.wait_for_selector("#jobs-table tbody tr")
    page.goto(f"{url}/")
    page.wait_for_selector("#job-counts .card")
    assert page.locator("img").count() == 0
    assert page.dialogs == []


def showing(page: Any, info: str) -> None:
    """Wait until the pager says ``info`` (such as "1\u201350 of 61")."""
    page.wait_for_function(
        "(info) => document.getElementById('page-info').textContent === info", arg=info
    )


def test_runners_page_through_and_fractional_progress_shows(page: Any, cluster: Cluster) -> None:
    # Given more runners than one page holds, one of them running a job at 0.4213 of 1
    url = cluster.server.url
    with cluster.server.client("runner") as runner:
        registered = [
            runner.post(
                "/api/runner/register", json={"name": f"pager {n}", "capabilities": ["probe"]}
            ).json()["runner_id"]
            for n in range(60)
        ]
    job_id = cluster.submit("probe", {"n": uuid.uuid4().hex}).json()["job_id"]
    with cluster.server.client("runner", registered[0]) as runner:
        assert runner.post(f"/api/runner/jobs/{job_id}/claim").status_code == 200
        beat = runner.post(
            f"/api/runner/jobs/{job_id}/heartbeat",
            json={"progress_current": 0.4213, "progress_total": 1},
        )
        assert beat.status_code == 200
    with cluster.server.client("admin") as admin:
        total = admin.get("/api/admin/runners").json()["total"]
    assert 60 < total <= 100

    # When the runners page is opened, then it shows the first 50 and pages to the rest
    page.goto(f"{url}/runners")
    showing(page, f"1\u201350 of {total}")
    assert page.locator("#runners-table tbody tr").count() == 50
    assert page.is_disabled("#prev") and not page.is_disabled("#next")
    page.click("#next")
    showing(page, f"51\u2013{total} of {total}")
    assert page.locator("#runners-table tbody tr").count() == total - 50
    assert page.is_disabled("#next") and not page.is_disabled("#prev")
    page.click("#prev")
    showing(page, f"1\u201350 of {total}")

    # And the job's page shows its fractional progress rounded
    page.goto(f"{url}/jobs/{job_id}")
    page.wait_for_function(
        "() => document.getElementById('job-progress-text').textContent === '42% (0.42/1)'"
    )


def test_jobs_page_through_by_the_before_cursor(page: Any, cluster: Cluster) -> None:
    # Given more jobs of one type than a page of the jobs list holds
    job_type = f"paged{uuid.uuid4().hex[:8]}"
    ids = [cluster.submit(job_type, {"n": n}).json()["job_id"] for n in range(30)]
    page.requested = []
    page.on("request", lambda request: page.requested.append(request.url))

    # When the list, filtered by that type, is paged to the older jobs and back
    page.goto(f"{cluster.server.url}/jobs?job_type={job_type}")
    showing(page, "1\u201325 of 30")
    assert page.is_disabled("#prev") and not page.is_disabled("#next")
    first = page.locator("#jobs-table tbody tr").all_text_contents()
    page.click("#next")
    showing(page, "26\u201330 of 30")
    assert page.is_disabled("#next") and not page.is_disabled("#prev")
    older = page.locator("#jobs-table tbody tr").all_text_contents()
    page.click("#prev")
    showing(page, "1\u201325 of 30")

    # Then the two pages hold every job once, and were asked for by cursor, never by offset
    shown = " ".join(first + older)
    assert all(job_id[:8] in shown for job_id in ids) and len(first) + len(older) == 30
    listed = [url for url in page.requested if "/api/admin/jobs?" in url]
    assert any("before=" in url for url in listed)
    assert not any("offset=" in url for url in listed)


def test_an_admin_expires_a_job_from_its_page_and_the_overview_shows_compute_saved(
    page: Any, cluster: Cluster
) -> None:
    # Given a completed tally job (it runs at least 0.5 s), served once from cache
    params = {"log": str(cluster.tmp_dir / f"tally-{uuid.uuid4().hex[:8]}.log"), "seconds": 0.5}
    job_id = cluster.submit("tally", params).json()["job_id"]
    cluster.wait_for_status(job_id, "completed")
    assert cluster.submit("tally", params).json()["status"] == "completed"

    # Then the overview shows the compute the cache saved
    page.goto(f"{cluster.server.url}/")
    page.wait_for_function(
        "() => [...document.querySelectorAll('#system-counts .card')].some((card) =>"
        " card.textContent.includes('compute saved') && !card.textContent.startsWith('0.0 s'))"
    )

    # When the admin expires it from its page
    page.goto(f"{cluster.server.url}/jobs/{job_id}")
    page.wait_for_function(
        "() => document.getElementById('job-status').textContent === 'completed'"
    )
    page.click("#expire")

    # Then the page says so, and shows it expired; the jobs list's filter finds it
    page.wait_for_function(
        "() => document.getElementById('action-result').textContent.includes('expired')"
    )
    page.wait_for_function("() => document.getElementById('job-status').textContent === 'expired'")
    page.goto(f"{cluster.server.url}/jobs?status=expired")
    page.wait_for_selector(f"#jobs-table tbody tr >> text={job_id}")


def test_the_job_page_cancels_a_pending_job(page: Any, cluster: Cluster) -> None:
    # Given a pending job of a type nothing serves, open on its page
    job_id = cluster.submit("unserved", {"n": uuid.uuid4().hex}).json()["job_id"]
    page.goto(f"{cluster.server.url}/jobs/{job_id}")
    page.wait_for_function("() => document.getElementById('job-status').textContent === 'pending'")
    assert page.is_visible("#cancel")

    # When the person cancels it and confirms (the confirmation answered yes in the page:
    # the fixture refuses any dialog that opens)
    page.evaluate("() => { window.confirm = () => true; }")
    page.click("#cancel")

    # Then the page shows it failed with "cancelled", and the button is gone
    page.wait_for_function("() => document.getElementById('job-status').textContent === 'failed'")
    assert page.text_content("#job-error") == "cancelled"
    assert page.text_content("#action-result") == f"Job {job_id} cancelled"
    assert not page.is_visible("#cancel")

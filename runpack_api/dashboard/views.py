"""Dashboard pages. Each is a plain template; the browser fetches the data from the JSON API
with the keys it keeps (localStorage), so no key ever reaches a page, a URL or a log."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates

from runpack_api.dashboard.headers import SecuredRoute, WithSecurityHeaders

HERE = Path(__file__).parent
templates = Jinja2Templates(directory=HERE / "templates")
static_files = WithSecurityHeaders(StaticFiles(directory=HERE / "static"))

router = APIRouter(
    include_in_schema=False, default_response_class=HTMLResponse, route_class=SecuredRoute
)

PAGES = {
    "/": ("overview.html", "Overview"),
    "/jobs": ("jobs.html", "Jobs"),
    "/runners": ("runners.html", "Runners"),
    "/playground": ("playground.html", "Playground"),
    "/settings": ("settings.html", "Settings"),
}


def _page(request: Request, template: str, title: str, **context: Any) -> HTMLResponse:
    nav = [(path, label) for path, (_template, label) in PAGES.items()]
    return templates.TemplateResponse(request, template, {"title": title, "nav": nav, **context})


def _static_page(template: str, title: str) -> Any:
    async def page(request: Request) -> HTMLResponse:
        return _page(request, template, title)

    return page


for path, (template, title) in PAGES.items():
    router.add_api_route(path, _static_page(template, title), methods=["GET"], name=title)


@router.get("/jobs/{job_id}")
async def job_page(request: Request, job_id: str) -> HTMLResponse:
    """One job, live."""
    return _page(request, "job.html", "Job", job_id=job_id)


@router.get("/runners/{runner_id}")
async def runner_page(request: Request, runner_id: str) -> HTMLResponse:
    """One runner and its recent jobs."""
    return _page(request, "runner.html", "Runner", runner_id=runner_id)

"""create_app(settings): the FastAPI application with every router and middleware listed."""

from __future__ import annotations

import gc
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from runpack_api import docs, openapi
from runpack_api.bodylimit import BodyLimitMiddleware, body_caps
from runpack_api.cors import APICORSMiddleware
from runpack_api.dashboard import views as dashboard
from runpack_api.direct import DirectRoutes
from runpack_api.errors import install_error_handlers
from runpack_api.routes import admin, health, jobs, metrics, runner
from runpack_api.runtime import Runtime
from runpack_tasks.settings import RunpackSettings, get_settings

#: Where the client routes are included; DirectRoutes serves them there (see direct.py).
JOBS_PREFIX = "/api/jobs"


def create_app(settings: RunpackSettings) -> FastAPI:
    """The API for ``settings``; refuses to build without the three API keys."""
    settings.require_keys()
    runtime = Runtime.start(settings)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        # Everything alive now lives as long as the process: keep it out of the collector's
        # full passes, which otherwise pause every request for tens of milliseconds.
        gc.freeze()
        runtime.pending.start(runtime.engine)
        runtime.runners.start()
        if runtime.wal_checkpoints is not None:
            runtime.wal_checkpoints.start()
        yield
        runtime.close()

    app = FastAPI(
        title="Runpack",
        summary="Compute things on demand, and never the same thing twice.",
        version="0.1.0",
        lifespan=lifespan,
        docs_url=None,  # served by docs.router, from the API's own copy of Swagger UI
        redoc_url=None,
    )
    app.state.runtime = runtime
    app.add_middleware(DirectRoutes, prefix=JOBS_PREFIX, router=jobs.router)
    app.add_middleware(BodyLimitMiddleware, caps=body_caps(settings))
    if settings.cors_origins:  # added last, so outermost: its headers reach every answer
        app.add_middleware(APICORSMiddleware, origins=settings.cors_origins)
    install_error_handlers(app)

    app.include_router(jobs.router, prefix=JOBS_PREFIX, tags=["jobs"])
    app.include_router(runner.router, prefix="/api/runner", tags=["runner"])
    app.include_router(admin.router, prefix="/api/admin", tags=["admin"])
    app.include_router(health.router, tags=["health"])
    app.include_router(metrics.router, tags=["health"])
    app.include_router(docs.router)  # /docs, /docs/oauth2-redirect
    app.mount(docs.ASSETS_PATH, docs.assets, name="docs-assets")
    app.include_router(dashboard.router)  # /, /jobs, /jobs/{id}, /runners, ... (HTML)
    app.mount("/static", dashboard.static_files, name="static")
    openapi.install(app)
    return app


def app_from_env() -> FastAPI:
    """The API configured from ``RUNPACK_*`` variables (uvicorn's factory entry point)."""
    return create_app(get_settings())

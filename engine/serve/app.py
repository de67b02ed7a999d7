"""The web app: ``create_app`` wires the ``Service`` into FastAPI.

Mounted: the ``/v1`` API (``api``), the sign-in routes (``auth``), the end-user pages
(``pages``, under ``/ui``), the dashboard (``dashboard``, under ``/admin``), static assets
(``/static``), ``/metrics`` and ``/healthz``; ``/openapi.json`` is FastAPI's. With
``background`` the lifespan starts the job worker and the health monitor and stops both on
shutdown. Every request gets an id (``X-Request-ID``, taken from the proxy when it sends a
sane one), one JSON log line and metrics; every error is JSON ``{"error": {"code",
"message"}}`` (an HTML page for the pages) and never echoes the request's input.
"""

from __future__ import annotations

import html
import logging
import re
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException

from engine.assets import templates_dir
from engine.commands.workspace import Workspace
from engine.errors import ByodError
from engine.ports.deployment import FunctionRunner
from engine.redact import redact
from engine.serve import api, auth, dashboard, pages
from engine.serve.errors import ApiError, from_engine_error
from engine.serve.logs import configure_logging
from engine.serve.metrics import CONTENT_TYPE, Metrics
from engine.serve.monitor import ServiceMonitor
from engine.serve.service import Service
from engine.serve.settings import ServeSettings

__all__ = ["app_from_env", "create_app"]

log = logging.getLogger("engine.serve.requests")

_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
_PAGE_PREFIXES = ("/ui", "/admin")


def _wants_html(request: Request) -> bool:
    return request.url.path.startswith(_PAGE_PREFIXES) and \
        "text/html" in request.headers.get("accept", "")


def _error_response(request: Request, error: ApiError) -> Response:
    if _wants_html(request):
        if error.status == 401 and request.url.path.startswith("/admin") \
                and request.method == "GET":
            return Response(status_code=303, headers={"Location": "/admin/login"})
        body = (f"<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">"
                f"<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
                f"<title>byod: {html.escape(error.code)}</title></head><body><main>"
                f"<h1>Something went wrong</h1><p role=\"alert\">{html.escape(error.message)}"
                f"</p></main></body></html>")
        return HTMLResponse(body, status_code=error.status, headers=error.headers())
    return JSONResponse(error.body(), status_code=error.status, headers=error.headers())


def _validation_error(exc: RequestValidationError) -> ApiError:
    """The first problem of a request that does not fit the model: where and what, never
    the value sent (it may be a deploy key)."""

    first = exc.errors()[0] if exc.errors() else {}
    loc = [str(p) for p in first.get("loc", ()) if p not in ("body", "query", "path")]
    field = ".".join(loc) or None
    message = str(first.get("msg", "invalid request"))
    return ApiError(422, "invalid_request", f"{field}: {message}" if field else message,
                    field=field)


def create_app(ws: Workspace, settings: ServeSettings, *, background: bool = True,
               main_client: FunctionRunner | None = None) -> FastAPI:
    """The service's FastAPI app over ``ws`` (see the module docstring). ``main_client``
    replaces the main deployment from ``BYOD_MAIN_URL`` / ``BYOD_MAIN_ADMIN_KEY``."""

    service = Service(ws, settings, main_client=main_client)
    monitor = ServiceMonitor(service)
    service.blocked_notice = monitor.notice_for

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if background:
            service.worker.start()
            await monitor.start()
        try:
            yield
        finally:
            if background:
                await monitor.stop()
            service.close()

    app = FastAPI(title="byod service", version="1",
                  description="Settings API, blocker and data plane for apps whose users "
                              "bring their own Convex deployment.",
                  lifespan=lifespan, docs_url="/docs", redoc_url=None)
    app.state.service = service
    app.state.monitor = monitor
    metrics = Metrics(service)
    app.state.metrics = metrics
    service.worker.on_finish = lambda job: metrics.jobs.labels(job.kind, job.state).inc()
    service.observe_call = lambda outcome: metrics.routed.labels(outcome).inc()

    @app.middleware("http")
    async def observe(request: Request,
                      call_next: Callable[[Request], Awaitable[Response]]) -> Response:
        sent = request.headers.get("x-request-id", "")
        request_id = sent if _REQUEST_ID.match(sent) else uuid.uuid4().hex[:16]
        request.state.request_id = request_id
        started = time.perf_counter()
        status = 500
        try:
            response = await call_next(request)
            status = response.status_code
        finally:
            elapsed = time.perf_counter() - started
            route = getattr(request.scope.get("route"), "path", None) or "(unmatched)"
            metrics.requests.labels(request.method, route, str(status)).inc()
            metrics.latency.labels(request.method, route).observe(elapsed)
            principal = getattr(request.state, "principal", None)
            log.info("%s %s %s", request.method, route, status, extra={
                "request_id": request_id, "method": request.method, "route": route,
                "status": status, "duration_ms": round(elapsed * 1000, 1),
                "user_id": getattr(request.state, "user_id", None),
                "principal": None if principal is None else
                (principal.token_id or f"user:{principal.user_id}")})
        response.headers["X-Request-ID"] = request_id
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("Referrer-Policy", "no-referrer")
        return response

    @app.exception_handler(ApiError)
    async def api_error(request: Request, exc: ApiError) -> Response:
        return _error_response(request, exc)

    @app.exception_handler(ByodError)
    async def engine_error(request: Request, exc: ByodError) -> Response:
        return _error_response(request, from_engine_error(exc))

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> Response:
        return _error_response(request, _validation_error(exc))

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        message = redact(str(exc.detail)) if exc.status_code != 404 else "no such route"
        return _error_response(request, ApiError(exc.status_code, code, message))

    @app.exception_handler(Exception)
    async def crashed(request: Request, exc: Exception) -> Response:
        request_id = getattr(request.state, "request_id", "?")
        log.error("request %s failed: %s", request_id, type(exc).__name__,
                  extra={"request_id": request_id})
        return _error_response(request, ApiError(
            500, "internal", f"internal error (request {request_id})"))

    @app.get("/healthz", include_in_schema=False)
    def healthz() -> dict[str, Any]:
        service.store.schema_version()  # the registry answers
        return {"ok": True, "enabled": service.enabled, "worker": service.worker.running}

    @app.get("/metrics", include_in_schema=False)
    def metrics_page() -> Response:
        return Response(metrics.render(), media_type=CONTENT_TYPE)

    app.include_router(api.router)
    app.include_router(auth.router)
    app.include_router(pages.router)
    app.include_router(dashboard.router)
    static = templates_dir() / "serve" / "static"
    if static.is_dir():
        app.mount("/static", StaticFiles(directory=static), name="static")
    return app


def app_from_env() -> FastAPI:
    """The app ``byod serve`` runs (uvicorn's factory): the configuration and secrets of
    the environment, JSON logs on stderr."""

    configure_logging()
    ws = Workspace.open()
    settings = ServeSettings.from_config(ws.config)
    return create_app(ws, settings)

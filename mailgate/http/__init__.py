"""The HTTP side of mailgate: a JSON API with an OpenAPI document, and the
web pages."""

from __future__ import annotations

import logging

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import JSONResponse, Response

from mailgate.app import App
from mailgate.http import admin, alerts, health, metrics, rules, tickets
from store.operations import OperationError
from store.permissions import PermissionDenied

log = logging.getLogger(__name__)

# Routers of the JSON API, served only by processes that run the http role.
# Every process serves /healthz and /metrics.
API_ROUTERS: list[APIRouter] = [tickets.router, alerts.router, rules.router, admin.router]


def create_http_app(app: App, *, api: bool = True) -> FastAPI:
    """Build the ASGI application; routers find ``app`` on ``request.app.state``."""
    # Imported here because the web pages use this package's dependencies.
    from mailgate.web import error_page, install_web, is_page

    http = FastAPI(title="mailgate", version="0.1.0")
    http.state.mailgate = app
    health.install_probes(http.state, app)
    http.include_router(health.router)
    http.include_router(metrics.router)
    if api:
        for router in API_ROUTERS:
            http.include_router(router)
        install_web(http, app)

    @http.exception_handler(PermissionDenied)
    def permission_denied(request: Request, error: PermissionDenied) -> Response:
        log.info("HTTP %s %s refused: %s", request.method, request.url.path, error)
        if api and is_page(request):
            return error_page(request, 403, str(error))
        return JSONResponse(
            {"detail": str(error), "missing_permission": error.permission}, status_code=403
        )

    @http.exception_handler(OperationError)
    def operation_error(request: Request, error: OperationError) -> Response:
        status = 404 if "not found" in str(error) else 400
        if api and is_page(request):
            return error_page(request, status, str(error))
        return JSONResponse({"detail": str(error)}, status_code=status)

    return http

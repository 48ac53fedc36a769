"""The HTTP side of mailgate: a JSON API with an OpenAPI document."""

from __future__ import annotations

from fastapi import APIRouter, FastAPI

from mailgate.app import App
from mailgate.http import health, metrics

# Routers of the JSON API, served only by processes that run the http role.
# Every process serves /healthz and /metrics.
API_ROUTERS: list[APIRouter] = []


def create_http_app(app: App, *, api: bool = True) -> FastAPI:
    """Build the ASGI application; routers find ``app`` on ``request.app.state``."""
    http = FastAPI(title="mailgate", version="0.1.0")
    http.state.mailgate = app
    health.install_probes(http.state, app)
    http.include_router(health.router)
    http.include_router(metrics.router)
    if api:
        for router in API_ROUTERS:
            http.include_router(router)
    return http

"""The HTTP side of mailgate: a JSON API with an OpenAPI document."""

from __future__ import annotations

from fastapi import FastAPI

from mailgate.app import App
from mailgate.http import health


def create_http_app(app: App) -> FastAPI:
    """Build the ASGI application; routers find ``app`` on ``request.app.state``."""
    http = FastAPI(title="mailgate", version="0.1.0")
    http.state.mailgate = app
    http.include_router(health.router)
    return http

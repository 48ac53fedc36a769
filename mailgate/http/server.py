"""Run the HTTP API with uvicorn inside an existing asyncio loop."""

from __future__ import annotations

import asyncio
import logging

import uvicorn

from mailgate.app import App
from mailgate.http import create_http_app

log = logging.getLogger(__name__)


async def start_http_server(
    app: App, host: str, port: int, *, api: bool = True
) -> tuple[uvicorn.Server, asyncio.Task]:
    """Start serving and return the server and its task; set
    ``server.should_exit`` to stop it. Without ``api`` only /healthz and
    /metrics are served."""
    config = uvicorn.Config(
        create_http_app(app, api=api), host=host, port=port, log_level="warning", lifespan="off",
        access_log=False,
        # Client addresses (sign-in limits, logs) come from X-Forwarded-For
        # only when the connection is from one of these proxies.
        proxy_headers=bool(app.settings.http_trusted_proxies),
        forwarded_allow_ips=app.settings.http_trusted_proxies or None,
    )
    server = uvicorn.Server(config)
    # The process installs its own signal handlers.
    server.install_signal_handlers = lambda: None  # type: ignore[method-assign]
    task = asyncio.create_task(server.serve(), name="mailgate-http")
    while not server.started:
        if task.done():
            task.result()  # raises why it could not start, e.g. the port is taken
        await asyncio.sleep(0.05)
    return server, task

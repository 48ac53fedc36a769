"""Health check: ready when the database answers."""

from __future__ import annotations

import logging

from fastapi import APIRouter, Request, Response
from sqlalchemy import text

log = logging.getLogger(__name__)

router = APIRouter()


@router.get("/healthz")
def healthz(request: Request, response: Response) -> dict[str, str]:
    """Return 200 when the database answers a query, else 503."""
    app = request.app.state.mailgate
    try:
        with app.engine.connect() as connection:
            connection.execute(text("SELECT 1"))
    except Exception as error:
        log.warning("health check: database unavailable: %s", error)
        response.status_code = 503
        return {"status": "unavailable", "database": "unavailable"}
    return {"status": "ok", "database": "ok"}

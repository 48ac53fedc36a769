"""``/metrics``: Prometheus text exposition of mailgate's metrics."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from mailgate.metrics import scrape_registry

router = APIRouter()


@router.get("/metrics", include_in_schema=False)
def metrics(request: Request) -> Response:
    """Return the metrics of this process, or of its worker processes."""
    app = request.app.state.mailgate
    body = generate_latest(scrape_registry(app.sessions))
    return Response(content=body, media_type=CONTENT_TYPE_LATEST)

"""``/healthz``: ready when the database and the broker answer.

Each check runs on a thread of its own with a deadline, so a server that
hangs instead of refusing connections makes the check fail within
``CHECK_TIMEOUT_SECONDS``. While a check is still running, the next request
reports it unavailable without starting another, so threads never pile up.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

import redis
from fastapi import APIRouter, Request, Response
from sqlalchemy import text

from mailgate.app import App

log = logging.getLogger(__name__)

router = APIRouter()

# Well under the 5 seconds within which an outage must show as unready.
CHECK_TIMEOUT_SECONDS = 2.0


class Probe:
    """One dependency check, run on a daemon thread of its own with a
    deadline, so a check stuck in a connect never blocks the process's exit."""

    def __init__(self, name: str, check: Callable[[], None]) -> None:
        self.name = name
        self.check = check
        self._running: threading.Thread | None = None
        self._lock = threading.Lock()

    def status(self) -> str:
        """Return "ok", or "unavailable" and log why."""
        errors: list[Exception] = []
        with self._lock:
            if self._running is not None and self._running.is_alive():
                log.warning("health check: %s: previous check still running", self.name)
                return "unavailable"
            self._running = threading.Thread(
                target=self._run, args=(errors,), name=f"health-{self.name}", daemon=True
            )
            self._running.start()
            running = self._running
        running.join(CHECK_TIMEOUT_SECONDS)
        if running.is_alive():
            log.warning(
                "health check: %s timed out after %.0fs", self.name, CHECK_TIMEOUT_SECONDS
            )
            return "unavailable"
        if errors:
            log.warning("health check: %s unavailable: %s", self.name, errors[0])
            return "unavailable"
        return "ok"

    def _run(self, errors: list[Exception]) -> None:
        try:
            self.check()
        except Exception as error:
            errors.append(error)


def database_probe(app: App) -> Probe:
    def check() -> None:
        with app.engine.connect() as connection:
            connection.execute(text("SELECT 1"))

    return Probe("database", check)


def broker_probe(app: App) -> Probe | None:
    """Return a Redis PING probe, or None for the in-process broker."""
    if not app.settings.redis_url:
        return None
    client = redis.Redis.from_url(
        app.settings.redis_url,
        socket_timeout=CHECK_TIMEOUT_SECONDS,
        socket_connect_timeout=CHECK_TIMEOUT_SECONDS,
    )

    def check() -> None:
        client.ping()

    return Probe("broker", check)


def install_probes(state: object, app: App) -> None:
    """Create the probes once per HTTP application, on its ``state``."""
    state.health_probes = [
        probe for probe in (database_probe(app), broker_probe(app)) if probe is not None
    ]


@router.get("/healthz")
def healthz(request: Request, response: Response) -> dict[str, str]:
    """Return 200 when the database and the broker answer, else 503.

    The in-process broker always answers, so it is reported as "in-process".
    """
    probes: list[Probe] = request.app.state.health_probes
    result = {probe.name: probe.status() for probe in probes}
    if "broker" not in result:
        result["broker"] = "in-process"
    ready = all(value != "unavailable" for value in result.values())
    if not ready:
        response.status_code = 503
    return {"status": "ok" if ready else "unavailable", **result}

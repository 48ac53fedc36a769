"""Web pages for agents, managers and admins, served beside the HTTP API
by processes of the http role. They call the same store operations as the
CLI and the API, so every role rule applies to every page and button."""

from __future__ import annotations

import logging
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.responses import Response
from fastapi.staticfiles import StaticFiles
from starlette.middleware.sessions import SessionMiddleware

from mailgate.app import App
from mailgate.web import dashboard, rules_page, signin, ticket_actions, ticket_page, tray
from mailgate.web.pages import SignInRequired, redirect, render
from mailgate.web.session import SESSION_COOKIE, CSRFError, load_web_secret

log = logging.getLogger(__name__)

STATIC_DIR = Path(__file__).parent / "static"

# Pages load scripts, styles and images from this site only. Mail HTML is
# sanitised before it is shown, and this policy is the second line: it stops
# anything that slips through from running or loading from elsewhere.
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)


def is_page(request: Request) -> bool:
    """Return whether the request is for a web page rather than the API."""
    path = request.url.path
    return not path.startswith(("/api", "/healthz", "/readyz", "/metrics", "/docs", "/openapi"))


def error_page(request: Request, status_code: int, message: str) -> Response:
    return render(request, "error.html", {"status_code": status_code, "message": message},
                  status_code=status_code)


def install_web(http: FastAPI, app: App) -> None:
    """Add the web pages, their session cookie and static files to ``http``."""
    http.add_middleware(
        SessionMiddleware,
        secret_key=load_web_secret(app.settings),
        session_cookie=SESSION_COOKIE,
        max_age=int(app.settings.web_session_hours * 3600),
        same_site="lax",
        https_only=app.settings.web_secure_cookies,
    )

    @http.middleware("http")
    async def security_headers(request: Request, call_next):  # type: ignore[no-untyped-def]
        response = await call_next(request)
        if is_page(request):
            response.headers.setdefault("Content-Security-Policy", CONTENT_SECURITY_POLICY)
            response.headers.setdefault("X-Content-Type-Options", "nosniff")
            response.headers.setdefault("Referrer-Policy", "same-origin")
            response.headers.setdefault("X-Frame-Options", "DENY")
        return response

    http.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    for router in (signin.router, dashboard.router, ticket_page.router, ticket_actions.router,
                   tray.router, rules_page.router):
        http.include_router(router)

    @http.exception_handler(SignInRequired)
    def sign_in_required(request: Request, error: SignInRequired) -> Response:
        return redirect("/signin", next=error.next_path)

    @http.exception_handler(CSRFError)
    def csrf_failed(request: Request, error: CSRFError) -> Response:
        log.warning("web %s %s rejected: %s", request.method, request.url.path, error)
        return error_page(request, 403, str(error))

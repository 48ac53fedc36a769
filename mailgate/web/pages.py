"""Helpers of every web page: the signed-in actor, CSRF-checked forms,
rendering with the page layout, and redirects that stay on this site."""

from __future__ import annotations

from collections.abc import Callable, Mapping
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urlencode, urlsplit

from fastapi import Depends, Request
from fastapi.responses import RedirectResponse, Response
from fastapi.templating import Jinja2Templates
from sqlalchemy import func, select
from sqlalchemy.orm import Session
from starlette.datastructures import FormData

from mailgate.http.auth import transaction
from mailgate.web.session import CSRF_FIELD, CSRF_HEADER, check_csrf, csrf_token, signed_in_user
from store import operations as ops
from store.models import TrayItem
from store.permissions import has_permission

log = logging.getLogger(__name__)

templates = Jinja2Templates(directory=Path(__file__).parent / "templates")


@dataclass(frozen=True)
class Viewer:
    """The signed-in user as the page layout shows them; a plain copy, so an
    error page can still be drawn after the request's transaction ended."""

    id: int
    username: str
    name: str
    role: str


class SignInRequired(Exception):
    """Raised for a page that needs a signed-in user; the handler redirects
    to the sign-in page."""

    def __init__(self, next_path: str) -> None:
        super().__init__(next_path)
        self.next_path = next_path


def page_actor(request: Request, session: Session = Depends(transaction, scope="function")) -> ops.Actor:
    """Return the signed-in user as an actor of channel "web"."""
    user = signed_in_user(request, session)
    if user is None:
        path = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        raise SignInRequired(path)
    actor = ops.Actor(user, "web")
    request.state.actor = actor
    request.state.viewer = Viewer(user.id, user.username, user.name, user.role)
    return actor


async def checked_form(request: Request) -> FormData:
    """Return the request's form after checking its CSRF token."""
    form = await request.form()
    submitted = form.get(CSRF_FIELD) or request.headers.get(CSRF_HEADER)
    check_csrf(request, submitted if isinstance(submitted, str) else None)
    return form


# Parameter types of page routes: a CSRF-checked form, the signed-in actor
# and the request's transaction.
CheckedForm = Annotated[FormData, Depends(checked_form)]
PageActor = Annotated[ops.Actor, Depends(page_actor)]
Transaction = Annotated[Session, Depends(transaction, scope="function")]


def local_path(value: str | None, default: str) -> str:
    """Return ``value`` when it is a path on this site, else ``default``, so
    that a crafted ``next`` cannot send the user elsewhere."""
    if not value:
        return default
    parts = urlsplit(value)
    if parts.scheme or parts.netloc or not value.startswith("/") or value.startswith("//"):
        return default
    if "\\" in value:
        return default
    return value


def redirect(path: str, **query: Any) -> RedirectResponse:
    """Return a 303 redirect, so that reloading the next page resends no form."""
    values = {key: value for key, value in query.items() if value not in (None, "")}
    if values:
        path += ("&" if "?" in path else "?") + urlencode(values)
    return RedirectResponse(path, status_code=303)


def flash(request: Request, message: str, kind: str = "info") -> None:
    """Store a short message in the session for the next page rendered."""
    request.session.setdefault("flash", []).append({"kind": kind, "text": message[:500]})


def render(
    request: Request,
    template: str,
    context: Mapping[str, Any] | None = None,
    *,
    status_code: int = 200,
    session: Session | None = None,
) -> Response:
    """Render ``template`` with what the layout needs: the user, the CSRF
    token, the unread tray count and a ``can(permission)`` test."""
    user: Viewer | None = getattr(request.state, "viewer", None)
    unread = 0
    if user is not None and session is not None:
        unread = session.scalar(
            select(func.count()).select_from(TrayItem)
            .where(TrayItem.user_id == user.id, TrayItem.read_at.is_(None))
        ) or 0
    values = {
        "user": user,
        "csrf_token": csrf_token(request),
        "unread_count": unread,
        "flashes": request.session.pop("flash", []),
        "can": (lambda permission: user is not None and has_permission(user.role, permission)),
        **(context or {}),
    }
    return templates.TemplateResponse(request, template, values, status_code=status_code)


def attempt(
    request: Request,
    session: Session,
    back: str,
    action: Callable[[], Any],
    success: str | Callable[[Any], str],
) -> Response:
    """Run ``action`` in a savepoint, then go to ``back`` with a message.

    An OperationError (an invalid value, a closed ticket) is shown to the
    user and changes nothing. A missing permission is not caught here: it
    gets a 403 response, like a forged request.
    """
    try:
        with session.begin_nested():
            outcome = action()
    except ops.OperationError as error:
        log.info("web %s %s failed: %s", request.method, request.url.path, error)
        flash(request, str(error), "error")
        return redirect(back)
    flash(request, success if isinstance(success, str) else success(outcome))
    return redirect(back)

"""Helpers of every web page: the signed-in actor, CSRF-checked forms,
rendering with the page layout, and redirects that stay on this site."""

from __future__ import annotations

from collections.abc import Callable, Mapping
import json
import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urlencode, urlsplit

from fastapi import Depends, Request
from fastapi import Path as PathParameter
from fastapi.responses import RedirectResponse, Response
from fastapi.templating import Jinja2Templates
from markupsafe import Markup
from sqlalchemy import func, select
from sqlalchemy.orm import Session
from starlette.datastructures import FormData

from mailgate.http.auth import transaction
from mailgate.web.session import CSRF_FIELD, CSRF_HEADER, check_csrf, csrf_token, signed_in_user
from store import operations as ops
from store.models import TrayItem
from store.permissions import has_permission

log = logging.getLogger(__name__)

# Unicode bidirectional embedding, override and isolate controls. In a
# subject, sender name or filename they can make "gnp.exe" read as
# "exe.png", so every value a page prints loses them.
BIDI_CONTROLS = re.compile("[\u202a-\u202e\u2066-\u2069]")


def without_bidi_controls(value: Any) -> Any:
    """Return ``value`` without bidirectional controls when it is text."""
    if isinstance(value, Markup):
        return Markup(BIDI_CONTROLS.sub("", value))
    if isinstance(value, str):
        return BIDI_CONTROLS.sub("", value)
    return value


templates = Jinja2Templates(directory=Path(__file__).parent / "templates")
templates.env.finalize = without_bidi_controls

MAX_FLASHES = 2
MAX_FLASH_JSON_BYTES = 1000


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


# Row ids are INTEGER columns, at most 2**31 - 1 in PostgreSQL. The database
# drivers raise on a larger id, so a URL with one gets the 404 page instead.
MAX_ROW_ID = 2**31 - 1

# Parameter types of page routes: a CSRF-checked form, the signed-in actor,
# the request's transaction and the id of a row in a URL path.
CheckedForm = Annotated[FormData, Depends(checked_form)]
PageActor = Annotated[ops.Actor, Depends(page_actor)]
Transaction = Annotated[Session, Depends(transaction, scope="function")]
RowId = Annotated[int, PathParameter(ge=1, le=MAX_ROW_ID)]


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
    """Store a short message in the session for the next page rendered.

    The session cookie stores each character as ASCII JSON (up to 12 bytes
    for an emoji), and browsers drop a cookie over 4096 bytes, so only the
    last MAX_FLASHES messages are kept, each cut to MAX_FLASH_JSON_BYTES.
    """
    text = message[:500]
    while len(json.dumps(text)) > MAX_FLASH_JSON_BYTES:
        text = text[: len(text) * 9 // 10]
    if text != message:
        text += "…"
    flashes = request.session.setdefault("flash", [])
    flashes.append({"kind": kind, "text": text})
    del flashes[:-MAX_FLASHES]


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

"""Web sessions: the signed-in user and the CSRF token of each form.

The session lives in a cookie signed with the web secret (Starlette's
SessionMiddleware, itsdangerous underneath). It carries the user's id, a
stamp of their password hash, so that setting a new password ends every
other session, and a random CSRF token that every form sends back.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import secrets
import time
from pathlib import Path

from fastapi import Request
from sqlalchemy.orm import Session

from mailgate.settings import Settings
from store.models import User, utcnow

log = logging.getLogger(__name__)

SESSION_COOKIE = "mailgate_session"
SECRET_FILE_NAME = "web-secret"
CSRF_FIELD = "csrf_token"
CSRF_HEADER = "x-csrf-token"


class CSRFError(Exception):
    """Raised for a form without the session's CSRF token."""


def load_web_secret(settings: Settings) -> str:
    """Return the key that signs session cookies.

    Without ``MAILGATE_WEB_SECRET`` it lives in ``$MAILGATE_HOME/web-secret``,
    created with mode 0600 on first use, so every process of one home signs
    alike and sessions survive a restart.
    """
    if settings.web_secret:
        return settings.web_secret
    path = settings.home / SECRET_FILE_NAME
    if not path.exists():
        _create_secret_file(path)
    secret = path.read_text().strip()
    if len(secret) < 32:
        raise ValueError(f"{path} is too short to sign sessions: delete it to have one generated")
    return secret


def _create_secret_file(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return  # another process created it first
    with os.fdopen(descriptor, "w") as file:
        file.write(secrets.token_urlsafe(48) + "\n")
    log.info("generated the web session key in %s", path)


def password_stamp(user: User) -> str:
    """Return a short digest of the password hash, stored in the session."""
    return hashlib.sha256((user.password_hash or "").encode()).hexdigest()[:16]


def start_session(request: Request, user: User) -> None:
    """Sign ``user`` in, replacing whatever the session held before."""
    request.session.clear()
    request.session["user_id"] = user.id
    request.session["stamp"] = password_stamp(user)
    request.session["csrf"] = secrets.token_urlsafe(32)
    request.session["since"] = time.time()


def end_session(request: Request, user: User | None) -> None:
    """Sign out: clear the cookie, and end every session of ``user`` that
    started before now, so a copy of the cookie stops working too."""
    request.session.clear()
    if user is not None:
        user.sessions_revoked_at = utcnow()


def signed_in_user(request: Request, session: Session) -> User | None:
    """Return the session's user, or None for no session, an expired one, or
    one that a password change or a sign-out ended."""
    user_id = request.session.get("user_id")
    if not isinstance(user_id, int):
        return None
    hours = request.app.state.mailgate.settings.web_session_hours
    since = request.session.get("since")
    if not isinstance(since, (int, float)) or time.time() - since > hours * 3600:
        return None
    user = session.get(User, user_id)
    if user is None or user.password_hash is None:
        return None
    if user.sessions_revoked_at is not None and since <= user.sessions_revoked_at.timestamp():
        return None
    if not hmac.compare_digest(str(request.session.get("stamp", "")), password_stamp(user)):
        log.info("web session of user %s ended by a password change", user.username)
        return None
    return user


def csrf_token(request: Request) -> str:
    """Return the session's CSRF token, creating one for a new session."""
    token = request.session.get("csrf")
    if not isinstance(token, str):
        token = secrets.token_urlsafe(32)
        request.session["csrf"] = token
    return token


def check_csrf(request: Request, submitted: str | None) -> None:
    """Raise CSRFError unless ``submitted`` is the session's CSRF token."""
    expected = request.session.get("csrf")
    if not isinstance(expected, str) or not submitted:
        raise CSRFError("the form has no valid CSRF token; reload the page and try again")
    if not hmac.compare_digest(expected.encode(), submitted.encode()):
        raise CSRFError("the form has no valid CSRF token; reload the page and try again")

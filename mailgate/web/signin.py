"""Sign-in and sign-out pages."""

from __future__ import annotations

import logging
import threading
import time
from collections import deque

from fastapi import APIRouter, Request
from fastapi.responses import Response

from mailgate.passwords import hash_password, needs_rehash, verify_password
from mailgate.web.pages import CheckedForm, Transaction, flash, local_path, redirect, render
from mailgate.web.session import end_session, signed_in_user, start_session
from store.directory import find_user_by_username

log = logging.getLogger(__name__)

router = APIRouter(include_in_schema=False)

# Failed sign-ins per username and per client address within the window;
# past the limit, sign-in is rejected until the oldest failure ages out.
MAX_FAILURES = 5
FAILURE_WINDOW_SECONDS = 15 * 60


class FailureCounter:
    """Recent failed sign-ins by key, in this process's memory.

    NOTE: each process counts on its own, so N http processes allow N times
    the limit; a shared counter would need Redis or the database.
    """

    def __init__(self, limit: int, window: float) -> None:
        self.limit = limit
        self.window = window
        self._failures: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    def _recent(self, key: str, now: float) -> deque[float]:
        times = self._failures.setdefault(key, deque())
        while times and times[0] <= now - self.window:
            times.popleft()
        return times

    def blocked(self, *keys: str) -> bool:
        now = time.monotonic()
        with self._lock:
            return any(len(self._recent(key, now)) >= self.limit for key in keys)

    def record(self, *keys: str) -> None:
        now = time.monotonic()
        with self._lock:
            for key in keys:
                self._recent(key, now).append(now)

    def clear(self, key: str) -> None:
        with self._lock:
            self._failures.pop(key, None)


failures = FailureCounter(MAX_FAILURES, FAILURE_WINDOW_SECONDS)


@router.get("/signin")
def signin_page(request: Request, session: Transaction, next: str = "/tickets") -> Response:
    if signed_in_user(request, session) is not None:
        return redirect(local_path(next, "/tickets"))
    return render(request, "signin.html", {"next": local_path(next, "/tickets")})


@router.post("/signin")
def signin(request: Request, form: CheckedForm,
           session: Transaction) -> Response:
    username = str(form.get("username", "")).strip()
    password = str(form.get("password", ""))
    next_path = local_path(str(form.get("next", "")), "/tickets")
    client = request.client.host if request.client else "unknown"
    user_key, client_key = f"user:{username.lower()}", f"client:{client}"
    if failures.blocked(user_key, client_key):
        log.warning("web sign-in for %r from %s rejected: too many failed attempts", username, client)
        return render(request, "signin.html", {
            "next": next_path, "username": username,
            "error": "Too many failed sign-ins. Wait 15 minutes and try again.",
        }, status_code=429)
    user = find_user_by_username(session, username) if username else None
    if not verify_password(user.password_hash if user else None, password):
        failures.record(user_key, client_key)
        log.info("web sign-in for %r from %s failed", username, client)
        return render(request, "signin.html", {
            "next": next_path, "username": username,
            "error": "Wrong username or password.",
        }, status_code=401)
    assert user is not None and user.password_hash is not None
    if needs_rehash(user.password_hash):
        user.password_hash = hash_password(password)
    failures.clear(user_key)
    start_session(request, user)
    log.info("web sign-in of user %s from %s", user.username, client)
    return redirect(next_path)


@router.post("/signout")
def signout(request: Request, form: CheckedForm) -> Response:
    user_id = request.session.get("user_id")
    end_session(request)
    log.info("web sign-out of user id %s", user_id)
    flash(request, "You are signed out.")
    return redirect("/signin")

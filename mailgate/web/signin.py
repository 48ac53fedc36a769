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

# Failed sign-ins are counted per username and client address together, so
# a guesser is stopped without letting anyone lock a user out from
# elsewhere, and per client address, against one address trying many
# usernames. Past a limit, sign-in from there is rejected until the oldest
# failure in the window ages out.
MAX_FAILURES_PER_USER = 5
MAX_FAILURES_PER_CLIENT = 30
FAILURE_WINDOW_SECONDS = 15 * 60
# Keys kept at most; past it the oldest are forgotten, so a flood of made-up
# usernames cannot grow the process without bound.
MAX_TRACKED_KEYS = 10_000


class FailureCounter:
    """Recent failed sign-ins by key, in this process's memory.

    NOTE: each process counts on its own, so N http processes allow N times
    the limit, and a guesser spread over many addresses is slowed only by
    the cost of Argon2. A shared counter would need Redis or the database.
    """

    def __init__(self, window: float, max_keys: int = MAX_TRACKED_KEYS) -> None:
        self.window = window
        self.max_keys = max_keys
        self._failures: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    def _count(self, key: str, now: float) -> int:
        times = self._failures.get(key)
        if times is None:
            return 0
        while times and times[0] <= now - self.window:
            times.popleft()
        if not times:
            del self._failures[key]
        return len(times)

    def blocked(self, key: str, limit: int) -> bool:
        with self._lock:
            return self._count(key, time.monotonic()) >= limit

    def record(self, *keys: str) -> None:
        now = time.monotonic()
        with self._lock:
            for key in keys:
                self._count(key, now)
                self._failures.setdefault(key, deque()).append(now)
            while len(self._failures) > self.max_keys:
                del self._failures[next(iter(self._failures))]

    def clear(self, key: str) -> None:
        with self._lock:
            self._failures.pop(key, None)


failures = FailureCounter(FAILURE_WINDOW_SECONDS)


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
    user_key, client_key = f"user:{username.lower()} client:{client}", f"client:{client}"
    if (failures.blocked(user_key, MAX_FAILURES_PER_USER)
            or failures.blocked(client_key, MAX_FAILURES_PER_CLIENT)):
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
def signout(request: Request, form: CheckedForm, session: Transaction) -> Response:
    """Sign out of every browser: the user's sessions started before now end."""
    user_id = request.session.get("user_id")
    end_session(request, signed_in_user(request, session))
    log.info("web sign-out of user id %s", user_id)
    flash(request, "You are signed out.")
    return redirect("/signin")

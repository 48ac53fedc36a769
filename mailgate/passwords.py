"""Web sign-in passwords, hashed with Argon2id (argon2-cffi's defaults,
the low-memory profile of RFC 9106)."""

from __future__ import annotations

import functools

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

MIN_PASSWORD_LENGTH = 10
MAX_PASSWORD_LENGTH = 1024

_hasher = PasswordHasher()


@functools.cache
def _unusable_hash() -> str:
    """Return the hash verified against when the user has no password, so
    that an unknown user takes as long to refuse as a wrong password.

    It is made on first use, not at import, because hashing takes about
    0.2 s of CPU and every ``mailgate`` command imports this module.
    """
    return _hasher.hash("no password is set for this user")


class PasswordError(ValueError):
    """Raised for a password that cannot be set; the message gives the reason."""


def hash_password(password: str) -> str:
    """Return the Argon2id hash of ``password`` after checking its length."""
    if len(password) < MIN_PASSWORD_LENGTH:
        raise PasswordError(f"the password is too short: use at least {MIN_PASSWORD_LENGTH} characters")
    if len(password) > MAX_PASSWORD_LENGTH:
        raise PasswordError(f"the password is too long: use at most {MAX_PASSWORD_LENGTH} characters")
    return _hasher.hash(password)


def verify_password(password_hash: str | None, password: str) -> bool:
    """Return whether ``password`` matches; False for a user without one."""
    if len(password) > MAX_PASSWORD_LENGTH:
        return False
    try:
        _hasher.verify(password_hash or _unusable_hash(), password)
    except (VerificationError, InvalidHashError):
        return False
    return password_hash is not None


def needs_rehash(password_hash: str) -> bool:
    """Return whether the hash was made with older parameters than ours."""
    return _hasher.check_needs_rehash(password_hash)

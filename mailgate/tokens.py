"""Signed reply tokens, carried in Reply-To addresses and Message-IDs.

A token names a ticket and the agent it was issued to (user 0 for the
customer side, in acknowledgements), and expires::

    r.<key id>.<ticket id>.<user id>.<expiry day>.<signature>

Numbers are base 36 and the signature is 16 base32 characters (80 bits of
HMAC-SHA256 over the other fields). Everything is lower case, so a server
that folds the case of local parts does not break it, and the whole token
stays under 45 characters, inside the 64-character local part of RFC 5321
with room for the mailbox name in front of the ``+``.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass
from datetime import datetime, timezone

SIGNATURE_CHARS = 16
# The user id in tokens that go to the customer side (acknowledgements);
# real users are numbered from 1.
CUSTOMER_USER_ID = 0
SECONDS_PER_DAY = 86_400
TOKEN_PATTERN = re.compile(
    r"r\.([a-z0-9]{1,8})\.([0-9a-z]{1,12})\.([0-9a-z]{1,12})\.([0-9a-z]{1,8})"
    rf"\.([a-z2-7]{{{SIGNATURE_CHARS}}})",
    re.IGNORECASE,
)


# Reasons a token is invalid, for logs and for the notice to its owner.
MALFORMED = "malformed"
UNKNOWN_KEY = "unknown_key"
BAD_SIGNATURE = "bad_signature"
EXPIRED = "expired"
RETIRED_KEY = "retired_key"


class TokenError(ValueError):
    """Raised when a token is malformed, forged, expired or signed by an
    unknown or retired key.

    ``reason`` is one of the reason constants above. ``token`` is the
    decoded token when its signature matched (expired, or signed by a
    retired key), so its owner is known; otherwise None.
    """

    def __init__(self, message: str, reason: str, token: ReplyToken | None = None) -> None:
        super().__init__(message)
        self.reason = reason
        self.token = token


@dataclass(frozen=True)
class SigningKey:
    key_id: str
    secret: bytes
    # A retired key signs nothing and verifies nothing; it is kept so that
    # its tokens are reported as "retired key" rather than "unknown key".
    retired: bool = False


@dataclass(frozen=True)
class ReplyToken:
    ticket_id: int
    user_id: int
    expires_day: int  # days since 1970-01-01, UTC; valid through that day
    key_id: str
    text: str


def _base36(number: int) -> str:
    digits = "0123456789abcdefghijklmnopqrstuvwxyz"
    if number == 0:
        return "0"
    out = []
    while number:
        number, rest = divmod(number, 36)
        out.append(digits[rest])
    return "".join(reversed(out))


def _signature(key: SigningKey, payload: str) -> str:
    digest = hmac.new(key.secret, payload.encode("ascii"), hashlib.sha256).digest()
    return base64.b32encode(digest).decode("ascii").lower()[:SIGNATURE_CHARS]


def _day(now: datetime) -> int:
    return int(now.timestamp()) // SECONDS_PER_DAY


def issue_token(
    key: SigningKey, ticket_id: int, user_id: int, *, ttl_days: int, now: datetime | None = None
) -> str:
    """Return a token for ``user_id`` on ``ticket_id``, valid for ``ttl_days``."""
    now = now or datetime.now(timezone.utc)
    payload = ".".join(
        ["r", key.key_id, _base36(ticket_id), _base36(user_id), _base36(_day(now) + ttl_days)]
    )
    return f"{payload}.{_signature(key, payload)}"


def find_token(text: str) -> str | None:
    """Return the first thing in ``text`` shaped like a token, lower-cased."""
    match = TOKEN_PATTERN.search(text)
    return match.group(0).lower() if match else None


def verify_token(
    token: str, keys: dict[str, SigningKey], *, now: datetime | None = None
) -> ReplyToken:
    """Check a token's signature, key and expiry; raise TokenError saying why not.

    The signature is compared in constant time. A token of a retired key
    whose signature matches raises TokenError with ``token`` set, so the
    caller can tell its owner, but it is never accepted.
    """
    match = TOKEN_PATTERN.fullmatch(token.lower())
    if match is None:
        raise TokenError("malformed token", MALFORMED)
    key_id, ticket, user, expires, signature = match.groups()
    key = keys.get(key_id)
    if key is None:
        raise TokenError(f"token signed by unknown key id {key_id!r}", UNKNOWN_KEY)
    payload = token.lower().rsplit(".", 1)[0]
    if not hmac.compare_digest(_signature(key, payload), signature):
        raise TokenError("token signature does not match", BAD_SIGNATURE)
    decoded = ReplyToken(
        ticket_id=int(ticket, 36),
        user_id=int(user, 36),
        expires_day=int(expires, 36),
        key_id=key_id,
        text=token.lower(),
    )
    if key.retired:
        raise TokenError(f"token signed by retired key id {key_id!r}", RETIRED_KEY, decoded)
    if _day(now or datetime.now(timezone.utc)) > decoded.expires_day:
        raise TokenError("token expired", EXPIRED, decoded)
    return decoded


def generate_key() -> SigningKey:
    secret = secrets.token_bytes(32)
    key_id = base64.b32encode(hashlib.sha256(secret).digest()).decode().lower()[:4]
    return SigningKey(key_id=key_id, secret=secret)


def parse_keys(text: str) -> list[SigningKey]:
    """Parse ``kid:hexsecret`` entries separated by commas or new lines.

    An entry ``kid:hexsecret:retired`` is a retired key. The first key that
    is not retired signs new tokens and every other active key verifies,
    so a key is rotated by putting a new one first, and retired once its
    tokens should stop working. Raises ValueError naming the bad entry.
    """
    keys = []
    lines = [line.split("#", 1)[0] for line in text.splitlines()]
    entries = [entry.strip() for line in lines for entry in line.split(",")]
    for number, entry in enumerate(filter(None, entries), start=1):
        key_id, _, rest = entry.partition(":")
        secret, _, flag = rest.partition(":")
        key_id = key_id.strip().lower()
        if not re.fullmatch(r"[a-z0-9]{1,8}", key_id):
            raise ValueError(f"signing key {number}: key id {key_id!r} must be 1-8 of a-z, 0-9")
        flag = flag.strip().lower()
        if flag not in ("", "retired"):
            raise ValueError(
                f"signing key {number} ({key_id}): unknown flag {flag!r}; the only flag is 'retired'"
            )
        try:
            raw = bytes.fromhex(secret.strip())
        except ValueError:
            raise ValueError(f"signing key {number} ({key_id}): secret is not hex") from None
        if len(raw) < 16:
            raise ValueError(f"signing key {number} ({key_id}): secret shorter than 16 bytes")
        keys.append(SigningKey(key_id=key_id, secret=raw, retired=flag == "retired"))
    if not keys:
        raise ValueError("no signing key given")
    if all(key.retired for key in keys):
        raise ValueError("every signing key is retired; add an active key first")
    if len({key.key_id for key in keys}) != len(keys):
        raise ValueError("two signing keys share a key id; give each key its own id")
    # The signing key goes first, because callers sign with keys[0].
    return sorted(keys, key=lambda key: key.retired)


def format_key(key: SigningKey) -> str:
    return f"{key.key_id}:{key.secret.hex()}" + (":retired" if key.retired else "")

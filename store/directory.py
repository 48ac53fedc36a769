"""Queues and users: who serves which address."""

from __future__ import annotations

import hashlib
import logging
import secrets

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, selectinload, sessionmaker

from store.models import Queue, Role, User

log = logging.getLogger(__name__)


class DirectoryError(ValueError):
    """Raised when a queue or user cannot be added as asked."""


def normalize_address(address: str) -> str:
    """Lower-case an address for comparison (domains are case-insensitive,
    and in practice so are the local parts of the addresses we serve)."""
    return address.strip().strip("<>").lower()


def add_queue(sessions: sessionmaker[Session], name: str, address: str) -> Queue:
    address = normalize_address(address)
    if "@" not in address:
        raise DirectoryError(f"queue address {address!r} is not an email address")
    try:
        with sessions.begin() as session:
            queue = Queue(name=name, address=address)
            session.add(queue)
    except IntegrityError:
        raise DirectoryError(
            f"a queue named {name!r} or with address {address} exists already"
        ) from None
    log.info("queue added id=%s name=%s address=%s", queue.id, name, address)
    return queue


def add_user(
    sessions: sessionmaker[Session],
    username: str,
    email: str,
    role: Role,
    queue_names: list[str],
    name: str = "",
) -> User:
    email = normalize_address(email)
    if "@" not in email:
        raise DirectoryError(f"user email {email!r} is not an email address")
    try:
        with sessions.begin() as session:
            queues = []
            for queue_name in queue_names:
                queue = session.scalar(select(Queue).where(Queue.name == queue_name))
                if queue is None:
                    raise DirectoryError(
                        f"queue {queue_name!r} not found; add it with "
                        f"'mailgate queues add {queue_name} --address ADDR'"
                    )
                queues.append(queue)
            user = User(username=username, email=email, role=role.value, name=name)
            user.queues = queues
            session.add(user)
    except IntegrityError:
        raise DirectoryError(
            f"a user named {username!r} or with email {email} exists already"
        ) from None
    log.info("user added id=%s username=%s role=%s", user.id, username, role.value)
    return user


def list_queues(sessions: sessionmaker[Session]) -> list[Queue]:
    with sessions() as session:
        query = select(Queue).options(selectinload(Queue.agents)).order_by(Queue.id)
        return list(session.scalars(query))


def list_users(sessions: sessionmaker[Session]) -> list[User]:
    with sessions() as session:
        query = select(User).options(selectinload(User.queues)).order_by(User.id)
        return list(session.scalars(query))


def queue_addresses(session: Session) -> set[str]:
    return set(session.scalars(select(Queue.address)))


def find_queue_by_address(session: Session, address: str) -> Queue | None:
    return session.scalar(select(Queue).where(Queue.address == normalize_address(address)))


def find_queue_by_name(session: Session, name: str) -> Queue | None:
    return session.scalar(select(Queue).where(Queue.name == name))


def find_user_by_email(session: Session, email: str) -> User | None:
    return session.scalar(select(User).where(func.lower(User.email) == normalize_address(email)))


def hash_api_token(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def issue_api_token(sessions: sessionmaker[Session], username: str) -> str:
    """Give ``username`` a new API token (replacing any old one) and return it."""
    token = "mgt_" + secrets.token_urlsafe(32)
    with sessions.begin() as session:
        user = session.scalar(select(User).where(User.username == username))
        if user is None:
            raise DirectoryError(f"user {username!r} not found")
        user.api_token_hash = hash_api_token(token)
    log.info("API token issued for user %s", username)
    return token


def set_password_hash(sessions: sessionmaker[Session], username: str, password_hash: str | None) -> None:
    """Store the user's web sign-in password hash; None removes sign-in."""
    with sessions.begin() as session:
        user = session.scalar(select(User).where(User.username == username))
        if user is None:
            raise DirectoryError(f"user {username!r} not found")
        user.password_hash = password_hash
    log.info("web password %s for user %s", "set" if password_hash else "removed", username)


def find_user_by_username(session: Session, username: str) -> User | None:
    return session.scalar(select(User).where(User.username == username))


def find_user_by_api_token(session: Session, token: str) -> User | None:
    if not token:
        return None
    return session.scalar(select(User).where(User.api_token_hash == hash_api_token(token)))

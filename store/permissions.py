"""Which role may do what: the one place that maps roles to permissions.

Operations call ``require`` themselves, so no entry point (CLI, HTTP API,
emailed command) can skip the check. Operators can replace the mapping at
start with ``configure_roles``.
"""

from __future__ import annotations

from collections.abc import Mapping, Iterable

TICKET_CREATE = "ticket.create"
TICKET_UPDATE = "ticket.update"
TICKET_NOTE = "ticket.note"
TICKET_FORWARD = "ticket.forward"
TICKET_POSTPONE = "ticket.postpone"
TICKET_ATTACH = "ticket.attach"
TICKET_CLOSE = "ticket.close"
TICKET_REOPEN = "ticket.reopen"
TICKET_REPLY = "ticket.reply"
TICKET_ALL_QUEUES = "ticket.all_queues"
ADMIN_QUEUES = "admin.queues"
ADMIN_USERS = "admin.users"
ADMIN_CUSTOM_FIELDS = "admin.custom_fields"
ADMIN_STAGES = "admin.stages"
ADMIN_RULES = "admin.rules"

FRONTLINE_PERMISSIONS = frozenset({
    TICKET_CREATE, TICKET_UPDATE, TICKET_NOTE, TICKET_FORWARD, TICKET_POSTPONE,
    TICKET_ATTACH, TICKET_REPLY,
})
MANAGER_PERMISSIONS = FRONTLINE_PERMISSIONS | {TICKET_CLOSE, TICKET_REOPEN, TICKET_ALL_QUEUES}
ADMIN_PERMISSIONS = MANAGER_PERMISSIONS | {
    ADMIN_QUEUES, ADMIN_USERS, ADMIN_CUSTOM_FIELDS, ADMIN_STAGES, ADMIN_RULES,
}
DEFAULT_ROLE_PERMISSIONS: Mapping[str, frozenset[str]] = {
    "frontline": FRONTLINE_PERMISSIONS,
    "manager": MANAGER_PERMISSIONS,
    "admin": ADMIN_PERMISSIONS,
    "external": frozenset(),
}
ALL_PERMISSIONS = ADMIN_PERMISSIONS

_role_permissions: dict[str, frozenset[str]] = dict(DEFAULT_ROLE_PERMISSIONS)


class PermissionDenied(Exception):
    """Raised when an actor lacks a permission; names the permission."""

    def __init__(self, actor: str, permission: str, detail: str = "") -> None:
        self.actor = actor
        self.permission = permission
        message = f"{actor} lacks permission {permission}"
        super().__init__(f"{message}: {detail}" if detail else message)


def configure_roles(mapping: Mapping[str, Iterable[str]]) -> None:
    """Replace the permissions of the roles named in ``mapping``."""
    for role, permissions in mapping.items():
        unknown = set(permissions) - ALL_PERMISSIONS
        if unknown:
            raise ValueError(f"role {role}: unknown permissions {sorted(unknown)}")
        _role_permissions[role] = frozenset(permissions)


def reset_roles() -> None:
    _role_permissions.clear()
    _role_permissions.update(DEFAULT_ROLE_PERMISSIONS)


def permissions_of(role: str) -> frozenset[str]:
    return _role_permissions.get(role, frozenset())


def has_permission(role: str, permission: str) -> bool:
    return permission in permissions_of(role)


def require(username: str, role: str, permission: str) -> None:
    """Raise PermissionDenied unless ``role`` has ``permission``."""
    if not has_permission(role, permission):
        raise PermissionDenied(username, permission, f"role {role} does not include it")

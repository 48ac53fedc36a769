"""Routing rules, the history of every change to them, and the routing
decision recorded for each processed mail.

Rule definitions arrive here validated by ``mailgate.rules`` in the shape of
the rule file. This module keeps their order, checks the ``admin.rules``
permission and writes a history row (who, when, the rule before and after)
for every change, in the caller's transaction.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import JSON, ForeignKey, Integer, String, func, select
from sqlalchemy.orm import Mapped, Session, mapped_column

from store import permissions as perm
from store.models import Base, UTCDateTime, created_at, int_pk, utcnow
from store.operations import Actor, OperationError

# The keys of a rule definition, as the rule file writes them.
DEFINITION_KEYS = ("name", "enabled", "scope", "match", "conditions", "actions", "stop")


class RoutingRule(Base):
    """One rule of the ordered rule set; ``position`` runs 1, 2, 3, ..."""

    __tablename__ = "routing_rules"

    id: Mapped[int_pk]
    position: Mapped[int] = mapped_column(Integer, index=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    enabled: Mapped[bool] = mapped_column(default=True)
    scope: Mapped[str] = mapped_column(String(10))  # new, follow-up, both
    match_mode: Mapped[str] = mapped_column(String(3))  # all, any
    conditions: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    actions: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    stop: Mapped[bool] = mapped_column(default=False)
    created_at: Mapped[created_at]
    updated_at: Mapped[created_at]


class RuleHistoryEntry(Base):
    """One change to the rule set: who, when, and the rule before and after.

    ``before`` is None for an added rule and ``after`` None for a deleted
    one. Each snapshot is the definition with its position.
    """

    __tablename__ = "rule_history"

    id: Mapped[int_pk]
    at: Mapped[created_at]
    actor: Mapped[str] = mapped_column(String(350))  # user:NAME
    channel: Mapped[str] = mapped_column(String(20))  # cli, api
    action: Mapped[str] = mapped_column(String(20))  # added, changed, moved, enabled, ...
    rule_id: Mapped[int] = mapped_column(Integer, index=True)  # no foreign key: rules get deleted
    rule_name: Mapped[str] = mapped_column(String(200))
    before: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    after: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    details: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)


class RoutingDecision(Base):
    """How processing routed one spooled mail, for ``mailgate rules replay``."""

    __tablename__ = "routing_decisions"

    spool_id: Mapped[int] = mapped_column(ForeignKey("spool.id"), primary_key=True)
    ticket_id: Mapped[int | None] = mapped_column(ForeignKey("tickets.id"))
    scope: Mapped[str] = mapped_column(String(10))  # new, follow-up
    # The whole routing result: queue, tags, the other fields, drop, and
    # the rule that placed each.
    result: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    rule_set_revision: Mapped[int] = mapped_column(Integer)
    decided_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


# -- reading -------------------------------------------------------------------

def list_rules(session: Session) -> list[RoutingRule]:
    return list(session.scalars(select(RoutingRule).order_by(RoutingRule.position)))


def find_rule(session: Session, reference: str | int) -> RoutingRule | None:
    """Return the rule named ``reference`` (case-insensitively), else the
    rule at that position when ``reference`` is a number."""
    if isinstance(reference, str):
        found = session.scalar(
            select(RoutingRule).where(func.lower(RoutingRule.name) == reference.strip().lower())
        )
        if found is not None or not reference.strip().isdigit():
            return found
    return session.scalar(select(RoutingRule).where(RoutingRule.position == int(reference)))


def get_rule(session: Session, reference: str | int) -> RoutingRule:
    """Like find_rule, but raise OperationError when there is no such rule."""
    rule = find_rule(session, reference)
    if rule is None:
        raise OperationError(f"rule {reference!r} not found; 'mailgate rules list' shows them")
    return rule


def rule_definition(rule: RoutingRule) -> dict[str, Any]:
    """Return the rule in the rule file's shape."""
    return {
        "name": rule.name,
        "enabled": rule.enabled,
        "scope": rule.scope,
        "match": rule.match_mode,
        "conditions": list(rule.conditions),
        "actions": dict(rule.actions),
        "stop": rule.stop,
    }


def rule_set_revision(session: Session) -> int:
    """Return a number that grows with every change to the rule set."""
    return session.scalar(select(func.max(RuleHistoryEntry.id))) or 0


def rule_history(session: Session, *, limit: int = 100) -> list[RuleHistoryEntry]:
    """Return the latest changes to the rule set, newest first."""
    query = select(RuleHistoryEntry).order_by(RuleHistoryEntry.id.desc()).limit(limit)
    return list(session.scalars(query))


# -- changing ------------------------------------------------------------------

def _snapshot(rule: RoutingRule) -> dict[str, Any]:
    return {"position": rule.position, **rule_definition(rule)}


def _record(
    session: Session,
    actor: Actor,
    action: str,
    rule: RoutingRule,
    before: dict[str, Any] | None,
    after: dict[str, Any] | None,
    **details: Any,
) -> None:
    session.add(RuleHistoryEntry(
        actor=actor.name, channel=actor.channel, action=action, rule_id=rule.id,
        rule_name=rule.name, before=before, after=after, details=details,
    ))
    session.flush()


def _assign(rule: RoutingRule, definition: dict[str, Any]) -> None:
    unknown = set(definition) - set(DEFINITION_KEYS)
    if unknown:
        raise OperationError(f"unknown rule keys {sorted(unknown)}")
    rule.name = definition["name"]
    rule.enabled = definition.get("enabled", True)
    rule.scope = definition.get("scope", "new")
    rule.match_mode = definition.get("match", "all")
    rule.conditions = list(definition.get("conditions", []))
    rule.actions = dict(definition.get("actions", {}))
    rule.stop = definition.get("stop", False)
    rule.updated_at = utcnow()


def _check_name_free(session: Session, name: str, rule_id: int | None = None) -> None:
    other = find_rule(session, name)
    if other is not None and other.name.lower() == name.lower() and other.id != rule_id:
        raise OperationError(f"a rule named {other.name!r} exists already")


def _renumber(rules: Sequence[RoutingRule]) -> None:
    for position, rule in enumerate(rules, start=1):
        if rule.position != position:
            rule.position = position


def add_rule(
    session: Session, actor: Actor, definition: dict[str, Any], *, position: int | None = None
) -> RoutingRule:
    """Add a rule at ``position`` (1-based; default last)."""
    actor.require(perm.ADMIN_RULES)
    _check_name_free(session, definition["name"])
    rules = list_rules(session)
    rule = RoutingRule(position=len(rules) + 1)
    _assign(rule, definition)
    session.add(rule)
    index = len(rules) if position is None else max(0, min(position - 1, len(rules)))
    rules.insert(index, rule)
    _renumber(rules)
    session.flush()
    _record(session, actor, "added", rule, None, _snapshot(rule))
    return rule


def replace_rule(
    session: Session, actor: Actor, rule: RoutingRule, definition: dict[str, Any]
) -> bool:
    """Replace a rule's definition (its position stays); return False when
    nothing changed, which writes no history."""
    actor.require(perm.ADMIN_RULES)
    _check_name_free(session, definition["name"], rule.id)
    before = _snapshot(rule)
    _assign(rule, definition)
    after = _snapshot(rule)
    if after == before:
        return False
    session.flush()
    _record(session, actor, "changed", rule, before, after)
    return True


def set_rule_enabled(session: Session, actor: Actor, rule: RoutingRule, enabled: bool) -> bool:
    """Enable or disable a rule; return False when it already was."""
    actor.require(perm.ADMIN_RULES)
    if rule.enabled == enabled:
        return False
    before = _snapshot(rule)
    rule.enabled = enabled
    rule.updated_at = utcnow()
    _record(session, actor, "enabled" if enabled else "disabled", rule, before, _snapshot(rule))
    return True


def move_rule(session: Session, actor: Actor, rule: RoutingRule, position: int) -> bool:
    """Move a rule to ``position`` (1-based), shifting the rules between;
    return False when it is there already."""
    actor.require(perm.ADMIN_RULES)
    rules = list_rules(session)
    if not 1 <= position <= len(rules):
        raise OperationError(f"position {position} is outside 1 to {len(rules)}")
    if rule.position == position:
        return False
    before = _snapshot(rule)
    rules.remove(rule)
    rules.insert(position - 1, rule)
    _renumber(rules)
    rule.updated_at = utcnow()
    _record(session, actor, "moved", rule, before, _snapshot(rule))
    return True


def delete_rule(session: Session, actor: Actor, rule: RoutingRule) -> None:
    actor.require(perm.ADMIN_RULES)
    before = _snapshot(rule)
    _record(session, actor, "deleted", rule, before, None)
    session.delete(rule)
    session.flush()
    _renumber(list_rules(session))


def replace_rule_set(
    session: Session, actor: Actor, definitions: Sequence[dict[str, Any]], *, source: str
) -> dict[str, list[str]]:
    """Make the rule set exactly ``definitions``, in that order, matching
    rules by name; return the names added, changed, moved and deleted.

    Only rules that differ get a history row, each naming ``source``.
    """
    actor.require(perm.ADMIN_RULES)
    existing = {rule.name.lower(): rule for rule in list_rules(session)}
    wanted = {definition["name"].lower() for definition in definitions}
    report: dict[str, list[str]] = {"added": [], "changed": [], "moved": [], "deleted": []}
    for key, rule in existing.items():
        if key not in wanted:
            _record(session, actor, "deleted", rule, _snapshot(rule), None, source=source)
            report["deleted"].append(rule.name)
            session.delete(rule)
    session.flush()
    # Rules that only shift because others were added or deleted before
    # them keep their relative order and get no "moved" row.
    kept_before = [key for key in existing if key in wanted]
    kept_after = [key for key in (d["name"].lower() for d in definitions) if key in existing]
    for position, definition in enumerate(definitions, start=1):
        rule = existing.get(definition["name"].lower())
        if rule is None:
            rule = RoutingRule(position=position)
            _assign(rule, definition)
            session.add(rule)
            session.flush()
            _record(session, actor, "added", rule, None, _snapshot(rule), source=source)
            report["added"].append(rule.name)
            continue
        before = _snapshot(rule)
        _assign(rule, definition)
        rule.position = position
        after = _snapshot(rule)
        if after == before:
            continue
        only_moved = {**after, "position": before["position"]} == before
        key = rule.name.lower()
        if only_moved and kept_before.index(key) == kept_after.index(key):
            continue
        action = "moved" if only_moved else "changed"
        _record(session, actor, action, rule, before, after, source=source)
        report[action].append(rule.name)
    return report


# -- routing decisions ---------------------------------------------------------

def record_routing_decision(
    session: Session,
    spool_id: int,
    *,
    ticket_id: int | None,
    scope: str,
    result: dict[str, Any],
    revision: int,
) -> None:
    """Store how a mail was routed; a mail processed again replaces it."""
    session.merge(RoutingDecision(
        spool_id=spool_id, ticket_id=ticket_id, scope=scope, result=result,
        rule_set_revision=revision, decided_at=utcnow(),
    ))


def routing_decisions(session: Session, spool_ids: Sequence[int]) -> dict[int, RoutingDecision]:
    found: dict[int, RoutingDecision] = {}
    ids = list(spool_ids)
    # Batches keep each query's parameter count far below SQLite's limit.
    for start in range(0, len(ids), 500):
        query = select(RoutingDecision).where(RoutingDecision.spool_id.in_(ids[start:start + 500]))
        found.update((decision.spool_id, decision) for decision in session.scalars(query))
    return found

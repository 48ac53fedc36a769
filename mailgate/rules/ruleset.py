"""The stored rule set: validation against the store, loading for
processing, and the admin's changes (add, edit, import, ...).

Every change requires the ``admin.rules`` permission and writes a rule
history row (``store.rules``). A rule is validated in full before it is
saved, so an invalid rule, or a file with one, changes nothing.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from mailgate.errors import InvalidRules
from mailgate.rules.definition import (
    Rule,
    RuleProblem,
    parse_rule,
    parse_rule_set,
    rule_to_dict,
)
from mailgate.rules.evaluate import RuleSet
from store import operations as ops
from store import permissions as perm
from store import rules as stored
from store.directory import find_queue_by_name
from store.models import CustomField, RootCause, User

log = logging.getLogger(__name__)


# -- validation ----------------------------------------------------------------

def check_references(session: Session, rule: Rule) -> list[RuleProblem]:
    """Return a problem for each queue, stage, user, custom field or root
    cause that the rule's actions name but the store does not have."""
    actions, problems = rule.actions, []

    def problem(field_name: str, message: str) -> None:
        problems.append(RuleProblem(rule.name, f"actions.{field_name}", message))

    if actions.queue and find_queue_by_name(session, actions.queue) is None:
        problem("queue", f"queue {actions.queue!r} not found")
    if actions.stage:
        try:
            ops.find_stage(session, actions.stage)
        except ops.OperationError as error:
            problem("stage", str(error))
    if actions.assignee and session.scalar(
        select(User.id).where(User.username == actions.assignee)
    ) is None:
        problem("assignee", f"user {actions.assignee!r} not found")
    for name, value in actions.custom_fields:
        definition = session.scalar(select(CustomField).where(CustomField.name == name))
        if definition is None:
            problem(f"custom_fields.{name}", f"custom field {name!r} not found")
            continue
        try:
            ops.validate_custom_value(definition, value)
        except ops.OperationError as error:
            problem(f"custom_fields.{name}", str(error))
    for name in actions.root_causes:
        if session.scalar(select(RootCause.id).where(RootCause.name == name)) is None:
            problem("root_causes", f"root cause {name!r} not found")
    return problems


def validate_rule(session: Session, data: Any, *, position: int | None = None) -> Rule:
    """Return the rule ``data`` describes, or raise InvalidRules naming
    the rule and each invalid field."""
    rule = parse_rule(data, position=position)
    problems = check_references(session, rule)
    if problems:
        raise InvalidRules(problems)
    return rule


def validate_rule_set(session: Session, items: Any) -> list[Rule]:
    """Validate a whole rule list, references included; raise InvalidRules
    with every problem of every rule."""
    return parse_rule_set(items, check=lambda rule: check_references(session, rule))


# -- loading for processing ----------------------------------------------------

def load_rules(session: Session) -> list[Rule]:
    """Return the stored rules in order.

    A stored rule that no longer validates (e.g. a pattern that a newer
    RE2 rejects) is left out and logged, so it cannot stop processing.
    """
    rules = []
    for row in stored.list_rules(session):
        try:
            rules.append(parse_rule(stored.rule_definition(row), position=row.position))
        except InvalidRules as error:
            log.error("routing rule id=%s %r skipped: %s", row.id, row.name, error)
    return rules


class _RuleSetCache:
    """The compiled rule set per database, compiled again only when the
    rule set's revision changes."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._entries: dict[str, tuple[int, RuleSet]] = {}

    def get(self, session: Session) -> tuple[int, RuleSet]:
        revision = stored.rule_set_revision(session)
        key = str(session.get_bind().url)
        with self._lock:
            entry = self._entries.get(key)
        if entry is not None and entry[0] == revision:
            return entry
        entry = (revision, RuleSet(load_rules(session)))
        with self._lock:
            self._entries[key] = entry
        log.info("routing rules loaded: %d rules at revision %d", len(entry[1]), revision)
        return entry


_cache = _RuleSetCache()


def current_rule_set(session: Session) -> tuple[int, RuleSet]:
    """Return the revision and compiled form of the rule set in force."""
    return _cache.get(session)


# -- changes by an admin -------------------------------------------------------

def add_rule(
    session: Session, actor: ops.Actor, data: Any, *, position: int | None = None
) -> stored.RoutingRule:
    actor.require(perm.ADMIN_RULES)
    rule = validate_rule(session, data)
    return stored.add_rule(session, actor, rule_to_dict(rule), position=position)


def edit_rule(session: Session, actor: ops.Actor, row: stored.RoutingRule, data: Any) -> bool:
    """Replace the definition of rule ``row``; return False when nothing changed."""
    actor.require(perm.ADMIN_RULES)
    rule = validate_rule(session, data, position=row.position)
    return stored.replace_rule(session, actor, row, rule_to_dict(rule))


def import_rules(
    session: Session, actor: ops.Actor, items: Sequence[Any], *, source: str
) -> dict[str, list[str]]:
    """Replace the whole rule set with ``items``, after checking all of
    them; return the names added, changed, moved and deleted."""
    actor.require(perm.ADMIN_RULES)
    rules = validate_rule_set(session, items)
    definitions = [rule_to_dict(rule) for rule in rules]
    report = stored.replace_rule_set(session, actor, definitions, source=source)
    log.info(
        "rules imported from %s by %s: %s", source, actor.name,
        ", ".join(f"{len(names)} {action}" for action, names in report.items()),
    )
    return report


def export_rules(session: Session, actor: ops.Actor) -> list[dict[str, Any]]:
    actor.require(perm.ADMIN_RULES)
    return [stored.rule_definition(row) for row in stored.list_rules(session)]

"""Evaluate a rule set on one mail: a trace of every rule and condition, and
the ticket fields that result. Pure: no I/O, no store.

Rules run in order. A disabled rule, or one whose scope excludes the mail
(new or follow-up), is skipped. A rule matches when all of its conditions
hold (``match: all``) or at least one does (``match: any``); a rule without
conditions matches every mail. The actions of every matching rule apply in
order, but a field keeps the value of the first matching rule that set it:
later rules only fill fields still unset, and add tags. ``acknowledge:
false`` from any matching rule suppresses the acknowledgement. A matching
rule with ``stop: true`` ends the evaluation, and so does ``drop``, which
makes no ticket at all. What no rule sets keeps its default: the queue
chosen by the recipient (``mailgate.routing.choose_queue``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from mailgate.rules.definition import Condition, Rule, condition_to_dict, normalize_text
from mailgate.rules.facts import FieldValues, MailFacts
from mailgate.rules.patterns import compile_pattern

# How much of a field value a trace shows; bodies are long.
TRACE_VALUE_CHARS = 60
TRACE_VALUES_SHOWN = 3

# Single-valued ticket fields, in the order update_ticket takes them.
SINGLE_FIELDS = ("queue", "stage", "ticket_type", "assignee", "escalation_level", "root_causes")

MATCHED = "matched"
NOT_MATCHED = "not matched"
DISABLED = "disabled"
OUT_OF_SCOPE = "out of scope"
NOT_REACHED = "not reached"

VERBS = {
    "equals": ("equals", "does not equal"),
    "contains": ("contains", "does not contain"),
    "starts-with": ("starts with", "does not start with"),
    "ends-with": ("ends with", "does not end with"),
    "matches": ("matches", "does not match"),
    "greater-than": ("is greater than", "is not greater than"),
    "less-than": ("is less than", "is not less than"),
}

# A test returns the index of the first value that passes the positive
# operator (for "not-contains", the value that does contain), or None.
Test = Callable[[FieldValues], "int | None"]


@dataclass(slots=True)
class ConditionTrace:
    condition: Condition
    matched: bool
    values: FieldValues = field(repr=False)
    hit: int | None  # index of the value that passed the positive operator

    @property
    def reason(self) -> str:
        """Why the condition matched or not, in one line."""
        condition = self.condition
        base = condition.base_operator
        if not self.values.present:
            if base == "exists":
                return f"{condition.field} is absent"
            return f"{condition.field} is absent, so it {VERBS[base][1]} {_quote(condition.value)}"
        if base == "exists":
            return f"{condition.field} exists: {_shown(self.values.values[:1])}"
        if condition.field == "size":
            verb = VERBS[base][0 if self.hit is not None else 1]
            return f"size {self.values.values[0]} bytes {verb} {condition.value} bytes"
        if self.hit is not None:
            shown = _quote(self.values.values[self.hit])
            if len(self.values.values) > 1:
                shown += f" (value {self.hit + 1} of {len(self.values.values)})"
            verb = VERBS[base][0]
        else:
            shown = _shown(self.values.values)
            verb = VERBS[base][1]
        case = " (case-sensitive)" if condition.case_sensitive else ""
        return f"{condition.field} {shown} {verb} {_quote(condition.value)}{case}"


@dataclass(frozen=True)
class ActionTrace:
    action: str  # e.g. "queue", "tag", "custom:Priority", "acknowledge"
    value: Any
    applied: bool
    note: str = ""  # why it was not applied


@dataclass(frozen=True)
class RuleTrace:
    name: str
    position: int  # 1-based
    status: str  # MATCHED, NOT_MATCHED, DISABLED, OUT_OF_SCOPE or NOT_REACHED
    conditions: tuple[ConditionTrace, ...] = ()
    actions: tuple[ActionTrace, ...] = ()
    stopped: bool = False  # this rule ended the evaluation


@dataclass
class RoutingResult:
    """The ticket fields the rules set, each with the rule that set it.

    ``fields`` maps a name of SINGLE_FIELDS to (value, rule name); ``tags``
    and ``custom_fields`` map a tag or field name to (value, rule name).
    """

    fields: dict[str, tuple[Any, str]] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)
    custom_fields: dict[str, tuple[Any, str]] = field(default_factory=dict)
    acknowledge: bool = True
    acknowledge_suppressed_by: str | None = None
    dropped_by: str | None = None

    @property
    def queue(self) -> str | None:
        return self.fields.get("queue", (None, ""))[0]

    @property
    def dropped(self) -> bool:
        return self.dropped_by is not None

    def placed_by(self, name: str) -> str | None:
        """Return the rule that set field ``name``, or None."""
        return self.fields.get(name, (None, None))[1]

    def changes_by_rule(self) -> dict[str, dict[str, Any]]:
        """Return, per rule in order of first change, the keyword arguments
        of ``store.operations.update_ticket`` that make its changes."""
        changes: dict[str, dict[str, Any]] = {}
        for name, (value, rule) in self.fields.items():
            changes.setdefault(rule, {})[name] = list(value) if name == "root_causes" else value
        for tag, rule in self.tags.items():
            changes.setdefault(rule, {}).setdefault("add_tags", []).append(tag)
        for name, (value, rule) in self.custom_fields.items():
            changes.setdefault(rule, {}).setdefault("custom_fields", {})[name] = value
        return changes

    def as_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {name: None for name in SINGLE_FIELDS}
        for name, (value, _rule) in self.fields.items():
            data[name] = list(value) if name == "root_causes" else value
        data["root_causes"] = data["root_causes"] or []
        data["tags"] = sorted(self.tags)
        data["custom_fields"] = {
            name: value for name, (value, _rule) in self.custom_fields.items()
        }
        data["acknowledge"] = self.acknowledge
        data["drop"] = self.dropped
        placed = {name: rule for name, (_value, rule) in self.fields.items()}
        placed.update({f"tag:{tag}": rule for tag, rule in self.tags.items()})
        placed.update({f"custom:{name}": rule for name, (_v, rule) in self.custom_fields.items()})
        if self.acknowledge_suppressed_by:
            placed["acknowledge"] = self.acknowledge_suppressed_by
        if self.dropped_by:
            placed["drop"] = self.dropped_by
        data["placed_by"] = placed
        return data


@dataclass(frozen=True)
class Evaluation:
    scope: str
    rules: tuple[RuleTrace, ...]
    result: RoutingResult

    def trace_as_dict(self) -> list[dict[str, Any]]:
        """Return the trace as plain data, for JSON output."""
        return [
            {
                "position": trace.position,
                "name": trace.name,
                "status": trace.status,
                "stopped": trace.stopped,
                "conditions": [
                    {**condition_to_dict(item.condition), "matched": item.matched,
                     "reason": item.reason}
                    for item in trace.conditions
                ],
                "actions": [
                    {"action": item.action, "value": item.value, "applied": item.applied,
                     "note": item.note}
                    for item in trace.actions
                ],
            }
            for trace in self.rules
        ]


class CompiledRule:
    """A rule with its condition values folded and its patterns compiled."""

    def __init__(self, rule: Rule) -> None:
        self.rule = rule
        self.match_all = rule.match == "all"
        self.tests: list[tuple[Condition, str, bool, Test]] = [
            (condition, condition.field.lower(), condition.negated, _compile_test(condition))
            for condition in rule.conditions
        ]

    def check(self, facts: MailFacts) -> tuple[bool, tuple[ConditionTrace, ...]]:
        """Evaluate every condition (for the trace); return the rule's verdict."""
        if not self.tests:
            return True, ()
        traces = []
        matches = 0
        for condition, field_key, negated, test in self.tests:
            values = facts.field(field_key)
            hit = test(values)
            matched = (hit is None) == negated
            matches += matched
            traces.append(ConditionTrace(condition, matched, values, hit))
        verdict = matches == len(traces) if self.match_all else matches > 0
        return verdict, tuple(traces)


class RuleSet:
    """An ordered, compiled rule set; compile once, evaluate on many mails."""

    def __init__(self, rules: Iterable[Rule]) -> None:
        self.rules = [CompiledRule(rule) for rule in rules]

    def __len__(self) -> int:
        return len(self.rules)

    def evaluate(self, facts: MailFacts, scope: str) -> Evaluation:
        """Run the rules on a mail of ``scope`` ("new" or "follow-up")."""
        result = RoutingResult()
        traces: list[RuleTrace] = []
        ended = False
        for position, compiled in enumerate(self.rules, start=1):
            rule = compiled.rule
            if ended:
                traces.append(RuleTrace(rule.name, position, NOT_REACHED))
            elif not rule.enabled:
                traces.append(RuleTrace(rule.name, position, DISABLED))
            elif not rule.applies_to(scope):
                traces.append(RuleTrace(rule.name, position, OUT_OF_SCOPE))
            else:
                matched, conditions = compiled.check(facts)
                if not matched:
                    traces.append(RuleTrace(rule.name, position, NOT_MATCHED, conditions))
                    continue
                actions = _apply_actions(rule, result)
                ended = rule.stop or rule.actions.drop
                traces.append(RuleTrace(rule.name, position, MATCHED, conditions, actions, ended))
        return Evaluation(scope, tuple(traces), result)


def _apply_actions(rule: Rule, result: RoutingResult) -> tuple[ActionTrace, ...]:
    actions = rule.actions
    traces = []
    if actions.drop:
        result.dropped_by = rule.name
        return (ActionTrace("drop", True, True),)
    for name in SINGLE_FIELDS:
        value = getattr(actions, name)
        if value is None or value == ():
            continue
        if name in result.fields:
            earlier = result.fields[name][1]
            traces.append(ActionTrace(name, value, False, f"set already by rule {earlier!r}"))
            continue
        result.fields[name] = (value, rule.name)
        traces.append(ActionTrace(name, value, True))
    for tag in actions.tags:
        if tag in result.tags:
            note = f"added already by rule {result.tags[tag]!r}"
            traces.append(ActionTrace("tag", tag, False, note))
            continue
        result.tags[tag] = rule.name
        traces.append(ActionTrace("tag", tag, True))
    for name, value in actions.custom_fields:
        if name in result.custom_fields:
            earlier = result.custom_fields[name][1]
            note = f"set already by rule {earlier!r}"
            traces.append(ActionTrace(f"custom:{name}", value, False, note))
            continue
        result.custom_fields[name] = (value, rule.name)
        traces.append(ActionTrace(f"custom:{name}", value, True))
    if not actions.acknowledge:
        if result.acknowledge:
            result.acknowledge = False
            result.acknowledge_suppressed_by = rule.name
        traces.append(ActionTrace("acknowledge", False, True))
    return tuple(traces)


def _compile_test(condition: Condition) -> Test:
    base = condition.base_operator
    if base == "exists":
        return lambda values: 0 if values.present else None
    if condition.field == "size":
        return _size_test(base, int(condition.value or 0))
    needle = normalize_text(str(condition.value))
    if base == "matches":
        search = compile_pattern(needle, case_sensitive=condition.case_sensitive).search

        def test_pattern(values: FieldValues) -> int | None:
            for index, data in enumerate(values.encoded):
                if search(data):
                    return index
            return None

        return test_pattern
    case_sensitive = condition.case_sensitive
    if not case_sensitive:
        needle = needle.casefold()
    compare: Callable[[str], bool] = {
        "equals": lambda value: value == needle,
        "contains": lambda value: needle in value,
        "starts-with": lambda value: value.startswith(needle),
        "ends-with": lambda value: value.endswith(needle),
    }[base]

    def test(values: FieldValues) -> int | None:
        for index, text in enumerate(values.values if case_sensitive else values.folded):
            if compare(text):
                return index
        return None

    return test


def _size_test(base: str, limit: int) -> Test:
    compare: Callable[[int], bool] = {
        "equals": lambda size: size == limit,
        "greater-than": lambda size: size > limit,
        "less-than": lambda size: size < limit,
    }[base]
    return lambda values: 0 if values.present and compare(int(values.values[0])) else None


def _quote(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, int):
        return str(value)
    text = str(value)
    if len(text) > TRACE_VALUE_CHARS:
        text = text[: TRACE_VALUE_CHARS - 1] + "…"
    return '"' + " ".join(text.split()) + '"' if text.strip() else repr(text)


def _shown(values: tuple[str, ...]) -> str:
    shown = ", ".join(_quote(value) for value in values[:TRACE_VALUES_SHOWN])
    if len(values) > TRACE_VALUES_SHOWN:
        shown += f" and {len(values) - TRACE_VALUES_SHOWN} more"
    return f"[{shown}]" if len(values) > 1 else shown

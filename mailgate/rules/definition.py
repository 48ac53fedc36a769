"""Routing rules as plain data, and the validation of a rule written as a
mapping: the shape of the YAML file, which the CLI and the HTTP API use too.

::

    name: outlook to billing
    enabled: true
    scope: new            # new, follow-up or both
    match: all            # all or any
    conditions:
      - {field: subject, operator: contains, value: "Outlook"}
      - {field: header:X-Spam-Flag, operator: not-equals, value: "YES"}
    actions:
      queue: Billing
      tags: [outlook]
    stop: false

Nothing here does I/O. Whether the queue, stage, user, custom fields and
root causes that actions name exist is checked against the store by
``mailgate.rules.ruleset``.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from mailgate.errors import InvalidRules
from mailgate.rules.patterns import PatternError, compile_pattern

SCOPES = ("new", "follow-up", "both")
MATCH_MODES = ("all", "any")

TEXT_OPERATORS = ("equals", "contains", "starts-with", "ends-with", "matches", "exists")
SIZE_OPERATORS = ("equals", "greater-than", "less-than", "exists")
PRESENCE_OPERATORS = ("exists",)


def _with_negations(operators: Iterable[str]) -> tuple[str, ...]:
    positive = tuple(operators)
    return positive + tuple(f"not-{operator}" for operator in positive)


# Every condition field, with the operators it accepts. Address fields
# compare the address (addr-spec), not the display name.
FIELD_OPERATORS: dict[str, tuple[str, ...]] = {
    "envelope-recipient": _with_negations(TEXT_OPERATORS),
    "to": _with_negations(TEXT_OPERATORS),
    "cc": _with_negations(TEXT_OPERATORS),
    "from": _with_negations(TEXT_OPERATORS),
    "from-domain": _with_negations(TEXT_OPERATORS),
    "reply-to": _with_negations(TEXT_OPERATORS),
    "subject": _with_negations(TEXT_OPERATORS),
    "body": _with_negations(TEXT_OPERATORS),
    "has-attachments": _with_negations(PRESENCE_OPERATORS),
    "attachment-name": _with_negations(TEXT_OPERATORS),
    "attachment-type": _with_negations(TEXT_OPERATORS),
    "size": _with_negations(SIZE_OPERATORS),
    "automatic": _with_negations(TEXT_OPERATORS),
}
HEADER_PREFIX = "header:"
# RFC 5322 section 3.6.8: a field name is printable US-ASCII except colon.
HEADER_NAME = re.compile(r"^[\x21-\x39\x3b-\x7e]+$")

ACTION_KEYS = (
    "queue", "stage", "tags", "ticket_type", "assignee", "escalation_level",
    "custom_fields", "root_causes", "acknowledge", "drop",
)
RULE_KEYS = ("name", "enabled", "scope", "match", "conditions", "actions", "stop")
CONDITION_KEYS = ("field", "operator", "value", "case_sensitive")

MAX_NAME_CHARS = 200
MAX_VALUE_CHARS = 4096
MAX_TAG_CHARS = 100
SIZE_VALUE = re.compile(r"^\s*(\d+)\s*([kmg]?)i?b?\s*$", re.IGNORECASE)
SIZE_UNITS = {"": 1, "k": 1024, "m": 1024**2, "g": 1024**3}


@dataclass(frozen=True)
class RuleProblem:
    """One reason a rule is invalid: the rule, the field and what is wrong."""

    rule: str
    field: str
    message: str

    def __str__(self) -> str:
        return f"rule {self.rule!r}: {self.field}: {self.message}"


@dataclass(frozen=True)
class Condition:
    field: str  # a key of FIELD_OPERATORS, or "header:" and a field name
    operator: str  # e.g. "contains" or its negation "not-contains"
    value: str | int | None = None  # None for exists; bytes for size
    case_sensitive: bool = False

    @property
    def negated(self) -> bool:
        return self.operator.startswith("not-")

    @property
    def base_operator(self) -> str:
        return self.operator.removeprefix("not-")


@dataclass(frozen=True)
class Actions:
    """The changes a matching rule makes to the ticket; None leaves a field as it is."""

    queue: str | None = None
    stage: str | None = None
    tags: tuple[str, ...] = ()
    ticket_type: str | None = None
    assignee: str | None = None
    escalation_level: int | None = None
    custom_fields: tuple[tuple[str, Any], ...] = ()
    root_causes: tuple[str, ...] = ()
    acknowledge: bool = True  # False: send the customer no acknowledgement
    drop: bool = False  # make no ticket; the spool row ends as ignored


@dataclass(frozen=True)
class Rule:
    name: str
    enabled: bool = True
    scope: str = "new"
    match: str = "all"
    conditions: tuple[Condition, ...] = ()
    actions: Actions = field(default_factory=Actions)
    stop: bool = False

    def applies_to(self, scope: str) -> bool:
        """True when the rule runs on mail of ``scope`` (new or follow-up)."""
        return self.scope in (scope, "both")


def normalize_text(value: str) -> str:
    """NFC-normalize, so that a composed and a decomposed "ö" compare equal."""
    return unicodedata.normalize("NFC", value)


def parse_rule_set(
    items: Any, *, check: Callable[[Rule], list[RuleProblem]] | None = None
) -> list[Rule]:
    """Validate a list of rule mappings as one rule set.

    Every rule is checked, and names must be unique. ``check`` adds the
    problems of each well-formed rule that this module cannot see, such
    as a queue that does not exist.

    Raises:
        InvalidRules: with every problem found, each naming its rule and field.
    """
    if not isinstance(items, list):
        raise InvalidRules([RuleProblem("(file)", "rules", "must be a list of rules")])
    rules, problems, seen = [], [], set()
    for index, item in enumerate(items):
        try:
            rule = parse_rule(item, position=index + 1)
        except InvalidRules as error:
            problems.extend(error.problems)
            continue
        if rule.name.casefold() in seen:
            problems.append(RuleProblem(rule.name, "name", "another rule has this name"))
        if check is not None:
            problems.extend(check(rule))
        seen.add(rule.name.casefold())
        rules.append(rule)
    if problems:
        raise InvalidRules(problems)
    return rules


def parse_rule(data: Any, *, position: int | None = None) -> Rule:
    """Validate one rule mapping and return the Rule.

    ``position`` (1-based) names the rule in messages when its own name is
    missing or invalid.

    Raises:
        InvalidRules: with every problem found in the rule.
    """
    label = f"#{position}" if position is not None else "(unnamed)"
    if not isinstance(data, Mapping):
        raise InvalidRules([RuleProblem(label, "(rule)", "must be a mapping of rule keys")])
    checker = _RuleChecker(label)
    rule = checker.rule(data)
    if checker.problems:
        raise InvalidRules(checker.problems)
    return rule


class _RuleChecker:
    """Collect every problem of one rule instead of stopping at the first."""

    def __init__(self, label: str) -> None:
        self.label = label
        self.problems: list[RuleProblem] = []

    def problem(self, field_name: str, message: str) -> None:
        self.problems.append(RuleProblem(self.label, field_name, message))

    def rule(self, data: Mapping[str, Any]) -> Rule:
        name = self._name(data.get("name"))
        if name:
            self.label = name
        self._unknown_keys(data, RULE_KEYS, "")
        conditions = data.get("conditions") or []
        if not isinstance(conditions, list):
            self.problem("conditions", "must be a list of conditions")
            conditions = []
        return Rule(
            name=name,
            enabled=self._flag(data, "enabled", True),
            scope=self._choice(data, "scope", SCOPES, "new"),
            match=self._choice(data, "match", MATCH_MODES, "all"),
            conditions=tuple(
                self.condition(item, f"conditions[{index}]")
                for index, item in enumerate(conditions)
            ),
            actions=self.actions(data.get("actions") or {}),
            stop=self._flag(data, "stop", False),
        )

    def _unknown_keys(self, data: Mapping[str, Any], known: tuple[str, ...], where: str) -> None:
        for key in data:
            if key not in known:
                self.problem(
                    f"{where}{key}", f"unknown key; known keys are {', '.join(known)}"
                )

    def _name(self, value: Any) -> str:
        if not isinstance(value, str) or not value.strip():
            self.problem("name", "missing; every rule needs a name")
            return ""
        name = " ".join(value.split())
        if len(name) > MAX_NAME_CHARS:
            self.problem("name", f"longer than {MAX_NAME_CHARS} characters")
        if any(unicodedata.category(char) == "Cc" for char in name):
            self.problem("name", "contains control characters")
        return name

    def _flag(self, data: Mapping[str, Any], key: str, default: bool, where: str = "") -> bool:
        value = data.get(key, default)
        if not isinstance(value, bool):
            self.problem(f"{where}{key}", f"must be true or false, not {value!r}")
            return default
        return value

    def _choice(
        self, data: Mapping[str, Any], key: str, choices: tuple[str, ...], default: str
    ) -> str:
        value = data.get(key, default)
        if value not in choices:
            self.problem(key, f"{value!r} is not one of {', '.join(choices)}")
            return default
        return value

    def condition(self, data: Any, where: str) -> Condition:
        if not isinstance(data, Mapping):
            self.problem(where, "must be a mapping with field, operator and value")
            return Condition("subject", "exists")
        self._unknown_keys(data, CONDITION_KEYS, f"{where}.")
        name = data.get("field")
        operators = self._operators(name, f"{where}.field")
        operator = data.get("operator")
        if operators and operator not in operators:
            self.problem(
                f"{where}.operator",
                f"{operator!r} does not apply to {name}; use one of {', '.join(operators)}",
            )
            operators = ()
        case_sensitive = self._flag(data, "case_sensitive", False, f"{where}.")
        value = data.get("value")
        if operators:
            value = self._value(name, operator, value, case_sensitive, f"{where}.value")
        return Condition(str(name), str(operator), value, case_sensitive)

    def _operators(self, name: Any, where: str) -> tuple[str, ...]:
        if isinstance(name, str) and name.lower().startswith(HEADER_PREFIX):
            header = name[len(HEADER_PREFIX):]
            if not HEADER_NAME.match(header):
                self.problem(where, f"{header!r} is not a header field name")
                return ()
            return _with_negations(TEXT_OPERATORS)
        if name not in FIELD_OPERATORS:
            fields = ", ".join([*FIELD_OPERATORS, "header:NAME"])
            self.problem(where, f"unknown field {name!r}; fields are {fields}")
            return ()
        return FIELD_OPERATORS[name]

    def _value(
        self, name: str, operator: str, value: Any, case_sensitive: bool, where: str
    ) -> str | int | None:
        base = operator.removeprefix("not-")
        if base == "exists":
            if value is not None:
                self.problem(where, f"{operator} takes no value")
            return None
        if value is None:
            self.problem(where, f"missing; {operator} compares with a value")
            return None
        if name == "size":
            return self._size(value, where)
        if isinstance(value, bool) or not isinstance(value, (str, int, float)):
            self.problem(where, f"must be text, not {value!r}; put it in quotes")
            return None
        text = normalize_text(str(value))
        if len(text) > MAX_VALUE_CHARS:
            self.problem(where, f"longer than {MAX_VALUE_CHARS} characters")
        if base == "matches":
            try:
                compile_pattern(text, case_sensitive=case_sensitive)
            except PatternError as error:
                self.problem(where, f"invalid regular expression {text!r}: {error}")
        return text

    def _size(self, value: Any, where: str) -> int | None:
        if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
            return value
        match = SIZE_VALUE.match(str(value)) if isinstance(value, str) else None
        if match is None:
            self.problem(where, f"{value!r} is not a size; write bytes, or e.g. 200K or 10M")
            return None
        return int(match.group(1)) * SIZE_UNITS[match.group(2).lower()]

    def actions(self, data: Any) -> Actions:
        if not isinstance(data, Mapping):
            self.problem("actions", "must be a mapping of actions")
            return Actions()
        self._unknown_keys(data, ACTION_KEYS, "actions.")
        actions = Actions(
            queue=self._text(data, "queue"),
            stage=self._text(data, "stage"),
            tags=self._tags(data.get("tags")),
            ticket_type=self._text(data, "ticket_type"),
            assignee=self._text(data, "assignee"),
            escalation_level=self._level(data.get("escalation_level")),
            custom_fields=self._custom_fields(data.get("custom_fields")),
            root_causes=self._names(data.get("root_causes"), "actions.root_causes"),
            acknowledge=self._flag(data, "acknowledge", True, "actions."),
            drop=self._flag(data, "drop", False, "actions."),
        )
        if actions.drop and any(key not in ("drop", "acknowledge") for key in data):
            self.problem(
                "actions.drop", "a dropped mail makes no ticket; remove the other actions"
            )
        return actions

    def _text(self, data: Mapping[str, Any], key: str) -> str | None:
        value = data.get(key)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, (str, int)) or not str(value).strip():
            self.problem(f"actions.{key}", f"must be a non-empty name, not {value!r}")
            return None
        return str(value).strip()

    def _tags(self, value: Any) -> tuple[str, ...]:
        tags = []
        for tag in self._names(value, "actions.tags"):
            tag = tag.lower()
            if len(tag) > MAX_TAG_CHARS or any(char.isspace() for char in tag):
                self.problem(
                    "actions.tags",
                    f"invalid tag {tag!r}; tags are single words "
                    f"of at most {MAX_TAG_CHARS} characters",
                )
                continue
            tags.append(tag)
        return tuple(dict.fromkeys(tags))

    def _names(self, value: Any, where: str) -> tuple[str, ...]:
        if value is None:
            return ()
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, list) or not all(
            isinstance(item, str) and item.strip() for item in value
        ):
            self.problem(where, f"must be a list of names, not {value!r}")
            return ()
        return tuple(item.strip() for item in value)

    def _level(self, value: Any) -> int | None:
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            self.problem(
                "actions.escalation_level", f"must be a whole number 0 or more, not {value!r}"
            )
            return None
        return value

    def _custom_fields(self, value: Any) -> tuple[tuple[str, Any], ...]:
        if value is None:
            return ()
        if not isinstance(value, Mapping) or not all(isinstance(key, str) for key in value):
            self.problem("actions.custom_fields", "must be a mapping of field name to value")
            return ()
        return tuple((key, value[key]) for key in value)


def rule_to_dict(rule: Rule) -> dict[str, Any]:
    """Return the rule in the file's shape, leaving out unset actions."""
    return {
        "name": rule.name,
        "enabled": rule.enabled,
        "scope": rule.scope,
        "match": rule.match,
        "conditions": [condition_to_dict(item) for item in rule.conditions],
        "actions": actions_to_dict(rule.actions),
        "stop": rule.stop,
    }


def condition_to_dict(condition: Condition) -> dict[str, Any]:
    data: dict[str, Any] = {"field": condition.field, "operator": condition.operator}
    if condition.value is not None:
        data["value"] = condition.value
    if condition.case_sensitive:
        data["case_sensitive"] = True
    return data


def actions_to_dict(actions: Actions) -> dict[str, Any]:
    data: dict[str, Any] = {}
    for key in ("queue", "stage"):
        if getattr(actions, key) is not None:
            data[key] = getattr(actions, key)
    if actions.tags:
        data["tags"] = list(actions.tags)
    for key in ("ticket_type", "assignee", "escalation_level"):
        if getattr(actions, key) is not None:
            data[key] = getattr(actions, key)
    if actions.custom_fields:
        data["custom_fields"] = dict(actions.custom_fields)
    if actions.root_causes:
        data["root_causes"] = list(actions.root_causes)
    if not actions.acknowledge:
        data["acknowledge"] = False
    if actions.drop:
        data["drop"] = True
    return data

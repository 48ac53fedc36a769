"""The rule form of the rules editor: a submitted form turned into a rule
in the rule file's shape, a rule turned back into form values, and
validation problems placed at the form fields they name.

The form's field names follow the names that ``InvalidRules`` problems
use (``name``, ``conditions[0].value``, ``actions.queue``), so that an
error is shown at the input it is about. Nothing here does I/O.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

from starlette.datastructures import FormData

from mailgate.rules.definition import FIELD_OPERATORS, HEADER_PREFIX, RuleProblem

# Condition rows the form shows besides the rule's own, for new conditions.
BLANK_CONDITION_ROWS = 2
# Condition rows are numbered from 0 and this page never numbers one this
# high, so a higher row number is rejected rather than shown again.
MAX_CONDITION_ROWS = 100

# Suggested in the field input; any "header:NAME" is accepted too.
CONDITION_FIELDS = (*FIELD_OPERATORS, HEADER_PREFIX + "X-Spam-Flag")
# The operators of each field, for the page script that narrows the
# operator list; "header:" stands for every header field.
FIELD_OPERATOR_CHOICES = {**FIELD_OPERATORS, HEADER_PREFIX: FIELD_OPERATORS["subject"]}
# Header fields take the text operators, which the other fields include.
ALL_OPERATORS = tuple(dict.fromkeys(
    operator for operators in FIELD_OPERATORS.values() for operator in operators
))
CONDITION_ROW = re.compile(r"^conditions\[(\d{1,6})\]\.field$")
PROBLEM_ROW = re.compile(r"^conditions\[(\d+)\](.*)$")
# Anything else typed as a number is passed on as text, for validation to reject.
WHOLE_NUMBER = re.compile(r"[0-9]{1,9}")


@dataclass
class RuleForm:
    """A rule as the form shows it: the definition, the form row of each
    condition, and the errors per form field."""

    definition: dict[str, Any]
    rows: list[int] = field(default_factory=list)  # form row of each condition
    errors: dict[str, list[str]] = field(default_factory=dict)
    general_errors: list[str] = field(default_factory=list)

    @property
    def invalid(self) -> bool:
        return bool(self.errors or self.general_errors)

    def condition_rows(self) -> list[dict[str, Any]]:
        """Return the condition rows to show: the rule's, then blank ones."""
        filled: dict[int, dict[str, Any]] = {}
        for row, condition in zip(self.rows, self.definition.get("conditions", []), strict=False):
            filled[row] = condition
        count = max(filled, default=-1) + 1 + BLANK_CONDITION_ROWS
        return [filled.get(row, {}) for row in range(count)]

    def add_problems(self, problems: list[RuleProblem]) -> None:
        """Put each problem of this form's rule at the form field it names."""
        for problem in problems:
            self.add_error(self.form_field(problem.field), problem.message)

    def add_error(self, name: str, message: str) -> None:
        self.errors.setdefault(name, []).append(message)

    def form_field(self, problem_field: str) -> str:
        """Return the form field that shows a problem of ``problem_field``."""
        match = PROBLEM_ROW.match(problem_field)
        if match:
            index = int(match.group(1))
            row = self.rows[index] if index < len(self.rows) else index
            return f"conditions[{row}]{match.group(2) or '.field'}"
        if problem_field.startswith("actions.custom_fields"):
            return "actions.custom_fields"
        return problem_field


def blank_definition() -> dict[str, Any]:
    return {"name": "", "enabled": True, "scope": "new", "match": "all", "conditions": [],
            "actions": {}, "stop": False}


def rule_form(definition: dict[str, Any]) -> RuleForm:
    """Return the form of a stored rule."""
    return RuleForm(definition, rows=list(range(len(definition.get("conditions", [])))))


def read_rule_form(form: FormData) -> RuleForm:
    """Turn a submitted rule form into a rule in the rule file's shape.

    Values are passed on as typed, so that the rule's validation reports
    what is wrong with them. A condition row without a field is left out.
    """
    conditions, rows = [], []
    numbers = _condition_row_numbers(form)
    for row in numbers:
        if row >= MAX_CONDITION_ROWS:
            break
        condition = _read_condition(form, row)
        if condition is not None:
            conditions.append(condition)
            rows.append(row)
    definition = {
        "name": _text(form, "name"),
        "enabled": form.get("enabled") == "1",
        "scope": _text(form, "scope") or "new",
        "match": _text(form, "match") or "all",
        "conditions": conditions,
        "actions": _read_actions(form),
        "stop": form.get("stop") == "1",
    }
    rule_form = RuleForm(definition, rows=rows)
    if numbers and numbers[-1] >= MAX_CONDITION_ROWS:
        rule_form.general_errors.append(
            f"A rule form has at most {MAX_CONDITION_ROWS} condition rows; remove some.")
    return rule_form


def _text(form: FormData, name: str) -> str:
    value = form.get(name)
    return value.strip() if isinstance(value, str) else ""


def _condition_row_numbers(form: FormData) -> list[int]:
    return sorted({int(match.group(1)) for key in form.keys()
                   if (match := CONDITION_ROW.match(key))})


def _read_condition(form: FormData, row: int) -> dict[str, Any] | None:
    prefix = f"conditions[{row}]."
    name = _text(form, prefix + "field")
    if not name:
        return None
    condition: dict[str, Any] = {"field": name, "operator": _text(form, prefix + "operator")}
    value = form.get(prefix + "value")
    if isinstance(value, str) and value != "":
        condition["value"] = value
    if form.get(prefix + "case_sensitive") == "1":
        condition["case_sensitive"] = True
    return condition


def _read_actions(form: FormData) -> dict[str, Any]:
    actions: dict[str, Any] = {}
    for key in ("queue", "stage", "ticket_type", "assignee"):
        if value := _text(form, f"actions.{key}"):
            actions[key] = value
    if tags := split_names(_text(form, "actions.tags")):
        actions["tags"] = tags
    level = _text(form, "actions.escalation_level")
    if level:
        actions["escalation_level"] = int(level) if WHOLE_NUMBER.fullmatch(level) else level
    root_causes = [str(name) for name in form.getlist("actions.root_causes") if str(name)]
    if root_causes:
        actions["root_causes"] = root_causes
    custom_text = _text(form, "actions.custom_fields")
    if custom_text:
        actions["custom_fields"] = read_custom_fields(custom_text)
    if form.get("actions.acknowledge") != "1":
        actions["acknowledge"] = False
    if form.get("actions.drop") == "1":
        actions["drop"] = True
    return actions


def split_names(text: str) -> list[str]:
    """Split tags written with commas or spaces between them."""
    return [name for name in re.split(r"[,\s]+", text) if name]


def read_custom_fields(text: str) -> dict[str, Any] | str:
    """Read lines of ``name: value``; return the text unchanged when a line
    has no colon, so that validation reports it.

    A value written as a JSON list (``["a", "b"]``, for a multichoice
    field) is read as that list.
    """
    fields: dict[str, Any] = {}
    for line in text.splitlines():
        if not line.strip():
            continue
        name, colon, value = line.partition(":")
        if not colon or not name.strip():
            return text
        fields[name.strip()] = _custom_value(value.strip())
    return fields


def _custom_value(text: str) -> Any:
    if not text.startswith("["):
        return text
    try:
        value = json.loads(text)
    except ValueError:
        return text
    return value if isinstance(value, list) else text


def custom_fields_text(values: dict[str, Any]) -> str:
    """Write custom field values as lines of ``name: value``, lists as JSON."""
    lines = []
    for name, value in values.items():
        text = json.dumps(value, ensure_ascii=False) if isinstance(value, list) else value
        lines.append(f"{name}: {text}")
    return "\n".join(lines)


# -- summaries for the rule list ---------------------------------------------------

def conditions_summary(definition: dict[str, Any]) -> str:
    """Describe the conditions in one line, e.g. ``subject contains "x"``."""
    conditions = definition.get("conditions") or []
    if not conditions:
        return "every mail"
    parts = []
    for condition in conditions:
        text = f"{condition['field']} {condition['operator']}"
        if "value" in condition:
            text += f" \"{condition['value']}\""
        if condition.get("case_sensitive"):
            text += " (case-sensitive)"
        parts.append(text)
    joiner = " and " if definition.get("match", "all") == "all" else " or "
    return joiner.join(parts)


def actions_summary(actions: dict[str, Any]) -> str:
    """Describe the actions in one line, e.g. ``queue Billing, tags a b``."""
    parts = []
    for key, value in actions.items():
        if key == "drop":
            parts.append("drop the mail")
        elif key == "acknowledge":
            parts.append("no acknowledgement")
        elif key == "custom_fields":
            parts.extend(f"{name} = {item}" for name, item in value.items())
        elif isinstance(value, list):
            parts.append(f"{key.replace('_', ' ')} {' '.join(map(str, value))}")
        else:
            parts.append(f"{key.replace('_', ' ')} {value}")
    return ", ".join(parts) or "no actions"

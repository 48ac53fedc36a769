"""Read and write rule files: a YAML mapping whose ``rules`` key lists the
rules in order (see ``mailgate.rules.definition`` for one rule's shape)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import yaml

from mailgate.errors import InvalidRules
from mailgate.rules.definition import RULE_KEYS, RuleProblem


class _FlowMapping(dict):
    """A mapping written on one line, as conditions are."""


class _FlowList(list):
    """A list written on one line, as tags are."""


class _RuleDumper(yaml.SafeDumper):
    def increase_indent(self, flow: bool = False, indentless: bool = False) -> Any:
        # Indent list items under their key, as the documented shape does.
        return super().increase_indent(flow, False)


_RuleDumper.add_representer(
    _FlowMapping, lambda dumper, data: dumper.represent_mapping(
        "tag:yaml.org,2002:map", data.items(), flow_style=True)
)
_RuleDumper.add_representer(
    _FlowList, lambda dumper, data: dumper.represent_sequence(
        "tag:yaml.org,2002:seq", data, flow_style=True)
)


def dump_rules(definitions: Iterable[Mapping[str, Any]]) -> str:
    """Return rule definitions as the text of a rule file."""
    rules = []
    for definition in definitions:
        rule = dict(definition)
        rule["conditions"] = [_FlowMapping(item) for item in rule.get("conditions", [])]
        actions = dict(rule.get("actions", {}))
        for key in ("tags", "root_causes"):
            if key in actions:
                actions[key] = _FlowList(actions[key])
        rule["actions"] = actions
        rules.append(rule)
    return yaml.dump(
        {"rules": rules}, Dumper=_RuleDumper, sort_keys=False, allow_unicode=True,
        default_flow_style=False, width=100,
    )


def load_rules_text(text: str, *, source: str = "(file)") -> list[Any]:
    """Return the rule mappings of a rule file, not yet validated.

    Raises:
        InvalidRules: the text is not YAML, or has no ``rules`` list.
    """
    data = _load(text, source)
    if not isinstance(data, Mapping) or not isinstance(data.get("rules"), list):
        message = "the file must be a mapping with a 'rules' list"
        raise InvalidRules([RuleProblem(source, "rules", message)])
    extra = set(data) - {"rules"}
    if extra:
        message = "unknown key; only 'rules' is allowed"
        raise InvalidRules([RuleProblem(source, ", ".join(sorted(extra)), message)])
    return data["rules"]


def load_rule_text(text: str, *, source: str = "(file)") -> Any:
    """Return one rule mapping: the whole document, or the single entry of
    its ``rules`` list."""
    data = _load(text, source)
    if isinstance(data, Mapping) and "rules" in data and not set(data) & set(RULE_KEYS):
        rules = data["rules"]
        if not isinstance(rules, list) or len(rules) != 1:
            raise InvalidRules([RuleProblem(source, "rules", "expected exactly one rule")])
        return rules[0]
    return data


def _load(text: str, source: str) -> Any:
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f"line {mark.line + 1}" if mark is not None else "(yaml)"
        problem = getattr(error, "problem", None) or str(error)
        raise InvalidRules([RuleProblem(source, where, f"invalid YAML: {problem}")]) from None

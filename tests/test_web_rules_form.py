"""The rules editor's form: submitted fields to a rule and problems back to
the fields, without a browser or a server."""

from __future__ import annotations

import pytest
from starlette.datastructures import FormData

from mailgate.errors import InvalidRules
from mailgate.rules.definition import parse_rule
from mailgate.web.rules_form import (
    MAX_CONDITION_ROWS,
    actions_summary,
    conditions_summary,
    custom_fields_text,
    read_custom_fields,
    read_rule_form,
    rule_form,
)


def test_form_read_in_file_shape():
    form = FormData([
        ("name", "  outlook to billing "), ("enabled", "1"), ("scope", "both"), ("match", "any"),
        ("conditions[0].field", "subject"), ("conditions[0].operator", "contains"),
        ("conditions[0].value", "Outlook"), ("conditions[0].case_sensitive", "1"),
        ("conditions[1].field", "has-attachments"), ("conditions[1].operator", "exists"),
        ("conditions[1].value", ""),
        ("actions.queue", "Billing"), ("actions.tags", "outlook, urgent  mail"),
        ("actions.escalation_level", "2"), ("actions.root_causes", "user error"),
        ("actions.custom_fields", "Priority: high\n\nRegion: EU"), ("stop", "1"),
    ])
    read = read_rule_form(form)
    assert read.definition == {
        "name": "outlook to billing", "enabled": True, "scope": "both", "match": "any",
        "conditions": [
            {"field": "subject", "operator": "contains", "value": "Outlook",
             "case_sensitive": True},
            {"field": "has-attachments", "operator": "exists"},
        ],
        "actions": {"queue": "Billing", "tags": ["outlook", "urgent", "mail"],
                    "escalation_level": 2, "root_causes": ["user error"],
                    "custom_fields": {"Priority": "high", "Region": "EU"},
                    "acknowledge": False},
        "stop": True,
    }
    assert read.rows == [0, 1]
    assert not read.invalid


def test_unchecked_boxes_read_as_false():
    read = read_rule_form(FormData([("name", "x"), ("actions.acknowledge", "1")]))
    assert read.definition["enabled"] is False
    assert read.definition["stop"] is False
    assert read.definition["actions"] == {}


def test_problem_shown_at_its_form_row():
    form = FormData([
        ("name", "gap"),
        ("conditions[0].field", ""), ("conditions[0].operator", "equals"),
        ("conditions[0].value", "ignored"),
        ("conditions[1].field", "subject"), ("conditions[1].operator", "matches"),
        ("conditions[1].value", "[0-9"),
        ("actions.acknowledge", "1"),
    ])
    read = read_rule_form(form)
    assert read.rows == [1]
    with pytest.raises(InvalidRules) as raised:
        parse_rule(read.definition)
    read.add_problems(raised.value.problems)
    assert list(read.errors) == ["conditions[1].value"]
    assert "invalid regular expression" in read.errors["conditions[1].value"][0]
    shown = read.condition_rows()
    assert shown[0] == {}
    assert shown[1]["value"] == "[0-9"
    assert len(shown) == 4


@pytest.mark.parametrize(("problem_field", "form_field"), [
    ("name", "name"),
    ("conditions[0]", "conditions[3].field"),
    ("conditions[0].operator", "conditions[3].operator"),
    ("actions.custom_fields.Priority", "actions.custom_fields"),
    ("actions.queue", "actions.queue"),
])
def test_problem_field_mapped(problem_field, form_field):
    read = read_rule_form(FormData([("name", "x"), ("conditions[3].field", "subject")]))
    assert read.form_field(problem_field) == form_field


def test_invalid_escalation_passed_to_validation():
    read = read_rule_form(FormData([("name", "x"), ("actions.escalation_level", "high"),
                                   ("actions.acknowledge", "1")]))
    assert read.definition["actions"]["escalation_level"] == "high"
    with pytest.raises(InvalidRules) as raised:
        parse_rule(read.definition)
    assert [problem.field for problem in raised.value.problems] == ["actions.escalation_level"]


@pytest.mark.parametrize("typed", ["²", "-1", "1.5", "9" * 5000])
def test_odd_escalation_kept_as_text(typed):
    read = read_rule_form(FormData([("name", "x"), ("actions.escalation_level", typed)]))
    assert read.definition["actions"]["escalation_level"] == typed


def test_custom_fields_without_colon_kept_as_text():
    read = read_rule_form(FormData([("name", "x"), ("actions.custom_fields", "Priority high"),
                                   ("actions.acknowledge", "1")]))
    assert read.definition["actions"]["custom_fields"] == "Priority high"


def test_custom_field_lists_round_trip():
    values = {"Products": ["mail", "web"], "Priority": "high", "Note": "[draft"}
    text = custom_fields_text(values)
    assert text == 'Products: ["mail", "web"]\nPriority: high\nNote: [draft'
    assert read_custom_fields(text) == values


def test_too_many_condition_rows_rejected():
    read = read_rule_form(FormData([
        ("name", "x"), ("conditions[0].field", "subject"), ("conditions[0].operator", "exists"),
        (f"conditions[{MAX_CONDITION_ROWS}].field", "body"),
        ("conditions[99999999999].field", "body"),
    ]))
    assert read.invalid
    assert len(read.definition["conditions"]) == 1
    assert f"at most {MAX_CONDITION_ROWS}" in read.general_errors[0]


def test_stored_rule_round_trips():
    definition = {"name": "r", "enabled": True, "scope": "new", "match": "all",
                  "conditions": [{"field": "size", "operator": "greater-than", "value": 1024}],
                  "actions": {"drop": True}, "stop": False}
    shown = rule_form(definition)
    assert shown.rows == [0]
    assert shown.condition_rows()[0]["value"] == 1024


def test_summaries():
    definition = {"match": "any", "conditions": [
        {"field": "subject", "operator": "contains", "value": "Outlook"},
        {"field": "from", "operator": "ends-with", "value": "@example.com",
         "case_sensitive": True},
    ]}
    assert conditions_summary(definition) == (
        'subject contains "Outlook" or from ends-with "@example.com" (case-sensitive)')
    assert conditions_summary({"conditions": []}) == "every mail"
    assert actions_summary({"queue": "Billing", "tags": ["a", "b"], "acknowledge": False}) == (
        "queue Billing, tags a b, no acknowledgement")
    assert actions_summary({}) == "no actions"

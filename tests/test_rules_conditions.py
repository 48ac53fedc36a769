"""Every condition field and operator, and its negation, on two mails: a
customer's mail with non-ASCII headers and attachments, and a bare
auto-reply that lacks most fields. Then rule validation when saved."""

from __future__ import annotations

import time
import unicodedata
from email.message import EmailMessage
from pathlib import Path

import pytest

from mailgate.app import App
from mailgate.automatic import automatic_reason
from mailgate.errors import InvalidRules
from mailgate.parsing import parse_message
from mailgate.rules import MailFacts, RuleSet, parse_rule, parse_rule_set
from mailgate.rules import ruleset
from mailgate.rules.definition import FIELD_OPERATORS
from mailgate.settings import load_settings
from store import rules as stored
from store.directory import add_queue, add_user
from store.models import Role, User
from store.operations import Actor

SUPPORT = "support@support.example.org"


def full_mail() -> bytes:
    message = EmailMessage()
    message["From"] = '"Jörg Müller" <joerg@Example.COM>'
    message["To"] = f'{SUPPORT}, "Anna" <anna@example.net>'
    message["Cc"] = "team@example.org"
    message["Reply-To"] = "replies@example.net"
    message["Subject"] = "Rechnung für März – Frösche"
    message["X-Kategorie"] = "Größe/Übergröße"
    message["X-Spam-Flag"] = "NO"
    message.set_content("Guten Tag,\nbitte prüfen Sie die Rechnung Nr. 4711.\n")
    message.add_attachment(b"%PDF-1.4 " + b"x" * 3000, maintype="application",
                           subtype="pdf", filename="rechnung-märz.pdf")
    message.add_attachment(b"\x89PNG\r\n\x1a\n" + b"\0" * 64, maintype="image", subtype="png",
                           filename="logo.png", disposition="inline")
    return message.as_bytes()


def bare_mail() -> bytes:
    message = EmailMessage()
    message["From"] = "bot@robots.example.net"
    message["To"] = SUPPORT
    message["Subject"] = "Out of office"
    message["Auto-Submitted"] = "auto-replied"
    message.set_content("")
    return message.as_bytes()


def facts_of(raw: bytes, rcpt_tos: list[str]) -> MailFacts:
    mail = parse_message(raw)
    automatic = automatic_reason(mail.header, mail.subject, "sender@example.com",
                                 own_domain="support.example.org")
    return MailFacts(mail, rcpt_tos=rcpt_tos, size=len(raw), automatic=automatic)


FULL_RAW = full_mail()
FULL = facts_of(FULL_RAW, ["SUPPORT+billing@support.example.org"])
BARE = facts_of(bare_mail(), [])

# (field, operator, value, case_sensitive, matches the full mail, matches the bare one)
CASES = [
    ("envelope-recipient", "equals", "support+billing@support.example.org", False, True, False),
    ("envelope-recipient", "contains", "+BILLING", False, True, False),
    ("envelope-recipient", "starts-with", "support+", False, True, False),
    ("envelope-recipient", "ends-with", "@support.example.org", False, True, False),
    ("envelope-recipient", "matches", r"^support\+\w+@", False, True, False),
    ("envelope-recipient", "exists", None, False, True, False),
    ("to", "equals", "anna@example.net", False, True, False),
    ("to", "contains", "ANNA", False, True, False),
    ("to", "starts-with", "support@", False, True, True),
    ("to", "ends-with", ".net", False, True, False),
    ("to", "matches", r"^anna@example\.(net|org)$", False, True, False),
    ("to", "exists", None, False, True, True),
    ("cc", "equals", "team@example.org", False, True, False),
    ("cc", "contains", "team", False, True, False),
    ("cc", "starts-with", "team@", False, True, False),
    ("cc", "ends-with", "example.org", False, True, False),
    ("cc", "matches", r"^t[a-z]+@", False, True, False),
    ("cc", "exists", None, False, True, False),
    ("from", "equals", "joerg@example.com", False, True, False),
    ("from", "equals", "joerg@example.com", True, False, False),
    ("from", "contains", "joerg", False, True, False),
    ("from", "starts-with", "bot@", False, False, True),
    ("from", "ends-with", "example.com", False, True, False),
    ("from", "matches", r"^[a-z]+@[a-z.]+$", False, True, True),
    ("from", "exists", None, False, True, True),
    ("from-domain", "equals", "example.com", False, True, False),
    ("from-domain", "contains", "robots", False, False, True),
    ("from-domain", "starts-with", "EXAMPLE", False, True, False),
    ("from-domain", "ends-with", ".net", False, False, True),
    ("from-domain", "matches", r"(^|\.)example\.(com|net)$", False, True, True),
    ("from-domain", "exists", None, False, True, True),
    ("reply-to", "equals", "replies@example.net", False, True, False),
    ("reply-to", "contains", "replies", False, True, False),
    ("reply-to", "starts-with", "repl", False, True, False),
    ("reply-to", "ends-with", "@example.net", False, True, False),
    ("reply-to", "matches", r"^replies@", False, True, False),
    ("reply-to", "exists", None, False, True, False),
    ("subject", "equals", "RECHNUNG FÜR MÄRZ – FRÖSCHE", False, True, False),
    ("subject", "contains", "frösche", False, True, False),
    ("subject", "contains", "frösche", True, False, False),
    ("subject", "contains", "Frösche", True, True, False),
    # The same word with "ö" decomposed (o and a combining diaeresis).
    ("subject", "contains", unicodedata.normalize("NFD", "Frösche"), False, True, False),
    ("subject", "starts-with", "rechnung für", False, True, False),
    ("subject", "ends-with", "– frösche", False, True, False),
    ("subject", "matches", r"m(ä|ae)rz", False, True, False),
    ("subject", "matches", r"M(ä|ae)rz", True, True, False),
    ("subject", "matches", r"m(ä|ae)rz", True, False, False),
    ("subject", "exists", None, False, True, True),
    ("body", "equals", "guten tag,\nbitte prüfen sie die rechnung nr. 4711.\n", False, True, False),
    ("body", "contains", "PRÜFEN", False, True, False),
    ("body", "starts-with", "Guten Tag", False, True, False),
    ("body", "ends-with", "4711.\n", False, True, False),
    ("body", "matches", r"Nr\.\s*\d{4}", False, True, False),
    ("body", "exists", None, False, True, False),
    ("header:X-Kategorie", "equals", "größe/übergröße", False, True, False),
    # Case folding maps "ß" to "ss", as str.casefold does.
    ("header:X-Kategorie", "contains", "ÜBERGRÖSSE", False, True, False),
    ("header:x-kategorie", "starts-with", "Größe/", False, True, False),
    ("header:X-Kategorie", "ends-with", "GRÖßE", False, True, False),
    ("header:X-Kategorie", "matches", r"^gr(ö|oe)(ß|ss)e/", False, True, False),
    ("header:X-Kategorie", "exists", None, False, True, False),
    ("header:Auto-Submitted", "equals", "auto-replied", False, False, True),
    ("header:Auto-Submitted", "exists", None, False, False, True),
    ("has-attachments", "exists", None, False, True, False),
    ("attachment-name", "equals", "RECHNUNG-MÄRZ.PDF", False, True, False),
    ("attachment-name", "contains", "märz", False, True, False),
    ("attachment-name", "starts-with", "logo", False, True, False),
    ("attachment-name", "ends-with", ".pdf", False, True, False),
    ("attachment-name", "matches", r"\.(pdf|docx?)$", False, True, False),
    ("attachment-name", "exists", None, False, True, False),
    ("attachment-type", "equals", "application/pdf", False, True, False),
    ("attachment-type", "contains", "pdf", False, True, False),
    ("attachment-type", "starts-with", "image/", False, True, False),
    ("attachment-type", "ends-with", "/png", False, True, False),
    ("attachment-type", "matches", r"^application/(pdf|zip)$", False, True, False),
    ("attachment-type", "exists", None, False, True, False),
    ("size", "equals", len(FULL_RAW), False, True, False),
    ("size", "greater-than", "1K", False, True, False),
    ("size", "less-than", 1024, False, False, True),
    ("size", "exists", None, False, True, True),
    ("automatic", "equals", "auto-submitted: auto-replied", False, False, True),
    ("automatic", "contains", "auto-replied", False, False, True),
    ("automatic", "starts-with", "Auto-Submitted", False, False, True),
    ("automatic", "ends-with", "replied", False, False, True),
    ("automatic", "matches", r"auto-(replied|generated)", False, False, True),
    ("automatic", "exists", None, False, False, True),
]

ROWS = [
    pytest.param(field, operator, value, sensitive, full, bare, id=f"{field}-{operator}-{index}")
    for index, (field, operator, value, sensitive, full, bare) in enumerate(CASES)
] + [
    pytest.param(field, f"not-{operator}", value, sensitive, not full, not bare,
                 id=f"{field}-not-{operator}-{index}")
    for index, (field, operator, value, sensitive, full, bare) in enumerate(CASES)
]


def condition_rule(field: str, operator: str, value, case_sensitive: bool) -> RuleSet:
    condition = {"field": field, "operator": operator}
    if value is not None:
        condition["value"] = value
    if case_sensitive:
        condition["case_sensitive"] = True
    rule = parse_rule({"name": "case", "conditions": [condition], "actions": {"tags": ["hit"]}})
    return RuleSet([rule])


@pytest.mark.parametrize(("field", "operator", "value", "case_sensitive", "on_full", "on_bare"), ROWS)
def test_condition_field_operator(field, operator, value, case_sensitive, on_full, on_bare) -> None:
    rules = condition_rule(field, operator, value, case_sensitive)
    for facts, expected in ((FULL, on_full), (BARE, on_bare)):
        evaluation = rules.evaluate(facts, "new")
        [trace] = evaluation.rules
        [condition] = trace.conditions
        assert condition.matched is expected, condition.reason
        assert (evaluation.result.tags == {"hit": "case"}) is expected
        assert condition.reason.startswith(field)


def test_table_covers_every_field_and_operator() -> None:
    covered = {(field, operator) for field, operator, *_ in CASES}
    for field, operators in FIELD_OPERATORS.items():
        for operator in operators:
            if not operator.startswith("not-"):
                assert (field, operator) in covered, (field, operator)
    header_operators = {operator for field, operator, *_ in CASES if field.startswith("header:")}
    assert header_operators == {"equals", "contains", "starts-with", "ends-with", "matches", "exists"}


def test_trace_explains_matched_value() -> None:
    rules = condition_rule("to", "equals", "anna@example.net", False)
    [condition] = rules.evaluate(FULL, "new").rules[0].conditions
    assert condition.reason == 'to "anna@example.net" (value 2 of 2) equals "anna@example.net"'
    rules = condition_rule("header:X-Spam-Flag", "not-equals", "YES", False)
    [condition] = rules.evaluate(BARE, "new").rules[0].conditions
    assert condition.reason == 'header:X-Spam-Flag is absent, so it does not equal "YES"'
    assert condition.matched is True


# -- order, stop, scope ----------------------------------------------------------

def test_first_matching_rule_wins_fields() -> None:
    rules = RuleSet(parse_rule_set([
        {"name": "disabled", "enabled": False, "actions": {"queue": "Nowhere"}},
        {"name": "follow-ups", "scope": "follow-up", "actions": {"queue": "Later"}},
        {"name": "billing", "conditions": [{"field": "subject", "operator": "contains",
                                            "value": "rechnung"}],
         "actions": {"queue": "Billing", "tags": ["invoice"]}},
        {"name": "german", "match": "any",
         "conditions": [{"field": "subject", "operator": "contains", "value": "nothing"},
                        {"field": "body", "operator": "contains", "value": "guten tag"}],
         "actions": {"queue": "German", "tags": ["de"], "stage": "open"}, "stop": True},
        {"name": "never", "actions": {"tags": ["late"]}},
    ]))
    evaluation = rules.evaluate(FULL, "new")
    assert [trace.status for trace in evaluation.rules] == [
        "disabled", "out of scope", "matched", "matched", "not reached"]
    result = evaluation.result
    assert result.queue == "Billing"
    assert result.placed_by("queue") == "billing"
    assert result.placed_by("stage") == "german"
    assert result.tags == {"invoice": "billing", "de": "german"}
    [queue_action] = [a for a in evaluation.rules[3].actions if a.action == "queue"]
    assert queue_action.applied is False
    assert queue_action.note == "set already by rule 'billing'"
    assert evaluation.rules[3].stopped is True
    assert result.changes_by_rule() == {
        "billing": {"queue": "Billing", "add_tags": ["invoice"]},
        "german": {"stage": "open", "add_tags": ["de"]},
    }


def test_drop_ends_evaluation() -> None:
    rules = RuleSet(parse_rule_set([
        {"name": "no auto", "conditions": [{"field": "automatic", "operator": "exists"}],
         "actions": {"drop": True}},
        {"name": "tag all", "actions": {"tags": ["seen"]}},
    ]))
    dropped = rules.evaluate(BARE, "new")
    assert dropped.result.dropped_by == "no auto"
    assert dropped.result.tags == {}
    kept = rules.evaluate(FULL, "new")
    assert kept.result.dropped_by is None
    assert kept.result.tags == {"seen": "tag all"}


def test_regex_engine_is_linear_time() -> None:
    # A pattern that backtracks exponentially in Python's re module.
    rules = condition_rule("body", "matches", r"^(a+)+$", False)
    raw = full_mail().replace(b"Guten Tag,", b"a" * 5000 + b"!")
    start = time.perf_counter()
    [condition] = rules.evaluate(facts_of(raw, []), "new").rules[0].conditions
    assert time.perf_counter() - start < 0.5
    assert condition.matched is False


# -- validation --------------------------------------------------------------------

@pytest.mark.parametrize(("rule", "field", "message"), [
    ({"name": "r", "conditions": [{"field": "subject", "operator": "matches", "value": "a(b"}]},
     "conditions[0].value", "invalid regular expression 'a(b': missing ): a(b"),
    ({"name": "r", "conditions": [{"field": "subject", "operator": "matches",
                                   "value": "(?<=x)y"}]},
     "conditions[0].value", "invalid regular expression"),
    ({"name": "r", "conditions": [{"field": "subjekt", "operator": "contains", "value": "x"}]},
     "conditions[0].field", "unknown field 'subjekt'"),
    ({"name": "r", "conditions": [{"field": "size", "operator": "contains", "value": "1"}]},
     "conditions[0].operator", "'contains' does not apply to size"),
    ({"name": "r", "conditions": [{"field": "subject", "operator": "equals", "value": True}]},
     "conditions[0].value", "put it in quotes"),
    ({"name": "r", "conditions": [{"field": "subject", "operator": "exists", "value": "x"}]},
     "conditions[0].value", "exists takes no value"),
    ({"name": "r", "conditions": [{"field": "header:Bad Name", "operator": "exists"}]},
     "conditions[0].field", "is not a header field name"),
    ({"name": "r", "scope": "old"}, "scope", "'old' is not one of new, follow-up, both"),
    ({"name": "r", "actions": {"tags": ["two words"]}}, "actions.tags", "invalid tag"),
    ({"name": "r", "actions": {"drop": True, "queue": "Billing"}}, "actions.drop",
     "remove the other actions"),
    ({"name": "r", "actions": {"escalation_level": -1}}, "actions.escalation_level",
     "0 or more"),
    ({"name": "r", "acton": {}}, "acton", "unknown key"),
])
def test_invalid_rule_names_field(rule, field, message) -> None:
    with pytest.raises(InvalidRules) as raised:
        parse_rule(rule)
    [problem] = raised.value.problems
    assert problem.rule == "r"
    assert problem.field == field
    assert message in problem.message


@pytest.fixture
def app(tmp_path: Path):
    app = App.create(load_settings(home=tmp_path / "home", domain="support.example.org"))
    add_queue(app.sessions, "Support", SUPPORT)
    add_queue(app.sessions, "Billing", "billing@support.example.org")
    add_user(app.sessions, "root", "root@example.org", Role.ADMIN, [])
    yield app
    app.close()


def admin(session) -> Actor:
    return Actor(session.query(User).filter_by(username="root").one(), "cli")


def test_invalid_regex_rejected_when_saved(app: App) -> None:
    rule = {"name": "broken pattern", "conditions": [
        {"field": "subject", "operator": "matches", "value": "[0-9"}]}
    with pytest.raises(InvalidRules) as raised:
        with app.sessions.begin() as session:
            ruleset.add_rule(session, admin(session), rule)
    [problem] = raised.value.problems
    assert str(problem) == ("rule 'broken pattern': conditions[0].value: invalid regular "
                            "expression '[0-9': missing ]: [0-9")
    with app.sessions() as session:
        assert stored.list_rules(session) == []
        assert stored.rule_history(session) == []


def test_unknown_queue_rejected_when_saved(app: App) -> None:
    rule = {"name": "to sales", "actions": {"queue": "Sales", "stage": "doing"}}
    with pytest.raises(InvalidRules) as raised:
        with app.sessions.begin() as session:
            ruleset.add_rule(session, admin(session), rule)
    fields = [(problem.rule, problem.field) for problem in raised.value.problems]
    assert fields == [("to sales", "actions.queue"), ("to sales", "actions.stage")]
    assert "queue 'Sales' not found" in str(raised.value)

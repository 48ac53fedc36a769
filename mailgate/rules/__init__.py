"""Routing rules: an ordered rule set that admins edit, test and replay,
applied to every new mail (and to follow-ups, for rules of that scope).

See README.md for which modules are pure and which use the store.
"""

from mailgate.rules.definition import (
    Actions,
    Condition,
    Rule,
    RuleProblem,
    parse_rule,
    parse_rule_set,
)
from mailgate.rules.evaluate import Evaluation, RoutingResult, RuleSet
from mailgate.rules.facts import MailFacts

__all__ = [
    "Actions",
    "Condition",
    "Evaluation",
    "MailFacts",
    "RoutingResult",
    "Rule",
    "RuleProblem",
    "RuleSet",
    "parse_rule",
    "parse_rule_set",
]

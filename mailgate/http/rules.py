"""Routing rule endpoints, for admins only (permission admin.rules).

Rules use the rule file's shape as JSON. An invalid rule, or a rule set
with one, changes nothing and gets status 422 with every problem, each
naming its rule and field.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from fastapi import APIRouter, Body, Depends, HTTPException, Query, Request
from pydantic import BaseModel, Field
from sqlalchemy.orm import Session

from mailgate.errors import InvalidRules
from mailgate.http.auth import current_actor, transaction
from mailgate.parsing import ParseError, parse_message
from mailgate.rules import ruleset
from mailgate.rules.evaluate import RuleSet
from mailgate.rules.processing import preview_mail
from mailgate.rules.replay import parse_since, replay
from store import operations as ops
from store import rules as stored
from store.permissions import ADMIN_RULES

router = APIRouter(prefix="/api/rules", tags=["rules"])


def admin_actor(actor: ops.Actor = Depends(current_actor)) -> ops.Actor:
    """Return the actor when they hold admin.rules; else 403."""
    actor.require(ADMIN_RULES)
    return actor


class RuleSetBody(BaseModel):
    rules: list[dict[str, Any]]


class MoveRequest(BaseModel):
    position: int = Field(ge=1, description="1 runs first")


class RuleTestRequest(BaseModel):
    raw_base64: str = Field(description="The whole mail (.eml bytes), base64")
    rcpt_tos: list[str] = []
    mail_from: str | None = Field(None, description="Envelope sender; '' for the null path")
    rules: list[dict[str, Any]] | None = Field(None, description="Default: the rules in force")
    scope: str | None = Field(None, pattern="^(new|follow-up)$")


class ReplayRequest(BaseModel):
    since: str = Field(description="30m, 12h, 7d, 2w, or an ISO date")
    rules: list[dict[str, Any]] | None = Field(None, description="Default: the rules in force")
    limit: int = Field(100_000, ge=1)


@contextmanager
def _invalid_as_422() -> Iterator[None]:
    try:
        yield
    except InvalidRules as error:
        problems = [
            {"rule": item.rule, "field": item.field, "message": item.message}
            for item in error.problems
        ]
        raise HTTPException(422, {"message": "invalid rules; nothing was changed",
                                  "problems": problems}) from None


def _row(rule: stored.RoutingRule) -> dict[str, Any]:
    return {"id": rule.id, "position": rule.position, **stored.rule_definition(rule)}


def _get(session: Session, rule_id: int) -> stored.RoutingRule:
    rule = session.get(stored.RoutingRule, rule_id)
    if rule is None:
        raise HTTPException(404, f"rule {rule_id} not found")
    return rule


def _rule_set(session: Session, items: list[dict[str, Any]] | None) -> RuleSet:
    if items is None:
        return ruleset.current_rule_set(session)[1]
    return RuleSet(ruleset.validate_rule_set(session, items))


@router.get("")
def list_rules(actor: ops.Actor = Depends(admin_actor),
               session: Session = Depends(transaction, scope="function")) -> dict[str, Any]:
    """Return the rules in the order they run."""
    return {"rules": [_row(rule) for rule in stored.list_rules(session)]}


@router.put("")
def import_rules(body: RuleSetBody, actor: ops.Actor = Depends(admin_actor),
                 session: Session = Depends(transaction, scope="function")) -> dict[str, Any]:
    """Replace the whole rule set, after checking every rule."""
    with _invalid_as_422():
        report = ruleset.import_rules(session, actor, body.rules, source="api")
    return {"report": report, "rules": [_row(rule) for rule in stored.list_rules(session)]}


@router.post("", status_code=201)
def add_rule(data: dict[str, Any] = Body(..., description="One rule in the rule file's shape"),
             position: int | None = Query(None, ge=1, description="Default: last"),
             actor: ops.Actor = Depends(admin_actor),
             session: Session = Depends(transaction, scope="function")) -> dict[str, Any]:
    with _invalid_as_422():
        rule = ruleset.add_rule(session, actor, data, position=position)
    return _row(rule)


@router.get("/history")
def history(limit: int = Query(100, ge=1, le=1000), actor: ops.Actor = Depends(admin_actor),
            session: Session = Depends(transaction, scope="function")) -> list[dict[str, Any]]:
    """Changes to the rule set, newest first, with the rule before and after."""
    return [
        {"id": entry.id, "at": entry.at.isoformat(), "actor": entry.actor,
         "channel": entry.channel, "action": entry.action, "rule_id": entry.rule_id,
         "rule": entry.rule_name, "before": entry.before, "after": entry.after,
         "details": entry.details}
        for entry in stored.rule_history(session, limit=limit)
    ]


@router.post("/test")
def test_mail(body: RuleTestRequest, request: Request, actor: ops.Actor = Depends(admin_actor),
              session: Session = Depends(transaction, scope="function")) -> dict[str, Any]:
    """Evaluate rules on a mail: the trace and the resulting ticket fields."""
    try:
        raw = base64.b64decode(body.raw_base64, validate=True)
        mail = parse_message(raw)
    except binascii.Error:
        raise HTTPException(422, "raw_base64 is not valid base64") from None
    except ParseError as error:
        raise HTTPException(422, f"the mail cannot be parsed: {error}") from None
    with _invalid_as_422():
        rule_set = _rule_set(session, body.rules)
    [preview] = preview_mail(
        session, request.app.state.mailgate.settings, raw, mail, rcpt_tos=body.rcpt_tos,
        envelope_sender=body.mail_from, rule_sets=[rule_set], scope=body.scope,
    )
    return {
        "scope": preview.scope,
        "skipped": preview.skipped or None,
        "automatic": preview.automatic,
        "rules": preview.evaluation.trace_as_dict() if preview.evaluation else [],
        "result": preview.fields,
    }


@router.post("/replay")
def replay_rules(body: ReplayRequest, request: Request, actor: ops.Actor = Depends(admin_actor),
                 session: Session = Depends(transaction, scope="function")) -> dict[str, Any]:
    """Report which spooled mails the proposed rules would route differently."""
    try:
        since = parse_since(body.since)
    except ValueError as error:
        raise HTTPException(422, str(error)) from None
    with _invalid_as_422():
        rule_set = _rule_set(session, body.rules)
    settings = request.app.state.mailgate.settings
    return replay(session, settings, rule_set, since=since, limit=body.limit).as_dict()


@router.get("/{rule_id}")
def get_rule(rule_id: int, actor: ops.Actor = Depends(admin_actor),
             session: Session = Depends(transaction, scope="function")) -> dict[str, Any]:
    return _row(_get(session, rule_id))


@router.put("/{rule_id}")
def replace_rule(rule_id: int, data: dict[str, Any] = Body(...),
                 actor: ops.Actor = Depends(admin_actor),
                 session: Session = Depends(transaction, scope="function")) -> dict[str, Any]:
    rule = _get(session, rule_id)
    with _invalid_as_422():
        ruleset.edit_rule(session, actor, rule, data)
    return _row(rule)


@router.post("/{rule_id}/enable")
def enable_rule(rule_id: int, actor: ops.Actor = Depends(admin_actor),
                session: Session = Depends(transaction, scope="function")) -> dict[str, Any]:
    rule = _get(session, rule_id)
    stored.set_rule_enabled(session, actor, rule, True)
    return _row(rule)


@router.post("/{rule_id}/disable")
def disable_rule(rule_id: int, actor: ops.Actor = Depends(admin_actor),
                 session: Session = Depends(transaction, scope="function")) -> dict[str, Any]:
    rule = _get(session, rule_id)
    stored.set_rule_enabled(session, actor, rule, False)
    return _row(rule)


@router.post("/{rule_id}/move")
def move_rule(rule_id: int, body: MoveRequest, actor: ops.Actor = Depends(admin_actor),
              session: Session = Depends(transaction, scope="function")) -> dict[str, Any]:
    rule = _get(session, rule_id)
    stored.move_rule(session, actor, rule, body.position)
    return {"rules": [_row(item) for item in stored.list_rules(session)]}


@router.delete("/{rule_id}")
def delete_rule(rule_id: int, actor: ops.Actor = Depends(admin_actor),
                session: Session = Depends(transaction, scope="function")) -> dict[str, Any]:
    rule = _get(session, rule_id)
    name = rule.name
    stored.delete_rule(session, actor, rule)
    return {"deleted": rule_id, "name": name}

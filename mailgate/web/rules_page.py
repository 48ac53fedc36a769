"""The routing rules editor, for admins (permission admin.rules): the rule
list with its order, enable, disable and delete buttons, the add and edit
form, the trace of an uploaded mail and the replay of recent mail.

Every change goes through ``mailgate.rules.ruleset`` and ``store.rules``,
as the CLI's and the API's do, so it is validated alike and recorded in the
rule history with channel "web".
"""

from __future__ import annotations

import logging
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.responses import JSONResponse, Response
from sqlalchemy import select
from sqlalchemy.orm import Session
from starlette.datastructures import FormData

from mailgate.errors import InvalidRules
from mailgate.rules import ruleset
from mailgate.rules.definition import MATCH_MODES, SCOPES, Rule
from mailgate.web import rules_form
from mailgate.web.pages import CheckedForm, PageActor, Transaction, attempt, flash, redirect, render
from mailgate.web.rules_form import RuleForm
from mailgate.web.rules_preview import (
    DEFAULT_REPLAY_SINCE,
    PreviewError,
    draft_rule_set,
    read_uploaded_mail,
    replay_recent,
    trace_mail,
)
from store import operations as ops
from store import rules as stored
from store.models import CustomField, Queue, RootCause, User
from store.permissions import ADMIN_RULES

log = logging.getLogger(__name__)

router = APIRouter(include_in_schema=False)

RECENT_CHANGES = 10
HISTORY_PAGE_SIZE = 200
RULE_CHANGES = 50


def rules_admin(actor: PageActor) -> ops.Actor:
    """Return the signed-in actor when they hold admin.rules; else 403."""
    actor.require(ADMIN_RULES)
    return actor


RulesAdmin = Annotated[ops.Actor, Depends(rules_admin)]


def _get_rule(session: Session, rule_id: int) -> stored.RoutingRule:
    rule = session.get(stored.RoutingRule, rule_id)
    if rule is None:
        raise HTTPException(404, f"rule {rule_id} not found")
    return rule


def _listed(rule: stored.RoutingRule) -> dict[str, Any]:
    definition = stored.rule_definition(rule)
    return {
        "rule": rule,
        "conditions": rules_form.conditions_summary(definition),
        "actions": rules_form.actions_summary(definition["actions"]),
    }


# -- the rule list -------------------------------------------------------------------

def _render_list(
    request: Request, session: Session, *, status_code: int = 200, **context: Any
) -> Response:
    return render(request, "rules.html", {
        "rules": [_listed(rule) for rule in stored.list_rules(session)],
        "changes": stored.rule_history(session, limit=RECENT_CHANGES),
        "rcpt_to": "",
        **context,
    }, status_code=status_code, session=session)


@router.get("/rules")
def rules_list(request: Request, actor: RulesAdmin, session: Transaction) -> Response:
    """Show the rules in the order they run, and the latest changes."""
    return _render_list(request, session)


@router.post("/rules/test")
def test_saved_rules(
    request: Request, form: CheckedForm, actor: RulesAdmin, session: Transaction
) -> Response:
    """Show the trace of an uploaded mail under the saved rules."""
    settings = request.app.state.mailgate.settings
    rcpt_to = str(form.get("rcpt_to", "")).strip()
    try:
        file_name, raw = read_uploaded_mail(form, settings.max_message_bytes)
        _revision, rule_set = ruleset.current_rule_set(session)
        test = trace_mail(session, settings, rule_set, file_name, raw, rcpt_to)
    except PreviewError as error:
        return _render_list(request, session, status_code=422, test_error=str(error),
                            rcpt_to=rcpt_to)
    return _render_list(request, session, test=test, rcpt_to=rcpt_to)


@router.get("/rules/history")
def rules_history(request: Request, actor: RulesAdmin, session: Transaction) -> Response:
    """Show the latest changes to the rule set with each rule before and after."""
    changes = stored.rule_history(session, limit=HISTORY_PAGE_SIZE)
    return render(request, "rules_history.html", {"changes": changes}, session=session)


@router.post("/rules/{rule_id}/enable")
def enable_rule(
    request: Request, rule_id: int, form: CheckedForm, actor: RulesAdmin, session: Transaction
) -> Response:
    return _set_enabled(request, session, actor, rule_id, True)


@router.post("/rules/{rule_id}/disable")
def disable_rule(
    request: Request, rule_id: int, form: CheckedForm, actor: RulesAdmin, session: Transaction
) -> Response:
    return _set_enabled(request, session, actor, rule_id, False)


def _set_enabled(
    request: Request, session: Session, actor: ops.Actor, rule_id: int, enabled: bool
) -> Response:
    rule = _get_rule(session, rule_id)
    state = "enabled" if enabled else "disabled"
    return attempt(request, session, "/rules",
                   lambda: stored.set_rule_enabled(session, actor, rule, enabled),
                   f"Rule {rule.name!r} {state}.")


@router.post("/rules/{rule_id}/delete")
def delete_rule(
    request: Request, rule_id: int, form: CheckedForm, actor: RulesAdmin, session: Transaction
) -> Response:
    rule = _get_rule(session, rule_id)
    name = rule.name
    return attempt(request, session, "/rules",
                   lambda: stored.delete_rule(session, actor, rule), f"Rule {name!r} deleted.")


@router.post("/rules/{rule_id}/move")
def move_rule(
    request: Request, rule_id: int, form: CheckedForm, actor: RulesAdmin, session: Transaction
) -> Response:
    """Move a rule one place up or down, or to ``position`` (1 runs first).

    The drag and drop script requests JSON and gets the new order, or 400
    with the reason. The buttons get the list page back.
    """
    rule = _get_rule(session, rule_id)
    position = _requested_position(form, rule)
    wants_json = "application/json" in request.headers.get("accept", "")
    if not wants_json:
        return attempt(request, session, "/rules",
                       lambda: stored.move_rule(session, actor, rule, position),
                       f"Rule {rule.name!r} is now at position {position}.")
    try:
        with session.begin_nested():
            stored.move_rule(session, actor, rule, position)
    except ops.OperationError as error:
        log.info("web move of rule id=%s failed: %s", rule_id, error)
        return JSONResponse({"detail": str(error)}, status_code=400)
    order = [{"id": item.id, "position": item.position} for item in stored.list_rules(session)]
    return JSONResponse({"rules": order})


def _requested_position(form: FormData, rule: stored.RoutingRule) -> int:
    direction = form.get("direction")
    if direction == "up":
        return rule.position - 1
    if direction == "down":
        return rule.position + 1
    value = str(form.get("position", "")).strip()
    if not rules_form.WHOLE_NUMBER.fullmatch(value):
        raise HTTPException(400, f"invalid position {value!r}; give a whole number, 1 runs first")
    return int(value)


# -- the add and edit form -------------------------------------------------------------

def _render_editor(
    request: Request,
    session: Session,
    form: RuleForm,
    row: stored.RoutingRule | None,
    *,
    status_code: int = 200,
    **context: Any,
) -> Response:
    actions = form.definition.get("actions", {})
    return render(request, "rules_edit.html", {
        "form": form,
        "row": row,
        "rule": form.definition,
        "actions": actions,
        "custom_fields_text": _custom_fields_text(actions.get("custom_fields")),
        "condition_rows": form.condition_rows(),
        "condition_fields": rules_form.CONDITION_FIELDS,
        "operators": rules_form.ALL_OPERATORS,
        "field_operators": rules_form.FIELD_OPERATOR_CHOICES,
        "scopes": SCOPES,
        "match_modes": MATCH_MODES,
        "queues": list(session.scalars(select(Queue.name).order_by(Queue.name))),
        "stages": [stage.name for stage in ops.stages(session)],
        "usernames": list(session.scalars(
            select(User.username).where(User.role != "external").order_by(User.username))),
        "root_causes": list(session.scalars(select(RootCause.name).order_by(RootCause.name))),
        "custom_field_names": list(session.scalars(
            select(CustomField.name).order_by(CustomField.name))),
        "since": DEFAULT_REPLAY_SINCE,
        "rcpt_to": "",
        "changes": _rule_changes(session, row) if row is not None else [],
        **context,
    }, status_code=status_code, session=session)


def _rule_changes(session: Session, row: stored.RoutingRule) -> list[stored.RuleHistoryEntry]:
    """Return the latest changes to one rule, newest first."""
    query = (
        select(stored.RuleHistoryEntry)
        .where(stored.RuleHistoryEntry.rule_id == row.id)
        .order_by(stored.RuleHistoryEntry.id.desc())
        .limit(RULE_CHANGES)
    )
    return list(session.scalars(query))


def _custom_fields_text(value: Any) -> str:
    if isinstance(value, dict):
        return rules_form.custom_fields_text(value)
    return value if isinstance(value, str) else ""


@router.get("/rules/new")
def new_rule_form(request: Request, actor: RulesAdmin, session: Transaction) -> Response:
    return _render_editor(request, session, RuleForm(rules_form.blank_definition()), None)


@router.get("/rules/{rule_id}")
def edit_rule_form(
    request: Request, rule_id: int, actor: RulesAdmin, session: Transaction
) -> Response:
    row = _get_rule(session, rule_id)
    return _render_editor(request, session, rules_form.rule_form(stored.rule_definition(row)), row)


@router.post("/rules/new")
def submit_new_rule(
    request: Request, form: CheckedForm, actor: RulesAdmin, session: Transaction
) -> Response:
    return _submit(request, session, actor, form, None)


@router.post("/rules/{rule_id}")
def submit_rule(
    request: Request, rule_id: int, form: CheckedForm, actor: RulesAdmin, session: Transaction
) -> Response:
    return _submit(request, session, actor, form, _get_rule(session, rule_id))


def _submit(
    request: Request,
    session: Session,
    actor: ops.Actor,
    form: FormData,
    row: stored.RoutingRule | None,
) -> Response:
    """Save the rule, or with intent "test" or "replay" show what the draft
    would do. An invalid rule is shown again with each error at its field."""
    rule_form = rules_form.read_rule_form(form)
    draft = _validate(session, rule_form, row)
    if draft is None:
        log.info("web rule form for rule id=%s rejected: %s", row.id if row else "(new)",
                 rule_form.errors)
        return _render_editor(request, session, rule_form, row, status_code=422)
    intent = form.get("intent")
    if intent == "test":
        return _show_test(request, session, rule_form, row, draft, form)
    if intent == "replay":
        return _show_replay(request, session, rule_form, row, draft, form)
    return _save(request, session, actor, rule_form, row)


def _validate(
    session: Session, rule_form: RuleForm, row: stored.RoutingRule | None
) -> Rule | None:
    """Return the valid rule of the form, or None with the form's errors set."""
    if rule_form.invalid:
        return None
    try:
        rule = ruleset.validate_rule(session, rule_form.definition,
                                     position=row.position if row else None)
    except InvalidRules as error:
        rule_form.add_problems(error.problems)
        return None
    other = stored.find_rule(session, rule.name)
    if other is not None and other.name.lower() == rule.name.lower() and other is not row:
        rule_form.add_error("name", f"another rule is named {other.name!r}; choose another name")
        return None
    return rule


def _save(
    request: Request,
    session: Session,
    actor: ops.Actor,
    rule_form: RuleForm,
    row: stored.RoutingRule | None,
) -> Response:
    try:
        with session.begin_nested():
            if row is None:
                saved = ruleset.add_rule(session, actor, rule_form.definition)
                message = f"Rule {saved.name!r} added at position {saved.position}."
            else:
                changed = ruleset.edit_rule(session, actor, row, rule_form.definition)
                message = f"Rule {row.name!r} {'saved' if changed else 'unchanged'}."
    except InvalidRules as error:
        rule_form.add_problems(error.problems)
        return _render_editor(request, session, rule_form, row, status_code=422)
    except ops.OperationError as error:
        log.info("web rule save failed: %s", error)
        rule_form.general_errors.append(str(error))
        return _render_editor(request, session, rule_form, row, status_code=422)
    flash(request, message)
    return redirect("/rules")


def _show_test(
    request: Request,
    session: Session,
    rule_form: RuleForm,
    row: stored.RoutingRule | None,
    draft: Rule,
    form: FormData,
) -> Response:
    settings = request.app.state.mailgate.settings
    rcpt_to = str(form.get("rcpt_to", "")).strip()
    try:
        file_name, raw = read_uploaded_mail(form, settings.max_message_bytes)
        rule_set = draft_rule_set(session, draft, row.id if row else None)
        test = trace_mail(session, settings, rule_set, file_name, raw, rcpt_to)
    except PreviewError as error:
        return _render_editor(request, session, rule_form, row, status_code=422,
                              test_error=str(error), rcpt_to=rcpt_to)
    return _render_editor(request, session, rule_form, row, test=test, rcpt_to=rcpt_to)


def _show_replay(
    request: Request,
    session: Session,
    rule_form: RuleForm,
    row: stored.RoutingRule | None,
    draft: Rule,
    form: FormData,
) -> Response:
    settings = request.app.state.mailgate.settings
    since = str(form.get("since", "")).strip() or DEFAULT_REPLAY_SINCE
    try:
        rule_set = draft_rule_set(session, draft, row.id if row else None)
        report = replay_recent(session, settings, rule_set, since)
    except PreviewError as error:
        return _render_editor(request, session, rule_form, row, status_code=422,
                              replay_error=str(error), since=since)
    return _render_editor(request, session, rule_form, row, report=report, since=since)

"""``mailgate rules``: list, edit, import, test and replay routing rules.

Every command acts as an admin (``--as USERNAME``, permission admin.rules),
and every change writes a rule history row.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import click
from sqlalchemy.orm import Session

from mailgate.cli.context import echo_json, open_app
from mailgate.cli.ticket_ops import acting
from mailgate.errors import InvalidRules
from mailgate.parsing import ParseError, parse_message
from mailgate.rules import ruleset
from mailgate.rules.definition import MATCH_MODES, SCOPES
from mailgate.rules.evaluate import MATCHED, NOT_MATCHED, RuleSet
from mailgate.rules.processing import FOLLOW_UP, NEW, Preview, preview_mail
from mailgate.rules.replay import ReplayReport, parse_since, replay
from mailgate.rules.yamlfile import dump_rules, load_rule_text, load_rules_text
from store import operations as ops
from store import rules as stored
from store.permissions import ADMIN_RULES

EX_DATAERR = 65  # sysexits.h: the input data was incorrect

AS_OPTION = click.option("--as", "username", required=True, help="Act as this admin user.")
JSON_OPTION = click.option("--json", "as_json", is_flag=True, help="Print JSON.")
RULE_ARGUMENT = click.argument("rule")


@contextmanager
def as_admin(username: str) -> Iterator[tuple[Session, ops.Actor]]:
    """Open a transaction as ``username``, who needs admin.rules; print the
    problems of invalid rules and exit 65, with nothing changed."""
    try:
        with acting(username) as (session, actor):
            actor.require(ADMIN_RULES)
            yield session, actor
    except InvalidRules as error:
        click.echo("Error: invalid rules; nothing was changed:", err=True)
        for problem in error.problems:
            click.echo(f"  {problem}", err=True)
        raise click.exceptions.Exit(EX_DATAERR) from None


def _read(path: str) -> str:
    if path == "-":
        return sys.stdin.read()
    try:
        return Path(path).read_text(encoding="utf-8")
    except OSError as error:
        raise click.ClickException(f"cannot read {path}: {error.strerror}") from None


def _proposed_rules(session: Session, path: str | None) -> RuleSet:
    """Return the rule set in ``path``, validated, or the one in force."""
    if path is None:
        return ruleset.current_rule_set(session)[1]
    return RuleSet(ruleset.validate_rule_set(session, load_rules_text(_read(path), source=path)))


def _row(rule: stored.RoutingRule) -> dict[str, Any]:
    return {"id": rule.id, "position": rule.position, **stored.rule_definition(rule)}


@click.group()
def rules() -> None:
    """Routing rules: which queue, stage, tags and type new mail gets.

    \b
    Examples:
      mailgate rules export rules.yaml --as admin
      mailgate rules import rules.yaml --as admin
      mailgate rules test message.eml --rcpt support@example.org --as admin
      mailgate rules replay --since 7d --rules proposed.yaml --as admin
      mailgate rules move "outlook to billing" 1 --as admin
    """


@rules.command("list")
@AS_OPTION
@JSON_OPTION
def rules_list(username: str, as_json: bool) -> None:
    """List the rules in the order they run."""
    with as_admin(username) as (session, _actor):
        rows = [_row(rule) for rule in stored.list_rules(session)]
    if as_json:
        echo_json(rows)
        return
    for row in rows:
        state = "on " if row["enabled"] else "off"
        stop = " stop" if row["stop"] else ""
        click.echo(
            f"{row['position']:>4}  {state} {row['scope']:<9} {row['match']:<3} "
            f"{len(row['conditions'])} cond  {row['name']}{stop}"
        )


@rules.command("show")
@RULE_ARGUMENT
@click.option("--history", "with_history", is_flag=True, help="Also print the rule's changes.")
@AS_OPTION
@JSON_OPTION
def rules_show(rule: str, with_history: bool, username: str, as_json: bool) -> None:
    """Print RULE (a name, or a position) in the rule file's shape."""
    with as_admin(username) as (session, _actor):
        row = stored.get_rule(session, rule)
        data = _row(row)
        changes = [_history_row(entry) for entry in stored.rule_history(session, limit=1000)
                   if entry.rule_id == row.id] if with_history else []
    if as_json:
        echo_json({**data, "history": changes} if with_history else data)
        return
    click.echo(f"# rule {data['id']}, position {data['position']}")
    click.echo(dump_rules([stored.rule_definition(row)]), nl=False)
    for change in changes:
        click.echo(f"# {change['at']}  {change['actor']}  {change['channel']}  {change['action']}")


@rules.command("add")
@click.option("--file", "path", help="A YAML file with the rule ('-' for stdin).")
@click.option("--name", help="The rule's name (without --file).")
@click.option("--when", "conditions", multiple=True, type=(str, str, str),
              metavar="FIELD OPERATOR VALUE",
              help="A condition; repeatable. Use '' as VALUE for exists.")
@click.option("--match", "match_mode", type=click.Choice(MATCH_MODES), default="all",
              show_default=True)
@click.option("--scope", type=click.Choice(SCOPES), default="new", show_default=True)
@click.option("--queue")
@click.option("--stage")
@click.option("--tag", "tags", multiple=True, help="Add this tag; repeatable.")
@click.option("--type", "ticket_type")
@click.option("--assignee", help="Username.")
@click.option("--escalation", "escalation_level", type=int)
@click.option("--no-ack", is_flag=True, help="Send no acknowledgement.")
@click.option("--drop", is_flag=True, help="Make no ticket; the mail is ignored.")
@click.option("--stop", is_flag=True, help="Run no later rule after this one matches.")
@click.option("--disabled", is_flag=True, help="Add the rule switched off.")
@click.option("--position", type=int, help="Where the rule runs, from 1; default last.")
@AS_OPTION
def rules_add(path: str | None, name: str | None, conditions: tuple, match_mode: str,
              scope: str, tags: tuple[str, ...], no_ack: bool, drop: bool, stop: bool,
              disabled: bool, position: int | None, username: str, **actions: Any) -> None:
    """Add a rule from --file, or from the options.

    \b
    Examples:
      mailgate rules add --file rule.yaml --position 1 --as admin
      mailgate rules add --name "outlook to billing" \\
          --when subject contains Outlook --queue Billing --tag outlook --as admin
      mailgate rules add --name "no spam" --when header:X-Spam-Flag equals YES \\
          --drop --as admin

    \b
    Fields: envelope-recipient, to, cc, from, from-domain, reply-to, subject,
    body, has-attachments, attachment-name, attachment-type, size (bytes, or
    200K, 10M), automatic, header:NAME. Operators: equals, contains,
    starts-with, ends-with, matches (RE2 syntax), exists, greater-than and
    less-than (size only), each also negated with not- (not-contains).
    """
    if path:
        data = load_rule_text(_read(path), source=path)
    else:
        if not name:
            raise click.UsageError("give --file, or --name with the rule's options")
        data = {
            "name": name, "enabled": not disabled, "scope": scope, "match": match_mode,
            "conditions": [_condition(*item) for item in conditions],
            "actions": {key: value for key, value in actions.items() if value is not None},
            "stop": stop,
        }
        if tags:
            data["actions"]["tags"] = list(tags)
        if no_ack:
            data["actions"]["acknowledge"] = False
        if drop:
            data["actions"]["drop"] = True
    with as_admin(username) as (session, actor):
        row = ruleset.add_rule(session, actor, data, position=position)
        click.echo(f"rule {row.name!r} added at position {row.position}")


def _condition(field_name: str, operator: str, value: str) -> dict[str, Any]:
    condition: dict[str, Any] = {"field": field_name, "operator": operator}
    if not operator.removeprefix("not-") == "exists" or value:
        condition["value"] = value
    return condition


@rules.command("edit")
@RULE_ARGUMENT
@click.option("--file", "path", help="A YAML file with the new rule ('-' for stdin); "
              "without it, $EDITOR opens the rule.")
@AS_OPTION
def rules_edit(rule: str, path: str | None, username: str) -> None:
    """Replace RULE with the rule in --file, or edit it in $EDITOR."""
    with as_admin(username) as (session, actor):
        row = stored.get_rule(session, rule)
        if path:
            text = _read(path)
        else:
            text = click.edit(dump_rules([stored.rule_definition(row)]), extension=".yaml")
            if text is None:
                click.echo("no change")
                return
        source = path or "(editor)"
        changed = ruleset.edit_rule(session, actor, row, load_rule_text(text, source=source))
        click.echo(f"rule {row.name!r} {'changed' if changed else 'unchanged'}")


@rules.command("enable")
@RULE_ARGUMENT
@AS_OPTION
def rules_enable(rule: str, username: str) -> None:
    """Switch RULE on."""
    with as_admin(username) as (session, actor):
        row = stored.get_rule(session, rule)
        changed = stored.set_rule_enabled(session, actor, row, True)
        click.echo(f"rule {row.name!r} {'enabled' if changed else 'was enabled already'}")


@rules.command("disable")
@RULE_ARGUMENT
@AS_OPTION
def rules_disable(rule: str, username: str) -> None:
    """Switch RULE off; it stays in place."""
    with as_admin(username) as (session, actor):
        row = stored.get_rule(session, rule)
        changed = stored.set_rule_enabled(session, actor, row, False)
        click.echo(f"rule {row.name!r} {'disabled' if changed else 'was disabled already'}")


@rules.command("move")
@RULE_ARGUMENT
@click.argument("position", type=int)
@AS_OPTION
def rules_move(rule: str, position: int, username: str) -> None:
    """Move RULE to POSITION (1 runs first)."""
    with as_admin(username) as (session, actor):
        row = stored.get_rule(session, rule)
        stored.move_rule(session, actor, row, position)
        click.echo(f"rule {row.name!r} at position {row.position}")


@rules.command("delete")
@RULE_ARGUMENT
@AS_OPTION
def rules_delete(rule: str, username: str) -> None:
    """Delete RULE; its history stays."""
    with as_admin(username) as (session, actor):
        row = stored.get_rule(session, rule)
        name = row.name
        stored.delete_rule(session, actor, row)
        click.echo(f"rule {name!r} deleted")


@rules.command("export")
@click.argument("file")
@AS_OPTION
def rules_export(file: str, username: str) -> None:
    """Write every rule, in order, to FILE ('-' for stdout)."""
    with as_admin(username) as (session, actor):
        text = dump_rules(ruleset.export_rules(session, actor))
    if file == "-":
        click.echo(text, nl=False)
        return
    Path(file).write_text(text, encoding="utf-8")
    click.echo(f"rules written to {file}")


@rules.command("import")
@click.argument("file")
@AS_OPTION
def rules_import(file: str, username: str) -> None:
    """Replace the whole rule set with FILE's rules ('-' for stdin).

    Every rule is checked first; if any is invalid, nothing changes and
    each problem is printed with its rule and field (exit status 65).
    """
    text = _read(file)
    with as_admin(username) as (session, actor):
        report = ruleset.import_rules(session, actor, load_rules_text(text, source=file),
                                      source=file)
    for action, names in report.items():
        click.echo(f"{action}: {len(names)}" + (f" ({', '.join(names)})" if names else ""))


@rules.command("history")
@click.option("--limit", default=50, show_default=True, help="Changes to print at most.")
@AS_OPTION
@JSON_OPTION
def rules_history(limit: int, username: str, as_json: bool) -> None:
    """Print the latest changes to the rule set, newest first."""
    with as_admin(username) as (session, _actor):
        rows = [_history_row(entry) for entry in stored.rule_history(session, limit=limit)]
    if as_json:
        echo_json(rows)
        return
    for row in rows:
        click.echo(
            f"{row['at']}  {row['actor']:<24} {row['channel']:<4} {row['action']:<8} "
            f"{row['rule']}"
        )


def _history_row(entry: stored.RuleHistoryEntry) -> dict[str, Any]:
    return {
        "id": entry.id, "at": entry.at.isoformat(), "actor": entry.actor,
        "channel": entry.channel, "action": entry.action, "rule_id": entry.rule_id,
        "rule": entry.rule_name, "before": entry.before, "after": entry.after,
        "details": entry.details,
    }


@rules.command("test")
@click.argument("eml", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--rules", "rules_path", help="Test this rule file instead of the rules in force.")
@click.option("--rcpt", "rcpt_tos", multiple=True, help="An envelope recipient; repeatable.")
@click.option("--mail-from", help="The envelope sender; '' for the null return path.")
@click.option("--scope", type=click.Choice([NEW, FOLLOW_UP]),
              help="Evaluate as this scope instead of deciding it as processing does.")
@AS_OPTION
@JSON_OPTION
def rules_test(eml: Path, rules_path: str | None, rcpt_tos: tuple[str, ...],
               mail_from: str | None, scope: str | None, username: str, as_json: bool) -> None:
    """Print, for each rule, whether each condition matches EML and why,
    then the ticket fields that result. Nothing is created or changed."""
    raw = eml.read_bytes()
    try:
        mail = parse_message(raw)
    except ParseError as error:
        raise click.ClickException(f"{eml} cannot be parsed: {error}") from None
    app = open_app()
    with as_admin(username) as (session, _actor):
        [preview] = preview_mail(
            session, app.settings, raw, mail, rcpt_tos=list(rcpt_tos),
            envelope_sender=mail_from, rule_sets=[_proposed_rules(session, rules_path)],
            scope=scope,
        )
    if as_json:
        echo_json(_preview_dict(str(eml), preview))
    else:
        _print_preview(str(eml), preview)


def _preview_dict(name: str, preview: Preview) -> dict[str, Any]:
    return {
        "file": name,
        "scope": preview.scope,
        "skipped": preview.skipped or None,
        "automatic": preview.automatic,
        "rules": preview.evaluation.trace_as_dict() if preview.evaluation else [],
        "result": preview.fields,
    }


def _print_preview(name: str, preview: Preview) -> None:
    if preview.scope is None:
        click.echo(f"{name}: not routed: {preview.skipped}")
        return
    click.echo(f"{name}: {preview.scope} mail; automatic: {preview.automatic or 'no'}")
    for trace in preview.evaluation.rules:
        click.echo(f"{trace.position:>4}. {trace.name}: {trace.status}"
                   + (" (ends the evaluation)" if trace.stopped else ""))
        for item in trace.conditions:
            click.echo(f"        {'yes' if item.matched else 'no ':<3}  {item.reason}")
        if trace.status in (MATCHED, NOT_MATCHED) and not trace.conditions:
            click.echo("        yes  (no conditions: matches every mail)")
        for action in trace.actions:
            state = "set" if action.applied else f"not set: {action.note}"
            click.echo(f"        ->   {action.action} {_show(action.value)} ({state})")
    click.echo("Result:")
    fields, placed = preview.fields, preview.fields["placed_by"]
    for key in ("queue", "stage", "ticket_type", "assignee", "escalation_level", "root_causes"):
        by = f"  (rule {placed[key]!r})" if key in placed and placed[key] != "(default)" else ""
        by = "  (default: by recipient)" if placed.get(key) == "(default)" else by
        value = fields[key]
        if key == "queue" and value is None and preview.scope == FOLLOW_UP:
            value = "(unchanged)"
        click.echo(f"  {key}: {_show(value)}{by}")
    tags = [f"{tag} (rule {placed['tag:' + tag]!r})" for tag in fields["tags"]]
    click.echo(f"  tags: {', '.join(tags) or '-'}")
    for field_name, value in fields["custom_fields"].items():
        rule = placed["custom:" + field_name]
        click.echo(f"  custom field {field_name}: {_show(value)} (rule {rule!r})")
    click.echo(f"  acknowledgement: {_acknowledgement(preview)}")
    if fields["drop"]:
        click.echo(f"  dropped: no ticket (rule {placed['drop']!r})")


def _acknowledgement(preview: Preview) -> str:
    if preview.scope == FOLLOW_UP:
        return "none (follow-ups get none)"
    if preview.automatic:
        return f"not sent (automatic mail: {preview.automatic})"
    if not preview.fields["acknowledge"]:
        return f"not sent (rule {preview.fields['placed_by']['acknowledge']!r})"
    return "sent"


def _show(value: Any) -> str:
    if value is None or value == [] or value == ():
        return "-"
    if isinstance(value, (list, tuple)):
        return ", ".join(str(item) for item in value)
    return str(value)


@rules.command("replay")
@click.option("--since", required=True,
              help="Age of the oldest mail: 30m, 12h, 7d, 2w, or a date.")
@click.option("--rules", "rules_path", help="The proposed rule file; default: the rules in force.")
@click.option("--limit", default=100_000, show_default=True, help="Mails to replay at most.")
@AS_OPTION
@JSON_OPTION
def rules_replay(since: str, rules_path: str | None, limit: int, username: str,
                 as_json: bool) -> None:
    """Report which spooled mails the proposed rules would route differently
    from how they were routed (queue, tags and the other ticket fields)."""
    try:
        start = parse_since(since)
    except ValueError as error:
        raise click.BadParameter(str(error), param_hint="--since") from None
    app = open_app()
    with as_admin(username) as (session, _actor):
        report = replay(session, app.settings, _proposed_rules(session, rules_path),
                        since=start, limit=limit)
    if as_json:
        echo_json(report.as_dict())
    else:
        _print_replay(report)


def _print_replay(report: ReplayReport) -> None:
    if report.changes:
        click.echo(f"{'spool':>6}  {'received':<16}  {'from':<28} {'field':<16} before -> after")
    for change in report.changes:
        first = True
        for name, (before, after) in change.changes.items():
            head = (f"{change.spool_id:>6}  {change.received_at:%Y-%m-%d %H:%M}  "
                    f"{change.sender[:28]:<28}") if first else " " * 54
            click.echo(f"{head} {name:<16} {_show(before)} -> {_show(after)}")
            first = False
    skipped = ", ".join(f"{count} {reason}" for reason, count in report.skipped.items())
    click.echo(
        f"{report.examined} mail{'' if report.examined == 1 else 's'} "
        f"since {report.since:%Y-%m-%d %H:%M} examined; "
        f"{len(report.changes)} would be routed differently"
        + (f"; skipped: {skipped}" if skipped else "")
        + ("; more mail than --limit was left out" if report.truncated else "")
    )


"""Commands at the top of an agent's emailed reply, such as ``#stage Pending``.

Parsing is pure. Running a command calls the same store operation as the
CLI and the HTTP API, as the agent, so the same permission checks apply.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field

from sqlalchemy.orm import Session

from store import operations as ops
from store.models import Ticket
from store.permissions import PermissionDenied

log = logging.getLogger(__name__)

COMMAND_LINE = re.compile(r"^#([a-z]+)\b[ \t]*(.*?)\s*$", re.IGNORECASE)
KNOWN_COMMANDS = (
    "stage", "queue", "tag", "untag", "type", "rootcause", "assign", "escalate",
    "postpone", "close", "public", "forward",
)


@dataclass(frozen=True)
class Command:
    line: str
    name: str
    argument: str


@dataclass
class CommandResults:
    public: bool = False
    # Recipients of each #forward line, for the caller to send with its app.
    forwards: list[tuple[str, list[str]]] = field(default_factory=list)
    done: list[str] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)  # (line, reason)


def split_commands(body: str) -> tuple[list[Command], str]:
    """Return the commands on the first lines of ``body`` and the rest.

    Commands are read from the top until the first line that is neither
    blank nor a known command; a ``#word`` further down is ordinary text.
    """
    lines = body.splitlines()
    commands: list[Command] = []
    index = 0
    while index < len(lines):
        line = lines[index].strip()
        match = COMMAND_LINE.match(line)
        if line and not (match and match.group(1).lower() in KNOWN_COMMANDS):
            break
        if match:
            commands.append(Command(line, match.group(1).lower(), match.group(2)))
        index += 1
    return commands, "\n".join(lines[index:]).strip()


def run_commands(
    session: Session, actor: ops.Actor, ticket: Ticket, commands: list[Command]
) -> CommandResults:
    """Run each command in its own savepoint: one that fails changes nothing
    and the others still run."""
    results = CommandResults()
    for command in commands:
        if command.name == "public":
            results.public = True
            continue
        if command.name == "forward":
            recipients = [item for item in command.argument.replace(",", " ").split() if item]
            if recipients:
                results.forwards.append((command.line, recipients))
            else:
                results.failed.append((command.line, "#forward needs recipients, e.g. #forward bob"))
            continue
        try:
            with session.begin_nested():
                _run(session, actor, ticket, command)
            results.done.append(command.line)
        except (ops.OperationError, PermissionDenied, ValueError) as error:
            log.info("ticket=%s command %r by %s failed: %s",
                     ticket.id, command.line, actor.user.username, error)
            results.failed.append((command.line, str(error)))
    return results


def _run(session: Session, actor: ops.Actor, ticket: Ticket, command: Command) -> None:
    name, argument = command.name, command.argument
    needs_argument = name not in ("escalate", "close")
    if needs_argument and not argument:
        raise ops.OperationError(f"#{name} needs a value, e.g. #{name} {_EXAMPLES[name]}")
    if name == "stage":
        ops.update_ticket(session, actor, ticket, stage=argument)
    elif name == "queue":
        ops.update_ticket(session, actor, ticket, queue=argument)
    elif name == "tag":
        ops.update_ticket(session, actor, ticket, add_tags=argument.split())
    elif name == "untag":
        ops.update_ticket(session, actor, ticket, remove_tags=argument.split())
    elif name == "type":
        ops.update_ticket(session, actor, ticket, ticket_type=argument)
    elif name == "rootcause":
        current = [cause.name for cause in ticket.root_causes]
        ops.update_ticket(session, actor, ticket, root_causes=[*current, argument])
    elif name == "assign":
        ops.update_ticket(session, actor, ticket, assignee=argument)
    elif name == "escalate":
        level = ticket.escalation_level + (int(argument) if argument else 1)
        ops.update_ticket(session, actor, ticket, escalation_level=level)
    elif name == "postpone":
        ops.postpone(session, actor, ticket, amount=argument)
    elif name == "close":
        if argument:
            ops.explain_and_close(session, actor, ticket, reason=argument)
        else:
            ops.close(session, actor, ticket)


_EXAMPLES = {
    "stage": "pending", "queue": "Billing", "tag": "billing", "untag": "billing",
    "type": "Refund", "rootcause": "Shipping delay", "assign": "bob", "postpone": "3d",
}

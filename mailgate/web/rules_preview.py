"""Previews of the rules editor, shown before anything is saved: the rule
trace of an uploaded mail, and the replay of recent spooled mail, each
under the saved rules or under the saved rules with the draft in place.

Both run the same functions as ``mailgate rules test`` and ``mailgate
rules replay`` and change nothing.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from sqlalchemy.orm import Session
from starlette.datastructures import FormData, UploadFile

from mailgate.errors import InvalidRules
from mailgate.parsing import ParseError, parse_message
from mailgate.rules.definition import Rule, parse_rule
from mailgate.rules.evaluate import RuleSet
from mailgate.rules.processing import Preview, preview_mail
from mailgate.rules.replay import ReplayReport, parse_since, replay
from mailgate.settings import Settings
from store import rules as stored

log = logging.getLogger(__name__)

DEFAULT_REPLAY_SINCE = "7d"
# A replay runs inside the page request, so the page examines fewer mails
# than ``mailgate rules replay`` may, and the report is marked truncated.
# NOTE: an estimate of what fits in a page request, not measured.
MAX_PAGE_REPLAY_MAILS = 5_000


class PreviewError(Exception):
    """Raised when an uploaded mail or a replay window cannot be used; the
    message is shown to the user."""


@dataclass(frozen=True)
class MailTest:
    """The outcome of testing rules on one uploaded mail."""

    file_name: str
    rcpt_tos: list[str]
    preview: Preview


def draft_rule_set(session: Session, draft: Rule, rule_id: int | None) -> RuleSet:
    """Return the saved rules with ``draft`` in place of rule ``rule_id``,
    or appended last when ``rule_id`` is None.

    A saved rule that no longer validates is left out, as processing
    leaves it out (``mailgate.rules.ruleset.load_rules``).
    """
    rules = []
    for row in stored.list_rules(session):
        if row.id == rule_id:
            rules.append(draft)
            continue
        try:
            rules.append(parse_rule(stored.rule_definition(row), position=row.position))
        except InvalidRules as error:
            log.warning("routing rule id=%s %r left out of the draft: %s", row.id, row.name, error)
    if rule_id is None:
        rules.append(draft)
    return RuleSet(rules)


def read_uploaded_mail(form: FormData, max_bytes: int) -> tuple[str, bytes]:
    """Return the name and bytes of the .eml file in the form's ``mail`` field.

    The form is parsed already, so the file is read from its spooled copy.
    This keeps the routes synchronous: they run in the thread pool, off the
    event loop, because evaluating and replaying rules queries the store."""
    upload = form.get("mail")
    if not isinstance(upload, UploadFile) or not upload.filename:
        raise PreviewError("Choose an .eml file to test the rules on.")
    raw = upload.file.read(max_bytes + 1)
    if not raw:
        raise PreviewError(f"{upload.filename} is empty.")
    if len(raw) > max_bytes:
        raise PreviewError(f"{upload.filename} is larger than {max_bytes} bytes.")
    return upload.filename, raw


def trace_mail(
    session: Session,
    settings: Settings,
    rule_set: RuleSet,
    file_name: str,
    raw: bytes,
    rcpt_to: str,
) -> MailTest:
    """Evaluate ``rule_set`` on an uploaded mail the way processing would."""
    try:
        mail = parse_message(raw)
    except ParseError as error:
        raise PreviewError(f"{file_name} cannot be parsed as a mail: {error}") from None
    rcpt_tos = [rcpt_to] if rcpt_to else []
    # NOTE: the page has no envelope-sender input, so mail that is automatic
    # only because of a null sender is not flagged (`rules test --mail-from` is).
    [preview] = preview_mail(
        session, settings, raw, mail, rcpt_tos=rcpt_tos, envelope_sender=None,
        rule_sets=[rule_set],
    )
    return MailTest(file_name, rcpt_tos, preview)


def replay_recent(
    session: Session, settings: Settings, rule_set: RuleSet, since_text: str
) -> ReplayReport:
    """Replay ``rule_set`` over mail spooled since ``since_text`` (e.g. 7d)."""
    try:
        since = parse_since(since_text or DEFAULT_REPLAY_SINCE)
    except ValueError:
        raise PreviewError(
            f"Invalid time {since_text!r}: give an age such as 7d, 12h or 2w, "
            "or a date like 2026-03-01."
        ) from None
    return replay(session, settings, rule_set, since=since, limit=MAX_PAGE_REPLAY_MAILS)

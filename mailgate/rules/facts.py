"""The values that rule conditions read from one mail and its envelope."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from mailgate.parsing import ParsedMail
from mailgate.rules.definition import HEADER_PREFIX, normalize_text


@dataclass(frozen=True)
class FieldValues:
    """The values of one condition field in one mail.

    ``present`` is False when the mail lacks the field (no such header, no
    Cc addresses, not automatic). ``folded`` contains the values case-folded
    and ``encoded`` the values as UTF-8, which RE2 searches without
    converting them again for every pattern.
    """

    present: bool
    values: tuple[str, ...]
    folded: tuple[str, ...]
    encoded: tuple[bytes, ...]


ABSENT = FieldValues(False, (), (), ())


class MailFacts:
    """The condition fields of one mail, each computed when first read."""

    def __init__(
        self,
        mail: ParsedMail,
        *,
        rcpt_tos: Sequence[str],
        size: int,
        automatic: str | None,
    ) -> None:
        """``size`` is the raw message in bytes; ``automatic`` is the reason
        from ``mailgate.automatic.automatic_reason``, or None."""
        self.mail = mail
        self.rcpt_tos = tuple(rcpt_tos)
        self.size = size
        self.automatic = automatic
        self._cache: dict[str, FieldValues] = {}

    def field(self, name: str) -> FieldValues:
        """Return the values of condition field ``name`` (any case)."""
        found = self._cache.get(name)
        if found is None:
            found = self._cache[name] = self._read(name.lower())
        return found

    def _read(self, name: str) -> FieldValues:
        mail = self.mail
        if name.startswith(HEADER_PREFIX):
            header = name[len(HEADER_PREFIX):]
            return _values([value for field, value in mail.headers if field.lower() == header])
        if name == "envelope-recipient":
            return _values(self.rcpt_tos)
        if name in ("to", "cc", "reply-to"):
            addresses = {"to": mail.to, "cc": mail.cc, "reply-to": mail.reply_to}[name]
            return _values([address.email for address in addresses if address.email])
        if name == "from":
            return _values([mail.from_.email] if mail.from_ and mail.from_.email else [])
        if name == "from-domain":
            address = mail.from_.email if mail.from_ else ""
            domain = address.rpartition("@")[2] if "@" in address else ""
            return _values([domain] if domain else [])
        if name == "subject":
            if mail.header("Subject") is None:
                return ABSENT
            return _values([mail.subject], keep_empty=True)
        if name == "body":
            return _values([mail.text] if mail.text.strip() else [])
        if name == "has-attachments":
            # Inline images that the HTML body shows are not attachments here.
            files = [item.filename for item in mail.attachments if not item.inline]
            return _values(files[:1])
        if name == "attachment-name":
            return _values([item.filename for item in mail.attachments])
        if name == "attachment-type":
            return _values([item.content_type for item in mail.attachments])
        if name == "automatic":
            return _values([self.automatic] if self.automatic else [])
        if name == "size":
            return _values([str(self.size)])
        raise KeyError(f"unknown condition field {name!r}")


def _values(values: Sequence[str], *, keep_empty: bool = False) -> FieldValues:
    texts = tuple(normalize_text(value) for value in values if value or keep_empty)
    if not texts:
        return ABSENT
    return FieldValues(
        present=True,
        values=texts,
        folded=tuple(text.casefold() for text in texts),
        encoded=tuple(text.encode("utf-8", "replace") for text in texts),
    )

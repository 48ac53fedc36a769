"""Reply trimming: keep only what the author of a reply wrote.

``trim_reply`` takes a decoded plain-text body and, when there is one, the
decoded HTML part, and returns a ``TrimmedReply`` with the author's text and
the cut parts. Nothing in this package does I/O.
"""

from mailgate.trimming.reply import trim_reply
from mailgate.trimming.result import TrimmedReply

__all__ = ["TrimmedReply", "trim_reply"]

"""Mail HTML as the ticket page shows it."""

from __future__ import annotations

import re
from collections.abc import Mapping

from markupsafe import Markup

from mailgate.parsing.html import sanitize_html

_CID_SOURCE = re.compile(r'src="cid:([^"]+)"', re.IGNORECASE)


def displayed_html(html: str, inline_images: Mapping[str, str]) -> Markup:
    """Return the message's HTML cleaned again at display time, with cid:
    images pointing at the ticket's attachment URLs.

    The HTML was sanitised when the mail was parsed. Cleaning it again here
    means that a body stored by an older, laxer sanitiser cannot run script
    in an agent's browser. Remote images are removed by the sanitiser, and
    the page's Content-Security-Policy blocks any that remain.
    """
    cleaned = sanitize_html(html)

    def rewrite(match: re.Match[str]) -> str:
        url = inline_images.get(match.group(1).strip("<>").lower())
        return f'src="{url}"' if url else 'alt="[inline image not found]"'

    return Markup(_CID_SOURCE.sub(rewrite, cleaned))

"""Tests of reply trimming on hard-case mails and on replies of common clients.

The hard cases are .eml files in CASES_DIR whose descriptions (.md) state the
expected body; their tests are skipped when that folder is absent.

Every HTML case passes, as its plain text, the HTML with all tags removed, as a
caller does for an HTML-only mail. That text has no quote marks, so only the
HTML structure can give the expected body.
"""

from __future__ import annotations

import ast
import dataclasses
import email
import email.policy
import re
from pathlib import Path

import lxml.html
import pytest

from mailgate.trimming import TrimmedReply, trim_reply

CASES_DIR = Path(__file__).resolve().parents[2] / "shared" / "cases"
# Auto-replies with no quote: trimming must keep their whole body.
UNQUOTED_CASE_PREFIXES = ("025-", "052-")
_EXPECTED_BODY = re.compile(r"(?:article|note) body == ('(?:[^'\\]|\\.)*'|\"[^\"]*\")")


def _tag_free_text(html: str) -> str:
    return lxml.html.fromstring(html).text_content()


def _load_bodies(eml: Path) -> tuple[str, str | None]:
    """Return the plain-text and HTML bodies of ``eml`` as a caller passes them."""
    with eml.open("rb") as file:
        message = email.message_from_binary_file(file, policy=email.policy.default)
    plain = message.get_body(("plain",))
    html_part = message.get_body(("html",))
    html = html_part.get_content() if html_part is not None else None
    text = plain.get_content() if plain is not None else ""
    if not text and html:
        text = _tag_free_text(html)
    return text, html


def _shared_cases() -> list[tuple[Path, str]]:
    """Return each hard case whose description states a body, with that body."""
    if not CASES_DIR.is_dir():
        return []
    cases = []
    for description in sorted(CASES_DIR.glob("*.md")):
        match = _EXPECTED_BODY.search(description.read_text(encoding="utf-8"))
        if match is not None:
            cases.append((description.with_suffix(".eml"), ast.literal_eval(match[1])))
    return cases


def _unquoted_cases() -> list[Path]:
    if not CASES_DIR.is_dir():
        return []
    return [
        eml
        for prefix in UNQUOTED_CASE_PREFIXES
        for eml in sorted(CASES_DIR.glob(f"{prefix}*.eml"))
    ]


def _case_id(eml: Path) -> str:
    return eml.stem.split("-", 1)[1]


needs_shared_cases = pytest.mark.skipif(
    not CASES_DIR.is_dir(), reason=f"hard-case folder not found: {CASES_DIR}"
)


@needs_shared_cases
@pytest.mark.parametrize(
    ("eml", "expected"),
    [pytest.param(eml, body, id=_case_id(eml)) for eml, body in _shared_cases()],
)
def test_shared_case_body(eml: Path, expected: str) -> None:
    text, html = _load_bodies(eml)

    assert trim_reply(text, html).body == expected


@needs_shared_cases
@pytest.mark.parametrize("eml", _unquoted_cases(), ids=_case_id)
def test_unquoted_auto_reply_kept_whole(eml: Path) -> None:
    text, html = _load_bodies(eml)

    trimmed = trim_reply(text, html)

    assert trimmed.body == text.strip()
    assert trimmed.removed == ""


# Plain-text replies: (text, expected body).
TEXT_CASES = {
    "gmail top-posted": (
        "Sure, I will call him this afternoon.\n"
        "\n"
        "On Mon, 3 Jun 2024 at 10:15, Example Support "
        "<support@support.example.org> wrote:\n"
        "\n"
        "> New ticket EX-1042 from Paul Peters:\n"
        ">\n"
        "> The printer is broken.\n",
        "Sure, I will call him this afternoon.",
    ),
    "gmail attribution wrapped before address": (
        "Sure, I will call him.\n"
        "\n"
        "On Mon, Jun 3, 2024 at 10:15 AM Example Support Notifications <\n"
        "support@support.example.org> wrote:\n"
        "\n"
        "> The printer is broken.\n",
        "Sure, I will call him.",
    ),
    "gmail attribution wrapped before bracket": (
        "Sure, I will call him.\n"
        "\n"
        "On Mon, Jun 3, 2024 at 10:15 AM Example Support Notifications\n"
        "<support@support.example.org> wrote:\n"
        "\n"
        "> The printer is broken.\n",
        "Sure, I will call him.",
    ),
    "gmail forward marker": (
        "Forwarding the customer's original request.\n"
        "\n"
        "---------- Forwarded message ---------\n"
        "From: Paul Peters <paul@example.com>\n"
        "Date: Mon, 3 Jun 2024 at 09:00\n"
        "Subject: Printer broken\n"
        "To: <support@support.example.org>\n"
        "\n"
        "The printer shows error 50.\n",
        "Forwarding the customer's original request.",
    ),
    "apple mail with mobile signature": (
        "Yes, please send the courier.\n"
        "\n"
        "Sent from my iPhone\n"
        "\n"
        "> On 3. Jun 2024, at 10:15, Example Support "
        "<support@support.example.org> wrote:\n"
        "> \n"
        "> Shall we send a courier?\n",
        "Yes, please send the courier.",
    ),
    "outlook german header block": (
        "Ich rufe den Kunden morgen an.\n"
        "\n"
        "Viele Grüße\n"
        "Carol\n"
        "\n"
        "Von: Example Support <support@support.example.org>\n"
        "Gesendet: Montag, 3. Juni 2024 10:15\n"
        "An: Carol Agent <carol.agent@example.org>\n"
        "Betreff: [EX-1042] Neues Ticket: Drucker defekt\n"
        "\n"
        "Neues Ticket von Paul Peters.\n",
        "Ich rufe den Kunden morgen an.\n\nViele Grüße\nCarol",
    ),
    "outlook french header block": (
        "Je m'en occupe.\n"
        "\n"
        "De : Example Support <support@support.example.org>\n"
        "Envoyé : lundi 3 juin 2024 10:15\n"
        "À : Claire Agent <claire@example.org>\n"
        "Objet : [EX-1042] Nouveau ticket\n"
        "\n"
        "Nouveau ticket de Paul Peters.\n",
        "Je m'en occupe.",
    ),
    "outlook italian header block": (
        "Ci penso io.\n"
        "\n"
        "Da: Example Support <support@support.example.org>\n"
        "Inviato: lunedì 3 giugno 2024 10:15\n"
        "A: Carla Agente <carla@example.org>\n"
        "Oggetto: [EX-1042] Nuovo ticket\n",
        "Ci penso io.",
    ),
    "outlook chinese header block": (
        "我来处理。\n"
        "\n"
        "发件人: Example Support <support@support.example.org>\n"
        "发送时间: 2024年6月3日 10:15\n"
        "收件人: 李娜 <li.na@example.com>\n"
        "主题: [EX-1042] 新工单\n",
        "我来处理。",
    ),
    "outlook underscore rule and mobile line": (
        "Approved, go ahead.\n"
        "\n"
        "Get Outlook for iOS<https://aka.ms/o0ukef>\n"
        "________________________________\n"
        "From: Example Support <support@support.example.org>\n"
        "Sent: Monday, June 3, 2024 10:15:00 AM\n"
        "To: Carol Agent <carol.agent@example.org>\n"
        "Subject: [EX-1042] Upgrade planned\n"
        "\n"
        "We plan the upgrade for Saturday.\n",
        "Approved, go ahead.",
    ),
    "outlook original message separator": (
        "Erledigt, die Rechnung ist storniert.\n"
        "\n"
        "-----Ursprüngliche Nachricht-----\n"
        "Von: Example Support [mailto:support@support.example.org]\n"
        "Gesendet: Montag, 3. Juni 2024 10:15\n"
        "An: Carol Agent\n"
        "Betreff: [EX-1042] Rechnung doppelt\n"
        "\n"
        "Bitte prüfen.\n",
        "Erledigt, die Rechnung ist storniert.",
    ),
    "thunderbird top-posted with signature": (
        "Thanks, it works again.\n"
        "\n"
        "-- \n"
        "Tina Thunder\n"
        "Example Networks\n"
        "\n"
        "On 03.06.24 10:15, Example Support wrote:\n"
        "> The printer queue is stuck.\n",
        "Thanks, it works again.",
    ),
    "mutt inline answers and signature": (
        "On Mon, Jun 03, 2024 at 10:15:00AM +0200, Example Support wrote:\n"
        "> New ticket EX-1042 from Paul Peters:\n"
        "> The VPN drops every hour.\n"
        "\n"
        "I have raised the VPN timeout, please watch it today.\n"
        "\n"
        "> Can you check the logs?\n"
        "\n"
        "Logs show idle disconnects.\n"
        "\n"
        "-- \n"
        "Max Mutt <max@example.net>\n"
        "Example Networks, on call this week\n",
        "I have raised the VPN timeout, please watch it today.\n"
        "\n"
        "Logs show idle disconnects.",
    ),
    "german attribution wrapped": (
        "Ich habe das Passwort zurückgesetzt.\n"
        "\n"
        "Am Mo., 3. Juni 2024 um 10:15 Uhr schrieb Example Support <\n"
        "support@support.example.org>:\n"
        "\n"
        "> Bitte setzen Sie das Passwort zurück.\n",
        "Ich habe das Passwort zurückgesetzt.",
    ),
    "attribution wrapped over three lines": (
        "Works for me.\n"
        "\n"
        "On Mon, Jun 3, 2024 at 10:15 AM, Example Support\n"
        "<support@support.example.org>\n"
        "wrote:\n"
        "\n"
        "> Can we close this?\n",
        "Works for me.",
    ),
    "attribution wrapped before closing bracket": (
        "Det passer fint.\n"
        "\n"
        "man. 3. jun. 2024 kl. 10:15 skrev Example Support "
        "<support@support.example.org\n"
        ">:\n"
        "\n"
        "> Passer det i morgen?\n",
        "Det passer fint.",
    ),
    "finnish attribution without quote marks": (
        "Kiitos!\n"
        "\n"
        "ma 3. kesäk. 2024 klo 10.15 Example Support\n"
        "<support@support.example.org> kirjoitti:\n"
        "\n"
        "Onko ongelma ratkaistu?\n",
        "Kiitos!",
    ),
    "attribution without colon": (
        "When are you available?\n"
        "\n"
        "On Mon, 03 Jun 2024 10:15:00 +0200 Example Support "
        "<support@support.example.org> wrote\n"
        "\n"
        "Can we call you?\n",
        "When are you available?",
    ),
    "quoted line wrapped after marks": (
        "Yes, the second one.\n"
        "\n"
        "On Mon, 3 Jun 2024 at 10:15, Example Support "
        "<support@support.example.org> wrote:\n"
        "> Which of the two printers in the accounting office shows the paper ja\n"
        "m message?\n"
        ">\n"
        "> Regards\n",
        "Yes, the second one.",
    ),
    "webmail header block with date line": (
        "C'est noté, merci.\n"
        "\n"
        "====\n"
        "\n"
        "Message du : 03/06/2024 10:15\n"
        "De : \"Example Support\" <support@support.example.org>\n"
        "A : claire@example.org\n"
        "Sujet : [EX-1042] Nouveau ticket\n"
        "\n"
        "Nouveau ticket de Paul Peters.\n",
        "C'est noté, merci.",
    ),
    "french outlook mobile line": (
        "D'accord.\n"
        "\n"
        "Envoyé à partir de Outlook pour iOS<https://aka.ms/o0ukef>\n"
        "________________________________\n"
        "De : Example Support <support@support.example.org>\n"
        "Envoyé : lundi 3 juin 2024 10:15\n"
        "À : Claire Agent <claire@example.org>\n"
        "Objet : [EX-1042] Nouveau ticket\n",
        "D'accord.",
    ),
    "answer right below long quote": (
        "> The VPN drops every hour, maybe it is the idle timeout on the gateway\n"
        "I raised the timeout to eight hours.\n",
        "I raised the timeout to eight hours.",
    ),
    "quote answered below": (
        "> Can you restart the router?\n\nDone, it is back online.\n",
        "Done, it is back online.",
    ),
    "initials quote marks": (
        "C> Is the printer still broken?\n"
        "C> Please check.\n"
        "\n"
        "No, it works since Monday.\n",
        "No, it works since Monday.",
    ),
    "closing before contact block": (
        "I called the customer, the invoice is corrected.\n"
        "\n"
        "Thanks, Ana\n"
        "\n"
        "Ana Agent\n"
        "Support Lead | Example Ltd.\n"
        "Phone: +44 20 7946 0000\n"
        "ana.agent@example.com\n"
        "www.example.com\n",
        "I called the customer, the invoice is corrected.\n\nThanks, Ana",
    ),
    "closing then name then contact block": (
        "The part ships tomorrow.\n"
        "\n"
        "Best regards\n"
        "Vera\n"
        "\n"
        "Vera Vogel | Logistics\n"
        "Example GmbH, Musterstraße 1, 10115 Berlin\n"
        "Tel. +49 30 1234567\n",
        "The part ships tomorrow.\n\nBest regards\nVera",
    ),
    "closing and postscript kept": (
        "The part ships tomorrow.\n"
        "\n"
        "Best regards\n"
        "Vera\n"
        "\n"
        "PS: call me at +49 30 1234567 if it does not arrive.\n",
        "The part ships tomorrow.\n"
        "\n"
        "Best regards\n"
        "Vera\n"
        "\n"
        "PS: call me at +49 30 1234567 if it does not arrive.",
    ),
    "reply without quote": (
        "Please close the ticket, the customer confirmed by phone.\n",
        "Please close the ticket, the customer confirmed by phone.",
    ),
    "text ending in wrote kept": (
        "The customer wrote:\nThe printer is broken again.\n",
        "The customer wrote:\nThe printer is broken again.",
    ),
    "lines starting with on kept": (
        "On the surface this looks like an attribution.\n"
        "\n"
        "On Monday at 10:15 the printer failed again.\n",
        "On the surface this looks like an attribution.\n"
        "\n"
        "On Monday at 10:15 the printer failed again.",
    ),
    "header words in text kept": (
        "The data comes From: our database, not From: external sources.\n"
        "From: the customer's side nothing changed.\n"
        "\n"
        "Subject to approval we replace the unit.\n",
        "The data comes From: our database, not From: external sources.\n"
        "From: the customer's side nothing changed.\n"
        "\n"
        "Subject to approval we replace the unit.",
    ),
    "signature phrases in text kept": (
        "The notification was sent from my iPhone app to all users.\n"
        "\n"
        "Thanks for the quick fix, with regards to billing we wait.\n"
        "\n"
        "-- first point to check\n"
        "-- second point to check\n",
        "The notification was sent from my iPhone app to all users.\n"
        "\n"
        "Thanks for the quick fix, with regards to billing we wait.\n"
        "\n"
        "-- first point to check\n"
        "-- second point to check",
    ),
    "timestamps in text kept": (
        "The log shows these times:\n"
        "\n"
        "2024-06-03 10:15:25\n"
        "03.06.2024 10:15\n",
        "The log shows these times:\n\n2024-06-03 10:15:25\n03.06.2024 10:15",
    ),
    "reply of only a quote": (
        "On Mon, 3 Jun 2024 at 10:15, Example Support "
        "<support@support.example.org> wrote:\n"
        "> New ticket EX-1042 from Paul Peters.\n",
        "",
    ),
    "crlf line breaks": (
        "Done.\r\n\r\nOn Mon, 3 Jun 2024 at 10:15, Ana <ana@example.com> wrote:\r\n"
        "> Can you check?\r\n",
        "Done.",
    ),
}

# Attribution lines in other languages, each put above a quote.
ATTRIBUTIONS = {
    "german": "Am 03.06.2024 um 10:15 schrieb Example Support:",
    "german apple mail": (
        "Am 03.06.2024 um 10:15 schrieb Example Support "
        "<support@support.example.org>:"
    ),
    "french": (
        "Le lun. 3 juin 2024 à 10:15, Example Support "
        "<support@support.example.org> a écrit :"
    ),
    "spanish": (
        "El lun, 3 jun 2024 a las 10:15, Example Support "
        "(<support@support.example.org>) escribió:"
    ),
    "dutch": (
        "Op ma 3 jun. 2024 om 10:15 schreef Example Support "
        "<support@support.example.org>:"
    ),
    "italian": (
        "Il giorno lun 3 giu 2024 alle ore 10:15 Example Support "
        "<support@support.example.org> ha scritto:"
    ),
    "portuguese": (
        "Em seg., 3 de jun. de 2024 às 10:15, Example Support "
        "<support@support.example.org> escreveu:"
    ),
    "swedish": (
        "Den mån 3 juni 2024 kl 10:15 skrev Example Support "
        "<support@support.example.org>:"
    ),
    "danish": "Den 03.06.2024 kl. 10.15 skrev Example Support:",
    "polish": (
        "pon., 3 cze 2024 o 10:15 Example Support "
        "<support@support.example.org> napisał(a):"
    ),
    "russian": "03.06.2024 10:15, Example Support написал:",
    "russian gmail": (
        "пн, 3 июн. 2024 г. в 10:15, Example Support <support@support.example.org>:"
    ),
    "japanese": "2024年6月3日(月) 10:15 Example Support <support@support.example.org>:",
    "chinese": "Example Support <support@support.example.org> 于2024年6月3日周一 10:15写道：",
    "mutt short": "* Example Support <support@support.example.org> [2024-06-03 10:15]:",
}

# HTML replies: (HTML, expected body). The plain text given with them is the
# HTML without tags.
HTML_CASES = {
    "gmail top-posted": (
        '<div dir="ltr">The refund was approved today.<div><br></div>'
        "<div>Thanks, Ana</div></div><br>"
        '<div class="gmail_quote"><div dir="ltr" class="gmail_attr">On Mon, '
        "Jun 3, 2024 at 10:15 AM Example Support &lt;"
        '<a href="mailto:support@support.example.org">'
        "support@support.example.org</a>&gt; wrote:<br></div>"
        '<blockquote class="gmail_quote" style="margin:0px 0px 0px 0.8ex;'
        'border-left:1px solid rgb(204,204,204);padding-left:1ex">'
        '<div dir="ltr">New ticket EX-1042: Refund missing.</div>'
        "</blockquote></div>",
        "The refund was approved today.\n\nThanks, Ana",
    ),
    "gmail with signature": (
        '<div dir="ltr">Done, closing the ticket.<br clear="all"><div><br></div>'
        '<span class="gmail_signature_prefix">-- </span><br>'
        '<div dir="ltr" class="gmail_signature" data-smartmail="gmail_signature">'
        '<div dir="ltr">Ana Agent<br>Support Lead, Example Ltd.<br>'
        "+44 20 7946 0000</div></div></div><br>"
        '<div class="gmail_quote gmail_quote_container">'
        '<div dir="ltr" class="gmail_attr">On Mon, 3 Jun 2024 at 10:15, '
        "Example Support &lt;support@support.example.org&gt; wrote:<br></div>"
        '<blockquote class="gmail_quote"><div dir="ltr">Refund missing.</div>'
        "</blockquote></div>",
        "Done, closing the ticket.",
    ),
    "gmail answer below quote": (
        '<div dir="ltr"><div class="gmail_quote">'
        '<div dir="ltr" class="gmail_attr">On Mon, 3 Jun 2024 at 10:15, '
        "Example Support &lt;support@support.example.org&gt; wrote:<br></div>"
        '<blockquote class="gmail_quote"><div>Which printer is it?</div>'
        "</blockquote><div><br></div><div>The one on the second floor.</div>"
        "</div></div>",
        "The one on the second floor.",
    ),
    "gmail answer below quoted outlook mail": (
        '<div dir="ltr"><div class="gmail_quote">'
        '<div dir="ltr" class="gmail_attr">On Mon, 3 Jun 2024 at 10:15, '
        "Carol Agent &lt;carol.agent@example.org&gt; wrote:<br></div>"
        '<blockquote class="gmail_quote"><div>Which floor?</div>'
        '<div id="divRplyFwdMsg"><b>From:</b> Example Support<br><b>Sent:</b> '
        "Monday<br></div><div>Printer broken.</div></blockquote>"
        "<div>Second floor.</div></div></div>",
        "Second floor.",
    ),
    "gmail forward": (
        '<div dir="ltr">Please take this one.<br><br>'
        '<div class="gmail_quote"><div dir="ltr" class="gmail_attr">'
        "---------- Forwarded message ---------<br>From: <strong "
        'class="gmail_sendername">Paul Peters</strong> &lt;paul@example.com&gt;'
        "<br>Date: Mon, 3 Jun 2024 at 09:00<br>Subject: Printer<br></div><br>"
        '<div dir="ltr">The printer shows error 50.</div></div></div>',
        "Please take this one.",
    ),
    "apple mail": (
        '<html><head><meta http-equiv="content-type" content="text/html; '
        'charset=utf-8"></head><body dir="auto">Replacement is on its way.'
        "<div><br></div><div>Best regards</div><div>Vera</div><div><br>"
        '<blockquote type="cite"><div>On 3 Jun 2024, at 10:15, Example Support '
        "&lt;support@support.example.org&gt; wrote:</div>"
        '<br class="Apple-interchange-newline"><div><div>New ticket EX-1042: '
        "Printer broken.</div></div></blockquote></div></body></html>",
        "Replacement is on its way.\n\nBest regards\nVera",
    ),
    "apple mail ios": (
        '<html><body dir="auto"><div dir="ltr">Yes, please send the courier.'
        '</div><div dir="ltr"><br></div><div dir="ltr">Sent from my iPhone</div>'
        '<div dir="ltr"><br><blockquote type="cite">On 3. Jun 2024, at 10:15, '
        "Example Support &lt;support@support.example.org&gt; wrote:<br><br>"
        '</blockquote></div><blockquote type="cite"><div dir="ltr">Shall we '
        "send a courier?</div></blockquote></body></html>",
        "Yes, please send the courier.",
    ),
    "outlook desktop": (
        '<html xmlns:o="urn:schemas-microsoft-com:office:office"><head><style>'
        "p.MsoNormal{margin:0cm;}</style></head><body lang=\"EN-GB\">"
        '<div class="WordSection1"><p class="MsoNormal">Hi team,<o:p></o:p></p>'
        '<p class="MsoNormal"><o:p>&nbsp;</o:p></p>'
        '<p class="MsoNormal">I have ordered the toner.<o:p></o:p></p>'
        '<p class="MsoNormal"><o:p>&nbsp;</o:p></p>'
        '<p class="MsoNormal">Kind regards<o:p></o:p></p>'
        '<p class="MsoNormal">Carol<o:p></o:p></p>'
        '<p class="MsoNormal"><o:p>&nbsp;</o:p></p>'
        '<div><div style="border:none;border-top:solid #E1E1E1 1.0pt;'
        'padding:3.0pt 0cm 0cm 0cm"><p class="MsoNormal"><b>From:</b> Example '
        "Support &lt;support@support.example.org&gt; <br><b>Sent:</b> Monday, "
        "June 3, 2024 10:15 AM<br><b>To:</b> Carol Agent<br><b>Subject:</b> "
        "[EX-1042] New ticket: Toner empty<o:p></o:p></p></div></div>"
        '<p class="MsoNormal"><o:p>&nbsp;</o:p></p><p class="MsoNormal">New '
        "ticket from Paul Peters: the toner is empty.<o:p></o:p></p></div>"
        "</body></html>",
        "Hi team,\n\nI have ordered the toner.\n\nKind regards\nCarol",
    ),
    "outlook on the web": (
        '<html><body><div style="font-family:Aptos">Agreed, I will do it.</div>'
        '<div id="appendonsend"></div><hr style="display:inline-block;width:98%"'
        ' tabindex="-1"><div id="divRplyFwdMsg" dir="ltr"><font face="Calibri">'
        "<b>From:</b> Example Support &lt;support@support.example.org&gt;<br>"
        "<b>Sent:</b> Monday, June 3, 2024 10:15<br><b>Subject:</b> [EX-1042]"
        "</font><div>&nbsp;</div></div><div>Can you take it?</div></body></html>",
        "Agreed, I will do it.",
    ),
    "thunderbird top-posted": (
        "<html><body><p>I restarted the print server, please try again.</p>"
        '<p>Tina<br></p><div class="moz-cite-prefix">On 03.06.24 10:15, Example '
        'Support wrote:<br></div><blockquote type="cite" '
        'cite="mid:ex-1042.n2@support.example.org"><p>The printer queue is '
        "stuck.</p></blockquote></body></html>",
        "I restarted the print server, please try again.\n\nTina",
    ),
    "yahoo": (
        '<html><body><div class="ydp1234yahoo-style-wrap"><div>Yes, that is '
        'right.</div></div><div id="yahoo_quoted_5678" class="yahoo_quoted">'
        "<div>On Monday, June 3, 2024, 10:15:00 AM GMT+2, Example Support "
        "&lt;support@support.example.org&gt; wrote:</div><div><br></div>"
        "<div>Is the address correct?</div></div></body></html>",
        "Yes, that is right.",
    ),
}


@pytest.mark.parametrize(
    ("text", "expected"), list(TEXT_CASES.values()), ids=list(TEXT_CASES)
)
def test_plain_text_reply_trimmed(text: str, expected: str) -> None:
    assert trim_reply(text).body == expected


@pytest.mark.parametrize(
    "attribution", list(ATTRIBUTIONS.values()), ids=list(ATTRIBUTIONS)
)
def test_localized_attribution_cut(attribution: str) -> None:
    text = f"Author line.\n\n{attribution}\n> Quoted line.\n"

    trimmed = trim_reply(text)

    assert trimmed.body == "Author line."
    assert attribution in trimmed.removed


@pytest.mark.parametrize(
    "attribution", list(ATTRIBUTIONS.values())[:4], ids=list(ATTRIBUTIONS)[:4]
)
def test_attribution_without_quote_marks_cut(attribution: str) -> None:
    text = f"Author line.\n\n{attribution}\n\nOriginal line.\n"

    assert trim_reply(text).body == "Author line."


@pytest.mark.parametrize(
    ("html", "expected"), list(HTML_CASES.values()), ids=list(HTML_CASES)
)
def test_html_reply_trimmed(html: str, expected: str) -> None:
    assert trim_reply(_tag_free_text(html), html).body == expected


@pytest.mark.parametrize(
    ("html", "expected"), list(HTML_CASES.values()), ids=list(HTML_CASES)
)
def test_html_reply_without_text(html: str, expected: str) -> None:
    assert trim_reply("", html).body == expected


QUOTE_ONLY_HTML = (
    '<div dir="ltr"><br></div><div class="gmail_quote">'
    '<div dir="ltr" class="gmail_attr">On Mon, 3 Jun 2024 at 10:15, '
    "Example Support &lt;support@support.example.org&gt; wrote:<br></div>"
    '<blockquote class="gmail_quote"><div>Refund missing.</div>'
    "</blockquote></div>"
)
QUOTE_ONLY_TEXT = (
    "On Mon, 3 Jun 2024 at 10:15, Example Support "
    "<support@support.example.org> wrote:\n"
    "\n"
    "> Refund missing.\n"
)


@pytest.mark.parametrize("text", [QUOTE_ONLY_TEXT, ""], ids=["with text", "html only"])
def test_quote_only_html_reply_empty(text: str) -> None:
    trimmed = trim_reply(text, QUOTE_ONLY_HTML)

    assert trimmed.body == ""
    assert "Refund missing." in trimmed.removed


def test_removed_keeps_quote_and_signature() -> None:
    text, _ = TEXT_CASES["mutt inline answers and signature"]

    removed = trim_reply(text).removed

    assert "The VPN drops every hour." in removed
    assert "Can you check the logs?" in removed
    assert "Max Mutt <max@example.net>" in removed


def test_removed_keeps_html_original() -> None:
    html, _ = HTML_CASES["outlook desktop"]

    removed = trim_reply("", html).removed

    assert "From: Example Support" in removed
    assert "the toner is empty." in removed


def test_removed_empty_without_quote() -> None:
    text, _ = TEXT_CASES["reply without quote"]

    assert trim_reply(text).removed == ""


def test_html_without_known_structure_uses_text() -> None:
    html = "<div>Done.</div><div>On Mon, 3 Jun 2024, Ana wrote:</div><div>Hi</div>"
    text = "Done.\n\nOn Mon, 3 Jun 2024, Ana wrote:\n> Hi\n"

    assert trim_reply(text, html).body == "Done."


def test_unparsable_html_falls_back() -> None:
    assert trim_reply("Done.\n> quoted\n", "   ").body == "Done."


def test_empty_html_path_falls_back() -> None:
    # The HTML path cut everything; the plain-text part still has the author's
    # text, so the plain-text rules decide.
    html = '<div class="gmail_quote"><div>Fine by me.</div></div>'

    assert trim_reply("Fine by me.\n", html).body == "Fine by me."


def test_control_characters_in_html_tolerated() -> None:
    # lxml parses these characters but raises when a tree edit copies them.
    html = (
        '<div>Done.\x0c</div><div class="gmail_attr">On Mon, Ana wrote:</div>'
        "\x00tail\x1b<blockquote type=\"cite\">Hi</blockquote>"
    )

    assert trim_reply("", html).body == "Done.\ntail"


def test_trimmed_reply_is_frozen() -> None:
    trimmed = trim_reply("Done.")

    with pytest.raises(dataclasses.FrozenInstanceError):
        trimmed.body = "changed"  # type: ignore[misc]
    assert isinstance(trimmed, TrimmedReply)

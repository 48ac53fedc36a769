"""Parsing of the hard-mail cases, and of small messages written here.

Each shared case NNN-*.eml comes with NNN-*.md, which lists its expected
outcomes. The tables below copy the parsing-level facts from them. Body
text is compared after removing trailing spaces and blank edge lines, as
those descriptions require.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from mailgate.parsing import (
    Address,
    ParsedMail,
    ParseError,
    html_to_text,
    parse_message,
    sanitize_html,
)

SHARED = Path(__file__).resolve().parents[2] / "shared"
CASES = SHARED / "cases"

needs_cases = pytest.mark.skipif(
    not CASES.is_dir(), reason=f"shared case folder not found at {CASES}"
)


def load_case(stem: str) -> ParsedMail:
    return parse_message((CASES / f"{stem}.eml").read_bytes())


def case_ids(rows: Sequence[tuple[object, ...]]) -> list[str]:
    """Name each table row by its case number, such as "001"."""
    return [str(row[0])[:3] for row in rows]


def comparable_body(text: str) -> str:
    """Strip trailing spaces of each line and blank lines at both ends."""
    return "\n".join(line.rstrip() for line in text.split("\n")).strip("\n")


CASE_001 = "001-rfc2047-split-multibyte-subject"
CASE_004 = "004-iso2022jp-quoted-printable-alternative"
CASE_007 = "007-8bit-latin1-labelled-us-ascii"
CASE_010 = "010-unknown-charset-label"
CASE_013 = "013-koi8r-rfc2047-filename-folded"
CASE_016 = "016-multipart-boundary-param-lost"
CASE_019 = "019-uuencoded-attachment-in-body"
CASE_022 = "022-html-only-body"
CASE_025 = "025-date-header-with-folded-garbage"
CASE_028 = "028-header-line-of-1000-chars"
CASE_061 = "061-rfc2231-value-inside-quotes"
CASE_064 = "064-latin1-encoded-word-name-only"
CASE_073 = "073-smtp-8bitmime-raw-utf8-body"

SUBJECTS = [
    (CASE_001, "Lieferung verzögert – Spedition fährt erst nächste Woche"),
    (CASE_004, "見積書の再送のお願い"),
    (CASE_007, "Salle annulee"),
    (CASE_010, "Update schlaegt fehl"),
    (CASE_013, "Отчёт за квартал"),
    (CASE_016, "Rechnung Juni"),
    (CASE_019, "Notizen zum Termin"),
    (CASE_022, "Drucker 3. OG"),
    (CASE_025, "Automatische Antwort: [EX-1042] Zugang gesperrt"),
    (CASE_028, "Zugang gesperrt"),
    (CASE_061, "Angebot"),
    (CASE_064, "Offre"),
    (CASE_073, "Grüße aus Köln"),
]

REQUESTERS = [
    (CASE_001, "Alice Example", "alice@example.com"),
    (CASE_004, "山田 太郎", "t.yamada@example.jp"),
    (CASE_013, "Oleg Orlov", "oleg@example.com"),
    (CASE_061, "Jan Novák", "jan.novak@example.com"),
    (CASE_073, "Lena Lorenz", "lena@example.com"),
]

BODY_FRAGMENTS = [
    (CASE_001, "die Lieferung verzögert sich um eine Woche."),
    (CASE_004, "先日の見積書（No.A-2231）を再送していただけますでしょうか。"),
    (CASE_007, "la salle réservée pour la réunion de février est annulée."),
    (CASE_007, "Élodie"),
    (CASE_010, "das Update auf Version 4.2 schlägt fehl."),
    (CASE_019, "hier die Notizen:"),
    (CASE_019, "Gruss"),
    (
        CASE_022,
        "der Drucker im 3. OG meldet seit heute früh Papierstau,"
        " obwohl kein Papier festsitzt.",
    ),
    (CASE_022, "Bitte um Rückruf unter 0301 555 0199."),
    (CASE_025, "Ich bin bis 26.08. nicht im Büro."),
]

WHOLE_BODIES = [
    (CASE_013, "Отчёт во вложении."),
    # The case prefers the resynchronised body over an attachment holding it.
    (CASE_016, "Die Rechnung für Juni finden Sie im Anhang."),
    (CASE_028, "Mein Konto ist seit gestern gesperrt."),
    (CASE_064, "Voici l'offre."),
    (CASE_073, "Grüße aus Köln – die Lieferung ist angekommen, danke!"),
]

BODY_EXCLUSIONS = [
    (CASE_004, "\x1b"),
    (CASE_004, "$B"),
    (CASE_004, "(B"),
    (CASE_007, "\ufffd"),
    (CASE_010, "\ufffd"),
    (CASE_019, "begin 644"),
    (CASE_019, "M3F]T:7IE;B!Z=6T@5&5R;6EN"),
    (CASE_022, "<"),
    (CASE_028, "Subject:"),
    (CASE_028, "Content-Type:"),
]

SUBJECT_EXCLUSIONS = [
    (CASE_001, "\ufffd"),
    (CASE_001, "=?utf-8?"),
    (CASE_004, "=?"),
]

ATTACHMENTS = [
    (CASE_001, []),
    (CASE_004, []),
    (CASE_013, [("Отчёт-квартал-1-итог.json", 57)]),
    (CASE_016, [("rechnung-juni.pdf", 587)]),
    (CASE_019, [("notizen.txt", 100)]),
    (CASE_022, []),
    (CASE_061, [("Škoda Angebot.png", 69)]),
    (CASE_064, [("Offre spéciale été.docx", 162)]),
]


@needs_cases
@pytest.mark.parametrize(("stem", "expected"), SUBJECTS, ids=case_ids(SUBJECTS))
def test_case_subject_decoded(stem: str, expected: str) -> None:
    assert load_case(stem).subject == expected


@needs_cases
@pytest.mark.parametrize(
    ("stem", "fragment"), SUBJECT_EXCLUSIONS, ids=case_ids(SUBJECT_EXCLUSIONS)
)
def test_case_subject_excludes_fragment(stem: str, fragment: str) -> None:
    assert fragment not in load_case(stem).subject


@needs_cases
@pytest.mark.parametrize(
    ("stem", "name", "email"), REQUESTERS, ids=case_ids(REQUESTERS)
)
def test_case_requester_decoded(stem: str, name: str, email: str) -> None:
    sender = load_case(stem).from_
    assert sender is not None
    assert sender.email == email
    assert sender.name == name


@needs_cases
@pytest.mark.parametrize(
    ("stem", "fragment"), BODY_FRAGMENTS, ids=case_ids(BODY_FRAGMENTS)
)
def test_case_body_contains_fragment(stem: str, fragment: str) -> None:
    assert fragment in comparable_body(load_case(stem).text)


@needs_cases
@pytest.mark.parametrize(("stem", "expected"), WHOLE_BODIES, ids=case_ids(WHOLE_BODIES))
def test_case_body_equals_expected(stem: str, expected: str) -> None:
    assert comparable_body(load_case(stem).text) == expected


@needs_cases
@pytest.mark.parametrize(
    ("stem", "fragment"), BODY_EXCLUSIONS, ids=case_ids(BODY_EXCLUSIONS)
)
def test_case_body_excludes_fragment(stem: str, fragment: str) -> None:
    assert fragment not in load_case(stem).text


@needs_cases
@pytest.mark.parametrize(("stem", "expected"), ATTACHMENTS, ids=case_ids(ATTACHMENTS))
def test_case_attachment_names_sizes(
    stem: str, expected: list[tuple[str, int]]
) -> None:
    attachments = load_case(stem).attachments
    assert [(item.filename, item.size) for item in attachments] == expected


@needs_cases
def test_uuencoded_attachment_content() -> None:
    attachment = load_case(CASE_019).attachments[0]
    assert attachment.data.startswith(b"Notizen zum Termin")
    assert attachment.content_type == "text/plain"


@needs_cases
@pytest.mark.parametrize("fragment", ['"', "%", "Å"])
def test_quoted_rfc2231_name_clean(fragment: str) -> None:
    assert fragment not in load_case(CASE_061).attachments[0].filename


@needs_cases
def test_html_only_body_has_text() -> None:
    mail = load_case(CASE_022)
    assert mail.text.strip() != ""
    assert mail.html is not None
    assert mail.html_source is not None


@needs_cases
def test_folded_garbage_date_leading() -> None:
    date = load_case(CASE_025).date
    assert date == datetime(
        2024, 8, 13, 16, 20, 41, tzinfo=timezone(timedelta(hours=2))
    )
    assert date is not None and date.utcoffset() == timedelta(hours=2)


@needs_cases
def test_folded_lines_belong_to_date() -> None:
    # Strictly, the indented lines continue Date: there is no such header.
    assert load_case(CASE_025).header("Auto-Submitted") is None


@needs_cases
def test_lost_boundary_reported_as_defect() -> None:
    defects = load_case(CASE_016).defects
    assert any("boundary" in defect for defect in defects)


# Messages written for this file. Addresses use example.com and example.org.

HEADERS_ONLY = b"From: A <a@example.com>\r\nTo: b@example.org\r\nSubject: hi\r\n"


def message(headers: str, body: bytes = b"") -> bytes:
    """Build a message from header lines (LF separated) and raw body bytes."""
    head = headers.strip("\n").replace("\n", "\r\n").encode("utf-8")
    return head + b"\r\n\r\n" + body


@pytest.mark.parametrize(
    "raw",
    [
        pytest.param(b"", id="empty"),
        pytest.param(b"\r\n\r\n  \r\n", id="blank-lines"),
        pytest.param(bytes(range(256)) * 4, id="binary"),
        pytest.param(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", id="png"),
        pytest.param(b"just some text\nwithout any header\n", id="plain-text"),
    ],
)
def test_non_mail_raises_parse_error(raw: bytes) -> None:
    with pytest.raises(ParseError):
        parse_message(raw)


def test_parse_error_is_value_error() -> None:
    assert issubclass(ParseError, ValueError)


def test_headers_only_message_parses() -> None:
    mail = parse_message(HEADERS_ONLY)
    assert mail.text == ""
    assert mail.html is None
    assert mail.attachments == ()
    assert mail.subject == "hi"


def test_leading_blank_lines_skipped() -> None:
    assert parse_message(b"\r\n\r\n" + HEADERS_ONLY).subject == "hi"


def test_header_lookup_ignores_case() -> None:
    mail = parse_message(HEADERS_ONLY)
    assert mail.header("SUBJECT") == "hi"
    assert mail.header("x-missing") is None


def test_header_values_stay_single_line() -> None:
    raw = message("From: a@example.com\nSubject: =?utf-8?q?a=0D=0AX-Injected:_1?=")
    mail = parse_message(raw)
    assert mail.subject == "a X-Injected: 1"
    assert mail.header("Subject") == "a X-Injected: 1"


def test_mail_repr_omits_bodies() -> None:
    raw = message("From: a@example.com\nContent-Type: text/html", b"<p>secret</p>")
    mail = parse_message(raw)
    assert "secret" in mail.text
    assert "secret" not in repr(mail)


def test_headers_keep_order_and_names() -> None:
    raw = message("X-One: 1\nx-TWO: 2\nX-One: 3\nFrom: a@example.com")
    assert parse_message(raw).headers == (
        ("X-One", "1"),
        ("x-TWO", "2"),
        ("X-One", "3"),
        ("From", "a@example.com"),
    )


RAW_8BIT_SUBJECTS = [
    pytest.param("Grüße – Köln".encode("utf-8"), "Grüße – Köln", id="utf-8"),
    pytest.param("Grüße aus Köln".encode("latin-1"), "Grüße aus Köln", id="latin-1"),
    pytest.param(b"\x93quoted\x94 text", "\u201cquoted\u201d text", id="windows-1252"),
    pytest.param(
        "件名です".encode("iso2022_jp"), "件名です", id="unlabelled-iso-2022-jp"
    ),
]


@pytest.mark.parametrize(("raw_subject", "expected"), RAW_8BIT_SUBJECTS)
def test_raw_8bit_subject_decoded(raw_subject: bytes, expected: str) -> None:
    raw = b"From: a@example.com\r\nSubject: " + raw_subject + b"\r\n\r\nx"
    assert parse_message(raw).subject == expected


ENCODED_SUBJECTS = [
    pytest.param(
        "=?utf-8?q?caf=C3?=\n =?utf-8?q?=A9_ouvert?=", "café ouvert", id="split-q"
    ),
    pytest.param("=?UTF-8?B?w6k=?= =?utf-8?Q?t=C3=A9?=", "été", id="b-then-q"),
    pytest.param("=?iso-8859-1?q?a?= =?utf-8?q?b?=", "ab", id="charset-change"),
    pytest.param("Re: =?utf-8?q?Gr=C3=BC=C3=9Fe?= und mehr", "Re: Grüße und mehr"),
    pytest.param("=?unknown?q?Gr=C3=BC=C3=9Fe?=", "Grüße", id="unknown-charset"),
    pytest.param("=?utf-8*de?q?Gr=C3=BC=C3=9Fe?=", "Grüße", id="language-tag"),
    pytest.param("a\n\tfolded   subject", "a folded subject", id="folded"),
    pytest.param("=?utf-8?b?bm8gcGFkZGluZw?=", "no padding", id="b-unpadded"),
]


@pytest.mark.parametrize(("value", "expected"), ENCODED_SUBJECTS)
def test_encoded_subject_decoded(value: str, expected: str) -> None:
    raw = message(f"From: a@example.com\nSubject: {value}", b"x")
    assert parse_message(raw).subject == expected


ADDRESS_HEADERS = [
    pytest.param(
        '"=?utf-8?Q?Jos=C3=A9?=" <jose@example.com>',
        Address("José", "jose@example.com"),
        id="quoted-encoded-word",
    ),
    pytest.param(
        "=?utf-8?B?SsO8cmdlbiBTY2htw7w=?= =?utf-8?B?cmdlbg==?= <j@example.com>",
        Address("Jürgen Schmürgen", "j@example.com"),
        id="split-encoded-words",
    ),
    pytest.param(
        '"=?utf-8?q?Doe=2C_Jane?=" <jane@example.org>',
        Address("Doe, Jane", "jane@example.org"),
        id="comma-inside-word",
    ),
    pytest.param("plain@example.com", Address("", "plain@example.com"), id="bare"),
    pytest.param("nobody here", Address("nobody here", ""), id="unparsable"),
]


@pytest.mark.parametrize(("value", "expected"), ADDRESS_HEADERS)
def test_from_address_decoded(value: str, expected: Address) -> None:
    raw = message(f"From: {value}\nSubject: x", b"x")
    assert parse_message(raw).from_ == expected


def test_raw_latin1_display_name() -> None:
    raw = b'From: "J\xfcrgen" <j@example.com>\r\nSubject: x\r\n\r\nx'
    assert parse_message(raw).from_ == Address("Jürgen", "j@example.com")


def test_address_lists_collect_all() -> None:
    raw = message(
        "From: a@example.com\n"
        "To: B <b@example.com>, c@example.org\n"
        "To: d@example.com\n"
        "Cc: undisclosed-recipients:;\n"
        "Reply-To: R <r@example.org>"
    )
    mail = parse_message(raw)
    assert [item.email for item in mail.to] == [
        "b@example.com",
        "c@example.org",
        "d@example.com",
    ]
    assert mail.cc == ()
    assert mail.reply_to == (Address("R", "r@example.org"),)
    assert mail.sender is None


def test_message_ids_without_brackets() -> None:
    raw = message(
        "From: a@example.com\n"
        "Message-ID:  <abc.1@example.com> \n"
        "In-Reply-To: Your message of Monday <p.2@example.org>\n"
        "References: <p.1@example.org>\n <p.2@example.org>\t<p.1@example.org>"
    )
    mail = parse_message(raw)
    assert mail.message_id == "abc.1@example.com"
    assert mail.in_reply_to == ("p.2@example.org",)
    assert mail.references == ("p.1@example.org", "p.2@example.org")


def test_bare_message_id_kept() -> None:
    raw = message("From: a@example.com\nMessage-ID: 12345")
    assert parse_message(raw).message_id == "12345"


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (
            "Mon, 3 Jun 2024 10:15:00 +0200",
            datetime(2024, 6, 3, 8, 15, tzinfo=timezone.utc),
        ),
        ("3 Jun 2024 10:15 GMT", datetime(2024, 6, 3, 10, 15, tzinfo=timezone.utc)),
        (
            "Mon, 3 Jun 2024 10:15:00 -0000",
            datetime(2024, 6, 3, 10, 15, tzinfo=timezone.utc),
        ),
        ("yesterday, around noon", None),
        ("", None),
    ],
)
def test_date_parsed_aware(value: str, expected: datetime | None) -> None:
    date = parse_message(message(f"From: a@example.com\nDate: {value}")).date
    assert date == expected
    assert date is None or date.tzinfo is not None


BODY_CHARSETS = [
    pytest.param("utf-8", "Grüße".encode("utf-8"), "Grüße", id="utf-8"),
    pytest.param("us-ascii", "Grüße".encode("utf-8"), "Grüße", id="ascii-label-utf8"),
    pytest.param("", "Grüße".encode("cp1252"), "Grüße", id="empty-label"),
    pytest.param("x-bogus", "Grüße".encode("cp1252"), "Grüße", id="bogus-label"),
    pytest.param("iso-8859-1", b"\x93Hi\x94", "\u201cHi\u201d", id="latin1-is-cp1252"),
    pytest.param(
        "us-ascii", "日本語".encode("iso2022_jp"), "日本語", id="jis-as-ascii"
    ),
    pytest.param("utf-8", b"a\x00b\x1bc", "abc", id="control-characters"),
    pytest.param("utf-16", "Grüße".encode("utf-16"), "Grüße", id="utf-16"),
]


@pytest.mark.parametrize(("charset", "body", "expected"), BODY_CHARSETS)
def test_body_charset_decoded(charset: str, body: bytes, expected: str) -> None:
    raw = message(
        f'From: a@example.com\nContent-Type: text/plain; charset="{charset}"', body
    )
    assert parse_message(raw).text == expected


def multipart(*parts: str, subtype: str = "mixed", boundary: str = "XyZ") -> bytes:
    """Build a multipart message from part texts (headers, blank line, body)."""
    lines = [
        "From: a@example.com",
        "Subject: parts",
        f'Content-Type: multipart/{subtype}; boundary="{boundary}"',
        "",
    ]
    for part in parts:
        lines += [f"--{boundary}", part.strip("\n")]
    lines.append(f"--{boundary}--")
    return "\r\n".join(lines).encode("utf-8") + b"\r\n"


TEXT_PART = "Content-Type: text/plain; charset=utf-8\n\nHello there."
PDF_PART = (
    "Content-Type: application/pdf\nContent-Transfer-Encoding: base64\n\nJVBERi0xLjQK"
)


def test_unnamed_part_gets_generated_name() -> None:
    mail = parse_message(multipart(TEXT_PART, PDF_PART))
    assert [item.filename for item in mail.attachments] == ["attachment-1.pdf"]
    assert mail.attachments[0].data == b"%PDF-1.4\n"


RFC2231_FILENAMES = [
    pytest.param(
        "attachment; filename*0*=utf-8''%C3%BCber%20; filename*1*=uns.pdf",
        "über uns.pdf",
        id="continuations",
    ),
    pytest.param(
        "attachment; filename*=iso-8859-1'de'%FCber.pdf; filename=ueber.pdf",
        "über.pdf",
        id="extended-wins",
    ),
    pytest.param(
        'attachment; filename="C:\\Temp\\report.pdf"', "report.pdf", id="windows-path"
    ),
    pytest.param(
        'attachment; filename="=?utf-8?q?r=C3=A9sum=C3=A9?=.pdf"',
        "résumé.pdf",
        id="encoded-word-quoted",
    ),
    pytest.param("attachment; filename=my report.pdf", "my report.pdf", id="unquoted"),
]


@pytest.mark.parametrize(("disposition", "expected"), RFC2231_FILENAMES)
def test_attachment_filename_decoded(disposition: str, expected: str) -> None:
    part = PDF_PART.replace("\n\n", f"\nContent-Disposition: {disposition}\n\n", 1)
    mail = parse_message(multipart(TEXT_PART, part))
    assert [item.filename for item in mail.attachments] == [expected]


def test_cid_reference_marks_inline() -> None:
    html = (
        "Content-Type: text/html; charset=utf-8\n\n"
        '<p>Logo:</p><img src="cid:Logo.1@example.com">'
    )
    image = (
        "Content-Type: image/png\nContent-ID: <logo.1@example.com>\n"
        "Content-Transfer-Encoding: base64\n\niVBORw0KGgo="
    )
    mail = parse_message(multipart(html, image, subtype="related"))
    assert mail.text == "Logo:"
    assert mail.attachments[0].inline is True
    assert mail.attachments[0].content_id == "logo.1@example.com"
    assert 'src="cid:Logo.1@example.com"' in (mail.html or "")


def test_alternative_prefers_plain_text() -> None:
    html = "Content-Type: text/html; charset=utf-8\n\n<p>Rich <b>text</b></p>"
    mail = parse_message(multipart(TEXT_PART, html, subtype="alternative"))
    assert mail.text == "Hello there."
    assert mail.html == "<p>Rich <b>text</b></p>"
    assert mail.attachments == ()


def test_attached_message_kept_whole() -> None:
    inner = (
        "Content-Type: message/rfc822\n\nFrom: c@example.org\nSubject: old\n\nOld body"
    )
    mail = parse_message(multipart(TEXT_PART, inner))
    assert [item.filename for item in mail.attachments] == ["attachment-1.eml"]
    assert b"Subject: old" in mail.attachments[0].data
    assert "Old body" not in mail.text


def test_unrecoverable_multipart_kept_raw() -> None:
    raw = message(
        "From: a@example.com\nContent-Type: multipart/mixed",
        b"no delimiter line at all\r\n",
    )
    mail = parse_message(raw)
    assert mail.text == ""
    assert [item.data for item in mail.attachments] == [b"no delimiter line at all\r\n"]


def test_deep_nesting_does_not_raise() -> None:
    depth = 3000
    head = "".join(
        f'Content-Type: multipart/mixed; boundary="b{i}"\r\n\r\n--b{i}\r\n'
        for i in range(depth)
    )
    raw = ("From: a@example.com\r\n" + head + "\r\nbody\r\n").encode("ascii")
    mail = parse_message(raw)
    assert mail.from_ == Address("", "a@example.com")
    assert mail.defects != ()


def test_uuencode_base64_block_extracted() -> None:
    body = b"See file:\r\nbegin-base64 644 hi.txt\r\naGVsbG8K\r\n====\r\nBye\r\n"
    mail = parse_message(message("From: a@example.com", body))
    assert comparable_body(mail.text) == "See file:\nBye"
    assert [(item.filename, item.data) for item in mail.attachments] == [
        ("hi.txt", b"hello\n")
    ]


HTML_TO_TEXT = [
    pytest.param("<p>a</p><p>b</p>", "a\n\nb", id="paragraphs"),
    pytest.param("<div>a</div><div><br></div><div>b</div>", "a\n\nb", id="divs"),
    pytest.param("a<br>b", "a\nb", id="br"),
    pytest.param("<ul><li>x</li><li>y</li></ul>", "- x\n- y", id="list"),
    pytest.param("<ol><li>x</li><li>y</li></ol>", "1. x\n2. y", id="ordered-list"),
    pytest.param(
        "<p>Fish &amp; chips&nbsp;&lt;3</p>", "Fish & chips <3", id="entities"
    ),
    pytest.param("<script>alert(1)</script><style>p{}</style>ok", "ok", id="script"),
    pytest.param(
        "<blockquote><p>q1</p><p>q2</p></blockquote>", "> q1\n>\n> q2", id="quote"
    ),
    pytest.param("<pre>a  b\n  c</pre>", "a  b\n  c", id="pre"),
    pytest.param(
        '<p class="MsoNormal">one</p><p class="MsoNormal">two</p>',
        "one\ntwo",
        id="outlook-lines",
    ),
    pytest.param("", "", id="empty"),
]


@pytest.mark.parametrize(("html", "expected"), HTML_TO_TEXT)
def test_html_to_text_readable(html: str, expected: str) -> None:
    assert html_to_text(html) == expected


SANITIZE_REMOVES = [
    pytest.param("<script>alert(1)</script>", "alert", id="script"),
    pytest.param("<style>p{color:red}</style>", "color", id="style"),
    pytest.param('<p onclick="steal()">x</p>', "onclick", id="event-handler"),
    pytest.param('<a href="javascript:steal()">x</a>', "javascript", id="js-url"),
]


@pytest.mark.parametrize(("html", "fragment"), SANITIZE_REMOVES)
def test_sanitize_html_removes_fragment(html: str, fragment: str) -> None:
    assert fragment not in sanitize_html(html)


def test_sanitize_html_drops_remote_images() -> None:
    html = '<img src="https://example.com/a.png"><img src="cid:x@example.com">'
    cleaned = sanitize_html(html)
    assert "example.com/a.png" not in cleaned
    assert 'src="cid:x@example.com"' in cleaned

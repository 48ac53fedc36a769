"""Sender authentication of agents' replies: Authentication-Results and DKIM.

An ``Authentication-Results`` field (RFC 8601) is trusted only when its
authserv-id names our own MTA (``MAILGATE_TRUSTED_AUTHSERV_IDS``): anyone
can write the field into a mail, and only our MTA's copy reports what
the MTA checked. Without a trusted MTA in front, ``MAILGATE_VERIFY_DKIM``
makes the gateway verify DKIM signatures itself with dkimpy.

``sender_authentication_failure`` returns the reason a reply fails, or
None; the pipeline holds a failing reply for review.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import dkim

from mailgate.parsing import ParsedMail

log = logging.getLogger(__name__)

# The DNS TXT lookup dkimpy uses, ``lookup(name: bytes, timeout=5) -> bytes
# | None``. None means dkimpy's own resolver (dnspython); tests put a
# lookup over their own keys here.
dns_txt_lookup: Callable[..., bytes | None] | None = None

_RESULT = re.compile(r"^\s*([a-z0-9_.-]+)(?:\s*/\s*\d+)?\s*=\s*([a-z]+)", re.IGNORECASE)
# RFC 8601 results that count as a failure of the method.
FAILING_RESULTS = frozenset({"fail", "permerror"})


@dataclass(frozen=True)
class MethodResult:
    """One ``method=result`` of a trusted Authentication-Results field."""

    authserv_id: str
    method: str  # dkim, dmarc, spf, ...
    result: str  # pass, fail, none, ...


def _strip_comments(value: str) -> str:
    """Remove RFC 5322 comments, nested ones included, outside quoted strings."""
    out: list[str] = []
    depth = 0
    quoted = escaped = False
    for char in value:
        if escaped:
            escaped = False
            if depth == 0:
                out.append(char)
            continue
        if char == "\\":
            escaped = True
            if depth == 0:
                out.append(char)
        elif quoted:
            quoted = char != '"'
            out.append(char)
        elif char == '"' and depth == 0:
            quoted = True
            out.append(char)
        elif char == "(":
            depth += 1
        elif char == ")" and depth:
            depth -= 1
        elif depth == 0:
            out.append(char)
    return "".join(out)


def _split_statements(value: str) -> list[str]:
    """Split at semicolons outside quoted strings."""
    statements = [""]
    quoted = escaped = False
    for char in value:
        if escaped:
            escaped = False
        elif char == "\\":
            escaped = True
        elif char == '"':
            quoted = not quoted
        elif char == ";" and not quoted:
            statements.append("")
            continue
        statements[-1] += char
    return statements


def parse_authentication_results(value: str) -> tuple[str, list[tuple[str, str]]]:
    """Return the authserv-id and the (method, result) pairs of one field value.

    Methods and results are lower-cased. A value ``authserv-id; none``
    has no pairs.
    """
    statements = _split_statements(_strip_comments(value))
    authserv_id = statements[0].strip().split()[0].lower() if statements[0].strip() else ""
    pairs = []
    for statement in statements[1:]:
        match = _RESULT.match(statement)
        if match:
            pairs.append((match.group(1).lower(), match.group(2).lower()))
    return authserv_id, pairs


def trusted_results(
    headers: Sequence[tuple[str, str]], trusted_ids: Sequence[str]
) -> list[MethodResult]:
    """Return the results of every Authentication-Results field that a
    trusted authserv-id wrote; fields of any other id are ignored."""
    trusted = {item.lower() for item in trusted_ids}
    found = []
    for name, value in headers:
        if name.strip().lower() != "authentication-results":
            continue
        authserv_id, pairs = parse_authentication_results(value)
        if authserv_id not in trusted:
            log.debug("Authentication-Results of untrusted authserv-id %r ignored", authserv_id)
            continue
        found.extend(MethodResult(authserv_id, method, result) for method, result in pairs)
    return found


def results_failure(results: Sequence[MethodResult]) -> str | None:
    """Return why trusted results fail the mail, or None.

    DMARC fails on any failing result. DKIM fails when a signature failed
    and none passed, because a mailing list may break one signature of a
    mail that another still authenticates.
    """
    for item in results:
        if item.method == "dmarc" and item.result in FAILING_RESULTS:
            return f"Authentication-Results from {item.authserv_id} reports dmarc={item.result}"
    dkim_results = {item.result for item in results if item.method == "dkim"}
    failed = dkim_results & FAILING_RESULTS
    if failed and "pass" not in dkim_results:
        authserv_id = next(item.authserv_id for item in results if item.method == "dkim")
        return f"Authentication-Results from {authserv_id} reports dkim={min(failed)}"
    return None


def _domain_of(address: str) -> str:
    return address.rpartition("@")[2].strip().strip(".").lower()


def _aligned(signing_domain: str, from_domain: str) -> bool:
    """Relaxed DMARC alignment: the same domain, or From in a subdomain of it.

    NOTE: without the public suffix list, a signature of "co.uk" would
    align with every "x.co.uk". Real signers do not sign as a public
    suffix, so this is accepted.
    """
    return from_domain == signing_domain or from_domain.endswith("." + signing_domain)


def verify_dkim_signatures(raw: bytes, from_address: str) -> str | None:
    """Verify the DKIM signatures of ``raw``; return why none is valid and
    aligned with the From domain, or None when one is.

    Every signature is tried; DNS failures and malformed signatures count
    as failed signatures.

    NOTE: this runs in the worker, not in a parser child, so only the
    pre-parse limits bound dkimpy's work, and each DNS lookup may take up
    to dkimpy's 5 s timeout.
    """
    from_domain = _domain_of(from_address)
    signatures = len(re.findall(rb"(?im)^dkim-signature\s*:", raw))
    if signatures == 0:
        return f"no DKIM signature (From domain {from_domain or '(none)'})"
    lookup = {"dnsfunc": dns_txt_lookup} if dns_txt_lookup is not None else {}
    problems = []
    for index in range(signatures):
        verifier = dkim.DKIM(raw)
        try:
            valid = verifier.verify(idx=index, **lookup)
        except Exception as error:  # noqa: BLE001 - dkimpy raises many kinds
            # The first words of dkimpy's message name the cause, e.g.
            # "body hash mismatch"; the hashes after them are noise.
            cause = str(error).split(" (", 1)[0][:120]
            problems.append(f"signature {index + 1}: {type(error).__name__}: {cause}")
            continue
        signing_domain = (verifier.domain or b"").decode("ascii", "replace").lower()
        if not valid:
            problems.append(f"signature {index + 1} (d={signing_domain}) does not verify")
        elif not _aligned(signing_domain, from_domain):
            problems.append(f"signature {index + 1} is of d={signing_domain}, not {from_domain}")
        else:
            return None
    return "DKIM failed: " + "; ".join(problems)


def sender_authentication_failure(
    mail: ParsedMail,
    read_raw: Callable[[], bytes],
    *,
    trusted_authserv_ids: Sequence[str],
    verify_dkim: bool,
) -> str | None:
    """Return why the sender of a reply is not authenticated, or None.

    Trusted Authentication-Results decide when there are any. Without
    them, DKIM is verified here when ``verify_dkim`` is set. Otherwise
    nothing is checked and None is returned.
    """
    results = trusted_results(mail.headers, trusted_authserv_ids)
    if results:
        return results_failure(results)
    if verify_dkim:
        from_address = mail.from_.email if mail.from_ else ""
        return verify_dkim_signatures(read_raw(), from_address)
    return None

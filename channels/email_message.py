"""Reading an email as it really arrives, and deciding whether it may get an automatic reply.

`read_mail` never raises on bad input: broken MIME, unknown charsets, encoded-words and
HTML-only mail all give a `ReceivedMail` whose `text` is what the bot should read (the new
words only: quoted replies and signatures stripped). `auto_reply_refusal` applies the
rules of RFC 3834 and of mature help desks (STANDARDS.md): it names the rule that forbids
an automatic reply, or returns None. The per-sender rate cap needs the store and is checked
by the channel, after these rules.
"""

from __future__ import annotations

import email
import email.policy
import email.utils
import html
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from email.message import EmailMessage, Message
from email.utils import getaddresses, parseaddr

MAX_TEXT_CHARS = 20_000
MAX_ATTACHMENT_BYTES = 10 * 1024 * 1024

_ROBOT = re.compile(
    r"^(mailer-daemon|postmaster|no-?reply|do-?not-?reply|listserv|majordomo|owner-.*|.*-request|.*-bounces?)$",
    re.IGNORECASE,
)
_QUOTE_HEADER = re.compile(
    r"^(le .{0,120}a écrit\s*:|on .{0,120}wrote\s*:|-{2,}\s*(original message|message d'origine)\s*-{2,}|"
    r"de\s*:.*|from\s*:.*)$",
    re.IGNORECASE,
)
_AUTH_FAILED = re.compile(r"\b(dmarc|spf|dkim)=(fail|softfail|permerror)\b", re.IGNORECASE)
_SIGNATURE = re.compile(r"^(--\s*|__+|envoyé de mon .*|sent from my .*)$", re.IGNORECASE)


@dataclass(frozen=True, slots=True)
class Attachment:
    filename: str
    content_type: str
    size: int
    data: bytes = field(repr=False)


@dataclass(frozen=True, slots=True)
class ReceivedMail:
    sender: str  # the From address, lower-cased ("" when there is none)
    sender_name: str
    subject: str
    text: str  # what the person wrote this time
    message_id: str | None
    in_reply_to: str | None
    references: tuple[str, ...]
    attachments: tuple[Attachment, ...]
    message: Message = field(repr=False, compare=False)
    problems: tuple[str, ...] = ()  # what was wrong with the MIME (the mail is read anyway)


def read_mail(raw: bytes) -> ReceivedMail:
    problems: list[str] = []
    try:
        message = email.message_from_bytes(raw, policy=email.policy.default)
    except Exception as exc:  # the parser is lenient; this is the last resort
        problems.append(f"unparseable: {type(exc).__name__}")
        message = EmailMessage()
    name, address = parseaddr(_header(message, "From", problems))
    text, attachments = _body(message, problems)
    return ReceivedMail(
        sender=address.lower(),
        sender_name=name,
        subject=_header(message, "Subject", problems),
        text=strip_quotes(text)[:MAX_TEXT_CHARS],
        message_id=_header(message, "Message-ID", problems).strip() or None,
        in_reply_to=_header(message, "In-Reply-To", problems).strip() or None,
        references=tuple(_header(message, "References", problems).split()),
        attachments=tuple(attachments),
        message=message,
        problems=tuple(problems),
    )


def _header(message: Message, name: str, problems: list[str]) -> str:
    try:
        value = message.get(name)
        return " ".join(str(value).split()) if value is not None else ""
    except Exception as exc:  # a header the policy cannot decode
        problems.append(f"header {name}: {type(exc).__name__}")
        raw = message.get_all(name, failobj=[])
        return str(raw[0]) if raw else ""


def _body(message: Message, problems: list[str]) -> tuple[str, list[Attachment]]:
    plain: list[str] = []
    htmls: list[str] = []
    attachments: list[Attachment] = []
    parts = message.walk() if message.is_multipart() else iter([message])
    for part in parts:
        if part.is_multipart():
            continue
        kind = part.get_content_type()
        disposition = (part.get_content_disposition() or "").lower()
        filename = part.get_filename()
        try:
            decoded_payload = part.get_payload(decode=True)
            payload = decoded_payload if isinstance(decoded_payload, bytes) else b""
        except Exception as exc:
            problems.append(f"part {kind}: {type(exc).__name__}")
            continue
        if disposition == "attachment" or filename or not kind.startswith("text/"):
            if len(payload) <= MAX_ATTACHMENT_BYTES and kind not in ("message/delivery-status",):
                attachments.append(Attachment(filename or "attachment", kind, len(payload), payload))
            elif len(payload) > MAX_ATTACHMENT_BYTES:
                problems.append(f"attachment {filename or kind} over {MAX_ATTACHMENT_BYTES} bytes dropped")
            continue
        charset = part.get_content_charset() or "utf-8"
        try:
            decoded = payload.decode(charset, errors="replace")
        except LookupError:
            problems.append(f"unknown charset {charset!r}")
            decoded = payload.decode("utf-8", errors="replace")
        (htmls if kind == "text/html" else plain).append(decoded)
    if plain:
        return "\n".join(plain), attachments
    return "\n".join(html_to_text(h) for h in htmls), attachments


def html_to_text(markup: str) -> str:
    """Enough of HTML for a help-desk email: drop scripts and styles, keep line breaks."""
    markup = re.sub(r"(?is)<(script|style|head)\b.*?</\1>", " ", markup)
    markup = re.sub(r"(?i)<br\s*/?>|</p>|</div>|</li>|</tr>", "\n", markup)
    markup = re.sub(r"(?s)<!--.*?-->", " ", markup)
    markup = re.sub(r"<[^>]+>", " ", markup)
    lines = (" ".join(html.unescape(line).split()) for line in markup.splitlines())
    return "\n".join(line for line in lines if line)


def strip_quotes(text: str) -> str:
    """The new words of a reply: up to the quoted original or the signature."""
    kept: list[str] = []
    for line in text.replace("\r\n", "\n").split("\n"):
        stripped = line.strip()
        if stripped.startswith(">") or _QUOTE_HEADER.match(stripped) or _SIGNATURE.match(stripped):
            if kept:  # a quote or signature before any new words is skipped; after them, it ends the text
                break
            continue
        kept.append(line.rstrip())
    return "\n".join(kept).strip()


def auto_reply_refusal(
    mail: ReceivedMail, envelope_sender: str, our_domains: Sequence[str], our_loop_id: str
) -> str | None:
    """Why this mail must get no automatic reply (RFC 3834 and STANDARDS.md), or None."""
    message = mail.message
    if not envelope_sender or envelope_sender == "<>":
        return "empty envelope sender (a bounce or an auto-reply)"
    if (message.get("Return-Path") or "").strip() == "<>":
        return "Return-Path <>"
    for value in message.get_all("Auto-Submitted", failobj=[]):
        if str(value).strip().lower().split(";")[0] != "no":
            return f"Auto-Submitted: {value}"
    if message.get_content_type() in ("multipart/report", "message/delivery-status"):
        # Bounces (DSN), read receipts (MDN) and abuse feedback (ARF) are machine reports.
        return f"a machine report ({message.get_content_type()})"
    if (message.get("Precedence") or "").strip().lower() in ("bulk", "list", "junk"):
        return f"Precedence: {message.get('Precedence')}"
    if any(key.lower().startswith("list-") for key in message):
        return "a mailing list (List-* header)"
    suppress = {v.strip().lower() for v in str(message.get("X-Auto-Response-Suppress") or "").split(",")}
    if suppress & {"all", "oof"}:
        return "X-Auto-Response-Suppress"
    for value in message.get_all("X-Loop", failobj=[]):
        if our_loop_id.lower() in str(value).lower():
            return "X-Loop names us"
    if mail.message_id and any(
        mail.message_id.lower().rstrip(">").endswith("@" + d.lower()) for d in our_domains
    ):
        return "our own message came back"
    for value in message.get_all("Authentication-Results", failobj=[]):
        # Our MX's verdict: a reply to a forged sender would make us a backscatter source.
        if _AUTH_FAILED.search(str(value)):
            return f"sender authentication failed ({_AUTH_FAILED.search(str(value)).group(0)})"  # type: ignore[union-attr]
    local, _, domain = envelope_sender.strip("<>").lower().rpartition("@")
    if not local or not domain:
        return "malformed envelope sender"
    if _ROBOT.match(local) or _ROBOT.match(mail.sender.partition("@")[0]):
        return "a robot sender (mailer-daemon, no-reply, a list address…)"
    if not mail.sender or "unparseable" in " ".join(mail.problems):
        return "no usable From address"
    from_addresses = [a.lower() for _, a in getaddresses([str(message.get("From") or "")]) if a]
    if len(from_addresses) != 1:
        return "not exactly one From address"
    return None

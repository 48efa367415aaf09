"""Email as it really arrives: every loop-prevention rule of RFC 3834 / STANDARDS.md, MIME
read without a crash (real torture tests, bounces and a real mail corpus), the new words of a
reply found under the quote, and an automatic reply that cannot start a loop."""

from __future__ import annotations

import email
import email.policy
from pathlib import Path

import pytest

from bot.messages import Outbound
from channels.email import EmailChannel, EmailOptions
from channels.email_message import auto_reply_refusal, read_mail, strip_quotes
from channels.email_relay import FolderRelay

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
OURS = ("support.example.com",)
LOOP = "support@support.example.com"

GOOD = (
    b"From: Ana Martin <ana@client.fr>\r\n"
    b"To: support@support.example.com\r\n"
    b"Subject: =?utf-8?q?Imprimante_bloqu=C3=A9e?=\r\n"
    b"Message-ID: <abc@client.fr>\r\n"
    b"Content-Type: text/plain; charset=iso-8859-1\r\n"
    b"Content-Transfer-Encoding: quoted-printable\r\n\r\n"
    b"Bonjour, l'imprimante du 2e =E9tage n'imprime plus.\r\n\r\n"
    b"Le lun. 3 nov. 2026 a 10:00, Support <support@support.example.com> a =E9crit :\r\n"
    b"> Votre demande HD-2026-000001 est ouverte.\r\n"
)


def with_headers(*lines: bytes) -> bytes:
    return b"".join(line + b"\r\n" for line in lines) + GOOD


def test_a_plain_mail_is_read_and_may_get_an_auto_reply() -> None:
    mail = read_mail(GOOD)
    assert (mail.sender, mail.sender_name, mail.subject) == (
        "ana@client.fr",
        "Ana Martin",
        "Imprimante bloquée",
    )
    assert mail.text == "Bonjour, l'imprimante du 2e étage n'imprime plus."
    assert auto_reply_refusal(mail, "ana@client.fr", OURS, LOOP) is None


@pytest.mark.parametrize(
    ("raw", "envelope", "reason"),
    [
        (GOOD, "", "empty envelope sender"),
        (GOOD, "<>", "empty envelope sender"),
        (with_headers(b"Return-Path: <>"), "ana@client.fr", "Return-Path"),
        (with_headers(b"Auto-Submitted: auto-replied"), "ana@client.fr", "Auto-Submitted"),
        (
            with_headers(b"Auto-Submitted: no", b"Auto-Submitted: auto-generated"),
            "ana@client.fr",
            "Auto-Submitted",
        ),
        (with_headers(b"Precedence: bulk"), "ana@client.fr", "Precedence"),
        (with_headers(b"Precedence: list"), "ana@client.fr", "Precedence"),
        (with_headers(b"Precedence: junk"), "ana@client.fr", "Precedence"),
        (with_headers(b"List-Unsubscribe: <mailto:x@lists.fr>"), "ana@client.fr", "mailing list"),
        (with_headers(b"List-Id: <x.lists.fr>"), "ana@client.fr", "mailing list"),
        (with_headers(b"X-Auto-Response-Suppress: OOF, AutoReply"), "ana@client.fr", "Suppress"),
        (with_headers(b"X-Auto-Response-Suppress: All"), "ana@client.fr", "Suppress"),
        (with_headers(b"X-Loop: support@support.example.com"), "ana@client.fr", "X-Loop"),
        (GOOD.replace(b"<abc@client.fr>", b"<123.456@support.example.com>"), "ana@client.fr", "our own"),
        (GOOD, "MAILER-DAEMON@client.fr", "robot"),
        (GOOD, "postmaster@client.fr", "robot"),
        (GOOD, "no-reply@client.fr", "robot"),
        (GOOD, "noreply@client.fr", "robot"),
        (GOOD, "owner-hr@lists.fr", "robot"),
        (GOOD, "hr-request@lists.fr", "robot"),
        (GOOD, "news-bounces@lists.fr", "robot"),
        (GOOD, "listserv@lists.fr", "robot"),
        (GOOD, "majordomo@lists.fr", "robot"),
        (GOOD, "not-an-address", "malformed"),
        (
            GOOD.replace(b"From: Ana Martin <ana@client.fr>", b"From: a@x.fr, b@y.fr"),
            "a@x.fr",
            "exactly one From",
        ),
        (GOOD.replace(b"From: Ana Martin <ana@client.fr>\r\n", b""), "ana@client.fr", "From"),
    ],
)
def test_no_auto_reply_where_a_rule_forbids_it(raw: bytes, envelope: str, reason: str) -> None:
    refusal = auto_reply_refusal(read_mail(raw), envelope, OURS, LOOP)
    assert refusal is not None and reason.lower() in refusal.lower(), refusal


def test_html_only_mail_and_signatures() -> None:
    raw = (
        b"From: bob@client.com\r\nSubject: VPN\r\nContent-Type: text/html; charset=utf-8\r\n\r\n"
        b"<html><head><style>p{color:red}</style></head><body><p>The VPN drops&nbsp;every hour.</p>"
        b"<script>alert(1)</script><p>Thanks</p></body></html>"
    )
    assert read_mail(raw).text == "The VPN drops every hour.\nThanks"
    assert strip_quotes("My screen is black.\n--\nBob, IT\n+33 1 23 45 67 89") == "My screen is black."
    assert strip_quotes("Still broken.\n\nOn Mon, Nov 3, 2026 Support wrote:\n> ticket") == "Still broken."
    assert strip_quotes("> old\nnew words") == "new words"


def test_the_auto_reply_cannot_start_a_loop_nor_inject_headers(tmp_path: Path) -> None:
    raw = GOOD.replace(
        b"Subject: =?utf-8?q?Imprimante_bloqu=C3=A9e?=", b"Subject: =?utf-8?q?Help=0D=0ABcc:_evil@x.fr?="
    )
    mail = read_mail(raw)
    channel = EmailChannel(
        EmailOptions(addresses=(LOOP,), domain="support.example.com", from_name="Support\r\nBcc: x@y.fr"),
        FolderRelay(tmp_path),
    )
    context = {
        "auto_reply_to": "ana@client.fr",
        "reply_address": "ana@client.fr",
        "subject": mail.subject,
        "message_id": mail.message_id,
        "references": list(mail.references),
        "ticket": "HD-2026-000042",
    }
    reply = Outbound("email", "conv123456", "Votre demande porte le numéro HD-2026-000042.", context=context)
    wire = channel.compose(reply)
    parsed = email.message_from_bytes(wire, policy=email.policy.default)
    assert parsed["Bcc"] is None and parsed["To"] == "ana@client.fr"
    assert parsed["From"] == f'"Support Bcc: x@y.fr" <{LOOP}>'  # one quoted name, no header
    assert parsed["Subject"] == "Re: Help Bcc: evil@x.fr [HD-2026-000042]"
    assert parsed["Auto-Submitted"] == "auto-replied" and parsed["X-Loop"] == LOOP
    assert parsed["In-Reply-To"] == "<abc@client.fr>" and parsed["References"] == "<abc@client.fr>"
    assert parsed["Message-ID"] == f"<c.conv123456.{reply.id}@support.example.com>"  # threads back to us
    assert not parsed.is_multipart()  # short text, no copy of the original, no attachment
    # Our own reply sent back to us is recognised on two counts.
    echoed = read_mail(wire)
    assert auto_reply_refusal(echoed, "no-reply@support.example.com", OURS, LOOP) is not None
    assert auto_reply_refusal(echoed, "ana@client.fr", OURS, LOOP) == "Auto-Submitted: auto-replied"


@pytest.mark.skipif(not DATA.exists(), reason=f"public data absent ({DATA}): mail corpus test skipped")
def test_real_and_broken_mail_is_read_without_a_crash_and_bounces_get_no_reply() -> None:
    files = [p for p in (DATA / "mime").rglob("*") if p.is_file() and p.suffix in ("", ".eml", ".txt")]
    files = [
        p for p in files if "LICENSE" not in p.name and "SOURCE" not in p.name and "_valid" not in p.name
    ]
    files += sorted((DATA / "spamassassin").rglob("*"))[:1500]
    read = bounces = 0
    for path in files:
        if not path.is_file():
            continue
        mail = read_mail(path.read_bytes())
        read += 1
        envelope = mail.sender or ""
        if "bounce" in str(path) or "multipart_report" in str(path):
            bounces += 1
            # A bounce comes with an empty envelope sender; even one that claims a sender is refused
            # when it is a robot's.
            assert auto_reply_refusal(mail, "", OURS, LOOP) is not None
            local = envelope.partition("@")[0]
            if local.lower() in ("mailer-daemon", "postmaster"):
                assert auto_reply_refusal(mail, envelope, OURS, LOOP) is not None, path
    assert read > 1500 and bounces >= 10

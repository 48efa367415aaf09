"""The email door, inbound: an SMTP server (aiosmtpd) for the support addresses, run in the
application's own event loop.

Never an open relay: only the configured support addresses are accepted as recipients, a
few per message. A message is stored (the injected callback) before `250`; if storing
fails, the client gets `451 4.3.0` and retries later — nothing accepted is lost, no
exception text leaks. A reply to our own mail continues its conversation: the conversation
id travels in the Message-IDs Guichet gives its replies (`<c.{id}.{random}@domain>`), so
threading needs no lookup.

A reply to a mail that quotes one of the sender's ticket numbers in its subject continues
that ticket's conversation too. Either way, only when the mail's From is proved
(channels/email_auth.py: DKIM or SPF aligned with it, or the desk's MX saying so) and is that
conversation's own address: a claimed From opens a new request, flagged unverified, that
shares nothing with anyone's tickets. Outgoing mail (`send`) is built from the reply context the
inbound mail carried (recipient, subject, thread): the bot's replies are automatic replies
(RFC 3834: `Auto-Submitted: auto-replied`, empty envelope sender, never to a sender the
rules refuse), a level-2 agent's replies are ordinary mail from the support address. Both
leave through the outbox to the relay (channels/email_relay.py), retried, never lost.
"""

from __future__ import annotations

import asyncio
import email.header
import email.quoprimime
import email.utils
import hashlib
import logging
import os
import re
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiosmtpd.smtp import SMTP, Envelope, Session

from bot.errors import DeliveryError
from bot.messages import Inbound, Outbound, clean_text
from channels.base import Channel, OnMessage
from channels.email_auth import UNVERIFIED, Authenticator, MailIdentity
from channels.email_message import ReceivedMail, auto_reply_refusal, read_mail
from channels.email_relay import MailRelay

log = logging.getLogger("guichet.email")

_THREAD = re.compile(r"<c\.([A-Za-z0-9_-]{6,64})\.[A-Za-z0-9]+@")
_TICKET = re.compile(r"\b[A-Z]{2,5}-\d{4}-\d{4,8}\b")


def _keep(directory: Path, digest: str, data: bytes) -> None:
    """Write a file once, whole: named by its hash, so the same file sent twice is kept once."""
    target = directory / digest
    if target.exists():
        return
    directory.mkdir(parents=True, exist_ok=True)
    partial = directory / f".{digest}.{os.getpid()}.part"
    partial.write_bytes(data)
    os.replace(partial, target)


def _one_line(value: object) -> str:
    return " ".join(str(value or "").split())


def _encoded(text: str) -> str:
    """A header's text: as is when ASCII, else an RFC 2047 encoded-word."""
    return text if text.isascii() else email.header.Header(text, "utf-8").encode()


def _recipient(context: Any, automatic: bool) -> object:
    # "envelope_sender": what conversations stored before automatic replies could go to a proved From.
    if automatic:
        return context.get("auto_reply_to") or context.get("envelope_sender")
    return context.get("reply_address")


def _address(value: object) -> str:
    """A bare addr-spec, or "" when it holds anything that could end a header or add one."""
    text = str(value or "").strip()
    return text if text and "@" in text and not any(c in text for c in ' <>,;\r\n\t"') else ""


# (ticket number, sender address) → the conversation id of that ticket when it is the
# sender's own email conversation, else None (a guessed number opens nothing of anyone else's).
TicketThread = Callable[[str, str], Awaitable[str | None]]
# An email conversation's id → the address it belongs to, or None when there is no such conversation.
ThreadOwner = Callable[[str], Awaitable[str | None]]


@dataclass(frozen=True, slots=True)
class EmailOptions:
    addresses: tuple[str, ...]  # the support addresses this server accepts mail for
    domain: str  # our domain, for Message-IDs and loop detection
    host: str = "127.0.0.1"
    port: int = 2525
    max_bytes: int = 10 * 1024 * 1024
    max_recipients: int = 5
    timeout_seconds: float = 60.0
    # Per connection: a relay delivering a queue sends many mails in one session (Postfix has
    # no per-session cap), while other commands repeated this often are abuse.
    mails_per_connection: int = 1000
    command_call_limit: int = 50
    from_name: str = "Help desk"
    # Where attachments are kept for the ticket, by content hash (None: listed, not kept).
    attachments_dir: Path | None = None

    @property
    def loop_id(self) -> str:
        return self.addresses[0] if self.addresses else f"guichet@{self.domain}"


def thread_of(references: Sequence[str]) -> str | None:
    """The conversation a reply belongs to, from the Message-IDs it refers to."""
    for reference in reversed(references):
        if match := _THREAD.search(reference):
            return match.group(1)
    return None


class _TolerantSMTP(SMTP):
    # RFC 5321 caps a line at 1,000 octets, but real senders (and the mail corpora in
    # ../shared/data) write longer ones; refusing them would lose mail Postfix accepts. The
    # message size limit still bounds memory.
    line_length_limit = 256 * 1024


class EmailChannel(Channel):
    name = "email"

    def __init__(
        self,
        options: EmailOptions,
        relay: MailRelay,
        ticket_thread: TicketThread | None = None,
        thread_owner: ThreadOwner | None = None,
        authenticator: Authenticator | None = None,
    ) -> None:
        self.options = options
        self.relay = relay
        self.ticket_thread = ticket_thread
        self.thread_owner = thread_owner
        self.authenticator = authenticator
        self._accepted = {a.lower() for a in options.addresses}
        self._on_message: OnMessage | None = None
        self._server: asyncio.Server | None = None

    async def start(self, on_message: OnMessage) -> None:
        self._on_message = on_message
        options = self.options
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            lambda: _TolerantSMTP(
                self,
                data_size_limit=options.max_bytes,
                enable_SMTPUTF8=True,
                hostname=options.domain,
                ident="Guichet",
                timeout=options.timeout_seconds,
                command_call_limit={
                    "MAIL": options.mails_per_connection,
                    "RCPT": options.mails_per_connection * options.max_recipients,
                    "DATA": options.mails_per_connection,
                    "RSET": options.mails_per_connection,
                    "*": options.command_call_limit,
                },
                loop=loop,
            ),
            options.host,
            options.port,
        )

    @property
    def port(self) -> int:
        assert self._server is not None and self._server.sockets
        return int(self._server.sockets[0].getsockname()[1])

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
        await self.relay.close()

    async def send(self, message: Outbound, seq: int | None) -> None:
        context = message.context
        automatic = message.sender != "agent"
        recipient = str((_recipient(context, automatic)) or "")
        if not recipient:
            # Only mail the rules refuse ever reached this conversation (bot/policy.py gives
            # it no reply); the message stays in the transcript level 2 reads.
            raise DeliveryError(self.name, "this conversation has no address to write to", permanent=True)
        if _address(recipient) != recipient:
            raise DeliveryError(self.name, f"not a usable address: {recipient!r}", permanent=True)
        mail = self.compose(message)
        # Automatic replies go with an empty envelope sender (RFC 3834 §3.3): a bounce of a
        # bounce is impossible. An agent's reply may bounce back to the support address.
        await self.relay.send(mail, "" if automatic else self.options.loop_id, recipient)

    def compose(self, message: Outbound) -> bytes:
        """The mail for one reply, as the bytes the relay gets.

        Written by hand rather than through email.policy.default, which cost more CPU than
        everything else a reply takes: every header value is collapsed to one line (no CR/LF
        injection from a subject, a name or a reference), non-ASCII text is RFC 2047-encoded,
        the body is quoted-printable UTF-8."""
        context = message.context
        options = self.options
        automatic = message.sender != "agent"
        subject = _one_line(context.get("subject"))
        if not subject.lower().startswith(("re:", "re :")):
            subject = f"Re: {subject}" if subject else "Re:"
        ticket = _one_line(context.get("ticket"))
        if ticket and ticket not in subject:
            subject = f"{subject} [{ticket}]"
        name = message.agent_name if message.sender == "agent" and message.agent_name else options.from_name
        to = _address(_recipient(context, automatic))
        headers = [
            ("Subject", _encoded(subject[:250])),
            ("From", email.utils.formataddr((_one_line(name)[:100], options.loop_id), charset="utf-8")),
            ("To", to),
            ("Date", email.utils.formatdate(localtime=False)),
            # Our Message-IDs carry the conversation (threading without a lookup) and the
            # reply's id, so a retried delivery is the same message to the receiver.
            ("Message-ID", f"<c.{message.conversation_id}.{message.id}@{options.domain}>"),
        ]
        original = _one_line(context.get("message_id"))
        if original:
            references = [_one_line(r) for r in context.get("references", ())][-10:]
            headers += [("In-Reply-To", original), ("References", " ".join([*references, original]))]
        if automatic:
            headers += [
                ("Auto-Submitted", "auto-replied"),
                ("Precedence", "auto_reply"),
                ("X-Auto-Response-Suppress", "All"),
            ]
        headers.append(("X-Loop", options.loop_id))
        language = _one_line(message.language or context.get("language"))
        if language:
            headers.append(("Content-Language", language))
        headers += [
            ("MIME-Version", "1.0"),
            ("Content-Type", 'text/plain; charset="utf-8"'),
            ("Content-Transfer-Encoding", "quoted-printable"),
        ]
        # quoprimime works on octets held in a str: the UTF-8 bytes, one character each.
        octets = (message.as_text() + "\n").encode("utf-8").decode("latin-1")
        body = email.quoprimime.body_encode(octets, maxlinelen=76, eol="\r\n")
        head = "".join(f"{name}: {value}\r\n" for name, value in headers)
        return (head + "\r\n" + body).encode("ascii")

    # aiosmtpd's handler hooks --------------------------------------------------------------
    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, rcpt_options: list[str]
    ) -> str:
        if address.lower() not in self._accepted:
            return "550 5.7.1 Relaying denied: not a support address of this server"
        if len(envelope.rcpt_tos) >= self.options.max_recipients:
            return "452 4.5.3 Too many recipients"
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        raw = envelope.original_content or envelope.content or b""
        if isinstance(raw, str):
            raw = raw.encode("utf-8", errors="replace")
        try:
            peer = session.peer[0] if isinstance(session.peer, tuple) and session.peer else ""
            inbound = await self.to_inbound(raw, envelope.mail_from or "", str(peer), session.host_name or "")
            assert self._on_message is not None, "start() was not called"
            await self._on_message(inbound)
        except Exception:
            log.exception("could not store an email; the client is asked to retry")
            return "451 4.3.0 Temporary failure, please try again later"
        return f"250 2.0.0 Accepted as {inbound.platform_message_id[:64]}"

    async def identify(
        self, raw: bytes, mail: ReceivedMail, envelope_sender: str, peer: str, helo: str
    ) -> MailIdentity:
        if self.authenticator is None or not mail.sender:
            return UNVERIFIED
        try:
            return await asyncio.to_thread(
                self.authenticator.check, raw, mail.message, mail.sender, envelope_sender, peer, helo
            )
        except Exception as exc:  # a check that breaks proves nothing; the mail is still read
            log.warning("could not check who sent a mail: %s", type(exc).__name__)
            return MailIdentity(False, f"check failed ({type(exc).__name__})")

    async def thread(self, mail: ReceivedMail, identity: MailIdentity) -> str | None:
        """The existing conversation this mail continues: only its own proved address may."""
        if not identity.verified:
            return None
        candidate = thread_of([*mail.references, *([mail.in_reply_to] if mail.in_reply_to else [])])
        if candidate is not None and self.thread_owner is not None:
            owner = await self.thread_owner(candidate)
            if owner is not None and owner.lower() == mail.sender:
                return candidate
        if self.ticket_thread is not None:
            # "Re: [HD-2026-000042]" from the ticket's own requester continues that ticket.
            for number in _TICKET.findall(mail.subject):
                if conversation := await self.ticket_thread(number, mail.sender):
                    return conversation
        return None

    async def to_inbound(self, raw: bytes, envelope_sender: str, peer: str = "", helo: str = "") -> Inbound:
        mail = read_mail(raw)
        digest = hashlib.sha256(raw).hexdigest()
        # A retry of the same message is the same platform message: deduplicated by the store.
        platform_id = mail.message_id or f"<sha256.{digest}>"
        identity = await self.identify(raw, mail, envelope_sender, peer, helo)
        conversation = await self.thread(mail, identity)
        if conversation is None:
            conversation = hashlib.sha256(platform_id.encode()).hexdigest()[:24]
        text = clean_text(mail.text) or clean_text(mail.subject) or "(empty message)"
        refusal = auto_reply_refusal(mail, envelope_sender, (self.options.domain,), self.options.loop_id)
        sender = envelope_sender.strip("<>")
        attachments = []
        for attachment in mail.attachments:  # each already capped in size by read_mail
            digest = hashlib.sha256(attachment.data).hexdigest()
            if self.options.attachments_dir is not None:
                await asyncio.to_thread(_keep, self.options.attachments_dir, digest, attachment.data)
            attachments.append(
                {
                    "name": attachment.filename,
                    "type": attachment.content_type,
                    "size": attachment.size,
                    "ref": f"sha256:{digest}",
                }
            )
        details: dict[str, Any] = {
            "subject": mail.subject,
            "message_id": mail.message_id,
            "envelope_sender": envelope_sender,
            "auto_reply_refusal": refusal,
            "attachments": attachments,
            # The claimed From, and whether it was proved: level 2 sees an unverified request flagged.
            "from": mail.sender,
            "verified": identity.verified,
            "authentication": identity.how,
        }
        # How replies reach this person (bot/manager.py copies it onto every reply, also
        # level 2's later ones): an agent's replies to the From address; automatic replies to
        # the envelope sender (RFC 3834) when the From is not proved (this mail's own new
        # request, nothing else), to the proved From when it is. A mail the rules refuse (a
        # bounce, an out-of-office) leaves the conversation's addressing as it was: level 2
        # must not end up writing to MAILER-DAEMON.
        reply_context: dict[str, Any] = {}
        if refusal is None:
            reply_context = {
                "auto_reply_to": mail.sender if identity.verified else sender,
                "reply_address": mail.sender or sender,
                "subject": mail.subject,
                "message_id": mail.message_id or "",
                "references": list(mail.references[-10:]),
            }
        return Inbound(
            channel=self.name,
            conversation_id=conversation,
            # A proved From is the person's identity across channels and tickets; a claimed one
            # is nobody's: this conversation alone (its tickets are listed to nobody else).
            user_id=mail.sender if identity.verified else f"unverified:{conversation}",
            text=text,
            platform_message_id=platform_id,
            user_name=mail.sender_name or None,
            user_email=mail.sender if identity.verified else None,
            raw={"email": details, "reply_context": reply_context, "attachments": details["attachments"]},
        )

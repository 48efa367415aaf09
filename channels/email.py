"""The email door, inbound: an SMTP server (aiosmtpd) for the support addresses, run in the
application's own event loop.

Never an open relay: only the configured support addresses are accepted as recipients, a
few per message. A message is stored (the injected callback) before `250`; if storing
fails, the client gets `451 4.3.0` and retries later — nothing accepted is lost, no
exception text leaks. A reply to our own mail continues its conversation: the conversation
id travels in the Message-IDs Guichet gives its replies (`<c.{id}.{random}@domain>`), so
threading needs no lookup.

(Outgoing mail — the automatic reply through the outbox to an SMTP relay — is the next step
of issue 5; until then this channel is not started by `guichet run`.)
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from aiosmtpd.smtp import SMTP, Envelope, Session

from bot.errors import DeliveryError
from bot.messages import Inbound, Outbound, clean_text
from channels.base import Channel, OnMessage
from channels.email_message import auto_reply_refusal, read_mail

log = logging.getLogger("guichet.email")

_THREAD = re.compile(r"<c\.([A-Za-z0-9_-]{6,64})\.[A-Za-z0-9]+@")


@dataclass(frozen=True, slots=True)
class EmailOptions:
    addresses: tuple[str, ...]  # the support addresses this server accepts mail for
    domain: str  # our domain, for Message-IDs and loop detection
    host: str = "127.0.0.1"
    port: int = 2525
    max_bytes: int = 10 * 1024 * 1024
    max_recipients: int = 5
    timeout_seconds: float = 60.0
    command_call_limit: int = 50

    @property
    def loop_id(self) -> str:
        return self.addresses[0] if self.addresses else f"guichet@{self.domain}"


def thread_of(references: Sequence[str]) -> str | None:
    """The conversation a reply belongs to, from the Message-IDs it refers to."""
    for reference in reversed(references):
        if match := _THREAD.search(reference):
            return match.group(1)
    return None


class EmailChannel(Channel):
    name = "email"

    def __init__(self, options: EmailOptions) -> None:
        self.options = options
        self._accepted = {a.lower() for a in options.addresses}
        self._on_message: OnMessage | None = None
        self._server: asyncio.Server | None = None

    async def start(self, on_message: OnMessage) -> None:
        self._on_message = on_message
        options = self.options
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            lambda: SMTP(
                self,
                data_size_limit=options.max_bytes,
                enable_SMTPUTF8=True,
                hostname=options.domain,
                ident="Guichet",
                timeout=options.timeout_seconds,
                command_call_limit=options.command_call_limit,
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

    async def send(self, message: Outbound, seq: int | None) -> None:
        raise DeliveryError(self.name, "outgoing mail is not available yet", permanent=False)

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
            inbound = self.to_inbound(raw, envelope.mail_from or "")
            assert self._on_message is not None, "start() was not called"
            await self._on_message(inbound)
        except Exception:
            log.exception("could not store an email; the client is asked to retry")
            return "451 4.3.0 Temporary failure, please try again later"
        return f"250 2.0.0 Accepted as {inbound.platform_message_id[:64]}"

    def to_inbound(self, raw: bytes, envelope_sender: str) -> Inbound:
        mail = read_mail(raw)
        digest = hashlib.sha256(raw).hexdigest()
        # A retry of the same message is the same platform message: deduplicated by the store.
        platform_id = mail.message_id or f"<sha256.{digest}>"
        conversation = thread_of([*mail.references, *([mail.in_reply_to] if mail.in_reply_to else [])])
        if conversation is None:
            conversation = hashlib.sha256(platform_id.encode()).hexdigest()[:24]
        text = clean_text(mail.text) or clean_text(mail.subject) or "(empty message)"
        refusal = auto_reply_refusal(mail, envelope_sender, (self.options.domain,), self.options.loop_id)
        details: dict[str, Any] = {
            "subject": mail.subject,
            "message_id": mail.message_id,
            "envelope_sender": envelope_sender,
            "auto_reply_refusal": refusal,
            "attachments": [
                {"filename": a.filename, "type": a.content_type, "size": a.size} for a in mail.attachments
            ],
        }
        return Inbound(
            channel=self.name,
            conversation_id=conversation,
            user_id=mail.sender or envelope_sender.lower(),
            text=text,
            platform_message_id=platform_id,
            user_name=mail.sender_name or None,
            # The sender's address is the person's identity (the rule); a forged
            # sender gets no automatic reply (auto_reply_refusal) but is still read.
            user_email=mail.sender or None,
            raw={"email": details},
        )

"""The peer of bench/channels.py's SMTP figure: the least an auto-responder can do.

An aiosmtpd server that accepts each mail and answers it through an SMTP relay with a fixed
text: no understanding, no store, no ticket, no outbox. Guichet's figure is printed as a
share of this one, measured in the same run with the same load generator and the same relay.

    python bench/smtp_peer.py PORT RELAY_PORT
"""

from __future__ import annotations

import asyncio
import email
import email.policy
import smtplib
import sys
import threading
from email.message import EmailMessage

from aiosmtpd.smtp import SMTP, Envelope, Session


class Responder:
    def __init__(self, relay_port: int) -> None:
        self.relay = smtplib.SMTP("127.0.0.1", relay_port)
        self.lock = threading.Lock()  # one relay connection, as Guichet keeps one

    def _reply(self, raw: bytes, sender: str) -> None:
        original = email.message_from_bytes(raw, policy=email.policy.default)
        reply = EmailMessage()
        reply["From"] = "support@example.com"
        reply["To"] = sender
        reply["Subject"] = f"Re: {original['Subject']}"
        reply["In-Reply-To"] = str(original["Message-ID"])
        reply["Auto-Submitted"] = "auto-replied"
        reply.set_content("We have received your message.")
        with self.lock:
            self.relay.send_message(reply, from_addr="", to_addrs=[sender])

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        raw = envelope.original_content or b""
        assert isinstance(raw, bytes)
        await asyncio.to_thread(self._reply, raw, envelope.mail_from or "")
        return "250 OK"


async def main(port: int, relay_port: int) -> None:
    loop = asyncio.get_running_loop()
    responder = Responder(relay_port)
    server = await loop.create_server(lambda: SMTP(responder, loop=loop), "127.0.0.1", port)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]), int(sys.argv[2])))

"""A real SMTP server (aiosmtpd) standing for the company's relay: it records what Guichet sends.

It can demand STARTTLS and AUTH like a real submission relay, with a self-signed certificate
made by openssl for the test, and it can refuse the next messages with a 4xx or 5xx code.
"""

from __future__ import annotations

import asyncio
import email
import email.policy
import ssl
import subprocess
from dataclasses import dataclass
from email.message import EmailMessage
from pathlib import Path
from typing import Any

from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session


@dataclass
class Sent:
    envelope_from: str
    recipients: list[str]
    message: EmailMessage
    raw: bytes


def self_signed(directory: Path) -> tuple[Path, Path]:
    directory.mkdir(parents=True, exist_ok=True)
    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=localhost",
         "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True,
    )  # fmt: skip
    return cert, key


class MailSink:
    def __init__(self, *, tls_dir: Path | None = None, login: tuple[str, str] | None = None) -> None:
        self.sent: list[Sent] = []
        self.refuse: list[str] = []  # answers for the next DATA commands, e.g. "451 4.3.0 busy"
        self.login = login
        self.tls_context: ssl.SSLContext | None = None
        self.client_context: ssl.SSLContext | None = None
        if tls_dir is not None:
            cert, key = self_signed(tls_dir)
            self.tls_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            self.tls_context.load_cert_chain(cert, key)
            self.client_context = ssl.create_default_context(cafile=str(cert))
        self._server: asyncio.Server | None = None
        self._arrived = asyncio.Condition()

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            lambda: SMTP(
                self,
                hostname="localhost",
                tls_context=self.tls_context,
                require_starttls=self.tls_context is not None,
                authenticator=self._authenticate if self.login else None,
                auth_required=self.login is not None,
                auth_require_tls=self.tls_context is not None,
                loop=loop,
            ),
            "127.0.0.1",
            0,
        )

    @property
    def port(self) -> int:
        assert self._server is not None
        return int(self._server.sockets[0].getsockname()[1])

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    def _authenticate(
        self, server: SMTP, session: Session, envelope: Envelope, mechanism: str, data: Any
    ) -> AuthResult:
        ok = isinstance(data, LoginPassword) and (data.login.decode(), data.password.decode()) == self.login
        return AuthResult(success=ok)

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        if self.refuse:
            return self.refuse.pop(0)
        raw = envelope.original_content or b""
        assert isinstance(raw, bytes)
        message = email.message_from_bytes(raw, policy=email.policy.default)
        assert isinstance(message, EmailMessage)
        self.sent.append(Sent(envelope.mail_from or "", list(envelope.rcpt_tos), message, raw))
        async with self._arrived:
            self._arrived.notify_all()
        return "250 2.0.0 OK"

    async def arrived(self, count: int = 1, seconds: float = 15.0) -> list[Sent]:
        """Wait until `count` messages in all have been relayed through this sink."""
        async with self._arrived:
            await asyncio.wait_for(self._arrived.wait_for(lambda: len(self.sent) >= count), seconds)
        return self.sent

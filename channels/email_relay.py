"""Outgoing mail: through an SMTP relay (STARTTLS or TLS, AUTH), or into a folder.

The outbox calls `send` and retries on a DeliveryError that is not permanent, so a relay
that is down loses nothing. The folder relay is the embedded default: with no relay
configured, every reply is written as an .eml file under <data>/sent-mail, where a newcomer
can read it, and nothing leaves the machine.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import smtplib
import ssl
import threading
import time
from pathlib import Path
from typing import Protocol

from bot.errors import DeliveryError

log = logging.getLogger("guichet.email")


class MailRelay(Protocol):
    async def send(self, message: bytes, envelope_from: str, recipient: str) -> None: ...

    async def close(self) -> None: ...


class FolderRelay:
    """Each message as <dir>/<time>-<n>.eml, written whole or not at all."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._count = 0

    async def send(self, message: bytes, envelope_from: str, recipient: str) -> None:
        self._count += 1
        data = f"X-Envelope-From: <{envelope_from}>\r\nX-Envelope-To: <{recipient}>\r\n".encode() + message
        await asyncio.to_thread(
            self._write, f"{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}-{self._count}", data
        )

    def _write(self, name: str, data: bytes) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        target = self.directory / f"{name}.eml"
        partial = target.with_suffix(".part")
        partial.write_bytes(data)
        os.replace(partial, target)

    async def close(self) -> None:
        return None


class SmtpRelay:
    """One connection to the relay, kept open between messages and reopened when it drops.

    smtplib runs in a worker thread, one message at a time: a relay on the LAN takes a few
    milliseconds per message, which is far beyond what an auto-reply flow needs."""

    def __init__(
        self,
        host: str,
        port: int,
        *,
        security: str = "starttls",
        username: str | None = None,
        password: str | None = None,
        timeout: float = 30.0,
        local_hostname: str | None = None,
        tls_context: ssl.SSLContext | None = None,
    ) -> None:
        self.host, self.port, self.security = host, port, security
        self.username, self.password, self.timeout = username, password, timeout
        self.local_hostname = local_hostname
        self.tls_context = tls_context or ssl.create_default_context()
        self._client: smtplib.SMTP | None = None
        self._lock = threading.Lock()

    async def send(self, message: bytes, envelope_from: str, recipient: str) -> None:
        await asyncio.to_thread(self._send, message, envelope_from, recipient)

    def _connect(self) -> smtplib.SMTP:
        client: smtplib.SMTP
        if self.security == "tls":
            client = smtplib.SMTP_SSL(
                self.host,
                self.port,
                timeout=self.timeout,
                context=self.tls_context,
                local_hostname=self.local_hostname,
            )
        else:
            client = smtplib.SMTP(
                self.host, self.port, timeout=self.timeout, local_hostname=self.local_hostname
            )
            client.ehlo()
            if self.security == "starttls":
                client.starttls(context=self.tls_context)
                client.ehlo()
        if self.username:
            client.login(self.username, self.password or "")
        return client

    def _send(self, message: bytes, envelope_from: str, recipient: str) -> None:
        with self._lock:
            for attempt in (1, 2):
                try:
                    if self._client is None:
                        self._client = self._connect()
                    refused = self._client.sendmail(envelope_from, [recipient], message)
                except smtplib.SMTPServerDisconnected as exc:
                    self._drop()
                    if attempt == 2:  # a kept connection may have timed out: one fresh try
                        raise DeliveryError("email", f"the relay hung up: {exc}", permanent=False) from exc
                    continue
                except smtplib.SMTPRecipientsRefused as exc:
                    code, text = next(iter(exc.recipients.values()))
                    raise DeliveryError(
                        "email", f"recipient refused: {code} {text!r}", permanent=code >= 500
                    ) from exc
                except smtplib.SMTPAuthenticationError as exc:
                    self._drop()
                    # Wrong credentials are fixed by a person; the message waits and is retried.
                    raise DeliveryError(
                        "email", f"the relay refused our login: {exc.smtp_code}", permanent=False
                    ) from exc
                except smtplib.SMTPResponseException as exc:
                    self._drop()
                    raise DeliveryError(
                        "email",
                        f"the relay answered {exc.smtp_code} {exc.smtp_error!r}",
                        permanent=exc.smtp_code >= 500,
                    ) from exc
                except (OSError, smtplib.SMTPException) as exc:
                    self._drop()
                    raise DeliveryError("email", f"cannot reach the relay: {exc}", permanent=False) from exc
                if refused:
                    raise DeliveryError("email", f"recipient refused: {refused}", permanent=True)
                return

    def _drop(self) -> None:
        if self._client is not None:
            with contextlib.suppress(OSError):
                self._client.close()
            self._client = None

    async def close(self) -> None:
        def quit_() -> None:
            with self._lock:
                if self._client is not None:
                    with contextlib.suppress(OSError, smtplib.SMTPException):
                        self._client.quit()
                    self._client = None

        await asyncio.to_thread(quit_)

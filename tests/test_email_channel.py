"""The SMTP server of the email door, spoken to by real clients (smtplib and swaks): mail for a
support address is stored before `250`, everything else is refused the way SMTP expects, a
storage failure is a `451` the client retries, and a reply to our mail finds its conversation
when its From is proved (here by the desk's MX, `mx.test`), never when it is only claimed."""

from __future__ import annotations

import asyncio
import shutil
import smtplib
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from bot.messages import AcceptResult, Inbound
from bot.store.embedded import EmbeddedStore
from channels.email import EmailChannel, EmailOptions
from channels.email_auth import Authenticator, AuthOptions
from channels.email_relay import FolderRelay
from tests.test_email_message import GOOD

SUPPORT = "support@support.example.com"
# What the desk's MX adds above a mail whose From it proved (RFC 8601).
PROVED = (
    b"Authentication-Results: mx.test; dkim=pass header.d=client.fr; dmarc=pass header.from=client.fr\r\n"
)


async def owner(conversation: str) -> str | None:
    return "ana@client.fr" if conversation == "conv12345" else None


class Server:
    def __init__(self, channel: EmailChannel, store: EmbeddedStore) -> None:
        self.channel, self.store = channel, store
        self.fail = False
        self.received: list[Inbound] = []

    async def on_message(self, inbound: Inbound) -> AcceptResult:
        if self.fail:
            raise OSError("disk full")
        result = await self.store.accept(inbound)
        if result.accepted:
            self.received.append(inbound)
        return result


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[Server]:
    store = EmbeddedStore(tmp_path / "store")
    await store.open()
    channel = EmailChannel(
        EmailOptions(addresses=(SUPPORT,), domain="support.example.com", port=0, max_bytes=100_000),
        FolderRelay(tmp_path / "sent"),
        thread_owner=owner,
        authenticator=Authenticator(AuthOptions(trusted_authserv_ids=("mx.test",), dkim=False)),
    )
    instance = Server(channel, store)
    await channel.start(instance.on_message)
    try:
        yield instance
    finally:
        await channel.stop()
        await store.close()


def send(port: int, raw: bytes, to: list[str], sender: str = "ana@client.fr") -> dict[str, tuple[int, bytes]]:
    with smtplib.SMTP("127.0.0.1", port, timeout=10) as client:
        return client.sendmail(sender, to, raw)


async def test_mail_for_a_support_address_is_stored_once_before_250(server: Server) -> None:
    refused = await asyncio.to_thread(send, server.channel.port, GOOD, [SUPPORT])
    assert refused == {}
    (inbound,) = server.received
    # Claimed, not proved: read and kept, but nobody's identity.
    assert inbound.channel == "email" and inbound.user_email is None
    assert inbound.raw["email"]["from"] == "ana@client.fr" and inbound.raw["email"]["verified"] is False
    assert inbound.text == "Bonjour, l'imprimante du 2e étage n'imprime plus."
    assert inbound.raw["email"]["subject"] == "Imprimante bloquée"
    assert inbound.raw["email"]["auto_reply_refusal"] is None
    assert [m.platform_message_id for m in await server.store.pending(inbound.conversation_key)] == [
        "<abc@client.fr>"
    ]
    # The client sends it again (it lost our 250): accepted, but kept once.
    await asyncio.to_thread(send, server.channel.port, GOOD, [SUPPORT])
    assert len(server.received) == 1 and len(await server.store.pending(inbound.conversation_key)) == 1
    # The same mail proved by the MX: Ana herself.
    proved = PROVED + GOOD.replace(b"<abc@client.fr>", b"<abc2@client.fr>")
    await asyncio.to_thread(send, server.channel.port, proved, [SUPPORT])
    assert server.received[-1].user_email == "ana@client.fr" and server.received[-1].raw["email"]["verified"]
    assert server.received[-1].raw["email"]["authentication"] == "dmarc=pass (mx.test)"


async def test_never_an_open_relay_and_limits_hold(server: Server) -> None:
    port = server.channel.port
    with pytest.raises(smtplib.SMTPRecipientsRefused) as relay:
        await asyncio.to_thread(send, port, GOOD, ["someone@elsewhere.org"])
    assert relay.value.recipients["someone@elsewhere.org"][0] == 550
    partly = await asyncio.to_thread(send, port, GOOD, [SUPPORT, "x@elsewhere.org"])
    assert partly == {
        "x@elsewhere.org": (550, b"5.7.1 Relaying denied: not a support address of this server")
    }
    # Over the size limit: refused as soon as the client announces the size (SMTP SIZE).
    with pytest.raises(smtplib.SMTPSenderRefused) as too_big:
        await asyncio.to_thread(send, port, GOOD + b"x" * 200_000, [SUPPORT])
    assert too_big.value.smtp_code == 552
    assert len(server.received) == 1  # only the mail addressed to us, once


async def test_a_storage_failure_is_a_451_and_nothing_is_half_done(server: Server) -> None:
    server.fail = True
    with pytest.raises(smtplib.SMTPDataError) as failed:
        await asyncio.to_thread(send, server.channel.port, GOOD, [SUPPORT])
    assert failed.value.smtp_code == 451 and b"disk" not in failed.value.smtp_error
    server.fail = False
    await asyncio.to_thread(send, server.channel.port, GOOD, [SUPPORT])  # the client's retry
    assert len(server.received) == 1


async def test_a_reply_to_our_mail_continues_its_conversation_and_bounces_are_marked(server: Server) -> None:
    reply = GOOD.replace(
        b"Message-ID: <abc@client.fr>",
        b"Message-ID: <def@client.fr>\r\nIn-Reply-To: <c.conv12345.9f3a@support.example.com>",
    )
    await asyncio.to_thread(send, server.channel.port, PROVED + reply, [SUPPORT])
    assert server.received[-1].conversation_id == "conv12345"
    # The same reply with a claimed From only: a new conversation of its own.
    claimed = reply.replace(b"<def@client.fr>", b"<def2@client.fr>")
    await asyncio.to_thread(send, server.channel.port, claimed, [SUPPORT])
    assert server.received[-1].conversation_id != "conv12345"
    # A header naming another server than our MX proves nothing.
    other = PROVED.replace(b"mx.test", b"mx.evil.example") + reply.replace(b"<def@", b"<def3@")
    await asyncio.to_thread(send, server.channel.port, other, [SUPPORT])
    assert server.received[-1].conversation_id != "conv12345" and server.received[-1].user_email is None
    bounce = GOOD.replace(
        b"Message-ID: <abc@client.fr>", b"Message-ID: <b1@client.fr>\r\nAuto-Submitted: auto-replied"
    )
    await asyncio.to_thread(send, server.channel.port, bounce, [SUPPORT], "")
    assert (
        server.received[-1].raw["email"]["auto_reply_refusal"]
        == "empty envelope sender (a bounce or an auto-reply)"
    )


async def test_swaks_delivers_a_plain_message(server: Server) -> None:
    swaks = shutil.which("swaks")
    if swaks is None:
        pytest.fail("swaks is not installed (apt-get install swaks): the email tests need a real SMTP client")
    result = await asyncio.to_thread(
        subprocess.run,
        [swaks, "--server", f"127.0.0.1:{server.channel.port}", "--to", SUPPORT, "--from", "bob@client.com",
         "--header", "Subject: VPN en panne", "--body", "Le VPN ne se connecte plus depuis ce matin."],
        capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    assert "250 2.0.0 Accepted" in result.stdout
    assert server.received[-1].text == "Le VPN ne se connecte plus depuis ce matin."
    assert server.received[-1].raw["email"]["from"] == "bob@client.com"

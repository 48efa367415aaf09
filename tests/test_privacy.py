"""A person's data on request: `guichet export` gives everything held about them, `guichet
forget` erases it everywhere — conversations, tickets' personal fields, attachments, sent mail,
pending deliveries — and afterwards not one byte of their address or words is left in the data
directory, while everyone else's conversations and the desk's figures stay."""

from __future__ import annotations

import asyncio
import json
import os
import smtplib
import subprocess
import sys
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import aiohttp

from bot import privacy
from bot.app import Guichet
from tests.conftest import SAMPLE_CONFIG
from tests.processes import ROOT

WORDS = "Le lecteur de badge zorglub-42 ne reconnait plus ma carte"


def _send(port: int, raw: bytes) -> None:
    with smtplib.SMTP("127.0.0.1", port, timeout=10) as client:
        client.sendmail("ana@client.fr", ["support@example.com"], raw)


async def cli(guichet: Guichet, *args: str) -> subprocess.CompletedProcess[str]:
    """The command as an operator types it, beside the running process (its store is held)."""
    return await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "bot.cli", *args, "--config", str(SAMPLE_CONFIG)],
        capture_output=True, text=True, timeout=120, cwd=ROOT,
        env={**os.environ, "GUICHET_DATA_DIR": guichet.settings.store.path},
    )  # fmt: skip


def everything_under(directory: Path) -> bytes:
    return b"".join(p.read_bytes() for p in directory.rglob("*") if p.is_file())


async def test_export_then_forget_leaves_nothing_of_the_person(guichet: Guichet) -> None:
    # Ana writes by email, with a photo; Bob chats on the REST channel about the same thing.
    mail = EmailMessage()
    mail["From"], mail["To"], mail["Subject"] = "Ana Martin <ana@client.fr>", "support@example.com", "Badge"
    mail["Message-ID"] = "<forget1@client.fr>"
    mail.set_content(WORDS)
    mail.add_attachment(
        b"\x89PNG-ana-badge-photo" * 50, maintype="image", subtype="png", filename="badge.png"
    )
    channel: Any = guichet.channels["email"]
    await asyncio.to_thread(_send, channel.port, mail.as_bytes())
    async with aiohttp.ClientSession() as http:
        payload = {"sender": "bob", "message": "mon badge ne marche plus"}
        async with http.post(f"{guichet.url}/webhooks/rest/webhook", json=payload) as answer:
            assert answer.status == 200
    for _ in range(100):
        await guichet.manager.idle()
        # Her address is only claimed (no DKIM here): the ticket is found by its contact address.
        tickets = (await privacy.find(guichet.store, "ana@client.fr")).tickets
        if tickets:
            break
        await asyncio.sleep(0.05)
    (ticket,) = tickets
    data = Path(guichet.settings.store.path)
    assert list((data / "attachments").iterdir()) and list((data / "sent-mail").glob("*.eml"))

    # Export: the ticket and the conversation, in JSON a person can read.
    exported = await cli(guichet, "export", "ana@client.fr")
    assert exported.returncode == 0, exported.stderr
    document = json.loads(exported.stdout)
    assert [t["number"] for t in document["tickets"]] == [ticket.number]
    assert any(WORDS in e["text"] for c in document["conversations"] for e in c["transcript"])

    # Forget, as the operator types it.
    forgotten = await cli(guichet, "forget", "Ana@Client.fr", "--yes")
    assert forgotten.returncode == 0, forgotten.stderr
    assert "tickets anonymised           1" in forgotten.stdout
    assert "attachments deleted          1" in forgotten.stdout
    assert "sent mails deleted           1" in forgotten.stdout

    # Not one byte of her address, her name or her words anywhere in the data directory…
    left = everything_under(data)
    for trace in (b"ana@client.fr", b"Ana Martin", b"zorglub-42", b"ana-badge-photo"):
        assert trace not in left, trace
    # …while the ticket still counts for the desk, and Bob's conversation is untouched.
    kept = await guichet.store.ticket(ticket.number)
    assert kept is not None and kept.category == ticket.category and kept.priority == ticket.priority
    assert kept.requester.email is None and "ana" not in kept.requester.id
    assert next(e.text for e in await guichet.store.transcript("rest:bob")) == "mon badge ne marche plus"
    again = json.loads((await cli(guichet, "export", "ana@client.fr")).stdout)
    assert again["tickets"] == [] and again["conversations"] == []


async def test_retention_periods_delete_and_anonymise_what_is_too_old(guichet: Guichet) -> None:
    from datetime import timedelta

    from bot import privacy
    from bot.messages import utcnow
    from triage.tickets import Requester, Ticket

    async with aiohttp.ClientSession() as http:
        payload = {"sender": "zoe", "message": "bonjour"}
        async with http.post(f"{guichet.url}/webhooks/rest/webhook", json=payload) as answer:
            assert answer.status == 200
    now = utcnow()
    who = Requester("zoe@client.fr", "rest", "rest:zoe", "Zoé", "zoe@client.fr")
    closed = Ticket("HD-2026-000901", who, "closed", now, "hardware", "P3", "écran cassé", updated_at=now)
    active = Ticket("HD-2026-000902", who, "open", now, "hardware", "P3", "clavier collant")
    await guichet.store.put_tickets([closed, active])
    files = guichet.attachments_dir
    files.mkdir(parents=True, exist_ok=True)
    (files / ("a" * 64)).write_bytes(b"old photo")

    # A year and a month later, with the sample settings (365 / 730 / 180 days):
    later = await privacy.expire(guichet.store, guichet.settings.privacy, files, now + timedelta(days=400))
    assert later.conversations == 1 and later.transcript_lines == 2  # zoe's "bonjour" and its answer
    assert later.tickets == 0 and later.attachments == 1  # the ticket is not two years old yet
    assert await guichet.store.transcript("rest:zoe") == []
    much_later = await privacy.expire(
        guichet.store, guichet.settings.privacy, files, now + timedelta(days=800)
    )
    assert much_later.tickets == 1
    gone = await guichet.store.ticket("HD-2026-000901")
    kept = await guichet.store.ticket("HD-2026-000902")
    assert gone is not None and gone.requester.email is None and gone.description == privacy.ERASED
    assert kept is not None and kept.requester.email == "zoe@client.fr"  # still open: kept whole

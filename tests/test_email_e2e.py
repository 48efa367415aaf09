"""The email door end to end: real SMTP clients (smtplib, swaks) write to Guichet's SMTP
server, Guichet answers through a real SMTP relay (tests/mail_sink.py, with STARTTLS and AUTH
where a test asks for them), and a real level-2 receiver gets the tickets.

One whole conversation (a question the knowledge base answers, a ticket, the agent's reply by
mail, the person's follow-up in the thread), then every loop-prevention rule of STANDARDS.md
on a running Guichet: each one leaves the relay silent."""

from __future__ import annotations

import asyncio
import re
import shutil
import smtplib
import subprocess
from collections.abc import AsyncIterator, Iterator
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from bot.app import Guichet
from bot.config import load_configuration
from handoff.payload import validate
from tests.conftest import MODEL_DIR
from tests.level2 import Receiver, post_event
from tests.mail_auth import DkimKey, DnsServer
from tests.mail_sink import MailSink
from tests.processes import config_copy

SUPPORT = "support@support.example.com"
NUMBER = re.compile(r"HD-\d{4}-\d{6}")


def mail(
    subject: str,
    body: str,
    *,
    sender: str = "Ana Martin <ana@client.fr>",
    message_id: str = "<m1@client.fr>",
    headers: dict[str, str] | None = None,
) -> bytes:
    message = EmailMessage()
    message["From"] = sender
    message["To"] = SUPPORT
    message["Subject"] = subject
    message["Message-ID"] = message_id
    for name, value in (headers or {}).items():
        message[name] = value
    message.set_content(body)
    return message.as_bytes()


def send(port: int, raw: bytes, envelope_from: str = "ana@client.fr") -> None:
    with smtplib.SMTP("127.0.0.1", port, timeout=10) as client:
        client.sendmail(envelope_from, [SUPPORT], raw)


class Desk:
    def __init__(
        self, app: Guichet, sink: MailSink, receiver: Receiver, signer: DkimKey | None = None
    ) -> None:
        self.app, self.sink, self.receiver, self.signer = app, sink, receiver, signer

    @property
    def smtp_port(self) -> int:
        channel: Any = self.app.channels["email"]
        return int(channel.port)

    async def send(self, raw: bytes, envelope_from: str = "ana@client.fr", *, signed: bool = True) -> None:
        """Send a mail; one from the signer's domain leaves DKIM-signed, as its provider sends it."""
        if signed and self.signer is not None and f"@{self.signer.domain}>" in _from_line(raw):
            raw = self.signer.sign(raw)
        await asyncio.to_thread(send, self.smtp_port, raw, envelope_from)
        await self.settle()

    async def settle(self) -> None:
        """Until the message is handled and what it gave is delivered."""
        await asyncio.sleep(0.05)
        await self.app.manager.idle()
        while await self.app.outbox.sweep_once():
            pass
        await asyncio.sleep(0.05)


def _from_line(raw: bytes) -> str:
    head = raw.split(b"\n\n", 1)[0].decode("ascii", "replace").lower()
    lines = [line for line in head.splitlines() if line.startswith("from:")]
    return (lines[0] if lines else "").rstrip() + ">"


def configuration(
    tmp_path: Path, receiver: Receiver, relay: dict[str, Any], dns: DnsServer | None = None, **email: Any
) -> Any:
    # DKIM checked against the test's own DNS server; without one, not checked (no DNS here).
    authentication = {"dns_servers": [dns.address], "dns_timeout_seconds": 2} if dns else {"dkim": False}
    config = config_copy(
        tmp_path / "config",
        email={
            "addresses": [SUPPORT],
            "domain": "support.example.com",
            "relay": relay,
            "authentication": authentication,
            **email,
        },
        handoff={
            "queues": {"support": {"url": receiver.url}, "security": {"url": receiver.url}},
            "default_queue": "support",
            "retry_schedule_seconds": [0.2, 0.2],
        },
        outbox={"base_delay_seconds": 0.05, "max_delay_seconds": 0.2},
    )
    return load_configuration(
        config,
        environ={
            "GUICHET_DATA_DIR": str(tmp_path / "data"),
            "GUICHET_HTTP_PORT": "0",
            "GUICHET_SMTP_PORT": "0",
            "GUICHET_MODEL_DIR": str(MODEL_DIR),
            "GUICHET_SMTP_PASSWORD": "s3cret",
        },
    )


@pytest.fixture
def dns_server() -> Iterator[DnsServer]:
    server = DnsServer().start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
async def desk(tmp_path: Path, receiver: Receiver, dns_server: DnsServer) -> AsyncIterator[Desk]:
    """Guichet relaying through a sink that demands STARTTLS and a login, as a real relay does;
    client.fr signs its mail with DKIM (its key in the test's DNS), so Ana's replies are proved."""
    sink = MailSink(tls_dir=tmp_path / "tls", login=("guichet", "s3cret"))
    await sink.start()
    relay = {"host": "localhost", "port": sink.port, "security": "starttls", "username": "guichet"}
    signer = await asyncio.to_thread(DkimKey, tmp_path / "dkim", "client.fr", dns_server)
    app = Guichet(configuration(tmp_path, receiver, relay, dns_server))
    await app.start()
    # The relay's certificate is the test's own: trust it the way an operator trusts a company CA.
    channel: Any = app.channels["email"]
    channel.relay.tls_context = sink.client_context
    try:
        yield Desk(app, sink, receiver, signer)
    finally:
        await app.stop()
        await sink.stop()


async def test_a_whole_conversation_by_email(desk: Desk) -> None:
    # 1. A question the knowledge base answers: one automatic reply, in French, with the article
    #    and the ticket number; the ticket goes to level 2 with what level 1 suggested.
    await desk.send(
        mail("Mot de passe oublié", "Bonjour,\nj'ai oublié mon mot de passe Windows, comment faire ?\nAna")
    )
    (reply,) = await desk.sink.arrived(1)
    assert reply.envelope_from == "<>"  # RFC 3834 §3.3: an automatic reply cannot bounce back
    assert reply.recipients == ["ana@client.fr"]
    message = reply.message
    assert message["Auto-Submitted"] == "auto-replied"
    assert message["In-Reply-To"] == "<m1@client.fr>" and message["References"] == "<m1@client.fr>"
    number = NUMBER.search(str(message["Subject"]))
    assert number is not None and str(message["Subject"]) == f"Re: Mot de passe oublié [{number.group(0)}]"
    body = message.get_content()
    assert "Bonjour Ana Martin" in body and "Nous avons bien reçu" in body
    assert "mot de passe" in body.lower() and number.group(0) in body
    # the article's chat line "répondez « ticket »" is left out: this ticket is open already
    assert "« ticket »" not in body and "répondez simplement à ce message" in body
    assert not message.is_multipart()  # short text, no copy of the original
    (created,) = await desk.receiver.arrived("ticket.created")
    assert created["ticket"]["number"] == number.group(0)
    assert created["requester"]["email"] == "ana@client.fr" and created["requester"]["channel"] == "email"
    assert created["suggested_articles"], "level 2 must see what level 1 already suggested"

    # 2. The agent answers: an ordinary mail from the support address, threaded on Ana's mail.
    secret = desk.app.queue_secrets["support"][0]
    event = {
        "type": "agent.message",
        "ticket": number.group(0),
        "queue": "support",
        "agent": {"name": "Marie"},
        "text": "Bonjour Ana, je vous ai envoyé un lien de réinitialisation.",
    }
    status, _ = await post_event(desk.app.url, secret, event)
    assert status == 202
    await desk.settle()
    _, agent = await desk.sink.arrived(2)
    assert agent.message["Auto-Submitted"] is None  # a person wrote it
    assert agent.envelope_from == SUPPORT and agent.recipients == ["ana@client.fr"]
    assert agent.message["From"] == f"Marie <{SUPPORT}>"
    assert agent.message.get_content().strip() == event["text"]
    assert number.group(0) in str(agent.message["Subject"])

    # 3. Ana answers the agent's mail (her client quotes it): the new words reach level 2, in
    #    the same ticket, and no automatic reply is sent.
    follow_up = mail(
        f"Re: {agent.message['Subject']}",
        "Merci, mais le lien a expiré.\n\nLe 22/11/2026, Marie a écrit :\n> Bonjour Ana",
        message_id="<m2@client.fr>",
        headers={"In-Reply-To": str(agent.message["Message-ID"])},
    )
    await desk.send(follow_up)
    (relayed,) = await desk.receiver.arrived("requester.message")
    assert relayed["ticket"]["number"] == number.group(0)
    assert relayed["message"] == "Merci, mais le lien a expiré."
    assert len(desk.sink.sent) == 2

    # 4. A new mail quoting the number in its subject, not in the thread, joins the same ticket.
    await desk.send(
        mail(f"{number.group(0)} toujours bloquée", "Toujours rien.", message_id="<m3@client.fr>")
    )
    assert len(await desk.receiver.arrived("requester.message", 2)) == 2
    assert len(desk.receiver.of_type("ticket.created")) == 1 and len(desk.sink.sent) == 2


async def test_an_english_mail_gets_an_english_reply_and_swaks_is_a_client_too(desk: Desk) -> None:
    swaks = shutil.which("swaks")
    if swaks is None:
        pytest.fail("swaks is not installed (apt-get install swaks): the email tests need a real SMTP client")
    result = await asyncio.to_thread(
        subprocess.run,
        [swaks, "--server", f"127.0.0.1:{desk.smtp_port}", "--to", SUPPORT, "--from", "bob@client.com",
         "--header", "Subject: Laptop", "--body", "My laptop screen stays black after the update, I cannot work."],
        capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    await desk.settle()
    (reply,) = await desk.sink.arrived(1)
    assert reply.recipients == ["bob@client.com"]
    body = reply.message.get_content()
    assert "We have received your message" in body and "automatic reply" in body
    assert NUMBER.search(body) is not None


def loop_cases(our_reply: bytes) -> list[tuple[str, bytes, str]]:
    """(rule, raw mail, envelope sender): each must get no automatic reply (STANDARDS.md)."""
    plain = mail("Imprimante", "L'imprimante du 2e étage ne marche plus.", message_id="<x@client.fr>")

    def with_headers(**headers: str) -> bytes:
        names = {k.replace("_", "-"): v for k, v in headers.items()}
        return mail(
            "Imprimante",
            "L'imprimante ne marche plus.",
            message_id=f"<{len(str(names))}@c.fr>",
            headers=names,
        )

    return [
        ("empty envelope sender", plain, ""),
        ("Return-Path <>", with_headers(Return_Path="<>"), "ana@client.fr"),
        ("Auto-Submitted", with_headers(Auto_Submitted="auto-generated"), "ana@client.fr"),
        ("Precedence bulk", with_headers(Precedence="bulk"), "ana@client.fr"),
        ("a mailing list", with_headers(List_Id="<it.lists.client.fr>"), "ana@client.fr"),
        ("X-Auto-Response-Suppress", with_headers(X_Auto_Response_Suppress="OOF, AutoReply"), "ana@client.fr"),
        ("X-Loop names us", with_headers(X_Loop=SUPPORT), "ana@client.fr"),
        ("a robot sender", mail("Delivery", "failed", sender="MAILER-DAEMON@client.fr"), "mailer-daemon@client.fr"),
        ("a no-reply sender", mail("Info", "news", sender="noreply@client.fr"), "noreply@client.fr"),
        ("failed authentication", with_headers(Authentication_Results="mx.example.com; dmarc=fail"), "ana@client.fr"),
        ("our own reply came back", our_reply, "ana@client.fr"),
    ]  # fmt: skip


async def test_a_mail_understood_as_likely_lists_the_likely_articles_first(desk: Desk) -> None:
    # As in the chat: not sure enough to send one article, but a forgotten or an expired
    # password is likely, which the words alone ("marche") did not find.
    await desk.send(mail("souci", "mon mdp marche pu", message_id="<mdp@client.fr>"))
    (reply,) = await desk.sink.arrived(1)
    body = reply.message.get_content()
    titles = [line[2:] for line in body.splitlines() if line.startswith("• ")]
    assert titles[:2] == ["Réinitialiser son mot de passe oublié", "Mot de passe expiré ou à changer"], body


async def test_no_loop_and_no_backscatter(desk: Desk) -> None:
    """Our own auto-reply sent back to us, bounces, lists, robots, forged senders: the relay
    stays silent for each, and no ticket is opened for any of them."""
    await desk.send(
        mail("Imprimante", "L'imprimante du 2e étage ne marche plus.", sender="zoe@client.fr"),
        "zoe@client.fr",
    )
    (first,) = await desk.sink.arrived(1)
    for rule, raw, envelope in loop_cases(first.raw):
        await desk.send(raw, envelope)
        assert len(desk.sink.sent) == 1, f"an automatic reply was sent despite: {rule}"
    assert len(desk.receiver.of_type("ticket.created")) == 1


async def test_automatic_replies_are_capped_per_sender(tmp_path: Path, receiver: Receiver) -> None:
    sink = MailSink()
    await sink.start()
    app = Guichet(
        configuration(
            tmp_path, receiver, {"host": "127.0.0.1", "port": sink.port, "security": "none"},
            auto_reply={"per_sender": 2, "total": 100, "window_seconds": 600},
        )
    )  # fmt: skip
    await app.start()
    try:
        desk = Desk(app, sink, receiver)
        # Four different problems (alike ones of the same category would be duplicates of
        # the first, attached to it rather than ticketed).
        problems = [
            ("Imprimante", "L'imprimante du 2e étage affiche bourrage papier."),
            ("VPN", "Le VPN refuse ma connexion depuis ce matin."),
            ("Écran noir", "Mon portable reste sur un écran noir au démarrage."),
            ("Clavier", "Plusieurs touches du clavier ne répondent plus."),
        ]
        for n, (subject, body) in enumerate(problems):
            await desk.send(mail(subject, body, message_id=f"<cap{n}@c.fr>"))
        assert len(sink.sent) == 2  # the third and fourth mails are kept and ticketed, not answered
        assert len(receiver.of_type("ticket.created")) == 4
    finally:
        await app.stop()
        await sink.stop()


async def test_a_relay_that_fails_loses_nothing(tmp_path: Path, receiver: Receiver) -> None:
    sink = MailSink()
    sink.refuse = ["451 4.3.0 Try again later", "421 4.4.2 Closing"]
    await sink.start()
    app = Guichet(
        configuration(tmp_path, receiver, {"host": "127.0.0.1", "port": sink.port, "security": "none"})
    )
    await app.start()
    try:
        desk = Desk(app, sink, receiver)
        await desk.send(mail("VPN", "Le VPN refuse ma connexion depuis ce matin."))
        for _ in range(100):  # the outbox retries with its backoff
            if sink.sent:
                break
            await asyncio.sleep(0.1)
            while await app.outbox.sweep_once():
                pass
        (reply,) = sink.sent
        assert reply.recipients == ["ana@client.fr"] and NUMBER.search(str(reply.message["Subject"]))
        assert not sink.refuse  # both refusals were met first
    finally:
        await app.stop()
        await sink.stop()


DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def _is_bounce_or_bulk(raw: bytes) -> bool:
    """Told apart here by their headers alone, independently of channels/email_message.py."""
    head = raw.split(b"\n\n", 1)[0].split(b"\r\n\r\n", 1)[0].lower()
    return any(
        marker in head
        for marker in (
            b"multipart/report", b"\nlist-", b"precedence: bulk", b"precedence: list", b"precedence: junk",
            b"auto-submitted: auto", b"mailer-daemon", b"postmaster@", b"delivery status notification",
        )
    )  # fmt: skip


@pytest.mark.skipif(not DATA.exists(), reason=f"public data absent ({DATA}): mail corpus test skipped")
async def test_a_corpus_of_real_mail_is_ingested_without_a_crash_and_bounces_get_no_reply(
    tmp_path: Path, receiver: Receiver
) -> None:
    """Broken MIME, every charset, DSN bounces, real ham and spam, sent to the running server
    over SMTP: each is accepted or refused the SMTP way, and no bounce, list or automatic mail
    gets a reply."""
    sink = MailSink()
    await sink.start()
    relay = {"host": "127.0.0.1", "port": sink.port, "security": "none"}
    app = Guichet(configuration(tmp_path, receiver, relay, auto_reply={"per_sender": 1000, "total": 100000}))
    await app.start()
    try:
        desk = Desk(app, sink, receiver)
        paths = [
            p for p in sorted((DATA / "mime").rglob("*")) if p.is_file() and p.suffix in ("", ".eml", ".txt")
        ]
        paths = [p for p in paths if "LICENSE" not in p.name and "SOURCE" not in p.name]
        paths += [p for p in sorted((DATA / "spamassassin").rglob("*")) if p.is_file()][:150]
        answers: dict[str, int] = {}
        bulk_senders: set[str] = set()
        for n, path in enumerate(paths):
            raw = path.read_bytes()
            envelope = f"corpus{n}@corpus.example"  # one sender per mail: replies are told apart
            if _is_bounce_or_bulk(raw):
                bulk_senders.add(envelope)
            try:
                await asyncio.to_thread(send, desk.smtp_port, raw, envelope)
                answers["250"] = answers.get("250", 0) + 1
            except smtplib.SMTPResponseException as refused:  # e.g. 552 too big, 550 bad line
                assert 500 <= refused.smtp_code < 600, (path, refused)
                answers[str(refused.smtp_code)] = answers.get(str(refused.smtp_code), 0) + 1
        await desk.settle()
        assert answers.get("250", 0) >= len(paths) * 0.95, answers
        assert len(bulk_senders) >= 20  # the corpus does hold bounces and list mail
        replied = {r for sent in sink.sent for r in sent.recipients}
        assert replied, "ordinary mail in the corpus gets its automatic reply"
        assert not replied & bulk_senders, (
            f"replied to a bounce or list mail: {sorted(replied & bulk_senders)[:5]}"
        )
        health = await asyncio.to_thread(
            lambda: __import__("urllib.request").request.urlopen(f"{app.url}/healthz").status
        )
        assert health == 200  # still serving after all of it
    finally:
        await app.stop()
        await sink.stop()


async def test_attachments_reach_level_2_as_signed_download_links(desk: Desk) -> None:
    message = EmailMessage()
    message["From"] = "Ana Martin <ana@client.fr>"
    message["To"] = SUPPORT
    message["Subject"] = "Écran bleu"
    message["Message-ID"] = "<att1@client.fr>"
    message.set_content("Mon PC affiche un écran bleu au démarrage, capture jointe.")
    picture = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 40
    message.add_attachment(picture, maintype="image", subtype="png", filename="ecran-bleu.png")
    await desk.send(message.as_bytes())
    (created,) = await desk.receiver.arrived("ticket.created")
    assert validate(created, "ticket.v1") == []  # the published schema holds the attachments too
    (attachment,) = created["attachments"]
    assert attachment["name"] == "ecran-bleu.png" and attachment["type"] == "image/png"
    assert attachment["size"] == len(picture) and attachment["ref"].startswith("sha256:")
    async with aiohttp.ClientSession() as http:
        async with http.get(attachment["url"]) as answer:
            assert answer.status == 200 and await answer.read() == picture
            assert answer.headers["Content-Disposition"] == "attachment"  # a download, never rendered
        forged = attachment["url"][:-4] + ("0000" if not attachment["url"].endswith("0000") else "1111")
        async with http.get(forged) as answer:
            assert answer.status == 404 and await answer.read() != picture


async def test_automatic_replies_are_capped_in_all(tmp_path: Path, receiver: Receiver) -> None:
    """A flood from many senders (a spam run, a forged list) cannot make us a mail cannon."""
    sink = MailSink()
    await sink.start()
    relay = {"host": "127.0.0.1", "port": sink.port, "security": "none"}
    app = Guichet(configuration(tmp_path, receiver, relay, auto_reply={"per_sender": 10, "total": 3}))
    await app.start()
    try:
        desk = Desk(app, sink, receiver)
        for n in range(5):
            sender = f"person{n}@client.fr"
            raw = mail(
                "Imprimante", f"L'imprimante {n} ne marche plus.", sender=sender, message_id=f"<all{n}@c.fr>"
            )
            await desk.send(raw, sender)
        assert sorted(r for s in sink.sent for r in s.recipients) == [
            f"person{n}@client.fr" for n in range(3)
        ]
        assert len(receiver.of_type("ticket.created")) == 5  # every mail is still a ticket
    finally:
        await app.stop()
        await sink.stop()


def test_articles_sent_by_mail_lose_only_the_chat_s_reply_ticket_line() -> None:
    from bot.config import load_configuration
    from bot.policy import for_mail
    from tests.conftest import SAMPLE_CONFIG

    articles = load_configuration(SAMPLE_CONFIG, environ={}).articles
    chat_lines = 0
    for article in articles:
        lines, kept = article.body.splitlines(), for_mail(article.body).splitlines()
        chat_lines += len(lines) - len(kept)
        assert not any("« ticket »" in line or 'reply "ticket"' in line for line in kept), article.id
        assert len(lines) - len(kept) <= 2, article.id  # those lines only: the rest stays
    assert chat_lines >= len(articles) * 0.8  # most sample articles end with one


async def test_a_reply_saying_it_is_solved_closes_the_ticket_at_level_1(desk: Desk) -> None:
    # The automatic reply says: if the article solved it, reply « résolu ». People reply as in
    # any mail, with a greeting and their name; a reply that goes on, or says "mais", is not one.
    await desk.send(mail("Mot de passe oublié", "Bonjour,\nj'ai oublié mon mot de passe Windows.\nAna"))
    (reply,) = await desk.sink.arrived(1)
    number = NUMBER.search(str(reply.message["Subject"]))
    assert number is not None
    await desk.receiver.arrived("ticket.created")
    await desk.send(
        mail(
            f"Re: {reply.message['Subject']}",
            "Bonjour,\nC'est résolu, merci beaucoup !\nAna\n\nLe 06/12/2026, support a écrit :\n> Bonjour",
            message_id="<solved@client.fr>",
            headers={"In-Reply-To": str(reply.message["Message-ID"])},
        )
    )
    (update,) = await desk.receiver.arrived("ticket.updated")
    assert update["change"] == "confirmed_solved" and update["ticket"]["number"] == number.group(0)
    ticket = await desk.app.store.ticket(number.group(0))
    assert ticket is not None and ticket.status == "closed"
    assert desk.receiver.of_type("requester.message") == []  # nothing for an agent to read

"""Nobody acts on another person's ticket by mail: the attacks of the security review, replayed
through the real SMTP server. A forged `From: ana@client.fr` (no DKIM of client.fr, envelope
attacker5@evil.example) cancels nothing, adds nothing, reads nothing and receives nothing of
Ana's ticket; it opens a request of its own, flagged unverified for level 2. Ana's own mail,
DKIM-signed by client.fr (its key in the test's DNS server) or passing SPF, still acts."""

from __future__ import annotations

import asyncio
from pathlib import Path

from bot.app import Guichet
from tests.level2 import Receiver, post_event
from tests.mail_auth import DkimKey, DnsServer
from tests.mail_sink import MailSink
from tests.test_email_e2e import (  # noqa: F401  (dns_server and desk are fixtures)
    NUMBER,
    Desk,
    configuration,
    desk,
    dns_server,
    mail,
)

ATTACKER = "attacker5@evil.example"


async def ana_opens_a_ticket(desk: Desk) -> str:
    await desk.send(
        mail("VPN ne marche plus", "Le VPN refuse ma connexion, erreur 809.", message_id="<v1@client.fr>")
    )
    (reply,) = await desk.sink.arrived(1)
    found = NUMBER.search(str(reply.message["Subject"]))
    assert found is not None
    return found.group(0)


async def test_a_forged_from_acts_on_nothing_of_anas_and_learns_nothing(desk: Desk) -> None:
    number = await ana_opens_a_ticket(desk)
    (ana_reply,) = desk.sink.sent
    (created,) = desk.receiver.of_type("ticket.created")
    assert created["requester"]["email_verified"] is True

    # 1. "annuler" in a reply quoting her number, From her address, from the attacker's envelope.
    await desk.send(
        mail(f"Re: VPN ne marche plus [{number}]", "annuler", message_id="<evil1@evil.example>"),
        ATTACKER,
        signed=False,
    )
    ticket = await desk.app.store.ticket(number)
    assert ticket is not None and ticket.status == "open"
    assert not desk.receiver.of_type("ticket.updated")
    to_attacker = [m for m in desk.sink.sent if m.recipients == [ATTACKER]]
    assert len(to_attacker) == 1  # the RFC 3834 reply to a new request, about that request only
    body = to_attacker[0].message.get_content()
    # Only the attacker's own words come back (the number they typed): nothing of Ana's ticket.
    assert f"{number} est annulée" not in body and "809" not in body and "refuse ma connexion" not in body
    # It is a request of its own, which level 2 sees flagged.
    unverified = desk.receiver.of_type("ticket.created")[-1]
    assert unverified["ticket"]["number"] != number
    assert unverified["requester"]["email"] == "ana@client.fr"
    assert unverified["requester"]["email_verified"] is False

    # 2. Words added in Ana's thread (a reply to her automatic reply): not relayed as hers.
    await desk.send(
        mail(
            f"Re: VPN ne marche plus [{number}]",
            "Mon nouveau numéro pour me joindre : 06 66 66 66 66",
            message_id="<evil2@evil.example>",
            headers={"In-Reply-To": str(ana_reply.message["Message-ID"])},
        ),
        ATTACKER,
        signed=False,
    )
    assert not desk.receiver.of_type("requester.message")

    # 3. "Where is it?": nothing said about her ticket.
    await desk.send(
        mail("Suivi", f"où en est {number} ?", message_id="<evil3@evil.example>"), ATTACKER, signed=False
    )
    last = [m for m in desk.sink.sent if m.recipients == [ATTACKER]][-1].message.get_content()
    assert "VPN" not in last and "Ouverte" not in last and "ouverte" not in last

    # 4. Level 2's later mails about her ticket go to her, never to the attacker's envelope; her
    #    own words, DKIM-signed, still reach level 2 in her ticket.
    secret = desk.app.queue_secrets["support"][0]
    before = len(desk.sink.sent)

    async def level2(kind: str, text: str) -> None:
        event = {"type": kind, "text": text, "ticket": number, "queue": "support", "agent": {"name": "Marie"}}
        status, _ = await post_event(desk.app.url, secret, event)
        assert status == 202
        await desk.settle()

    await level2("agent.message", "Bonjour Ana, pouvez-vous redémarrer le poste ?")
    await desk.send(
        mail(
            f"Re: VPN ne marche plus [{number}]",
            "C'est fait, toujours l'erreur 809.",
            message_id="<v2@client.fr>",
        )
    )
    (relayed,) = await desk.receiver.arrived("requester.message")
    assert (
        relayed["ticket"]["number"] == number and relayed["message"] == "C'est fait, toujours l'erreur 809."
    )
    await level2("ticket.resolved", "Serveur VPN redémarré.")
    later = desk.sink.sent[before:]
    assert len(later) >= 2 and all(m.recipients == ["ana@client.fr"] for m in later)
    assert not [m for m in later if ATTACKER in m.recipients]


async def test_a_signature_of_another_domain_or_a_broken_one_proves_nothing(
    desk: Desk, dns_server: DnsServer, tmp_path: Path
) -> None:
    number = await ana_opens_a_ticket(desk)
    assert desk.signer is not None
    # Signed by client.fr, then changed on the way: the body no longer matches the signature.
    signed = desk.signer.sign(mail(f"Re: [{number}]", "annuler", message_id="<t1@client.fr>"))
    await desk.send(signed.replace(b"annuler", b"annulez"), signed=False)
    # Validly signed, but by the attacker's own domain, with Ana's From.
    evil = await asyncio.to_thread(DkimKey, tmp_path / "evil-dkim", "evil.example", dns_server)
    await desk.send(
        evil.sign(mail(f"Re: [{number}]", "annuler", message_id="<t2@evil.example>")), signed=False
    )
    ticket = await desk.app.store.ticket(number)
    assert ticket is not None and ticket.status == "open"
    assert not desk.receiver.of_type("ticket.updated")


async def test_an_spf_pass_aligned_with_the_from_acts_and_one_of_another_domain_does_not(
    tmp_path: Path, receiver: Receiver, dns_server: DnsServer
) -> None:
    """When Guichet receives mail straight from the Internet: SPF for the connecting address."""
    dns_server.txt("client.fr", "v=spf1 ip4:127.0.0.1 -all")
    dns_server.txt("evil.example", "v=spf1 ip4:127.0.0.1 -all")  # the attacker's own SPF passes too
    sink = MailSink()
    await sink.start()
    app = Guichet(
        configuration(
            tmp_path, receiver, {"host": "127.0.0.1", "port": sink.port, "security": "none"}, dns_server,
            authentication={"dkim": False, "spf": True, "dns_servers": [dns_server.address]},
        )
    )  # fmt: skip
    await app.start()
    try:
        desk = Desk(app, sink, receiver)
        number = await ana_opens_a_ticket(desk)
        assert receiver.of_type("ticket.created")[0]["requester"]["email_verified"] is True
        # SPF passes for evil.example, which is not the From's domain: not Ana.
        await desk.send(mail(f"Re: [{number}]", "annuler", message_id="<s1@evil.example>"), ATTACKER)
        assert not receiver.of_type("ticket.updated")
        await desk.send(mail(f"Re: [{number}]", "annuler", message_id="<s2@client.fr>"), "ana@client.fr")
        (updated,) = await receiver.arrived("ticket.updated")
        assert updated["change"] == "cancelled_by_requester"
        assert ("client.fr", "TXT") in dns_server.queries
    finally:
        await app.stop()
        await sink.stop()


async def test_the_desks_mx_verdict_is_read_and_a_forged_one_is_not(
    tmp_path: Path, receiver: Receiver
) -> None:
    sink = MailSink()
    await sink.start()
    app = Guichet(
        configuration(
            tmp_path, receiver, {"host": "127.0.0.1", "port": sink.port, "security": "none"},
            authentication={"dkim": False, "trusted_authserv_ids": ["mx.support.example.com"]},
        )
    )  # fmt: skip
    await app.start()
    try:
        desk = Desk(app, sink, receiver)
        proved = {"Authentication-Results": "mx.support.example.com; dmarc=pass header.from=client.fr"}
        await desk.send(
            mail("VPN", "Le VPN refuse ma connexion.", message_id="<a1@client.fr>", headers=proved)
        )
        (reply,) = await sink.arrived(1)
        found = NUMBER.search(str(reply.message["Subject"]))
        assert found is not None
        number = found.group(0)
        # The attacker writes the same header, but the MX's own (topmost) verdict says fail.
        forged = {
            "Authentication-Results": "mx.support.example.com; dmarc=fail header.from=client.fr",
        }
        raw = mail(f"Re: [{number}]", "annuler", message_id="<a2@evil.example>", headers=forged)
        raw = raw.replace(
            b"Authentication-Results: mx.support.example.com; dmarc=fail",
            b"Authentication-Results: mx.support.example.com; dmarc=fail header.from=client.fr\n"
            b"Authentication-Results: mx.support.example.com; dmarc=pass",
        )
        await desk.send(raw, ATTACKER)
        # Another server's "pass" is nobody's word.
        other = {"Authentication-Results": "mx.evil.example; dmarc=pass header.from=client.fr"}
        await desk.send(
            mail(f"Re: [{number}]", "annuler", message_id="<a3@evil.example>", headers=other), ATTACKER
        )
        await asyncio.sleep(0.1)
        assert not receiver.of_type("ticket.updated")
        await desk.send(mail(f"Re: [{number}]", "annuler", message_id="<a4@client.fr>", headers=proved))
        (updated,) = await receiver.arrived("ticket.updated")
        assert updated["change"] == "cancelled_by_requester"
    finally:
        await app.stop()
        await sink.stop()

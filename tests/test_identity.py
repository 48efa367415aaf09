"""One person across channels: a verified address (a Slack profile's, an email sender's) is
the identity; another channel joins it with a one-time code asked for where the address is
verified. "Where is my ticket?" then answers there too, and only for that person."""

from __future__ import annotations

import re

from bot.app import Guichet
from bot.messages import Inbound, new_id, utcnow
from bot.store.base import ConversationState, Effects
from triage.tickets import Requester, Ticket


async def say(guichet: Guichet, conversation: str, text: str, email: str | None = None) -> str:
    inbound = Inbound(
        channel="webchat",
        conversation_id=conversation,
        user_id=conversation,
        text=text,
        platform_message_id=new_id(),
        language="fr",
        user_email=email,
    )
    await guichet.manager.receive(inbound)
    await guichet.manager.idle()
    transcript = await guichet.store.transcript(inbound.conversation_key)
    return "\n".join(e.text for e in transcript if e.reply_to == inbound.platform_message_id)


async def test_a_code_from_a_verified_channel_links_another_one(guichet: Guichet) -> None:
    # Ana has a ticket, opened where her address is verified.
    ticket = Ticket(
        number="HD-2026-000077",
        requester=Requester(
            id="ana@example.com", channel="slack", conversation_key="slack:D1", email="ana@example.com"
        ),
        status="assigned",
        opened_at=utcnow(),
        category="network",
        priority="P3",
        description="le VPN coupe",
        assignee="Marie",
    )
    seed = Inbound(
        channel="slack", conversation_id="D1", user_id="U1", text="x", platform_message_id=new_id()
    )
    await guichet.store.accept(seed)
    await guichet.store.complete(
        seed, ConversationState(key="slack:D1"), [], utcnow(), Effects(tickets=[ticket])
    )

    # On the web chat, nobody knows her yet: her ticket is not shown (nor said to exist).
    assert "Vérifiez le numéro" in await say(guichet, "visitor", "où en est mon ticket HD-2026-000077 ?")
    assert "vérifiée" in await say(guichet, "visitor", "lier mes canaux")  # not verified here

    code_reply = await say(guichet, "verified", "lier mes canaux", email="Ana@Example.com")
    match = re.search(r"LINK-\d{8}", code_reply)
    assert match, code_reply
    assert "ana@example.com" in await say(guichet, "visitor", f"mon code : {match.group(0)}")
    status = await say(guichet, "visitor", "où en est mon ticket HD-2026-000077 ?")
    assert "prise en charge par Marie" in status
    # A code works once.
    assert "pas valable" in await say(guichet, "someone-else", match.group(0))
    assert "pas valable" in await say(guichet, "someone-else", "LINK-00000000")

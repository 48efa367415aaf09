"""Nobody reads another person's ticket, and guessing is stopped: on every channel a ticket
number that is not the person's gets the same "not among yours", link codes and numbers tried
one after another get slower answers (per sender, per network address), a wrong guess stores
nothing, and the REST channel can require a token. Spoken to over real HTTP where the channel
is HTTP (REST), through the conversation manager for the others (the same policy code)."""

from __future__ import annotations

import logging
import re
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from bot.app import Guichet
from bot.guesses import FREE
from bot.messages import Inbound, new_id, utcnow
from bot.store.base import ConversationState, Effects
from tests.conftest import configuration_for
from triage.tickets import Requester, Ticket

ANAS = "HD-2026-000077"


async def rest(
    guichet: Guichet, sender: str, message: str, *, token: str | None = None, query: str = ""
) -> tuple[int, Any]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with (
        aiohttp.ClientSession() as http,
        http.post(
            f"{guichet.url}/webhooks/rest/webhook{query}",
            json={"sender": sender, "message": message},
            headers=headers,
        ) as answer,
    ):
        return answer.status, await answer.json()


def text_of(replies: Any) -> str:
    return "\n".join(r["text"] for r in replies)


async def give_ana_a_ticket(guichet: Guichet) -> None:
    ticket = Ticket(
        number=ANAS,
        requester=Requester(
            id="ana@example.com", channel="slack", conversation_key="slack:D1", email="ana@example.com"
        ),
        status="assigned",
        opened_at=utcnow(),
        category="network",
        priority="P3",
        description="le VPN coupe toutes les cinq minutes",
        assignee="Marie",
    )
    seed = Inbound(
        channel="slack", conversation_id="D1", user_id="U1", text="x", platform_message_id=new_id()
    )
    await guichet.store.accept(seed)
    await guichet.store.complete(
        seed, ConversationState(key="slack:D1"), [], utcnow(), Effects(tickets=[ticket])
    )


async def say(guichet: Guichet, channel: str, conversation: str, text: str, **extra: Any) -> str:
    inbound = Inbound(
        channel=channel,
        conversation_id=conversation,
        user_id=conversation,
        text=text,
        platform_message_id=new_id(),
        language="fr",
        **extra,
    )
    await guichet.manager.receive(inbound)
    await guichet.manager.idle()
    transcript = await guichet.store.transcript(inbound.conversation_key)
    return "\n".join(e.text for e in transcript if e.reply_to == inbound.platform_message_id)


@pytest.mark.parametrize("channel", ["webchat", "telegram", "slack"])
async def test_anothers_ticket_number_tells_nothing_on_any_chat_channel(
    guichet: Guichet, channel: str
) -> None:
    await give_ana_a_ticket(guichet)
    answer = await say(guichet, channel, "mallory", f"où en est le ticket {ANAS} ?")
    assert "Vérifiez le numéro" in answer and "VPN" not in answer and "Marie" not in answer
    # Ana, where her address is proved, is told.
    mine = await say(guichet, channel, "ana", f"où en est le ticket {ANAS} ?", user_email="ana@example.com")
    assert "Marie" in mine or "VPN" in mine, mine


async def test_anothers_ticket_number_tells_nothing_over_rest(guichet: Guichet) -> None:
    await give_ana_a_ticket(guichet)
    status, replies = await rest(guichet, "mallory", f"où en est {ANAS} ?")
    assert status == 200 and "Vérifiez le numéro" in text_of(replies) and "VPN" not in text_of(replies)


def link_rows(guichet: Guichet) -> int:
    with sqlite3.connect(Path(guichet.settings.store.path) / "guichet.sqlite3") as db:
        (count,) = db.execute("SELECT COUNT(*) FROM secrets WHERE name LIKE 'link%'").fetchone()
    return int(count)


async def test_link_code_guesses_slow_down_per_sender_and_per_address_and_store_nothing(
    guichet: Guichet,
) -> None:
    free = FREE["sender"]
    answers = [text_of((await rest(guichet, "mallory", f"LINK-{n:08d}"))[1]) for n in range(free + 3)]
    assert all("pas valable" in a or "not valid" in a for a in answers[:free]), answers
    assert all("Trop d'essais" in a or "Too many" in a for a in answers[free:]), answers[free:]
    assert link_rows(guichet) == 0  # 0 → 0: a wrong guess leaves no row
    # New sender ids from the same address: free until the address's own allowance is spent.
    senders = [f"mallory-{n}" for n in range(FREE["client"])]
    for sender in senders:
        await rest(guichet, sender, "LINK-00000001")
    _, replies = await rest(guichet, "mallory-fresh", "LINK-00000002")
    assert "Trop d'essais" in text_of(replies) or "Too many" in text_of(replies)
    assert link_rows(guichet) == 0


async def test_a_real_link_code_still_links_and_own_tickets_are_never_held_back(guichet: Guichet) -> None:
    await give_ana_a_ticket(guichet)
    code_reply = await say(guichet, "slack", "ana-slack", "lier mes canaux", user_email="ana@example.com")
    found = re.search(r"LINK-\d{8}", code_reply)
    assert found, code_reply
    _, replies = await rest(guichet, "ana-rest", found.group(0))
    assert "ana@example.com" in text_of(replies)
    # Guessing others' numbers slows the guesser down, but Ana's own ticket is always answered.
    for n in range(FREE["sender"] + 2):
        await rest(guichet, "ana-rest", f"où en est HD-2026-0009{n:02d} ?")
    _, replies = await rest(guichet, "ana-rest", f"où en est {ANAS} ?")
    assert "Trop d'essais" not in text_of(replies) and "Marie" in text_of(replies)


@pytest.fixture
async def guarded(tmp_path: Path) -> AsyncIterator[Guichet]:
    app = Guichet(configuration_for(tmp_path, GUICHET_REST_TOKEN="t0ken-of-the-desk"))
    await app.start()
    try:
        yield app
    finally:
        await app.stop()


async def test_a_rest_token_is_required_when_set(guarded: Guichet) -> None:
    status, problem = await rest(guarded, "alice", "bonjour")
    assert status == 401 and problem["error"] == "unauthorized"
    status, _ = await rest(guarded, "alice", "bonjour", token="wrong")
    assert status == 401
    assert await guarded.store.load_state("rest:alice") is None  # refused before anything is kept
    status, replies = await rest(guarded, "alice", "bonjour", token="t0ken-of-the-desk")
    assert status == 200 and replies[0]["text"].startswith("Bonjour")
    status, _ = await rest(guarded, "alice", "bonjour", query="?token=t0ken-of-the-desk")  # Rasa's way
    assert status == 200


async def test_rest_edge_cases_are_answered_cleanly(
    guichet: Guichet, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)
    status, problem = await rest(guichet, "a\x00b\nc", "bonjour")
    assert status == 400 and "control characters" in problem["message"]
    async with (
        aiohttp.ClientSession() as http,
        http.post(
            f"{guichet.url}/webhooks/rest/webhook",
            json={"sender": "zz", "message": "jean@example.com", "metadata": {"language": "xx"}},
        ) as answer,
    ):
        assert answer.status == 200
        replies = await answer.json()
    assert replies and replies[0]["recipient_id"] == "zz"
    state = await guichet.store.load_state("rest:zz")
    assert state is not None and state.language in ("fr", "en")
    assert not [r for r in caplog.records if r.exc_info], [r.getMessage() for r in caplog.records]


async def test_over_the_real_web_chat_anothers_ticket_and_guessed_codes_tell_nothing(
    guichet: Guichet,
) -> None:
    from tests.test_webchat_protocol import connect, frames_until

    await give_ana_a_ticket(guichet)
    async with aiohttp.ClientSession() as http:
        ws, _ = await connect(http, guichet)
        answers = []
        for n, text in enumerate(
            [f"où en est {ANAS} ?", *(f"LINK-{k:08d}" for k in range(FREE["sender"] + 1))]
        ):
            await ws.send_json({"type": "message", "id": f"g{n}", "text": text})
            answers.append((await frames_until(ws, "message"))[-1]["text"])
        await ws.close()
    assert "Vérifiez le numéro" in answers[0] and "VPN" not in answers[0] and "Marie" not in answers[0]
    # The number counted as a wrong guess too: the fifth wrong code is already held back.
    assert all("pas valable" in a or "not valid" in a for a in answers[1 : FREE["sender"]]), answers
    assert all("Trop d'essais" in a or "Too many" in a for a in answers[FREE["sender"] :]), answers
    assert link_rows(guichet) == 0

"""`GET /metrics`: what the manager counts, read back in Prometheus's text format after real
conversations on the REST channel and a real email over SMTP."""

from __future__ import annotations

import asyncio
import re
import smtplib
from typing import Any

import aiohttp

from bot.app import Guichet
from tests.level2 import open_ticket_over_rest, say_over_rest


async def scrape(guichet: Guichet) -> dict[str, float]:
    async with aiohttp.ClientSession() as http, http.get(f"{guichet.url}/metrics") as answer:
        assert answer.status == 200 and answer.headers["Content-Type"].startswith("text/plain")
        text = await answer.text()
    values: dict[str, float] = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            values[name] = float(value)
    return values


async def test_the_figures_a_manager_needs_are_counted(guichet: Guichet) -> None:
    async with aiohttp.ClientSession() as http:
        # A question the knowledge base answers, and the person says it helped.
        replies = await say_over_rest(http, guichet.url, "ana", "j'ai oublié mon mot de passe")
        assert [b["payload"] for b in replies[-1]["buttons"]] == ["helped:yes", "helped:no"]
        await say_over_rest(http, guichet.url, "ana", "helped:yes")
        # A question nobody can answer, in English.
        await say_over_rest(http, guichet.url, "bob", "the coffee machine sings opera")
    # A ticket handed to level 2.
    await open_ticket_over_rest(guichet.url, "carla", "mon badge n'ouvre plus la porte du parking")
    before_mail = await scrape(guichet)
    channel: Any = guichet.channels["email"]
    message = (
        "From: dan@client.fr\r\nTo: support@example.com\r\nSubject: Imprimante\r\nMessage-ID: <m@client.fr>\r\n\r\n"
        "L'imprimante du 3e ne marche plus.\r\n"
    )
    await asyncio.to_thread(_send, channel.port, message)
    for _ in range(100):
        await guichet.manager.idle()
        figures = await scrape(guichet)
        if figures.get('guichet_inbound_messages_total{channel="email"}'):
            break
        await asyncio.sleep(0.05)

    assert (
        figures['guichet_inbound_messages_total{channel="rest"}']
        == before_mail['guichet_inbound_messages_total{channel="rest"}']
    )
    assert figures['guichet_inbound_messages_total{channel="rest"}'] >= 5  # ana 2, bob 1, carla ≥ 2
    assert figures['guichet_inbound_messages_total{channel="email"}'] == 1
    assert figures['guichet_solved_at_level1_total{channel="rest"}'] == 1
    assert figures['guichet_unanswered_questions_total{channel="rest",language="en"}'] >= 1
    handoffs = {k: v for k, v in figures.items() if k.startswith("guichet_handoffs_total")}
    assert sum(handoffs.values()) == 2, handoffs  # carla's ticket and dan's mail
    assert any(
        'channel="email"' in k and 'queue="support"' in k and 'reason="email"' in k for k in handoffs
    ), handoffs
    assert any('channel="rest"' in k and 'reason="no_answer"' in k for k in handoffs), handoffs
    # Each REST message got its reply within the histogram; the first responses were timed.
    assert (
        figures['guichet_reply_seconds_count{channel="rest"}']
        == figures['guichet_inbound_messages_total{channel="rest"}']
    )
    assert figures['guichet_first_response_seconds_count{channel="rest"}'] == 3  # ana, bob, carla
    assert figures['guichet_answer_confidence_count{channel="rest"}'] >= 3
    assert figures['guichet_replies_total{channel="rest",sender="bot"}'] >= 6
    # No person, text or ticket number ever becomes a label.
    async with aiohttp.ClientSession() as http, http.get(f"{guichet.url}/metrics") as answer:
        text = await answer.text()
    assert not re.search(r"ana|bob|carla|dan@|HD-\d{4}|mot de passe|coffee", text)


def _send(port: int, message: str) -> None:
    with smtplib.SMTP("127.0.0.1", port, timeout=10) as client:
        client.sendmail("dan@client.fr", ["support@example.com"], message.encode())


async def test_a_person_who_left_while_the_bot_waited_is_an_abandoned_conversation(
    guichet: Guichet, monkeypatch: Any
) -> None:
    import bot.manager

    async with aiohttp.ClientSession() as http:
        await say_over_rest(
            http, guichet.url, "eve", "the coffee machine sings opera"
        )  # the bot offers a ticket
        assert (await scrape(guichet)).get(
            'guichet_abandoned_conversations_total{channel="rest",stage="choice"}', 0
        ) == 0
        # She comes back "later" (the threshold lowered to nothing) with something else.
        monkeypatch.setattr(bot.manager, "ABANDONED_AFTER_SECONDS", -1)
        await say_over_rest(http, guichet.url, "eve", "bonjour")
        await say_over_rest(http, guichet.url, "eve", "merci")  # not waiting any more: not counted again
    figures = await scrape(guichet)
    assert figures['guichet_abandoned_conversations_total{channel="rest",stage="choice"}'] == 1


async def test_readiness_says_whether_this_process_can_take_traffic(guichet: Guichet) -> None:
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{guichet.url}/readyz") as answer:
            body = await answer.json()
            assert answer.status == 200 and body["ready"] is True and "rest" in body["channels"]
        await guichet.store.close()  # the store goes away (a disk unmounted, Redis down)
        async with http.get(f"{guichet.url}/readyz") as answer:
            body = await answer.json()
            assert answer.status == 503 and body["ready"] is False and body["reason"].startswith("store")
        async with http.get(f"{guichet.url}/healthz") as answer:
            assert answer.status == 200  # alive all the same: a restart is not what it needs
        await guichet.store.open()


async def test_sla_breaches_are_counted_when_level_2_answers_late(guichet: Guichet) -> None:
    import dataclasses
    from datetime import timedelta

    from bot.messages import utcnow
    from tests.level2 import post_event

    number = await open_ticket_over_rest(guichet.url, "late", "mon badge n'ouvre plus la porte du parking")
    ticket = await guichet.store.ticket(number)
    assert ticket is not None and ticket.queue is not None
    # The deadline passed an hour ago (as after a weekend nobody answered).
    await guichet.store.put_tickets(
        [dataclasses.replace(ticket, first_response_due=utcnow() - timedelta(hours=1))]
    )
    event = {
        "type": "agent.message",
        "ticket": number,
        "queue": ticket.queue,
        "agent": {"name": "Marie"},
        "text": "Bonjour",
    }
    status, _ = await post_event(guichet.url, guichet.queue_secrets[ticket.queue][0], event)
    assert status == 202
    await guichet.manager.idle()
    figures = await scrape(guichet)
    assert figures[f'guichet_sla_breaches_total{{kind="first_response",priority="{ticket.priority}"}}'] == 1
    # A second message is not a first response: no second breach.
    await post_event(guichet.url, guichet.queue_secrets[ticket.queue][0], {**event, "text": "Alors ?"})
    await guichet.manager.idle()
    assert (await scrape(guichet))[
        f'guichet_sla_breaches_total{{kind="first_response",priority="{ticket.priority}"}}'
    ] == 1

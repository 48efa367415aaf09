"""The whole loop on the web chat, with a real level-2 receiver on a local port:
unknown request → qualification → ticket → signed webhook → agent reply relayed to the
person → resolved → the bot answers again. Then the refusals of the way back."""

from __future__ import annotations

import json
import re
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from bot.app import Guichet
from bot.config import load_configuration
from handoff.payload import validate
from tests.conftest import MODEL_DIR
from tests.level2 import Receiver, open_ticket_over_rest, post_event
from tests.processes import config_copy

NUMBER = re.compile(r"HD-\d{4}-\d{6}")


def configuration_with_receiver(
    tmp_path: Path, receiver: Receiver, schedule: list[float] | None = None
) -> Any:
    config = config_copy(
        tmp_path / "config",
        # A test types faster than a person: lift the web chat's per-session limit.
        webchat={"per_session": {"rate": 1000.0, "burst": 1000}},
        handoff={
            "queues": {"support": {"url": receiver.url}, "security": {"url": receiver.url}},
            "routes": [{"queue": "security", "categories": ["security"]}],
            "default_queue": "support",
            "retry_schedule_seconds": schedule or [0.2, 0.2, 0.2],
        },
    )
    return load_configuration(
        config,
        environ={
            "GUICHET_DATA_DIR": str(tmp_path / "data"),
            "GUICHET_HTTP_PORT": "0",
            "GUICHET_SMTP_PORT": "0",
            "GUICHET_MODEL_DIR": str(MODEL_DIR),
        },
    )


@pytest.fixture
async def desk(tmp_path: Path, receiver: Receiver) -> AsyncIterator[Guichet]:
    app = Guichet(configuration_with_receiver(tmp_path, receiver))
    await app.start()
    receiver.secrets = app.queue_secrets["support"]
    try:
        yield app
    finally:
        await app.stop()


class Person:
    """Someone on the web chat, reading every message the way the widget shows it."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws
        self.seen: list[dict[str, Any]] = []
        self._sent = 0
        self.qualifying = False  # the questions began without a ticket offer (an article did not help)

    async def say(self, text: str, payload: str | None = None) -> None:
        self._sent += 1
        frame: dict[str, Any] = {"type": "message", "id": f"m{self._sent}", "text": text}
        if payload is not None:
            frame["payload"] = payload
        await self.ws.send_json(frame)

    async def wait_for(
        self, predicate: Callable[[dict[str, Any]], bool], seconds: float = 10
    ) -> dict[str, Any]:
        deadline = time.monotonic() + seconds
        while True:
            frame = await self.ws.receive(timeout=max(0.1, deadline - time.monotonic()))
            assert frame.type == aiohttp.WSMsgType.TEXT, f"socket ended: {frame}"
            data: dict[str, Any] = json.loads(frame.data)
            if data["type"] == "error":
                raise AssertionError(f"the web chat refused a message: {data}")
            if data["type"] == "message":
                self.seen.append(data)
                if predicate(data):
                    return data

    async def turn(self, seconds: float = 10) -> list[dict[str, Any]]:
        """Every message of the bot's next turn (up to the one marked last)."""
        messages = [await self.wait_for(lambda m: True, seconds)]
        while not messages[-1]["last"]:
            messages.append(await self.wait_for(lambda m: True, seconds))
        return messages


async def open_person(http: aiohttp.ClientSession, guichet: Guichet) -> Person:
    ws = await http.ws_connect(f"{guichet.url}/webchat/ws")
    await ws.send_json({"type": "hello", "token": None, "locale": "fr-FR"})
    while json.loads((await ws.receive(timeout=10)).data)["type"] != "welcome":
        pass
    return Person(ws)


async def ask_for_a_ticket(person: Person, request: str) -> dict[str, Any]:
    """Send a request the knowledge base does not solve: if it offers close articles, say none
    fits; if it answers with an article (a crash gets the crash article), say it did not
    help, as typed. Returns the ticket offer, or the article's "did this help?"."""
    await person.say(request)
    offer = await person.wait_for(lambda m: bool(m["choices"]))
    if any(c["payload"] == "none" for c in offer["choices"]):
        await person.say("Aucune de celles-ci", "none")
        offer = await person.wait_for(lambda m: bool(m["choices"]))
    if [c["payload"] for c in offer["choices"]] == ["helped:yes", "helped:no"]:
        await person.say("non, toujours pareil")
        person.qualifying = True
        return offer
    assert [c["payload"] for c in offer["choices"]] == ["ticket:yes", "ticket:no"]
    return offer


async def qualify_until_ticket(person: Person) -> str:
    """Say yes to the ticket, then answer the qualification questions as a hurried person
    would: the last choice offered, or "je ne sais pas" to a free-text question; return the
    ticket number."""
    if not person.qualifying:
        await person.say("oui")
    for _ in range(10):
        turn = await person.turn()
        last = turn[-1]
        if match := NUMBER.search(" ".join(m["text"] for m in turn)):
            return match.group(0)
        slot_choices = [c for c in last["choices"] if c["payload"].startswith("slot:")]
        if slot_choices:
            await person.say(slot_choices[-1]["title"], slot_choices[-1]["payload"])
        else:
            await person.say("je ne sais pas")
    raise AssertionError(f"no ticket after ten answers: {[m['text'] for m in person.seen]}")


async def test_the_whole_loop_on_the_web_chat(desk: Guichet, receiver: Receiver) -> None:
    secret = desk.queue_secrets["support"][0]
    async with aiohttp.ClientSession() as http:
        person = await open_person(http, desk)
        request = "Le logiciel de paie Zorglub refuse de démarrer, écran noir. Joignable à ana@example.com"
        await ask_for_a_ticket(person, request)
        number = await qualify_until_ticket(person)

        # The receiver got one signed ticket with everything level 2 needs.
        await receiver.arrived("ticket.created")
        (document,) = receiver.of_type("ticket.created")
        assert all(r.signature_ok for r in receiver.received)
        assert document["ticket"]["number"] == number
        assert document["ticket"]["priority"] in ("P1", "P2", "P3", "P4")
        assert document["ticket"]["sla"]["first_response_due"] < document["ticket"]["sla"]["resolution_due"]
        assert document["requester"]["email"] == "ana@example.com"
        assert document["requester"]["channel"] == "webchat"
        assert any(line["text"] == request for line in document["transcript"])
        assert document["reply_route"]["events_url"] == f"{desk.url}/handoff/events"
        assert "Zorglub" in document["description"]

        # An agent answers: the person reads it, signed by the agent's name.
        status, _ = await post_event(
            desk.url,
            secret,
            {
                "type": "agent.message",
                "ticket": number,
                "queue": "support",
                "agent": {"name": "Marie"},
                "text": "Bonjour Ana, pouvez-vous redémarrer le poste ?",
            },
        )
        assert status == 202
        relayed = await person.wait_for(lambda m: m["from"] == "agent")
        assert relayed["text"] == "Bonjour Ana, pouvez-vous redémarrer le poste ?"
        assert relayed["agent_name"] == "Marie"

        # The person's answer goes to level 2, not to the bot.
        await person.say("C'est fait, toujours l'écran noir")
        await receiver.arrived("requester.message")
        (relay,) = receiver.of_type("requester.message")
        assert relay["message"] == "C'est fait, toujours l'écran noir"
        assert relay["ticket"]["number"] == number

        # Resolved: the person is asked, says yes, and the bot answers questions again.
        status, _ = await post_event(
            desk.url,
            secret,
            {
                "type": "ticket.resolved",
                "ticket": number,
                "queue": "support",
                "agent": {"name": "Marie"},
                "text": "Pilote graphique réinstallé.",
            },
        )
        assert status == 202
        question = await person.wait_for(
            lambda m: any(c["payload"].startswith("resolved:") for c in m["choices"])
        )
        await person.say("Oui, merci beaucoup !")  # typed, with its courtesy: still a yes
        closed = await person.wait_for(lambda m: number in m["text"])
        assert "clôturée" in closed["text"]
        await person.say("code wifi pour un visiteur")
        answer = await person.wait_for(lambda m: m["from"] == "bot" and "\n\n" in m["text"])
        assert answer["text"].split("\n")[0] in {a.title for a in desk.configuration.articles}
        assert question["from"] == "bot"

        # Where is my ticket? Only mine, and the status level 2 gave it.
        await person.say(f"où en est mon ticket {number} ?")
        status_line = await person.wait_for(lambda m: number in m["text"])
        assert "clôturée" in status_line["text"]
        await person.say("où en est le ticket HD-2026-999999 ?")
        unknown = await person.wait_for(lambda m: "HD-2026-999999" in m["text"])
        assert "Vérifiez" in unknown["text"]
    updates = [d["change"] for d in receiver.of_type("ticket.updated")]
    assert updates == ["confirmed_solved"]
    # Every document level 2 got follows the published schema.
    for received in receiver.received:
        assert validate(received.document, "ticket.v1") == [], received.document["type"]


async def test_level2_events_that_are_forged_stale_replayed_or_foreign_are_refused(
    desk: Guichet, receiver: Receiver
) -> None:
    secret = desk.queue_secrets["support"][0]
    async with aiohttp.ClientSession() as http:
        person = await open_person(http, desk)
        await ask_for_a_ticket(person, "Le logiciel de paie Zorglub refuse de démarrer. ana@example.com")
        number = await qualify_until_ticket(person)
    event = {"type": "agent.message", "ticket": number, "queue": "support", "text": "bonjour"}
    assert (await post_event(desk.url, "whsec_" + "A" * 32, event))[0] == 401  # forged
    assert (await post_event(desk.url, secret, event, timestamp=time.time() - 3600))[0] == 401  # stale
    assert (await post_event(desk.url, secret, event, msg_id="evt_once"))[0] == 202
    status, body = await post_event(desk.url, secret, event, msg_id="evt_once")  # replayed
    assert status == 409 and "already" in body["error"]
    other_queue = desk.queue_secrets["security"][0]
    status, _ = await post_event(desk.url, other_queue, {**event, "queue": "security"})
    assert status == 403  # signed by a real queue, but not the ticket's
    status, _ = await post_event(desk.url, secret, {**event, "ticket": "HD-2026-999999"})
    assert status == 404
    status, body = await post_event(desk.url, secret, {**event, "type": "ticket.exploded"})
    assert status == 400
    # The one accepted event reached the person once.
    ticket = await desk.store.ticket(number)
    assert ticket is not None
    transcript = await desk.store.transcript(ticket.requester.conversation_key)
    assert [e.text for e in transcript if e.sender == "agent"] == ["bonjour"]


async def test_a_receiver_down_then_up_gets_every_handoff_once(tmp_path: Path) -> None:
    receiver = Receiver(fail_first=4)
    await receiver.start()
    app = Guichet(configuration_with_receiver(tmp_path, receiver))
    await app.start()
    receiver.secrets = app.queue_secrets["support"]
    try:
        numbers = []
        async with aiohttp.ClientSession() as http:
            for n in range(3):
                person = await open_person(http, app)
                await ask_for_a_ticket(
                    person, f"Le logiciel métier Zorglub{n} plante au lancement. user{n}@example.com"
                )
                numbers.append(await qualify_until_ticket(person))
        await receiver.arrived("ticket.created", 3)
        assert sorted(d["ticket"]["number"] for d in receiver.of_type("ticket.created")) == sorted(numbers)
        assert receiver.requests >= 3 + 4  # the four refusals were retried
        assert await app.store.outbox_size() == 0 and await app.store.dead_letters() == []
    finally:
        await app.stop()
        await receiver.stop()


async def test_while_an_agent_holds_the_ticket_the_person_can_ask_its_status_or_cancel(
    desk: Guichet, receiver: Receiver
) -> None:
    secret = desk.queue_secrets["support"][0]
    async with aiohttp.ClientSession() as http:
        person = await open_person(http, desk)
        await ask_for_a_ticket(person, "Le logiciel de paie Zorglub refuse de démarrer. ana@example.com")
        number = await qualify_until_ticket(person)
        event = {"type": "ticket.assigned", "ticket": number, "queue": "support", "agent": {"name": "Marie"}}
        assert (await post_event(desk.url, secret, event))[0] == 202
        assigned = await person.wait_for(lambda m: "Marie" in m["text"])
        assert number in assigned["text"]
        # A question for the technician is relayed, not answered by the bot.
        await person.say("j'ai oublié mon mot de passe aussi")
        await receiver.arrived("requester.message")
        assert receiver.of_type("requester.message")[0]["message"] == "j'ai oublié mon mot de passe aussi"
        await person.say("où en est mon ticket ?")
        status = await person.wait_for(lambda m: number in m["text"])
        assert "prise en charge par Marie" in status["text"]
        await person.say("annuler mon ticket")
        cancelled = await person.wait_for(lambda m: "annulée" in m["text"])
        assert number in cancelled["text"]
        # The bot answers again; level 2 learns of the cancellation.
        await person.say("code wifi pour un visiteur")
        await person.wait_for(lambda m: m["from"] == "bot" and "\n\n" in m["text"])
    await receiver.arrived("ticket.updated")
    assert [d["change"] for d in receiver.of_type("ticket.updated")] == ["cancelled_by_requester"]
    ticket = await desk.store.ticket(number)
    assert ticket is not None and ticket.status == "cancelled" and ticket.assignee == "Marie"


async def test_handed_back_or_closed_by_level2_the_bot_answers_again(
    desk: Guichet, receiver: Receiver
) -> None:
    secret = desk.queue_secrets["support"][0]
    async with aiohttp.ClientSession() as http:
        person = await open_person(http, desk)
        await ask_for_a_ticket(person, "Le logiciel de paie Zorglub refuse de démarrer. ana@example.com")
        number = await qualify_until_ticket(person)
        event = {"type": "ticket.handed_back", "ticket": number, "queue": "support"}
        assert (await post_event(desk.url, secret, event))[0] == 202
        await person.wait_for(lambda m: "repassé" in m["text"])
        await person.say("code wifi pour un visiteur")
        await person.wait_for(lambda m: m["from"] == "bot" and "\n\n" in m["text"])
        # Closed by level 2 while the person is in the middle of something else: told, no change of mode.
        event = {"type": "ticket.closed", "ticket": number, "queue": "support"}
        assert (await post_event(desk.url, secret, event))[0] == 202
        closed = await person.wait_for(lambda m: "clôturée" in m["text"])
        assert number in closed["text"]
    ticket = await desk.store.ticket(number)
    assert ticket is not None and ticket.status == "closed"


async def test_on_the_rest_channel_a_message_for_the_agent_gets_an_empty_answer_at_once(
    desk: Guichet, receiver: Receiver
) -> None:
    secret = desk.queue_secrets["support"][0]
    number = await open_ticket_over_rest(desk.url, "rita", "Le logiciel de paie Zorglub plante au démarrage")
    event = {
        "type": "agent.message",
        "ticket": number,
        "queue": "support",
        "agent": {"name": "Marie"},
        "text": "Bonjour",
    }
    assert (await post_event(desk.url, secret, event))[0] == 202
    await desk.manager.idle()
    started = time.monotonic()
    async with (
        aiohttp.ClientSession() as http,
        http.post(
            f"{desk.url}/webhooks/rest/webhook", json={"sender": "rita", "message": "merci, je redémarre"}
        ) as answer,
    ):
        assert (answer.status, await answer.json()) == (200, [])  # Rasa's answer when the bot is silent
    assert time.monotonic() - started < 2
    (relayed,) = await receiver.arrived("requester.message")
    assert relayed["message"] == "merci, je redémarre"

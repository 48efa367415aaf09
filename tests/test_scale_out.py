"""Three `guichet run` processes on one real Redis, as behind a load balancer: a person's web chat
is on process A, level 2 answers through process B, process C is killed in the middle of
work — the person still gets every reply, once and in order, and each handoff reaches level 2
once."""

from __future__ import annotations

import contextlib
import itertools
import json
import re
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from handoff.signing import new_secret
from tests.conftest import MODEL_DIR
from tests.level2 import Receiver, post_event
from tests.processes import GuichetProcess, config_copy, free_port, start_redis

NUMBER = re.compile(r"HD-\d{4}-\d{6}")
SECRET = new_secret()


@pytest.fixture
def redis_for_cluster(tmp_path: Path) -> Iterator[str]:
    process, url = start_redis(tmp_path / "redis")
    yield url
    process.terminate()
    process.wait(timeout=10)


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    instance = Receiver(secrets=[SECRET])
    await instance.start()
    yield instance
    await instance.stop()


@pytest.fixture
def cluster(tmp_path: Path, redis_for_cluster: str, receiver: Receiver) -> Iterator[list[GuichetProcess]]:
    config = config_copy(
        tmp_path / "config",
        store={"kind": "redis"},
        webchat={"per_session": {"rate": 1000.0, "burst": 1000}},
        handoff={
            "queues": {
                "support": {"url": receiver.url, "secret_env": "GUICHET_TEST_QUEUE_SECRET"},
                "security": {"url": receiver.url, "secret_env": "GUICHET_TEST_QUEUE_SECRET"},
            },
            "default_queue": "support",
        },
    )
    env = {
        "GUICHET_REDIS_URL": redis_for_cluster,
        "GUICHET_TEST_QUEUE_SECRET": SECRET,
        "GUICHET_MODEL_DIR": str(MODEL_DIR),
        "GUICHET_SECRET_KEY": "one-key-for-every-process",
    }
    processes = [GuichetProcess(config, tmp_path / f"data-{n}", free_port(), env=env) for n in range(3)]
    try:
        for process in processes:
            process.start(timeout=60)
            process.wait_for_model()
        yield processes
    finally:
        for process in processes:
            process.stop()


class Person:
    """A web chat user on one process's WebSocket."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws
        self.frames: list[dict[str, Any]] = []
        self.ids = itertools.count()

    async def say(self, text: str, payload: str | None = None) -> list[dict[str, Any]]:
        message: dict[str, Any] = {"type": "message", "id": f"m{next(self.ids)}", "text": text}
        if payload:
            message["payload"] = payload
        await self.ws.send_json(message)
        replies = []
        while True:
            frame = await self.next()
            if frame["type"] == "message":
                replies.append(frame)
                if frame.get("last"):
                    return replies

    async def next(self, seconds: float = 60) -> dict[str, Any]:
        frame = await self.ws.receive(timeout=seconds)
        assert frame.type == aiohttp.WSMsgType.TEXT, frame
        data: dict[str, Any] = json.loads(frame.data)
        self.frames.append(data)
        return data


async def open_ticket(person: Person) -> str:
    replies = await person.say("la badgeuse du hall refuse mon badge depuis ce matin")
    for _ in range(12):
        for reply in replies:
            if found := NUMBER.search(reply["text"]):
                return found.group(0)
        choices = replies[-1].get("choices") or []
        if choices:
            pick = next(
                (c for c in choices if c["payload"] in ("ticket:yes", "helped:no", "none")), choices[0]
            )
            replies = await person.say(pick["title"], pick["payload"])
        else:
            replies = await person.say("passer")
    raise AssertionError(f"no ticket number in {person.frames[-4:]}")


async def test_three_processes_on_redis(cluster: list[GuichetProcess], receiver: Receiver) -> None:
    a, b, c = cluster
    async with aiohttp.ClientSession() as http, http.ws_connect(f"{a.url}/webchat/ws") as ws:
        await ws.send_json({"type": "hello", "token": None, "locale": "fr"})
        person = Person(ws)
        assert (await person.next())["type"] == "welcome"
        number = await open_ticket(person)
        created = await receiver.arrived("ticket.created")
        assert [d["ticket"]["number"] for d in created] == [number]

        # Level 2 answers through process B: the reply reaches the WebSocket on process A.
        event = {
            "type": "agent.message",
            "ticket": number,
            "queue": created[0]["queue"],
            "agent": {"name": "Marie"},
        }
        status, _ = await post_event(b.url, SECRET, {**event, "text": "Bonjour, je regarde."})
        assert status == 202
        frame = await person.next()
        while frame["type"] != "message":
            frame = await person.next()
        assert frame["from"] == "agent" and frame["text"] == "Bonjour, je regarde."

        # Three more through process C, which is killed at once: whatever it had not done,
        # A or B takes over (after C's lease). Delivery is at least once and may be late (C may
        # die after sending a reply but before noting it, or before sending it); the widget
        # shows each seq once, in seq order, so the person reads each step once, in order.
        for n in range(1, 4):
            status, _ = await post_event(c.url, SECRET, {**event, "text": f"Étape {n}"})
            assert status == 202
        c.kill()
        shown: dict[int, str] = {}
        while len(shown) < 3:
            frame = await person.next(seconds=90)
            if frame["type"] == "message":
                shown[frame["seq"]] = frame["text"]
        assert [shown[seq] for seq in sorted(shown)] == ["Étape 1", "Étape 2", "Étape 3"]
        # A second of quiet, then: no step under another seq, no extra step.
        with contextlib.suppress(TimeoutError):
            while True:
                await person.next(seconds=1)
        steps = {
            f["seq"]: f["text"]
            for f in person.frames
            if f.get("type") == "message" and f["text"].startswith("Étape")
        }
        assert [steps[seq] for seq in sorted(steps)] == ["Étape 1", "Étape 2", "Étape 3"]

    # Each handoff document was delivered once, though three outboxes were draining.
    received = [r for r in receiver.received if r.document.get("type") == "ticket.created"]
    assert len(received) == 1 and received[0].signature_ok

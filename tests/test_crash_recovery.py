"""`kill -9` in the middle of a web chat conversation on the embedded store, then a restart:
every message the server acknowledged is answered exactly once, nothing is lost or doubled."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.processes import GuichetProcess, config_copy, free_port

QUESTIONS = [
    "j'ai oublié mon mot de passe",
    "my VPN does not connect",
    "bonjour",
    "l'imprimante n'imprime plus",
    "how do I share my screen in Teams",
    "merci",
]


async def hello(ws: aiohttp.ClientWebSocketResponse, token: str | None) -> dict[str, Any]:
    await ws.send_json({"type": "hello", "token": token, "locale": "fr-FR"})
    while True:
        frame: dict[str, Any] = json.loads((await ws.receive(timeout=10)).data)
        if frame["type"] == "welcome":
            return frame


@pytest.mark.slow
async def test_kill_9_mid_conversation_loses_and_doubles_nothing(tmp_path: Path) -> None:
    config = config_copy(
        tmp_path / "config",
        webchat={"per_session": {"rate": 1000.0, "burst": 1000}, "per_ip": {"rate": 1000.0, "burst": 1000}},
    )
    server = GuichetProcess(config, tmp_path / "data", free_port())
    server.start()
    ids = [f"m{n}" for n in range(60)]
    acked: set[str] = set()
    try:
        async with aiohttp.ClientSession() as http:
            ws = await http.ws_connect(f"{server.url}/webchat/ws")
            token = (await hello(ws, None))["token"]
            for n, message_id in enumerate(ids):
                await ws.send_json(
                    {"type": "message", "id": message_id, "text": QUESTIONS[n % len(QUESTIONS)]}
                )

            async def read_acks() -> None:
                async for frame in ws:
                    data = json.loads(frame.data)
                    if data["type"] == "ack":
                        acked.add(data["id"])
                        if len(acked) == 15:
                            server.kill()  # in the middle: later messages are in flight
                            return

            await asyncio.wait_for(read_acks(), 20)
            await ws.close()
            assert 15 <= len(acked) < len(ids), "the kill must land while messages are still in flight"

            server.start()
            ws = await http.ws_connect(f"{server.url}/webchat/ws")
            await hello(ws, token)
            # The widget re-sends what it has no ack for; re-send some acknowledged ones too,
            # as a client that lost its acks would: the server must deduplicate them.
            for n, message_id in enumerate(ids):
                await ws.send_json(
                    {"type": "message", "id": message_id, "text": QUESTIONS[n % len(QUESTIONS)]}
                )
            duplicates = 0
            async for frame in ws:
                data = json.loads(frame.data)
                if data["type"] == "ack":
                    duplicates += bool(data.get("duplicate"))
                    acked.add(data["id"])
                    if len(acked) == len(ids) and duplicates >= 15:
                        break
            await ws.close()

            history: list[dict[str, Any]] = []
            for _ in range(100):  # replies of the last messages may still be on their way
                ws = await http.ws_connect(f"{server.url}/webchat/ws")
                history = (await hello(ws, token))["history"]
                await ws.close()
                if {e.get("reply_to") for e in history if e["from"] == "bot"} >= set(ids):
                    break
                await asyncio.sleep(0.1)
    finally:
        server.stop()

    user_ids = [e["id"] for e in history if e["from"] == "user"]
    assert sorted(user_ids) == sorted(ids), "each message once in the transcript"
    assert duplicates >= 15, "acknowledged messages sent again were recognised as duplicates"
    # Every message answered, none twice: the replies to one question (an article, then "did
    # this help?") come once each, never before their question.
    position = {e["id"]: e["seq"] for e in history if e["from"] == "user"}
    replies: dict[str, list[str]] = {}
    for entry in history:
        if entry["from"] == "bot":
            assert entry["seq"] > position[entry["reply_to"]], "a reply overtook its question"
            replies.setdefault(entry["reply_to"], []).append(entry["text"])
    assert sorted(replies) == sorted(ids), "every message answered"
    for question, texts in replies.items():
        assert len(texts) == len(set(texts)) and len(texts) <= 2, f"{question} answered twice: {texts}"
    # And the conversation's content is right: the answers follow the questions in order.
    assert [e["seq"] for e in history] == list(range(1, len(history) + 1))

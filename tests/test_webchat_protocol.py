"""The web chat's WebSocket protocol, spoken by a real client: sessions, acks, history, bad input."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from bot.app import Guichet
from channels.webchat import SessionTokens


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


async def frames_until(ws: aiohttp.ClientWebSocketResponse, kind: str) -> list[dict[str, Any]]:
    """Every frame received up to and including the first of this type."""
    seen = []
    while True:
        frame = await ws.receive(timeout=10)
        assert frame.type == aiohttp.WSMsgType.TEXT, f"socket ended: {frame}"
        data = json.loads(frame.data)
        seen.append(data)
        if data["type"] == kind:
            return seen


async def connect(
    http: aiohttp.ClientSession, guichet: Guichet, token: str | None = None, **headers: str
) -> tuple[aiohttp.ClientWebSocketResponse, dict[str, Any]]:
    ws = await http.ws_connect(f"{guichet.url}/webchat/ws", headers=headers)
    await ws.send_json({"type": "hello", "token": token, "locale": "fr-FR"})
    welcome = (await frames_until(ws, "welcome"))[-1]
    return ws, welcome


async def test_a_question_is_acknowledged_then_answered(
    http: aiohttp.ClientSession, guichet: Guichet
) -> None:
    ws, welcome = await connect(http, guichet)
    assert welcome["history"] == [] and welcome["notice"] is None
    await ws.send_json({"type": "message", "id": "q1", "text": "code wifi pour un visiteur"})
    ack, message = (await frames_until(ws, "ack"))[-1], (await frames_until(ws, "message"))[-1]
    assert ack == {"type": "ack", "id": "q1", "seq": 1}
    assert message["from"] == "bot" and message["seq"] == 2
    answered = next(a for a in guichet.configuration.articles if message["text"].startswith(a.title + "\n"))
    assert (answered.language, "wifi" in answered.id) == ("fr", True)


async def test_the_conversation_survives_a_reconnect(http: aiohttp.ClientSession, guichet: Guichet) -> None:
    ws, welcome = await connect(http, guichet)
    await ws.send_json({"type": "message", "id": "a", "text": "bonjour"})
    await frames_until(ws, "message")
    await ws.close()
    ws, again = await connect(http, guichet, welcome["token"])
    assert again["notice"] is None
    assert [(e["seq"], e["from"], e["id"] if e["from"] == "user" else None) for e in again["history"]] == [
        (1, "user", "a"),
        (2, "bot", None),
    ]
    assert again["history"][1]["text"].startswith("Bonjour")


async def test_forged_or_unknown_tokens_start_a_new_session(
    http: aiohttp.ClientSession, guichet: Guichet
) -> None:
    ws, welcome = await connect(http, guichet)
    await ws.send_json({"type": "message", "id": "a", "text": "bonjour"})
    await frames_until(ws, "message")
    session_payload = welcome["token"].split(".")[0]
    forged = f"{session_payload}.{'A' * 43}"
    other_key = SessionTokens(b"not the server's key", 3600).issue()[1]
    for bad in (forged, other_key, "garbage", "a.b.c"):
        ws, frames = await http.ws_connect(f"{guichet.url}/webchat/ws"), None
        await ws.send_json({"type": "hello", "token": bad})
        frames = await frames_until(ws, "welcome")
        assert frames[0]["code"] == "invalid_token"
        assert frames[-1]["notice"] == "session_expired"
        assert frames[-1]["history"] == [], "a forged token never shows someone else's conversation"
        assert frames[-1]["token"] != welcome["token"]


async def test_bad_frames_get_clear_errors_and_the_socket_stays_usable(
    http: aiohttp.ClientSession, guichet: Guichet
) -> None:
    ws, _ = await connect(http, guichet)
    cases = [
        ("not json", "invalid_json"),
        (json.dumps(["a"]), "bad_request"),
        (json.dumps({"type": "message", "text": "no id"}), "bad_request"),
        (json.dumps({"type": "message", "id": "x", "text": 42}), "bad_request"),
        (json.dumps({"type": "message", "id": "y", "text": "a" * 2001}), "too_long"),
        (json.dumps({"type": "message", "id": "z", "text": "\u200b\x00\u202e"}), "bad_request"),
    ]
    for raw, code in cases:
        await ws.send_str(raw)
        error = (await frames_until(ws, "error"))[-1]
        assert error["code"] == code, raw
        assert error["message"]
    await ws.send_json({"type": "message", "id": "ok", "text": "bonjour"})
    assert (await frames_until(ws, "message"))[-1]["text"].startswith("Bonjour")


async def test_a_flood_from_one_session_is_rate_limited(
    http: aiohttp.ClientSession, guichet: Guichet
) -> None:
    ws, _ = await connect(http, guichet)
    burst = guichet.settings.webchat.per_session.burst
    for n in range(burst + 5):
        await ws.send_json({"type": "message", "id": f"f{n}", "text": "merci"})
    answers: list[dict[str, Any]] = []
    while len([a for a in answers if a["type"] in ("ack", "error")]) < burst + 5:
        answers.append(json.loads((await ws.receive(timeout=10)).data))
    acks = [a for a in answers if a["type"] == "ack"]
    limited = [a for a in answers if a["type"] == "error"]
    assert len(acks) == burst
    assert {e["code"] for e in limited} == {"rate_limited"} and len(limited) == 5
    assert {e["id"] for e in limited} == {f"f{n}" for n in range(burst, burst + 5)}


async def test_other_sites_may_not_open_the_chat(http: aiohttp.ClientSession, guichet: Guichet) -> None:
    async with http.get(
        f"{guichet.url}/webchat/ws",
        headers={
            "Origin": "https://evil.example",
            "Connection": "Upgrade",
            "Upgrade": "websocket",
            "Sec-WebSocket-Version": "13",
            "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
        },
    ) as answer:
        assert answer.status == 403
        assert (await answer.json())["error"] == "origin_not_allowed"
    host = guichet.url.removeprefix("http://")
    ws, welcome = await connect(http, guichet, Origin=f"http://{host}")
    await ws.close()
    assert welcome["token"]


async def test_the_page_and_the_widget_are_served(http: aiohttp.ClientSession, guichet: Guichet) -> None:
    async with http.get(f"{guichet.url}/") as page:
        assert page.status == 200
        assert '<script src="/widget.js"' in await page.text()
        assert "default-src 'self'" in page.headers["Content-Security-Policy"]
    async with http.get(f"{guichet.url}/widget.js") as widget:
        assert widget.headers["Content-Type"].startswith("text/javascript")
        source = await widget.text()
        assert "/webchat/ws" in source and "innerHTML" not in source

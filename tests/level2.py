"""A real local level-2 receiver for tests: an aiohttp server that records every signed
handoff it gets, can fail on purpose, and posts signed events back to Guichet."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from aiohttp import web

from handoff.signing import SignatureError, headers, verify
from tests.processes import free_port


@dataclass
class Received:
    id: str
    document: dict[str, Any]
    signature_ok: bool


@dataclass
class Receiver:
    secrets: Sequence[str] = ()
    fail_first: int = 0  # answer 503 to this many requests first
    port: int = field(default_factory=free_port)
    received: list[Received] = field(default_factory=list)
    requests: int = 0
    _runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/tickets"

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/tickets", self._ticket)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port, reuse_address=True).start()

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def _ticket(self, request: web.Request) -> web.Response:
        self.requests += 1
        body = await request.read()
        if self.fail_first > 0:
            self.fail_first -= 1
            return web.Response(status=503, headers={"Retry-After": "0"}, text="busy")
        try:
            msg_id = verify(list(self.secrets), request.headers, body)
            ok = True
        except SignatureError:
            msg_id, ok = request.headers.get("webhook-id", ""), False
        self.received.append(Received(msg_id, json.loads(body), ok))
        return web.json_response({"ok": True})

    def unique(self) -> dict[str, Received]:
        """What a receiver deduplicating on webhook-id keeps."""
        return {r.id: r for r in self.received}

    def of_type(self, kind: str) -> list[dict[str, Any]]:
        return [r.document for r in self.unique().values() if r.document.get("type") == kind]

    async def arrived(self, kind: str, count: int = 1, seconds: float = 10.0) -> list[dict[str, Any]]:
        """The documents of this type once `count` have arrived (or what came, after `seconds`)."""
        for _ in range(int(seconds / 0.05)):
            if len(self.of_type(kind)) >= count:
                break
            await asyncio.sleep(0.05)
        return self.of_type(kind)


async def post_event(
    guichet_url: str,
    secret: str,
    event: dict[str, Any],
    *,
    msg_id: str | None = None,
    timestamp: float | None = None,
) -> tuple[int, Any]:
    body = json.dumps(event).encode()
    msg_id = msg_id or f"evt_{time.monotonic_ns()}"
    signed = headers(secret, msg_id, body, now=timestamp)
    async with (
        aiohttp.ClientSession() as http,
        http.post(f"{guichet_url}/handoff/events", data=body, headers=signed) as answer,
    ):
        return answer.status, await answer.json()


async def say_over_rest(
    http: aiohttp.ClientSession, base_url: str, sender: str, text: str
) -> list[dict[str, Any]]:
    """One message on the REST channel, as Rasa front ends send it; the bot's replies."""
    async with http.post(
        f"{base_url}/webhooks/rest/webhook", json={"sender": sender, "message": text}
    ) as answer:
        assert answer.status == 200, await answer.text()
        replies: list[dict[str, Any]] = await answer.json()
        return replies


async def open_ticket_over_rest(base_url: str, sender: str, request: str) -> str:
    """A person on the REST channel: a request the knowledge base does not solve, "yes" to the
    ticket (or "no" to "did this help?" when an article was the answer), then the first
    choice (or "skip") to each qualification question."""
    async with aiohttp.ClientSession() as http:

        async def say(text: str) -> list[dict[str, Any]]:
            return await say_over_rest(http, base_url, sender, text)

        replies = await say(request)
        if any(b["payload"] == "none" for b in replies[-1].get("buttons", [])):
            replies = await say("none")  # close articles were offered: none of them fits
        offered = [b["payload"] for b in replies[-1].get("buttons", [])] if replies else []
        if offered == ["helped:yes", "helped:no"]:
            replies = await say("helped:no")  # an article answered; it did not help
        else:
            assert offered == ["ticket:yes", "ticket:no"], replies
            replies = await say("ticket:yes")
        for _ in range(10):
            for reply in replies:
                for word in str(reply["text"]).split():
                    if word.startswith("HD-"):
                        return word.strip(" .,()")
            buttons = replies[-1].get("buttons") or []
            replies = await say(buttons[0]["payload"] if buttons else "skip")
    raise AssertionError(f"no ticket number for {sender}")

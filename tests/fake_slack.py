"""A local stand-in for Slack's Web API (and its Socket Mode WebSocket) for the Slack tests.

It answers the methods Guichet's Slack channel calls the way slack.com does (`{"ok": …}`
bodies, `Authorization: Bearer` tokens, 429 with Retry-After), and records every call so that
a test can read what the bot posted, where and with which buttons.
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass, field
from typing import Any

from aiohttp import WSMsgType, web

from tests.processes import free_port

BOT_TOKEN = "xoxb-1111-2222-guichettest"
APP_TOKEN = "xapp-1-A111-3333-guichettest"
TEAM_ID = "T111"
BOT_USER_ID = "UBOT"
BOT_ID = "BBOT"


@dataclass
class Call:
    method: str
    args: dict[str, Any]


@dataclass
class FakeSlack:
    port: int = field(default_factory=free_port)
    users: dict[str, dict[str, Any]] = field(default_factory=dict)
    calls: list[Call] = field(default_factory=list)
    # method → answers to give before the normal one: (status, body, headers)
    failures: dict[str, list[tuple[int, dict[str, Any], dict[str, str]]]] = field(default_factory=dict)
    acks: list[dict[str, Any]] = field(default_factory=list)  # Socket Mode envelope acks
    _runner: web.AppRunner | None = None
    _sockets: list[web.WebSocketResponse] = field(default_factory=list)
    _ts: int = 0

    @property
    def api_base(self) -> str:
        return f"http://127.0.0.1:{self.port}/api/"

    async def start(self) -> None:
        app = web.Application()
        app.router.add_route("*", "/api/{method}", self._api)
        app.router.add_get("/socket", self._socket)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port, reuse_address=True).start()

    async def stop(self) -> None:
        for ws in list(self._sockets):
            await ws.close()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    def add_user(
        self,
        user_id: str,
        real_name: str,
        email: str | None,
        *,
        team_id: str = TEAM_ID,
        locale: str = "fr-FR",
        is_bot: bool = False,
    ) -> None:
        profile: dict[str, Any] = {"real_name": real_name, "display_name": real_name.split()[0]}
        if email is not None:
            profile["email"] = email
        self.users[user_id] = {
            "id": user_id,
            "team_id": team_id,
            "name": real_name.lower().replace(" ", "."),
            "real_name": real_name,
            "deleted": False,
            "is_bot": is_bot,
            "locale": locale,
            "profile": profile,
        }

    def fail(self, method: str, status: int, error: str, headers: dict[str, str] | None = None) -> None:
        self.failures.setdefault(method, []).append((status, {"ok": False, "error": error}, headers or {}))

    def of(self, method: str) -> list[dict[str, Any]]:
        return [c.args for c in self.calls if c.method == method]

    @property
    def posts(self) -> list[dict[str, Any]]:
        return self.of("chat.postMessage")

    async def posted(self, count: int, seconds: float = 15.0) -> list[dict[str, Any]]:
        """The messages posted once there are at least `count` (fails after `seconds`)."""
        deadline = time.monotonic() + seconds
        while len(self.posts) < count:
            if time.monotonic() > deadline:
                raise AssertionError(f"{len(self.posts)} messages posted, expected {count}: {self.posts}")
            await asyncio.sleep(0.02)
        return self.posts

    # -- Socket Mode ------------------------------------------------------------------------

    async def connected(self, seconds: float = 10.0) -> None:
        deadline = time.monotonic() + seconds
        while not self._sockets:
            if time.monotonic() > deadline:
                raise AssertionError("no Socket Mode connection")
            await asyncio.sleep(0.02)

    async def envelope(
        self, envelope_id: str, kind: str, payload: dict[str, Any], seconds: float = 10.0
    ) -> None:
        """Push one envelope as Slack does and wait until the client acknowledges it."""
        await self._sockets[-1].send_json(
            {
                "envelope_id": envelope_id,
                "type": kind,
                "payload": payload,
                "accepts_response_payload": kind != "events_api",
                "retry_attempt": 0,
                "retry_reason": "",
            }
        )
        deadline = time.monotonic() + seconds
        while not any(a.get("envelope_id") == envelope_id for a in self.acks):
            if time.monotonic() > deadline:
                raise AssertionError(f"envelope {envelope_id} never acknowledged")
            await asyncio.sleep(0.02)

    async def _socket(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(autoping=True)
        await ws.prepare(request)
        await ws.send_json({"type": "hello", "num_connections": 1, "debug_info": {"host": "fake"}})
        self._sockets.append(ws)
        try:
            async for frame in ws:
                if frame.type == WSMsgType.TEXT:
                    self.acks.append(json.loads(frame.data))
        finally:
            self._sockets.remove(ws)
        return ws

    # -- Web API ----------------------------------------------------------------------------

    async def _api(self, request: web.Request) -> web.Response:
        method = request.match_info["method"]
        args: dict[str, Any] = dict(request.query)
        if request.method == "POST" and request.can_read_body:
            if request.content_type == "application/json":
                args.update(await request.json())
            else:
                args.update(await request.post())
        token = request.headers.get("Authorization", "").removeprefix("Bearer ")
        expected = APP_TOKEN if method == "apps.connections.open" else BOT_TOKEN
        if token != expected:
            return web.json_response({"ok": False, "error": "invalid_auth"})
        if isinstance(args.get("blocks"), str):  # sent as form fields, blocks are JSON text
            args["blocks"] = json.loads(args["blocks"])
        self.calls.append(Call(method, args))
        queued = self.failures.get(method)
        if queued:
            status, body, headers = queued.pop(0)
            return web.json_response(body, status=status, headers=headers)
        answer = getattr(self, "_" + method.replace(".", "_"), None)
        if answer is None:
            return web.json_response({"ok": False, "error": "unknown_method"}, status=404)
        result: dict[str, Any] = answer(args)
        return web.json_response(result)

    def _auth_test(self, args: dict[str, Any]) -> dict[str, Any]:
        return {
            "ok": True,
            "url": "https://acme.slack.com/",
            "team": "Acme",
            "user": "guichet",
            "team_id": TEAM_ID,
            "user_id": BOT_USER_ID,
            "bot_id": BOT_ID,
            "is_enterprise_install": False,
        }

    def _users_info(self, args: dict[str, Any]) -> dict[str, Any]:
        user = self.users.get(str(args.get("user")))
        return {"ok": True, "user": user} if user else {"ok": False, "error": "user_not_found"}

    def _users_profile_get(self, args: dict[str, Any]) -> dict[str, Any]:
        user = self.users.get(str(args.get("user")))
        return {"ok": True, "profile": user["profile"]} if user else {"ok": False, "error": "user_not_found"}

    def _chat_postMessage(self, args: dict[str, Any]) -> dict[str, Any]:
        channel = str(args.get("channel") or "")
        if not channel:
            return {"ok": False, "error": "channel_not_found"}
        self._ts += 1
        ts = f"1700000000.{self._ts:06d}"
        args["ts"] = ts
        message = {
            "type": "message",
            "text": args.get("text"),
            "user": BOT_USER_ID,
            "bot_id": BOT_ID,
            "ts": ts,
        }
        return {"ok": True, "channel": channel, "ts": ts, "message": message}

    def _chat_update(self, args: dict[str, Any]) -> dict[str, Any]:
        return {"ok": True, "channel": args.get("channel"), "ts": args.get("ts")}

    def _conversations_history(self, args: dict[str, Any]) -> dict[str, Any]:
        channel = args.get("channel")
        messages = [p for p in self.posts if p.get("channel") == channel]
        return {"ok": True, "messages": messages[-1:], "has_more": len(messages) > 1}

    def _apps_connections_open(self, args: dict[str, Any]) -> dict[str, Any]:
        return {"ok": True, "url": f"ws://127.0.0.1:{self.port}/socket"}

"""A local stand-in for Telegram's Bot API (api.telegram.org cannot be reached from here).

It answers the methods Guichet's real aiogram code calls (`/bot<token>/<method>`), in the Bot
API's own shapes, records every call, queues updates for `getUpdates` (long polling), and can
answer a method with an error first (a 429 with `retry_after`, a 403 "bot was blocked").
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from tests.processes import free_port

TOKEN = "123456:AAE-guichet-test-token"
BOT_ID = 123456


@dataclass
class Call:
    method: str
    args: dict[str, Any]


@dataclass
class FakeTelegram:
    port: int = field(default_factory=free_port)
    calls: list[Call] = field(default_factory=list)
    failures: dict[str, list[tuple[int, dict[str, Any]]]] = field(default_factory=dict)
    updates: list[dict[str, Any]] = field(default_factory=list)
    _runner: web.AppRunner | None = None
    _message_id: int = 0
    _changed: asyncio.Condition = field(default_factory=asyncio.Condition)

    @property
    def api_base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/bot{token}/{method}", self._api)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port, reuse_address=True).start()

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    def fail(self, method: str, code: int, description: str, **parameters: Any) -> None:
        body: dict[str, Any] = {"ok": False, "error_code": code, "description": description}
        if parameters:
            body["parameters"] = parameters
        self.failures.setdefault(method, []).append((code, body))

    def of(self, method: str) -> list[dict[str, Any]]:
        return [c.args for c in self.calls if c.method == method]

    @property
    def sent(self) -> list[dict[str, Any]]:
        return self.of("sendMessage")

    async def wait_sent(self, count: int, seconds: float = 15.0) -> list[dict[str, Any]]:
        """The messages sent once there are at least `count` (fails after `seconds`)."""
        async with self._changed:
            try:
                await asyncio.wait_for(self._changed.wait_for(lambda: len(self.sent) >= count), seconds)
            except TimeoutError:
                raise AssertionError(
                    f"{len(self.sent)} messages sent, expected {count}: {self.sent}"
                ) from None
        return self.sent

    async def wait_quiet(self, quiet: float = 0.3, seconds: float = 15.0) -> list[dict[str, Any]]:
        """The messages sent once none has come for `quiet` seconds: every reply of a turn is
        out (an article comes first, its "did this help?" buttons just after)."""
        deadline = asyncio.get_running_loop().time() + seconds
        async with self._changed:
            while True:
                count = len(self.sent)

                def more(seen: int = count) -> bool:
                    return len(self.sent) > seen

                try:
                    await asyncio.wait_for(self._changed.wait_for(more), quiet)
                except TimeoutError:
                    return self.sent
                if asyncio.get_running_loop().time() > deadline:
                    raise AssertionError(f"the bot never fell quiet: {len(self.sent)} messages sent")

    async def queue_update(self, update: dict[str, Any]) -> None:
        async with self._changed:
            self.updates.append(update)
            self._changed.notify_all()

    async def _api(self, request: web.Request) -> web.Response:
        if request.match_info["token"] != TOKEN:
            return web.json_response(
                {"ok": False, "error_code": 401, "description": "Unauthorized"}, status=401
            )
        method = request.match_info["method"]
        form = await request.post()
        args: dict[str, Any] = {}
        for key, value in form.items():
            text = value if isinstance(value, str) else ""
            try:  # aiogram sends objects (reply_markup, allowed_updates) as JSON text
                args[key] = json.loads(text) if text[:1] in "{[" else text
            except ValueError:
                args[key] = text
        if method != "getUpdates":
            async with self._changed:
                self.calls.append(Call(method, args))
                self._changed.notify_all()
        queued = self.failures.get(method)
        if queued:
            status, body = queued.pop(0)
            return web.json_response(body, status=status)
        if method == "getUpdates":
            return web.json_response({"ok": True, "result": await self._get_updates(args)})
        if method == "getMe":
            return _ok({"id": BOT_ID, "is_bot": True, "first_name": "Guichet", "username": "guichet_bot"})
        if method == "sendMessage":
            self._message_id += 1
            chat_id = int(args["chat_id"])
            message = {
                "message_id": self._message_id,
                "date": int(time.time()),
                "chat": {"id": chat_id, "type": "private" if chat_id > 0 else "group"},
                "from": {"id": BOT_ID, "is_bot": True, "first_name": "Guichet"},
                "text": args.get("text", ""),
            }
            return _ok(message)
        if method in ("answerCallbackQuery", "setWebhook", "deleteWebhook"):
            return _ok(True)
        return web.json_response(
            {"ok": False, "error_code": 404, "description": "Not Found: method"}, status=404
        )

    async def _get_updates(self, args: dict[str, Any]) -> list[dict[str, Any]]:
        offset = int(args.get("offset") or 0)
        timeout = min(float(args.get("timeout") or 0), 2.0)  # a test does not wait 25 s

        def ready() -> list[dict[str, Any]]:
            return [u for u in self.updates if u["update_id"] >= offset]

        async with self._changed:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait_for(lambda: bool(ready())), timeout)
            # Telegram forgets what an offset confirmed.
            self.updates = ready()
            return list(self.updates)


def _ok(result: Any) -> web.Response:
    return web.json_response({"ok": True, "result": result})

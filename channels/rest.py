"""A Rasa-compatible REST channel: `POST /webhooks/rest/webhook` with `{"sender", "message"}`.

It answers with the bot's replies to that message, `[{"recipient_id", "text", "buttons"?}]`,
so front ends and test tools written for Rasa's REST channel work unchanged. Replies that are
not answers to a waiting request (an agent writing later) stay in the transcript only: this
channel has no way to push them.

Whoever knows a `sender` id reads and continues its conversation, as with Rasa's own REST
channel: set GUICHET_REST_TOKEN to require a token (`?token=` or `Authorization: Bearer`).
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import re
from typing import Any

from aiohttp import web

from bot.messages import Inbound, Outbound, clean_text, language_hint, new_id
from channels.base import Channel, OnMessage

log = logging.getLogger("guichet.rest")

# A sender id is printed in logs and used in store keys: no control characters.
_UNPRINTABLE = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")


class _Waiter:
    def __init__(self) -> None:
        self.replies: list[Outbound] = []
        self.done = asyncio.get_running_loop().create_future()


class RestChannel(Channel):
    name = "rest"
    connection_bound = True

    def __init__(
        self,
        app: web.Application,
        *,
        max_message_chars: int = 2000,
        reply_timeout: float = 10.0,
        token: str | None = None,
    ) -> None:
        self.max_message_chars = max_message_chars
        self.token = token
        self.reply_timeout = reply_timeout
        self._on_message: OnMessage | None = None
        self._waiting: dict[str, _Waiter] = {}
        app.router.add_post("/webhooks/rest/webhook", self._webhook)
        app.router.add_get("/webhooks/rest", self._health)

    async def start(self, on_message: OnMessage) -> None:
        self._on_message = on_message

    async def stop(self) -> None:
        for waiter in self._waiting.values():
            if not waiter.done.done():
                waiter.done.set_result(None)

    async def send(self, message: Outbound, seq: int | None) -> None:
        await self.deliver_here(message, seq)

    async def deliver_here(self, message: Outbound, seq: int | None) -> bool:
        waiter = self._waiting.get(message.reply_to or "")
        if waiter is None:
            return False
        waiter.replies.append(message)
        if message.last_in_turn and not waiter.done.done():
            waiter.done.set_result(None)
        return True

    async def silent_here(self, inbound: Inbound) -> bool:
        waiter = self._waiting.get(inbound.platform_message_id)
        if waiter is None:
            return False
        if not waiter.done.done():
            waiter.done.set_result(None)  # Rasa's REST channel answers [] when the bot is silent
        return True

    async def _health(self, request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})  # what Rasa's REST channel answers here

    def _authorised(self, request: web.Request) -> bool:
        if not self.token:
            return True
        given = request.query.get("token", "")
        header = request.headers.get("Authorization", "")
        if header.lower().startswith("bearer "):
            given = header[7:].strip()
        return hmac.compare_digest(given.encode(), self.token.encode())

    async def _webhook(self, request: web.Request) -> web.Response:
        if not self._authorised(request):
            return _problem(
                401,
                "unauthorized",
                "A valid token is required (?token=… or Authorization: Bearer …). "
                "/ Un jeton valide est demandé.",
            )
        try:
            body = await request.json(loads=json.loads)
        except web.HTTPRequestEntityTooLarge:
            return _problem(413, "too_large", f"The body is over {request.client_max_size} bytes.")
        except ValueError:
            return _problem(
                400, "invalid_json", "The body is not valid JSON. / Le corps n'est pas du JSON valide."
            )
        if not isinstance(body, dict):
            return _problem(400, "bad_request", 'Expected {"sender": "...", "message": "..."}.')
        sender, text = body.get("sender"), body.get("message")
        if not isinstance(sender, str) or not 1 <= len(sender) <= 200:
            return _problem(400, "bad_request", "'sender' must be a text of 1 to 200 characters.")
        if _UNPRINTABLE.search(sender):
            return _problem(400, "bad_request", "'sender' must not hold control characters or line breaks.")
        if not isinstance(text, str):
            return _problem(400, "bad_request", "'message' must be a text.")
        if len(text) > self.max_message_chars:
            return _problem(413, "too_long", f"'message' has more than {self.max_message_chars} characters.")
        text = clean_text(text)
        if not text:
            return _problem(400, "bad_request", "'message' is empty.")
        metadata = body["metadata"] if isinstance(body.get("metadata"), dict) else {}
        language = language_hint(metadata.get("language"))  # "xx" or 42: no hint, not an error
        inbound = Inbound(
            channel=self.name,
            conversation_id=sender,
            user_id=sender,
            text=text,
            platform_message_id=new_id(),
            language=language,
            raw={"metadata": metadata, "client": request.remote or ""},
        )
        waiter = _Waiter()
        self._waiting[inbound.platform_message_id] = waiter
        try:
            assert self._on_message is not None, "start() was not called"
            await self._on_message(inbound)
            try:
                async with asyncio.timeout(self.reply_timeout):
                    await waiter.done
            except TimeoutError:
                log.warning("no reply within %.1f s for a message of %s", self.reply_timeout, sender)
                return _problem(
                    504,
                    "timeout",
                    "The message is stored but no reply came in time; it will be in "
                    "the conversation's history.",
                )
        finally:
            del self._waiting[inbound.platform_message_id]
        return web.json_response(
            [_rasa_message(sender, reply) for reply in waiter.replies],
            dumps=lambda o: json.dumps(o, ensure_ascii=False),
        )


def _rasa_message(recipient: str, reply: Outbound) -> dict[str, Any]:
    message: dict[str, Any] = {"recipient_id": recipient, "text": reply.text}
    if reply.choices:
        message["buttons"] = [{"title": c.title, "payload": c.payload} for c in reply.choices]
    return message


def _problem(status: int, code: str, message: str) -> web.Response:
    return web.json_response({"error": code, "message": message}, status=status)

"""The web chat: a page at `/`, an embeddable widget at `/widget.js`, and a WebSocket at `/webchat/ws`.

The conversation is tied to a session id carried in a signed token that the widget keeps in
the browser's localStorage, so a page reload reconnects to the same conversation and shows
its history. Protocol (JSON text frames):

    client → {"type": "hello", "token": str | null, "locale": "fr-FR"}
    server ← {"type": "welcome", "token": str, "history": [entry…], "notice": null | "session_expired"}
    client → {"type": "message", "id": client-unique id, "text": str, "payload"?: str}
    server ← {"type": "ack", "id": …, "seq": n, "duplicate"?: true}   (after the message is stored)
    server ← {"type": "message", "seq": n, "from": "bot" | "agent", "text": …, "choices": […], …}
    server ← {"type": "error", "code": "rate_limited" | "too_long" | "invalid_json" | "bad_request"
              | "invalid_token" | "server_error", "message": …, "id"?: …}
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import secrets
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiohttp import WSMsgType, web

from bot.messages import Inbound, Outbound, TranscriptEntry, clean_text
from channels.base import Channel, OnMessage
from channels.ratelimit import TokenBuckets

log = logging.getLogger("guichet.webchat")

STATIC = Path(__file__).with_name("webchat_static")
History = Callable[[str], Awaitable[list[TranscriptEntry]]]

_ERRORS = {
    "rate_limited": "Too many messages: wait a few seconds. / Trop de messages : patientez quelques secondes.",
    "too_long": "Message too long. / Message trop long.",
    "invalid_json": "The frame is not valid JSON. / La trame n'est pas du JSON valide.",
    "bad_request": "The message is not understood by the protocol. / Message non conforme au protocole.",
    "invalid_token": "Unknown or expired session: a new conversation starts. / Session inconnue ou expirée.",
    "server_error": "The message could not be stored; send it again. / Message non enregistré ; renvoyez-le.",
}


@dataclass(frozen=True, slots=True)
class WebchatOptions:
    secret: bytes
    max_message_chars: int = 2000
    session_seconds: int = 30 * 86400
    allowed_origins: tuple[str, ...] = ()
    session_rate: tuple[float, int] = (1.0, 10)
    ip_rate: tuple[float, int] = (20.0, 200)


class SessionTokens:
    """`<payload>.<signature>`: a random session id and its issue time, signed with HMAC-SHA256."""

    def __init__(self, secret: bytes, lifetime_seconds: int) -> None:
        self._secret = secret
        self.lifetime = lifetime_seconds

    def issue(self, session_id: str | None = None, now: float | None = None) -> tuple[str, str]:
        session_id = session_id or secrets.token_hex(16)
        issued = int(now if now is not None else time.time())
        payload = _b64(f"{session_id}.{issued}".encode())
        return session_id, f"{payload}.{self._sign(payload)}"

    def verify(self, token: object, now: float | None = None) -> str | None:
        """The session id of a valid, unexpired token; None for anything else."""
        if not isinstance(token, str) or len(token) > 200 or token.count(".") != 1:
            return None
        payload, signature = token.split(".")
        if not hmac.compare_digest(signature, self._sign(payload)):
            return None
        try:
            session_id, issued = base64.urlsafe_b64decode(payload + "==").decode().split(".")
            age = (now if now is not None else time.time()) - int(issued)
        except (ValueError, UnicodeDecodeError):
            return None
        return session_id if 0 <= age <= self.lifetime else None

    def _sign(self, payload: str) -> str:
        return _b64(hmac.new(self._secret, payload.encode(), hashlib.sha256).digest())


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


class WebchatChannel(Channel):
    name = "webchat"
    connection_bound = True

    def __init__(self, app: web.Application, options: WebchatOptions, history: History) -> None:
        self.options = options
        self.tokens = SessionTokens(options.secret, options.session_seconds)
        self.history = history
        self._on_message: OnMessage | None = None
        self._sockets: dict[str, set[web.WebSocketResponse]] = defaultdict(set)
        self._per_session = TokenBuckets(*options.session_rate)
        self._per_ip = TokenBuckets(*options.ip_rate)
        app.router.add_get("/", self._index)
        app.router.add_get("/widget.js", self._widget)
        app.router.add_get("/webchat/ws", self._websocket)

    async def start(self, on_message: OnMessage) -> None:
        self._on_message = on_message

    async def stop(self) -> None:
        for sockets in list(self._sockets.values()):
            for ws in list(sockets):
                await ws.close(code=1001, message=b"server shutting down")

    async def send(self, message: Outbound, seq: int | None) -> None:
        await self.deliver_here(message, seq)

    async def deliver_here(self, message: Outbound, seq: int | None) -> bool:
        sockets = list(self._sockets.get(message.conversation_id, ()))
        if not sockets:
            return False
        frame = json.dumps(
            {
                "type": "message",
                "seq": seq,
                "from": message.sender,
                "text": message.text,
                "choices": [{"title": c.title, "payload": c.payload} for c in message.choices],
                "time": message.created_at.isoformat(),
                "agent_name": message.agent_name,
                # The last reply to a message: the widget stops its "typing…" indicator.
                "last": message.last_in_turn,
            },
            ensure_ascii=False,
        )
        # No open socket is not a failure: the reply is in the transcript, and the widget
        # shows the history when the person comes back.
        for ws in sockets:
            try:
                await ws.send_str(frame)
            except (ConnectionResetError, RuntimeError):
                self._sockets[message.conversation_id].discard(ws)
        return True

    @property
    def open_sockets(self) -> int:
        return sum(len(s) for s in self._sockets.values())

    async def _index(self, request: web.Request) -> web.StreamResponse:
        return web.FileResponse(
            STATIC / "index.html",
            headers={
                "Content-Security-Policy": "default-src 'self'; connect-src 'self' ws: wss:; "
                "style-src 'self' 'unsafe-inline'; img-src 'self' data:",
                "X-Content-Type-Options": "nosniff",
            },
        )

    async def _widget(self, request: web.Request) -> web.StreamResponse:
        return web.FileResponse(
            STATIC / "widget.js",
            headers={
                "Content-Type": "text/javascript; charset=utf-8",
                "Cache-Control": "public, max-age=300",
                "X-Content-Type-Options": "nosniff",
            },
        )

    def _origin_allowed(self, request: web.Request) -> bool:
        origin = request.headers.get("Origin")
        if origin is None:  # not a browser: test tools, load generators, server-side clients
            return True
        allowed = self.options.allowed_origins
        if "*" in allowed or origin in allowed:
            return True
        return origin in (f"http://{request.host}", f"https://{request.host}")

    async def _websocket(self, request: web.Request) -> web.StreamResponse:
        if not self._origin_allowed(request):
            return web.json_response(
                {
                    "error": "origin_not_allowed",
                    "message": "This site may not open the chat; add it to webchat.allowed_origins.",
                },
                status=403,
            )
        ws = web.WebSocketResponse(heartbeat=30.0, max_msg_size=64 * 1024)
        await ws.prepare(request)
        session_id: str | None = None
        try:
            session_id, language = await self._hello(ws)
            if session_id is None:
                return ws
            self._sockets[session_id].add(ws)
            ip = request.remote or "?"
            async for frame in ws:
                if frame.type != WSMsgType.TEXT:
                    if frame.type == WSMsgType.BINARY:
                        await _error(ws, "bad_request")
                    continue
                await self._frame(ws, frame.data, session_id, language, ip)
        except TimeoutError:
            await _error(ws, "bad_request", detail="no hello within 10 seconds")
        finally:
            if session_id is not None:
                self._sockets[session_id].discard(ws)
                if not self._sockets[session_id]:
                    del self._sockets[session_id]
            await ws.close()
        return ws

    async def _hello(self, ws: web.WebSocketResponse) -> tuple[str | None, str | None]:
        frame = await ws.receive(timeout=10)
        if frame.type != WSMsgType.TEXT:
            return None, None
        try:
            hello = json.loads(frame.data)
        except ValueError:
            await _error(ws, "invalid_json")
            return None, None
        if not isinstance(hello, dict) or hello.get("type") != "hello":
            await _error(ws, "bad_request", detail="the first frame must be a hello")
            return None, None
        notice = None
        session_id = self.tokens.verify(hello.get("token"))
        if session_id is None and hello.get("token") is not None:
            notice = "session_expired"
            await _error(ws, "invalid_token")
        session_id, token = self.tokens.issue(session_id)
        locale = hello.get("locale")
        language = (
            locale[:2].lower() if isinstance(locale, str) and locale[:2].lower() in ("fr", "en") else None
        )
        history = [_history_entry(entry, session_id) for entry in await self.history(session_id)]
        await ws.send_json({"type": "welcome", "token": token, "history": history, "notice": notice})
        return session_id, language

    async def _frame(
        self, ws: web.WebSocketResponse, data: str, session_id: str, language: str | None, ip: str
    ) -> None:
        try:
            message = json.loads(data)
        except ValueError:
            await _error(ws, "invalid_json")
            return
        if not isinstance(message, dict) or message.get("type") != "message":
            await _error(ws, "bad_request", detail="expected a frame of type 'message'")
            return
        client_id, text, payload = message.get("id"), message.get("text"), message.get("payload")
        if not isinstance(client_id, str) or not 1 <= len(client_id) <= 100:
            await _error(ws, "bad_request", detail="'id' must be a text of 1 to 100 characters")
            return
        if not isinstance(text, str) or (payload is not None and not isinstance(payload, str)):
            await _error(ws, "bad_request", client_id, "'text' must be a text")
            return
        if len(text) > self.options.max_message_chars:
            await _error(ws, "too_long", client_id, f"at most {self.options.max_message_chars} characters")
            return
        text = clean_text(text)
        if not text:
            await _error(ws, "bad_request", client_id, "the message is empty")
            return
        if not self._per_session.allow(session_id) or not self._per_ip.allow(ip):
            await _error(ws, "rate_limited", client_id)
            return
        inbound = Inbound(
            channel=self.name,
            conversation_id=session_id,
            user_id=session_id,
            text=text,
            platform_message_id=f"{session_id}/{client_id}",
            language=language,
            payload=payload[:200] if payload else None,
            raw={"client": ip},  # for the limit on guessed codes and ticket numbers (bot/guesses.py)
        )
        assert self._on_message is not None, "start() was not called"
        try:
            result = await self._on_message(inbound)
        except Exception:
            log.exception("could not store a web chat message")
            await _error(ws, "server_error", client_id)
            return
        ack: dict[str, Any] = {"type": "ack", "id": client_id, "seq": result.seq}
        if not result.accepted:
            ack["duplicate"] = True
        await ws.send_json(ack)


def _history_entry(entry: TranscriptEntry, session_id: str) -> dict[str, Any]:
    data = entry.to_dict()
    prefix = f"{session_id}/"
    if entry.sender == "user" and entry.message_id.startswith(prefix):
        data["id"] = entry.message_id[len(prefix) :]
    if entry.reply_to and entry.reply_to.startswith(prefix):
        data["reply_to"] = entry.reply_to[len(prefix) :]  # the widget's own id of the question
    return data


async def _error(
    ws: web.WebSocketResponse, code: str, client_id: str | None = None, detail: str | None = None
) -> None:
    frame: dict[str, Any] = {
        "type": "error",
        "code": code,
        "message": _ERRORS[code] + (f" ({detail})" if detail else ""),
    }
    if client_id is not None:
        frame["id"] = client_id
    if not ws.closed:
        await ws.send_json(frame)

"""The Telegram channel (aiogram 3): customers writing to the help desk's bot at any hour.

Two ways in, one conversion:

- webhook (`mode: webhook`): Telegram POSTs each Update to `webhook_path` with the secret
  token it was given in `X-Telegram-Bot-Api-Secret-Token`; a request without the right one
  is refused (401), and Guichet refuses to start in this mode without a secret. The update is
  stored before Telegram gets its 200, so a crash in between makes Telegram send it again.
- long polling (`mode: polling`, the default): for a desk without a public address; the
  offset only moves past an update once it is stored.

Either way the platform id is the `update_id`, so a repeated update is dropped by the store.
Each chat is one conversation; `/start`, `/help`, `/status [ticket]` and `/cancel` become the
words the policy understands in the person's language (from `language_code` when the text
does not tell); an inline-keyboard press comes back as the choice's payload. Photos and
documents are listed as attachments of the ticket (`telegram:<file_id>`, fetched by level 2
through the Bot API if it needs them). Edited messages, service messages and other bots are
ignored (and acknowledged, or Telegram would retry them forever).

On the way out: plain text (no parse mode, so nothing a person typed can turn into markup),
split under Telegram's 4,096 characters, choices as an inline keyboard, and Telegram's rates
respected — one message a second per private chat, `per_group_per_minute` in groups, and
`global_per_second` in all; a 429 waits its `retry_after`.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import logging
import time
from collections.abc import Mapping
from typing import Any

import aiohttp
from aiogram import Bot
from aiogram.client.session.aiohttp import AiohttpSession
from aiogram.client.telegram import TelegramAPIServer
from aiogram.exceptions import (
    TelegramAPIError,
    TelegramBadRequest,
    TelegramForbiddenError,
    TelegramNetworkError,
    TelegramNotFound,
    TelegramRetryAfter,
    TelegramUnauthorizedError,
)
from aiogram.types import InlineKeyboardButton, InlineKeyboardMarkup
from aiohttp import web

from bot.errors import ConfigError, DeliveryError
from bot.messages import Inbound, Outbound, clean_text, language_hint
from bot.settings import Settings, TelegramSettings, missing_channel_secrets
from channels.base import Channel, OnMessage

log = logging.getLogger("guichet.telegram")

MAX_CHARS = 4096  # Telegram's limit for one message
MAX_CALLBACK_BYTES = 64  # and for a button's callback_data
ALLOWED_UPDATES = ["message", "callback_query"]

# Commands → what the policy understands, per language.
COMMANDS: Mapping[str, Mapping[str, str]] = {
    "start": {"fr": "bonjour", "en": "hello"},
    "help": {"fr": "aide", "en": "help"},
    "cancel": {"fr": "annuler", "en": "cancel"},
    "status": {"fr": "où en est mon ticket", "en": "status of my ticket"},
}


def split_text(text: str, limit: int = MAX_CHARS) -> list[str]:
    """Pieces under the limit, cut at a paragraph, a line or a space when there is one."""
    pieces: list[str] = []
    while len(text) > limit:
        # The best place in the second half: between paragraphs, else lines, else words.
        cut = next(
            (at for sep in ("\n\n", "\n", " ") if (at := text.rfind(sep, 0, limit)) >= limit // 2),
            limit,  # no good place: cut where the limit is
        )
        pieces.append(text[:cut].rstrip())
        text = text[cut:].lstrip()
    if text.strip() or not pieces:
        pieces.append(text.rstrip())
    return pieces


class TelegramPollError(Exception):
    def __init__(self, message: str, retry_after: float | None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class _Pace:
    """Telegram's rates, waited for rather than exceeded (a 429 costs more than a wait)."""

    def __init__(self, settings: TelegramSettings) -> None:
        self.settings = settings
        self.next_global = 0.0
        self.next_chat: dict[int, float] = {}
        self.lock = asyncio.Lock()

    async def wait(self, chat_id: int, group: bool) -> None:
        gap = 60.0 / self.settings.per_group_per_minute if group else 1.0 / self.settings.per_chat_per_second
        async with self.lock:  # one reservation at a time; the sleeps happen outside
            now = time.monotonic()
            at = max(now, self.next_global, self.next_chat.get(chat_id, 0.0))
            self.next_global = at + 1.0 / self.settings.global_per_second
            self.next_chat[chat_id] = at + gap
            if len(self.next_chat) > 10_000:  # forget chats that are long past their gap
                self.next_chat = {c: t for c, t in self.next_chat.items() if t > now}
        if at > time.monotonic():
            await asyncio.sleep(at - time.monotonic())


class TelegramChannel(Channel):
    name = "telegram"

    def __init__(self, http: web.Application, settings: TelegramSettings) -> None:
        problems = missing_channel_secrets(Settings(telegram=settings))
        if problems:
            # Without the webhook secret anyone could post updates; without the token nothing
            # can be sent: refuse to start rather than run half a channel.
            raise ConfigError(problems)
        assert settings.token is not None
        self.settings = settings
        session = AiohttpSession(api=TelegramAPIServer.from_base(settings.api_base.rstrip("/")))
        self.bot = Bot(token=settings.token, session=session)
        self.pace = _Pace(settings)
        self._on_message: OnMessage | None = None
        self._poller: asyncio.Task[None] | None = None
        self._background: set[asyncio.Task[Any]] = set()
        self._groups: set[int] = set()  # chats that are groups: slower pace
        if settings.mode == "webhook":
            http.router.add_post(settings.webhook_path, self._webhook)

    async def start(self, on_message: OnMessage) -> None:
        self._on_message = on_message
        if self.settings.mode == "polling":
            self._poller = asyncio.create_task(self._poll(), name="telegram-polling")
        elif self.settings.public_url:
            url = self.settings.public_url.rstrip("/") + self.settings.webhook_path
            try:
                await self.bot.set_webhook(
                    url, secret_token=self.settings.webhook_secret, allowed_updates=ALLOWED_UPDATES
                )
            except TelegramAPIError as exc:  # Telegram down at start: updates wait on its side
                log.error("could not register the Telegram webhook %s: %s", url, exc)

    async def stop(self) -> None:
        if self._poller is not None:
            self._poller.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._poller
        if self._background:
            await asyncio.wait(list(self._background), timeout=5)
        await self.bot.session.close()

    # In ----------------------------------------------------------------------------------------
    async def _webhook(self, request: web.Request) -> web.Response:
        given = request.headers.get("X-Telegram-Bot-Api-Secret-Token", "")
        assert self.settings.webhook_secret is not None
        if not hmac.compare_digest(given.encode(), self.settings.webhook_secret.encode()):
            return web.json_response({"error": "wrong or missing secret token"}, status=401)
        try:
            update = json.loads(await request.read())
            if not isinstance(update, dict) or not isinstance(update.get("update_id"), int):
                raise ValueError("an Update is an object with an integer update_id")
            inbound = self.to_inbound(update)
        except (ValueError, KeyError, TypeError, RecursionError) as exc:  # deep nesting too
            return web.json_response({"error": f"not a Telegram update: {str(exc)[:200]}"}, status=400)
        try:
            await self._take(inbound)
        except Exception:
            log.exception(
                "could not store Telegram update %s; Telegram will send it again", update["update_id"]
            )
            return web.json_response({"error": "temporary failure"}, status=500)
        return web.Response(text="")

    async def _poll(self) -> None:
        offset = 0
        delay = 1.0
        with contextlib.suppress(TelegramAPIError):
            await self.bot.delete_webhook(drop_pending_updates=False)  # getUpdates needs no webhook
        url = f"{self.settings.api_base.rstrip('/')}/bot{self.settings.token}/getUpdates"
        timeout = aiohttp.ClientTimeout(total=40)
        async with aiohttp.ClientSession(timeout=timeout) as http:
            while True:
                try:
                    # Read as JSON, like the webhook: an update aiogram's models refused would
                    # come back at every call and stop the desk from hearing anyone.
                    query = {"offset": offset, "timeout": 25, "allowed_updates": json.dumps(ALLOWED_UPDATES)}
                    async with http.post(url, data=query) as answer:
                        body = await answer.json(content_type=None)
                    if not body.get("ok"):
                        retry = (body.get("parameters") or {}).get("retry_after")
                        raise TelegramPollError(f"{body.get('error_code')} {body.get('description')}", retry)
                    for update in body.get("result") or ():
                        update_id = int(update["update_id"])
                        try:
                            inbound = self.to_inbound(update)
                        except (ValueError, KeyError, TypeError) as exc:
                            log.warning("Telegram update %s skipped: %s", update_id, exc)
                            inbound = None
                        await self._take(inbound)  # raises: the offset stays, the update comes again
                        offset = update_id + 1
                    delay = 1.0
                except asyncio.CancelledError:
                    raise
                except Exception as exc:  # Telegram or the store unavailable: try again, slower
                    wait = float(getattr(exc, "retry_after", None) or delay)
                    log.warning("Telegram polling: %s; again in %.0f s", exc, wait)
                    await asyncio.sleep(wait)
                    delay = min(delay * 2, 60.0)

    async def _take(self, inbound: Inbound | None) -> None:
        if inbound is None:
            return
        assert self._on_message is not None, "start() was not called"
        await self._on_message(inbound)
        callback = inbound.raw.get("telegram", {}).get("callback_id")
        if callback:  # the button stops spinning once it is stored
            self._soon(self._answer_callback(callback))

    def _soon(self, work: Any) -> None:
        task = asyncio.create_task(work)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _answer_callback(self, callback_id: str) -> None:
        with contextlib.suppress(TelegramAPIError):
            await self.bot.answer_callback_query(callback_id)

    def to_inbound(self, update: Mapping[str, Any]) -> Inbound | None:
        """The Update as a message for the desk, or None when there is nothing to read.

        Read from the JSON as sent rather than from aiogram's models: Telegram adds fields
        over the years and older clients omit some (file_unique_id…); a model that refused
        an update would make Telegram send it again and again, and the person would never get
        an answer. Only what the desk needs must be there."""
        update_id = int(update["update_id"])
        if isinstance(update.get("callback_query"), Mapping):
            return self._from_callback(update_id, update["callback_query"])
        message = update.get("message")
        if not isinstance(message, Mapping):
            return None  # edited messages, channel posts, other update types
        sender, chat = message.get("from"), message.get("chat")
        if not isinstance(sender, Mapping) or not isinstance(chat, Mapping) or sender.get("is_bot"):
            return None  # service messages, other bots
        if chat.get("type") != "private":
            self._groups.add(int(chat["id"]))
        hint = language_hint(sender.get("language_code"))
        text = str(message.get("text") or message.get("caption") or "")
        attachments = self._attachments(message)
        command = _command(text)
        if command is not None:
            name, argument = command
            # An unknown command gets the help text.
            words, argument = (COMMANDS[name], argument) if name in COMMANDS else (COMMANDS["help"], "")
            text = f"{words[hint or 'fr']} {argument}".strip()
        if not text.strip():
            if not attachments:
                return None  # a sticker, a location, a poll…: nothing to read
            text = "(pièce jointe)" if (hint or "fr") == "fr" else "(attachment)"
        return Inbound(
            channel=self.name,
            conversation_id=str(int(chat["id"])),
            user_id=str(int(sender["id"])),
            text=clean_text(text)[:4000],
            platform_message_id=f"update:{update_id}",
            language=hint,
            user_name=_name(sender),
            raw={
                "telegram": {"chat_type": chat.get("type"), "message_id": message.get("message_id")},
                "attachments": attachments,
            },
        )

    def _from_callback(self, update_id: int, query: Mapping[str, Any]) -> Inbound | None:
        message, sender, data = query.get("message"), query.get("from"), query.get("data")
        if not isinstance(message, Mapping) or not isinstance(sender, Mapping) or not isinstance(data, str):
            return None
        chat = message.get("chat") or {}
        # A payload too long for Telegram travelled as its number: the policy reads numbers.
        payload, text = (None, data[2:]) if data.startswith("n:") else (data, data)
        return Inbound(
            channel=self.name,
            conversation_id=str(int(chat["id"])),
            user_id=str(int(sender["id"])),
            text=text,
            platform_message_id=f"update:{update_id}",
            language=language_hint(sender.get("language_code")),
            payload=payload,
            user_name=_name(sender),
            raw={"telegram": {"callback": True, "callback_id": str(query.get("id") or "")}},
        )

    def _attachments(self, message: Mapping[str, Any]) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = []
        photos = [p for p in message.get("photo") or () if isinstance(p, Mapping) and p.get("file_id")]
        if photos:
            largest = max(
                photos,
                key=lambda p: (p.get("file_size") or 0, (p.get("width") or 0) * (p.get("height") or 0)),
            )
            found.append(
                {
                    "name": "photo.jpg",
                    "type": "image/jpeg",
                    "size": int(largest.get("file_size") or 0),
                    "ref": largest["file_id"],
                }
            )
        document = message.get("document")
        if isinstance(document, Mapping) and document.get("file_id"):
            found.append(
                {
                    "name": str(document.get("file_name") or "document"),
                    "type": str(document.get("mime_type") or "application/octet-stream"),
                    "size": int(document.get("file_size") or 0),
                    "ref": document["file_id"],
                }
            )
        for item in found:
            item["ref"] = f"telegram:{item['ref']}"
            if item["size"] > self.settings.max_attachment_bytes:
                item["too_large"] = True  # listed for level 2, but Telegram bots cannot fetch it
        return found

    # Out ---------------------------------------------------------------------------------------
    async def send(self, message: Outbound, seq: int | None) -> None:
        try:
            chat_id = int(message.conversation_id)
        except ValueError as exc:
            raise DeliveryError(
                self.name, f"not a Telegram chat id: {message.conversation_id!r}", permanent=True
            ) from exc
        text = message.text
        if message.sender == "agent" and message.agent_name:
            text = (
                f"{message.agent_name} :\n{text}"
                if (message.language or "fr") == "fr"
                else f"{message.agent_name}:\n{text}"
            )
        pieces = split_text(text)
        for n, piece in enumerate(pieces):
            # The buttons go with the last piece, where the question is.
            markup = _keyboard(message) if n == len(pieces) - 1 and message.choices else None
            await self._send_one(chat_id, piece, markup)

    async def _send_one(self, chat_id: int, text: str, markup: InlineKeyboardMarkup | None) -> None:
        for _ in range(3):
            await self.pace.wait(chat_id, chat_id in self._groups or chat_id < 0)
            try:
                await self.bot.send_message(chat_id, text, reply_markup=markup, parse_mode=None)
                return
            except TelegramRetryAfter as exc:
                if exc.retry_after > 60:
                    raise DeliveryError(
                        self.name, f"Telegram asks to wait {exc.retry_after} s", permanent=False
                    ) from exc
                await asyncio.sleep(exc.retry_after)
            except (TelegramForbiddenError, TelegramNotFound) as exc:  # blocked by the person, chat gone
                raise DeliveryError(self.name, exc.message, permanent=True) from exc
            except TelegramBadRequest as exc:
                raise DeliveryError(
                    self.name, exc.message, permanent="chat not found" in exc.message.lower()
                ) from exc
            except TelegramUnauthorizedError as exc:  # a wrong token: fixed by a person, then retried
                raise DeliveryError(self.name, "Telegram refused the bot token", permanent=False) from exc
            except (TelegramNetworkError, TelegramAPIError) as exc:
                raise DeliveryError(self.name, f"Telegram: {exc}", permanent=False) from exc
        raise DeliveryError(self.name, "Telegram kept asking to wait", permanent=False)


def _keyboard(message: Outbound) -> InlineKeyboardMarkup:
    rows = []
    for n, choice in enumerate(message.choices, start=1):
        data = choice.payload if len(choice.payload.encode()) <= MAX_CALLBACK_BYTES else f"n:{n}"
        rows.append([InlineKeyboardButton(text=choice.title[:64], callback_data=data)])
    return InlineKeyboardMarkup(inline_keyboard=rows)


def _name(user: Mapping[str, Any]) -> str | None:
    parts = [str(user[k]) for k in ("first_name", "last_name") if user.get(k)]
    return " ".join(parts) or (str(user["username"]) if user.get("username") else None)


def _command(text: str) -> tuple[str, str] | None:
    """("status", "HD-2026-000042") for "/status@guichet_bot HD-2026-000042"."""
    if not text.startswith("/"):
        return None
    head, _, argument = text[1:].partition(" ")
    name = head.split("@", 1)[0].lower()
    return (name, argument.strip()) if name.isalnum() else None

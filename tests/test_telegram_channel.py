"""The Telegram channel: the real aiogram code in a running Guichet, against a local mimic of
the Bot API (tests/fake_telegram.py), fed with real Update payloads (tests/fixtures/telegram,
from aiogram's test suite). Webhook and long polling, commands, buttons, attachments, rates,
and one whole conversation through to level 2 and back."""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from bot.app import Guichet
from bot.config import Configuration, load_configuration
from bot.errors import ConfigError
from bot.messages import Choice, Outbound
from bot.settings import TelegramSettings
from channels.telegram import TelegramChannel, _Pace, split_text
from tests.conftest import MODEL_DIR
from tests.fake_telegram import TOKEN, FakeTelegram
from tests.level2 import Receiver, post_event
from tests.processes import config_copy

FIXTURES = Path(__file__).parent / "fixtures" / "telegram"
SECRET = "s3cret-token_for-the-webhook"
NUMBER = re.compile(r"HD-\d{4}-\d{6}")
_ids = iter(range(700_000_000, 800_000_000))


def fixture(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((FIXTURES / name).read_text(encoding="utf-8"))
    return data


def update(
    text: str, *, chat: int = 12345678, language: str = "fr", message: str = "UPDATE.json"
) -> dict[str, Any]:
    """A real Update (aiogram's fixture) with our text, chat and language."""
    body = fixture(message)
    if "update_id" not in body:
        body = {"update_id": 0, "message": body}
    body["update_id"] = next(_ids)
    inner = body["message"]
    inner["chat"]["id"] = inner["from"]["id"] = chat
    inner["from"]["language_code"] = language
    inner["date"] = int(time.time())
    if text:
        inner["text"] = text
    return body


def press(data: str, *, chat: int = 12345678, language: str = "fr") -> dict[str, Any]:
    """A callback_query Update: the person pressed an inline-keyboard button."""
    message = fixture("UPDATE.json")["message"]
    message["chat"]["id"] = chat
    return {
        "update_id": next(_ids),
        "callback_query": {
            "id": f"cb{next(_ids)}",
            "from": {"id": chat, "is_bot": False, "first_name": "Ana", "language_code": language},
            "message": message,
            "chat_instance": "42",
            "data": data,
        },
    }


def configuration(
    tmp_path: Path,
    telegram: FakeTelegram,
    receiver: Receiver,
    environ: dict[str, str] | None = None,
    **settings: Any,
) -> Configuration:
    config = config_copy(
        tmp_path / "config",
        telegram={
            "enabled": True, "mode": "webhook", "api_base": telegram.api_base,
            # A test types faster than Telegram lets a bot answer; test_pace checks the pace.
            "per_chat_per_second": 1000, "per_group_per_minute": 60000, "global_per_second": 1000,
            **settings,
        },
        handoff={
            "queues": {"support": {"url": receiver.url}, "security": {"url": receiver.url}},
            "default_queue": "support",
            "retry_schedule_seconds": [0.2, 0.2, 0.2],
        },
    )  # fmt: skip
    env = {
        "GUICHET_DATA_DIR": str(tmp_path / "data"),
        "GUICHET_HTTP_PORT": "0",
        "GUICHET_SMTP_PORT": "0",
        "GUICHET_MODEL_DIR": str(MODEL_DIR),
        "GUICHET_TELEGRAM_TOKEN": TOKEN,
        "GUICHET_TELEGRAM_WEBHOOK_SECRET": SECRET,
        **(environ or {}),
    }
    return load_configuration(config, environ={k: v for k, v in env.items() if v})


@pytest.fixture
async def telegram() -> AsyncIterator[FakeTelegram]:
    fake = FakeTelegram()
    await fake.start()
    yield fake
    await fake.stop()


@pytest.fixture
async def desk(tmp_path: Path, telegram: FakeTelegram, receiver: Receiver) -> AsyncIterator[Guichet]:
    app = Guichet(configuration(tmp_path, telegram, receiver))
    await app.start()
    yield app
    await app.stop()


async def post(desk: Guichet, body: dict[str, Any] | bytes, secret: str | None = SECRET) -> tuple[int, str]:
    headers = {"Content-Type": "application/json"}
    if secret is not None:
        headers["X-Telegram-Bot-Api-Secret-Token"] = secret
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    async with (
        aiohttp.ClientSession() as http,
        http.post(f"{desk.url}/telegram/webhook", data=data, headers=headers) as answer,
    ):
        return answer.status, await answer.text()


async def settled(desk: Guichet) -> None:
    await asyncio.sleep(0.05)
    await desk.manager.idle()


# -- in: the webhook ---------------------------------------------------------------------------


async def test_the_webhook_wants_its_secret_and_a_real_update(desk: Guichet, telegram: FakeTelegram) -> None:
    body = update("j'ai oublié mon mot de passe")
    assert (await post(desk, body, secret=None))[0] == 401
    assert (await post(desk, body, secret="guessed"))[0] == 401
    assert (await post(desk, b'{"update_id": 1, "message": {'))[0] == 400
    assert (await post(desk, {"update_id": "x"}))[0] == 400
    await settled(desk)
    assert telegram.sent == []  # nothing refused was read
    status, _ = await post(desk, body)
    assert status == 200
    sent = await telegram.wait_sent(2)
    article, question = sent
    assert int(article["chat_id"]) == 12345678 and "mot de passe" in article["text"].lower()
    assert "parse_mode" not in article  # plain text: nothing a person typed becomes markup
    buttons = [row[0]["callback_data"] for row in question["reply_markup"]["inline_keyboard"]]
    assert buttons == ["helped:yes", "helped:no"]


async def test_bad_input_gets_a_clear_error_and_hidden_characters_never_reach_the_desk(
    desk: Guichet, telegram: FakeTelegram
) -> None:
    assert (await post(desk, b"[" * 30000 + b"]" * 30000))[0] == 400  # deeply nested
    assert (await post(desk, update("x" * 200_000)))[0] == 413  # over the body limit
    assert (await post(desk, {"update_id": 1, "message": {"chat": {}, "from": {"id": 1}}}))[0] == 400
    hidden = update("mon\u202e mot\u200b de passe\x00 est bloqué <script>alert(1)</script>", chat=666)
    assert (await post(desk, hidden))[0] == 200
    await telegram.wait_sent(1)
    transcript = await desk.store.transcript("telegram:666")
    assert transcript[0].text == "mon mot de passe est bloqué <script>alert(1)</script>"
    health = await post(desk, update("bonjour", chat=667))
    assert health[0] == 200  # still serving


async def test_a_repeated_update_is_answered_once(desk: Guichet, telegram: FakeTelegram) -> None:
    body = update("bonjour")
    assert (await post(desk, body))[0] == 200
    await telegram.wait_sent(1)
    assert (await post(desk, body))[0] == 200  # Telegram did not get our 200 and sends it again
    await settled(desk)
    await asyncio.sleep(0.2)
    assert len(telegram.sent) == 1


async def test_buttons_commands_and_the_persons_language(desk: Guichet, telegram: FakeTelegram) -> None:
    await post(desk, update("/start", language="en", chat=111))
    (greeting,) = await telegram.wait_sent(1)
    assert greeting["text"].startswith("Hello!")  # language_code en, and "/start" says nothing else
    await post(desk, update("my password expired, how do I change it", language="en", chat=111))
    await telegram.wait_sent(3)
    await post(desk, press("helped:yes", chat=111, language="en"))
    sent = await telegram.wait_sent(4)
    assert "glad" in sent[-1]["text"].lower()
    assert len(telegram.of("answerCallbackQuery")) == 1  # the button stops spinning
    await post(desk, update("/status@guichet_bot HD-2026-999999", chat=111, language="en"))
    sent = await telegram.wait_sent(5)
    assert "HD-2026-999999" in sent[-1]["text"] or "ticket" in sent[-1]["text"].lower()


async def test_edits_stickers_and_bots_are_acknowledged_and_ignored(
    desk: Guichet, telegram: FakeTelegram
) -> None:
    edited = {"update_id": next(_ids), "edited_message": fixture("EDITED_MESSAGE.json")}
    sticker = update("", message="MESSAGE_WITH_STICKER.json")
    robot = update("bonjour")
    robot["message"]["from"]["is_bot"] = True
    for body in (edited, sticker, robot):
        assert (await post(desk, body))[0] == 200
    await settled(desk)
    await asyncio.sleep(0.2)
    assert telegram.sent == []


async def test_an_update_the_store_could_not_keep_is_refused_so_telegram_sends_it_again(
    desk: Guichet, telegram: FakeTelegram, monkeypatch: pytest.MonkeyPatch
) -> None:
    accept = desk.store.accept

    async def broken(inbound: Any) -> Any:
        raise OSError("disk full")

    monkeypatch.setattr(desk.store, "accept", broken)
    body = update("bonjour", chat=888)
    assert (await post(desk, body))[0] == 500  # not 200: Telegram keeps it and retries
    monkeypatch.setattr(desk.store, "accept", accept)
    assert (await post(desk, body))[0] == 200
    (greeting,) = await telegram.wait_sent(1)
    assert int(greeting["chat_id"]) == 888 and greeting["text"].startswith("Bonjour")


async def test_a_photo_is_listed_as_an_attachment_and_a_large_one_is_noted_not_fetched(
    desk: Guichet, telegram: FakeTelegram
) -> None:
    channel = desk.channels["telegram"]
    assert isinstance(channel, TelegramChannel)
    photo = update("", chat=999, language="ru", message="MESSAGE_WITH_PHOTO.json")
    photo["message"]["photo"][-1]["file_size"] = desk.settings.telegram.max_attachment_bytes + 1
    inbound = channel.to_inbound(photo)
    assert inbound is not None and inbound.text == "photo description"  # the caption
    assert inbound.language is None  # "ru": neither French nor English, the text decides
    (attachment,) = inbound.raw["attachments"]
    assert attachment["type"] == "image/jpeg" and attachment["ref"].startswith("telegram:AgAD")
    assert attachment["size"] > desk.settings.telegram.max_attachment_bytes and attachment["too_large"]
    del photo["message"]["caption"]
    inbound = channel.to_inbound(photo)
    assert inbound is not None and inbound.text == "(pièce jointe)" and inbound.raw["attachments"]
    assert telegram.of("getFile") == []  # nothing fetched


# -- out -------------------------------------------------------------------------------------------


def test_long_text_is_split_under_telegrams_limit_at_natural_places() -> None:
    paragraph = "Lorem ipsum dolor sit amet. " * 60  # about 1,700 characters
    pieces = split_text("\n\n".join([paragraph] * 6))
    assert len(pieces) == 3 and all(len(p) <= 4096 for p in pieces)
    assert all(p.endswith("amet.") for p in pieces)  # cut between paragraphs, not in a word
    assert split_text("x" * 9000) == ["x" * 4096, "x" * 4096, "x" * 808]
    assert split_text("") == [""]


async def test_a_long_reply_goes_in_pieces_with_the_buttons_on_the_last(
    desk: Guichet, telegram: FakeTelegram
) -> None:
    channel = desk.channels["telegram"]
    assert isinstance(channel, TelegramChannel)
    long_text = "\n".join(f"Étape {n} : vérifiez le câble, redémarrez, réessayez." for n in range(200))
    choices = (Choice("Oui", "helped:yes"), Choice("x" * 20, "article:fr:" + "y" * 80))
    await channel.send(Outbound("telegram", "777", long_text, choices=choices), None)
    pieces = telegram.sent
    assert len(pieces) == 3 and all(len(p["text"]) <= 4096 for p in pieces)
    assert "\n".join(p["text"] for p in pieces) == long_text  # cut between lines, nothing lost
    assert [("reply_markup" in p) for p in pieces] == [False, False, True]
    data = [row[0]["callback_data"] for row in pieces[-1]["reply_markup"]["inline_keyboard"]]
    assert data == ["helped:yes", "n:2"]  # too long for Telegram's 64 bytes: sent as its number
    # Pressed, the number comes back as text: the policy reads a number as that choice.
    inbound = channel.to_inbound(press("n:2", chat=777))
    assert inbound is not None and inbound.text == "2" and inbound.payload is None


async def test_pace_waits_instead_of_exceeding_telegrams_rates() -> None:
    pace = _Pace(TelegramSettings(per_chat_per_second=4.0, global_per_second=100.0, per_group_per_minute=60))
    started = time.monotonic()
    for _ in range(5):
        await pace.wait(1, group=False)
    assert time.monotonic() - started >= 0.95  # 5 messages to one chat at 4 a second
    started = time.monotonic()
    await asyncio.gather(*(pace.wait(chat, group=False) for chat in range(100, 120)))
    assert time.monotonic() - started < 0.5  # different chats share only the global rate


async def test_a_429_is_waited_out_and_a_block_is_final(desk: Guichet, telegram: FakeTelegram) -> None:
    telegram.fail("sendMessage", 429, "Too Many Requests: retry after 1", retry_after=1)
    started = time.monotonic()
    await post(desk, update("bonjour", chat=222))
    refused, greeting = await telegram.wait_sent(2)  # the refused call, then the one that went
    assert time.monotonic() - started >= 1 and refused == greeting and int(greeting["chat_id"]) == 222
    telegram.fail("sendMessage", 403, "Forbidden: bot was blocked by the user")
    await post(desk, update("bonjour", chat=333))
    await telegram.wait_sent(3)
    await asyncio.sleep(0.3)
    dead = await desk.store.dead_letters()
    assert [d.destination for d in dead] == ["channel:telegram"] and "blocked" in (dead[0].last_error or "")


# -- long polling, settings -----------------------------------------------------------------------


async def test_long_polling_reads_updates_without_a_public_address(
    tmp_path: Path, telegram: FakeTelegram, receiver: Receiver
) -> None:
    app = Guichet(
        configuration(tmp_path, telegram, receiver, {"GUICHET_TELEGRAM_WEBHOOK_SECRET": ""}, mode="polling")
    )
    await app.start()
    try:
        first = update("bonjour", chat=444)
        await telegram.queue_update(first)
        (greeting,) = await telegram.wait_sent(1)
        assert int(greeting["chat_id"]) == 444
        await telegram.queue_update(update("merci", chat=444))
        await telegram.wait_sent(2)
        # An update in an older shape aiogram's models refuse (no file_unique_id) is still read.
        old = update("", chat=444, message="MESSAGE_WITH_DOCUMENT.json")
        old["message"]["caption"] = "bonjour"
        await telegram.queue_update(old)
        await telegram.wait_sent(3)
        assert telegram.of("deleteWebhook"), "getUpdates needs the webhook removed"
        assert [u["update_id"] for u in telegram.updates] != [first["update_id"]]  # confirmed
    finally:
        await app.stop()


async def test_webhook_mode_refuses_to_start_without_its_secret(
    tmp_path: Path, telegram: FakeTelegram, receiver: Receiver
) -> None:
    with pytest.raises(ConfigError) as raised:
        configuration(tmp_path, telegram, receiver, {"GUICHET_TELEGRAM_WEBHOOK_SECRET": ""})
    assert "GUICHET_TELEGRAM_WEBHOOK_SECRET" in str(raised.value)


# -- a whole conversation ----------------------------------------------------------------------------


async def test_a_whole_conversation_on_telegram(
    desk: Guichet, telegram: FakeTelegram, receiver: Receiver
) -> None:
    chat = 555
    # 1. A question the knowledge base answers.
    await post(desk, update("j'ai oublié mon mot de passe", chat=chat))
    sent = await telegram.wait_sent(2)
    assert "mot de passe" in sent[0]["text"].lower()
    await post(desk, press("helped:yes", chat=chat))
    await telegram.wait_sent(3)
    # 2. Something it cannot answer, with a document: a ticket, qualified with the buttons.
    document = update("", chat=chat, message="MESSAGE_WITH_DOCUMENT.json")
    document["message"]["caption"] = "la badgeuse du hall refuse mon badge depuis ce matin"
    await post(desk, document)
    count = 4
    for _ in range(12):
        await telegram.wait_sent(count)
        last = (await telegram.wait_quiet())[-1]  # the turn's last reply: it holds the buttons
        if NUMBER.search(last["text"]):
            break
        markup = last.get("reply_markup")
        if markup:
            choice = markup["inline_keyboard"][0][0]["callback_data"]
            if choice == "helped:yes":  # an article was offered: it did not help
                choice = "helped:no"
            await post(desk, press(choice if choice != "ticket:no" else "ticket:yes", chat=chat))
        else:
            await post(desk, update("passer", chat=chat))
        count = len(telegram.sent) + 1
    number = NUMBER.search(telegram.sent[-1]["text"])
    assert number is not None, telegram.sent[-3:]
    (created,) = await receiver.arrived("ticket.created")
    assert created["ticket"]["number"] == number.group(0) and created["requester"]["channel"] == "telegram"
    (attachment,) = created["attachments"]
    assert attachment["name"] == "test.docx" and attachment["ref"].startswith("telegram:BQAD")
    # 3. The agent answers on level 2 (up to 4,000 characters): the person reads it on Telegram.
    text = "Bonjour, pouvez-vous réessayer ? " + "Détail du diagnostic. " * 150
    status, _ = await post_event(
        desk.url,
        desk.queue_secrets[created["queue"]][0],
        {
            "type": "agent.message",
            "ticket": number.group(0),
            "queue": created["queue"],
            "agent": {"name": "Marie"},
            "text": text,
        },
    )
    assert status == 202
    before = len(telegram.sent)
    sent = await telegram.wait_sent(before + 1)
    assert sent[-1]["text"] == f"Marie :\n{text.strip()}" and int(sent[-1]["chat_id"]) == chat
    # 4. The person's answer reaches level 2.
    await post(desk, update("c'est bon, ça marche maintenant", chat=chat))
    (relayed,) = await receiver.arrived("requester.message")
    assert relayed["message"] == "c'est bon, ça marche maintenant"

"""The Slack channel against the real slack-bolt app: Events API requests signed as Slack signs
them (HMAC-SHA256 `v0:{ts}:{body}`), the Web API played by a local fake (tests/fake_slack.py),
and one whole conversation in a channel thread ending with a level-2 agent's reply there.

Payloads start from bolt-python's own test bodies (tests/fixtures/slack/SOURCE.txt)."""

from __future__ import annotations

import asyncio
import copy
import hashlib
import hmac
import itertools
import json
import re
import time
import urllib.parse
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from bot.app import Guichet
from bot.config import Configuration, load_configuration
from bot.errors import ConfigError, DeliveryError
from bot.messages import AcceptResult, Choice, Inbound, Outbound
from channels.slack import SlackChannel, escape, plain_text, render
from tests.conftest import MODEL_DIR
from tests.fake_slack import APP_TOKEN, BOT_ID, BOT_TOKEN, BOT_USER_ID, FakeSlack
from tests.level2 import Receiver, post_event
from tests.processes import config_copy

FIXTURES = Path(__file__).parent / "fixtures" / "slack"
SIGNING_SECRET = "d41d8cd98f00b204e9800998ecf8427e"
NUMBER = re.compile(r"HD-\d{4}-\d{6}")
ANA, BRUNO = "W111", "W222"  # the users of bolt's fixtures
_ids = itertools.count(1)


def fixture(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((FIXTURES / name).read_text(encoding="utf-8"))
    return data


def _next_ts() -> str:
    return f"1710000000.{next(_ids):06d}"


def direct_message(
    text: str, *, user: str = ANA, channel: str = "D111", event_id: str | None = None
) -> dict[str, Any]:
    """bolt's message event, turned into a direct message to the app."""
    body = fixture("message.json")
    ts = _next_ts()
    body["event"].update(text=text, user=user, channel=channel, channel_type="im", ts=ts, event_ts=ts)
    body["event"].pop("blocks")
    body["event_id"] = event_id or f"Ev{ts.replace('.', '')}"
    return body


def mention(
    text: str, *, user: str = ANA, channel: str = "C111", thread_ts: str | None = None
) -> tuple[dict[str, Any], str]:
    """bolt's app_mention event (`<@UBOT> text`) and its ts."""
    body = fixture("app_mention.json")
    ts = _next_ts()
    body["event"].update(text=f"<@{BOT_USER_ID}> {text}", user=user, channel=channel, ts=ts, event_ts=ts)
    if thread_ts:
        body["event"]["thread_ts"] = thread_ts
    body["event_id"] = f"Ev{ts.replace('.', '')}"
    return body, ts


def click(post: dict[str, Any], payload: str, *, user: str = ANA) -> dict[str, Any]:
    """bolt's block_actions body for a click on the button of `post` whose value is `payload`."""
    body = fixture("block_actions.json")
    block_id, button = next(
        (block["block_id"], b)
        for block in post["blocks"]
        if block["type"] == "actions"
        for b in block["elements"]
        if b["value"] == payload
    )
    body["user"].update(id=user)
    body["container"] = {
        "type": "message",
        "message_ts": post["ts"],
        "channel_id": post["channel"],
        "is_ephemeral": False,
    }
    if post.get("thread_ts"):
        body["container"]["thread_ts"] = post["thread_ts"]
    body["channel"]["id"] = post["channel"]
    body["message"] = {
        "type": "message",
        "ts": post["ts"],
        "text": post["text"],
        "blocks": post["blocks"],
        "user": BOT_USER_ID,
    }
    if post.get("thread_ts"):
        body["message"]["thread_ts"] = post["thread_ts"]
    action = body["actions"][0]
    action.update(action_id=button["action_id"], block_id=block_id, value=payload, text=button["text"])
    action["action_ts"] = _next_ts()
    return body


def signature(body: bytes, timestamp: str, secret: str = SIGNING_SECRET) -> str:
    base = b"v0:" + timestamp.encode() + b":" + body
    return "v0=" + hmac.new(secret.encode(), base, hashlib.sha256).hexdigest()


async def deliver(
    desk: Guichet,
    body: dict[str, Any] | bytes,
    *,
    form: bool = False,
    secret: str = SIGNING_SECRET,
    timestamp: float | None = None,
    signed: bool = True,
    retry: int | None = None,
) -> tuple[int, str]:
    """POST one request to Guichet's Events API endpoint as Slack would."""
    if isinstance(body, bytes):
        raw = body
    elif form:  # interactivity: `payload=<json>`, form-encoded
        raw = ("payload=" + urllib.parse.quote(json.dumps(body))).encode()
    else:
        raw = json.dumps(body).encode()
    ts = str(int(timestamp if timestamp is not None else time.time()))
    headers = {"Content-Type": "application/x-www-form-urlencoded" if form else "application/json"}
    if signed:
        headers.update({"X-Slack-Request-Timestamp": ts, "X-Slack-Signature": signature(raw, ts, secret)})
    if retry is not None:
        headers.update({"X-Slack-Retry-Num": str(retry), "X-Slack-Retry-Reason": "http_timeout"})
    async with (
        aiohttp.ClientSession() as http,
        http.post(f"{desk.url}/slack/events", data=raw, headers=headers) as answer,
    ):
        return answer.status, await answer.text()


def configuration(
    tmp_path: Path,
    slack: FakeSlack,
    receiver: Receiver,
    environ: dict[str, str] | None = None,
    **settings: Any,
) -> Configuration:
    config = config_copy(
        tmp_path / "config",
        slack={"enabled": True, "api_base": slack.api_base, **settings},
        handoff={
            "queues": {"support": {"url": receiver.url}, "security": {"url": receiver.url}},
            "default_queue": "support",
            "retry_schedule_seconds": [0.2, 0.2, 0.2],
        },
    )
    env = {
        "GUICHET_DATA_DIR": str(tmp_path / "data"),
        "GUICHET_HTTP_PORT": "0",
        "GUICHET_SMTP_PORT": "0",  # not the sample's 2525: a Guichet may run on this machine
        "GUICHET_MODEL_DIR": str(MODEL_DIR),
        "GUICHET_SLACK_BOT_TOKEN": BOT_TOKEN,
        "GUICHET_SLACK_SIGNING_SECRET": SIGNING_SECRET,
    }
    return load_configuration(config, environ={**env, **(environ or {})})


@pytest.fixture
async def slack() -> AsyncIterator[FakeSlack]:
    fake = FakeSlack()
    fake.add_user(ANA, "Ana Martin", "Ana.Martin@acme.example")
    fake.add_user(BRUNO, "Bruno Petit", "bruno@acme.example", locale="en-US")
    await fake.start()
    try:
        yield fake
    finally:
        await fake.stop()


class Recorder:
    """Wraps the manager's `receive` to keep every Inbound the channel built."""

    def __init__(self, desk: Guichet) -> None:
        self.inbound: list[Inbound] = []
        channel = desk.channels["slack"]
        assert isinstance(channel, SlackChannel)
        self._receive = channel._on_message
        channel._on_message = self

    async def __call__(self, inbound: Inbound) -> AcceptResult:
        self.inbound.append(inbound)
        assert self._receive is not None
        return await self._receive(inbound)


@pytest.fixture
async def desk(tmp_path: Path, slack: FakeSlack, receiver: Receiver) -> AsyncIterator[Guichet]:
    app = Guichet(configuration(tmp_path, slack, receiver))
    await app.start()
    receiver.secrets = app.queue_secrets["support"]
    try:
        yield app
    finally:
        await app.stop()


async def settled(desk: Guichet) -> None:
    """Every conversation handled and every reply handed to Slack."""
    await desk.manager.idle()


async def transcript(desk: Guichet, user: str) -> list[tuple[str, str]]:
    return [(e.sender, e.text) for e in await desk.store.transcript(f"slack:{user}")]


# -- the door: signatures, challenge, bad bodies -------------------------------------------


async def test_a_forged_stale_or_unsigned_request_is_refused_and_nothing_is_stored(
    desk: Guichet, slack: FakeSlack
) -> None:
    recorder = Recorder(desk)
    body = direct_message("j'ai oublié mon mot de passe")
    assert (await deliver(desk, body, secret="0" * 32))[0] == 401
    assert (await deliver(desk, body, timestamp=time.time() - 600))[0] == 401  # outside Slack's 5 minutes
    assert (await deliver(desk, body, signed=False))[0] == 401
    # The right signature over other bytes than those sent.
    raw = json.dumps(body).encode()
    ts = str(int(time.time()))
    async with aiohttp.ClientSession() as http:
        tampered = raw.replace(b"mot de passe", b"mot de pisse")
        headers = {
            "X-Slack-Request-Timestamp": ts,
            "X-Slack-Signature": signature(raw, ts),
            "Content-Type": "application/json",
        }
        async with http.post(f"{desk.url}/slack/events", data=tampered, headers=headers) as answer:
            assert answer.status == 401
    await settled(desk)
    assert recorder.inbound == [] and await transcript(desk, ANA) == [] and slack.posts == []
    # Signed, but not JSON: refused, and the channel keeps working.
    assert (await deliver(desk, b'{"type": "event_callback", "event": {'))[0] == 400
    status, text = await deliver(desk, body)
    assert status == 200 and text == ""
    assert [i.text for i in recorder.inbound] == ["j'ai oublié mon mot de passe"]


async def test_the_url_verification_challenge_is_answered_only_when_signed(desk: Guichet) -> None:
    body = fixture("url_verification.json")
    status, text = await deliver(desk, body)
    assert status == 200 and json.loads(text) == {"challenge": body["challenge"]}
    status, text = await deliver(desk, body, secret="f" * 32)
    assert status == 401 and body["challenge"] not in text


# -- direct messages, mentions, markup -----------------------------------------------------


async def test_a_direct_message_is_answered_in_that_conversation(desk: Guichet, slack: FakeSlack) -> None:
    status, _ = await deliver(desk, direct_message("j'ai oublié mon mot de passe"))
    assert status == 200
    await settled(desk)
    answer, follow_up = await slack.posted(2)
    article = desk.engine.article("fr", "password-reset")
    assert article is not None
    assert answer["channel"] == "D111" and "thread_ts" not in answer
    assert answer["text"] == escape(f"{article.title}\n\n{article.body}")
    assert follow_up["channel"] == "D111"
    assert [b["value"] for b in follow_up["blocks"][-1]["elements"]] == ["helped:yes", "helped:no"]
    assert await transcript(desk, ANA) == [
        ("user", "j'ai oublié mon mot de passe"),
        ("bot", f"{article.title}\n\n{article.body}"),
        ("bot", "Cela a-t-il réglé votre problème ?"),
    ]


async def test_text_sent_to_slack_cannot_ping_the_channel_or_a_user(desk: Guichet, slack: FakeSlack) -> None:
    channel = desk.channels["slack"]
    reply = Outbound(
        channel="slack",
        conversation_id=ANA,
        text="<!channel> <!here> <@U999> & <http://evil.example|cliquez ici>",
        context={"channel": "D111"},
    )
    await channel.send(reply, None)
    (post,) = slack.posts
    assert (
        post["text"]
        == "&lt;!channel&gt; &lt;!here&gt; &lt;@U999&gt; &amp; &lt;http://evil.example|cliquez ici&gt;"
    )
    assert "<" not in post["text"] and ">" not in post["text"]
    # No context (a reply whose conversation never said where): the person's DM, by user id.
    await channel.send(Outbound(channel="slack", conversation_id=ANA, text="a < b"), None)
    assert slack.posts[-1]["channel"] == ANA and slack.posts[-1]["text"] == "a &lt; b"


async def test_slack_markup_comes_in_as_plain_text(desk: Guichet, slack: FakeSlack) -> None:
    recorder = Recorder(desk)
    text = (
        "écrivez à <mailto:ana@acme.example|ana@acme.example>, voir <http://intra.example/vpn|intra.example/vpn>"
        " et <https://evil.example/x|la doc>, cc <@W222|bruno> dans <#C111|general> &lt;urgent&gt; &amp; <!here>"
    )
    await deliver(desk, direct_message(text))
    (inbound,) = recorder.inbound
    assert inbound.text == (
        "écrivez à ana@acme.example, voir intra.example/vpn et la doc (https://evil.example/x),"
        " cc @bruno dans #general <urgent> & @here"
    )
    assert plain_text(f"<@{BOT_USER_ID}> bonjour", BOT_USER_ID).strip() == "bonjour"
    assert plain_text("<!subteam^S123|@support> <!date^1392734382^{date}|Feb 18>") == "@support Feb 18"


async def test_a_mention_in_a_channel_is_answered_in_its_thread(desk: Guichet, slack: FakeSlack) -> None:
    body, ts = mention("mon VPN ne se connecte pas")
    assert (await deliver(desk, body))[0] == 200
    await settled(desk)
    posts = await slack.posted(1)
    assert {(p["channel"], p["thread_ts"]) for p in posts} == {("C111", ts)}
    assert (await transcript(desk, ANA))[0] == ("user", "mon VPN ne se connecte pas")  # no <@UBOT>
    # A mention inside an existing thread is answered in that thread, not a new one.
    body, _ = mention("merci", thread_ts="1709999999.000001")
    await deliver(desk, body)
    await settled(desk)
    later = slack.posts[len(posts) :]
    assert later and {(p["channel"], p["thread_ts"]) for p in later} == {("C111", "1709999999.000001")}


async def test_a_message_in_a_channel_without_a_mention_is_not_for_the_bot(
    desk: Guichet, slack: FakeSlack
) -> None:
    recorder = Recorder(desk)
    body = fixture("message.json")  # bolt's channel message, as is
    assert (await deliver(desk, body))[0] == 200
    await settled(desk)
    assert recorder.inbound == [] and slack.posts == []


# -- retries, bots, edits ------------------------------------------------------------------


async def test_a_retried_event_is_stored_and_answered_once(desk: Guichet, slack: FakeSlack) -> None:
    recorder = Recorder(desk)
    body = direct_message("j'ai oublié mon mot de passe", event_id="Ev0RETRY1")
    assert (await deliver(desk, body))[0] == 200
    await settled(desk)
    answered = len(await slack.posted(2))
    started = time.monotonic()
    for attempt in (1, 2):
        assert (await deliver(desk, body, retry=attempt))[0] == 200
    assert time.monotonic() - started < 2
    await settled(desk)
    assert len(slack.posts) == answered
    assert [e for e in await transcript(desk, ANA) if e[0] == "user"] == [
        ("user", "j'ai oublié mon mot de passe")
    ]
    assert [i.platform_message_id for i in recorder.inbound] == ["Ev0RETRY1"]


async def test_a_retry_of_an_event_never_stored_is_taken(desk: Guichet, slack: FakeSlack) -> None:
    # The first delivery never reached Guichet (or failed before it was stored): the retry counts.
    assert (await deliver(desk, direct_message("j'ai oublié mon mot de passe"), retry=1))[0] == 200
    await settled(desk)
    assert len(await slack.posted(2)) == 2


async def test_a_retry_after_a_restart_is_deduplicated_by_the_store(
    tmp_path: Path, slack: FakeSlack, receiver: Receiver
) -> None:
    body = direct_message("j'ai oublié mon mot de passe", event_id="Ev0RESTART")
    config = configuration(tmp_path, slack, receiver)
    for _ in range(2):  # the second process forgot what the first one saw, the store did not
        app = Guichet(config)
        await app.start()
        try:
            assert (await deliver(app, body, retry=None if not slack.posts else 1))[0] == 200
            await settled(app)
            assert [e for e in await transcript(app, ANA) if e[0] == "user"] == [
                ("user", "j'ai oublié mon mot de passe")
            ]
        finally:
            await app.stop()
    assert len(slack.posts) == 2


async def test_its_own_messages_other_bots_and_edits_are_ignored(desk: Guichet, slack: FakeSlack) -> None:
    recorder = Recorder(desk)
    own = direct_message("Bonjour ! <!channel>", user=BOT_USER_ID)
    own["event"]["bot_id"] = BOT_ID
    other_bot = fixture("bot_message.json")  # B999, another app
    other_bot["event"].update(channel="D111", channel_type="im")
    classic_bot = direct_message("Build #42 failed")
    classic_bot["event"].update(subtype="bot_message", bot_id="B777")
    classic_bot["event"].pop("user")
    edited = fixture("message_changed.json")
    edited["event"].update(channel="D111", channel_type="im")
    for body in (own, other_bot, classic_bot, edited):
        assert (await deliver(desk, body))[0] == 200
    await settled(desk)
    assert recorder.inbound == [] and slack.posts == []
    # The same path takes a person's message: what is ignored above is ignored on purpose.
    await deliver(desk, direct_message("bonjour"))
    await settled(desk)
    assert [i.user_id for i in recorder.inbound] == [ANA] and slack.posts


# -- buttons, profile, welcome ---------------------------------------------------------------


async def test_choices_are_buttons_and_a_click_comes_back_as_its_payload(
    desk: Guichet, slack: FakeSlack
) -> None:
    recorder = Recorder(desk)
    await deliver(desk, direct_message("la machine à café du 3e étage chante de l'opéra"))
    await settled(desk)
    offer = (await slack.posted(1))[-1]
    buttons = [b for block in offer["blocks"] if block["type"] == "actions" for b in block["elements"]]
    assert buttons and len({b["action_id"] for b in buttons}) == len(buttons)
    assert offer["text"].startswith(escape(offer["blocks"][0]["text"]["text"][:20]))  # the fallback is set
    assert all(f"{n}. {b['text']['text']}" in offer["text"] for n, b in enumerate(buttons, start=1))
    payload = "none" if any(b["value"] == "none" for b in buttons) else "ticket:no"
    title = next(b["text"]["text"] for b in buttons if b["value"] == payload)
    # Someone else clicking the buttons offered to Ana: acknowledged, and nothing happens.
    assert (await deliver(desk, click(offer, payload, user=BRUNO), form=True))[0] == 200
    assert [i.user_id for i in recorder.inbound] == [ANA] and slack.of("chat.update") == []
    started = time.monotonic()
    status, _ = await deliver(desk, click(offer, payload), form=True)
    assert status == 200 and time.monotonic() - started < 2
    clicked = recorder.inbound[-1]
    assert (clicked.payload, clicked.text, clicked.user_id) == (payload, title, ANA)
    assert clicked.raw["reply_context"] == {"channel": "D111"}
    await settled(desk)
    # The buttons clicked are replaced by the choice made.
    (update,) = await _eventually(lambda: slack.of("chat.update"))
    assert update["ts"] == offer["ts"] and all(b["type"] != "actions" for b in update["blocks"])
    assert title in update["blocks"][-1]["elements"][0]["text"]
    assert len(slack.posts) > 1  # and the bot went on


async def test_a_click_on_a_button_that_is_not_a_choice_is_acked_and_ignored(desk: Guichet) -> None:
    recorder = Recorder(desk)
    body = fixture("block_actions.json")  # bolt's click, action_id "a": not one of ours
    status, _ = await deliver(desk, body, form=True)
    assert status == 200 and recorder.inbound == []


async def test_the_slack_profile_gives_the_name_and_the_verified_email(
    desk: Guichet, slack: FakeSlack
) -> None:
    recorder = Recorder(desk)
    slack.add_user("W333", "Chloé Visiteur", "chloe@partner.example", team_id="T999")  # Slack Connect
    await deliver(desk, direct_message("bonjour"))
    await deliver(desk, direct_message("merci"))
    await deliver(desk, direct_message("hello", user=BRUNO, channel="D222"))
    await deliver(desk, direct_message("bonjour", user="W333", channel="D333"))
    await deliver(desk, direct_message("bonjour", user="W404", channel="D404"))  # users.info fails
    ana, ana_again, bruno, chloe, unknown = recorder.inbound
    assert (ana.user_name, ana.user_email, ana.language) == ("Ana Martin", "ana.martin@acme.example", "fr")
    assert ana_again.user_email == "ana.martin@acme.example"
    assert (bruno.user_name, bruno.user_email, bruno.language) == ("Bruno Petit", "bruno@acme.example", "en")
    assert (chloe.user_name, chloe.user_email) == ("Chloé Visiteur", None)  # another organisation
    assert (unknown.user_name, unknown.user_email) == (None, None)
    assert [c["user"] for c in slack.of("users.info")] == [ANA, BRUNO, "W333", "W404"]  # cached


async def test_opening_the_messages_tab_gets_one_welcome(desk: Guichet, slack: FakeSlack) -> None:
    body = fixture("app_home_opened.json")
    for n in range(3):
        body = copy.deepcopy(body)
        body["event_id"] = f"EvHOME{n}"
        assert (await deliver(desk, body))[0] == 200
    (welcome,) = await _eventually(lambda: slack.posts)
    assert welcome["channel"] == "D111" and welcome["text"].startswith("Bonjour")
    # Someone who already talked to the bot (after a restart, say) is not welcomed again.
    await deliver(desk, direct_message("bonjour", user=BRUNO, channel="D222"))
    await settled(desk)
    before = len(slack.posts)
    home = copy.deepcopy(body)
    home["event"].update(user=BRUNO, channel="D222")
    home["event_id"] = "EvHOMEB"
    await deliver(desk, home)
    await _eventually(lambda: [c for c in slack.of("conversations.history") if c["channel"] == "D222"])
    await settled(desk)
    assert len(slack.posts) == before


# -- sending: rate limits and errors ---------------------------------------------------------


async def test_rate_limits_are_waited_for_or_retried_later_and_dead_channels_are_permanent(
    desk: Guichet, slack: FakeSlack
) -> None:
    channel = desk.channels["slack"]
    reply = Outbound(channel="slack", conversation_id=ANA, text="bonjour", context={"channel": "D111"})
    slack.fail("chat.postMessage", 429, "ratelimited", {"Retry-After": "0"})
    await channel.send(reply, None)  # waited and sent
    assert [p["text"] for p in slack.posts] == ["bonjour", "bonjour"]  # refused once, then posted
    slack.fail("chat.postMessage", 429, "ratelimited", {"Retry-After": "30"})
    with pytest.raises(DeliveryError) as raised:
        await channel.send(reply, None)
    assert not raised.value.permanent and "30" in str(raised.value)
    for error in ("channel_not_found", "not_in_channel", "account_inactive"):
        slack.fail("chat.postMessage", 200, error)
        with pytest.raises(DeliveryError) as raised:
            await channel.send(reply, None)
        assert raised.value.permanent and error in str(raised.value)
    slack.fail("chat.postMessage", 500, "internal_error")
    with pytest.raises(DeliveryError) as raised:
        await channel.send(reply, None)
    assert not raised.value.permanent


def test_long_replies_and_many_choices_fit_slack_limits() -> None:
    long = Outbound(channel="slack", conversation_id=ANA, text=("ligne & <suite>\n" * 600).strip())
    posts = render(long)
    assert len(posts) > 1 and all(len(p["text"]) <= 4000 for p in posts)
    assert "".join(p["text"] + "\n" for p in posts).strip() == escape(long.text)
    choices = tuple(Choice(f"Choix {n} " + "x" * 100, f"slot:{n}") for n in range(30))
    (post,) = render(Outbound(channel="slack", conversation_id=ANA, text="Lequel ?", choices=choices))
    actions = [b for b in post["blocks"] if b["type"] == "actions"]
    assert [len(a["elements"]) for a in actions] == [25, 5]
    assert all(len(b["text"]["text"]) <= 75 for a in actions for b in a["elements"])
    assert [b["value"] for a in actions for b in a["elements"]] == [c.payload for c in choices]
    agent = render(
        Outbound(
            channel="slack", conversation_id=ANA, text="Bonjour", sender="agent", agent_name="Marie <@U1>"
        )
    )
    assert agent == [{"text": "*Marie &lt;@U1&gt;*\nBonjour"}]


# -- configuration -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("settings", "environ", "missing"),
    [
        ({}, {"GUICHET_SLACK_SIGNING_SECRET": ""}, "GUICHET_SLACK_SIGNING_SECRET"),
        ({}, {"GUICHET_SLACK_BOT_TOKEN": ""}, "GUICHET_SLACK_BOT_TOKEN"),
        ({"mode": "socket"}, {}, "GUICHET_SLACK_APP_TOKEN"),
    ],
)
async def test_slack_without_its_secret_refuses_to_start(
    tmp_path: Path,
    slack: FakeSlack,
    receiver: Receiver,
    settings: dict[str, str],
    environ: dict[str, str],
    missing: str,
) -> None:
    # Found when the configuration is read (`guichet check` too), not at the first message.
    with pytest.raises(ConfigError) as raised:
        configuration(tmp_path, slack, receiver, environ, **settings)
    assert missing in str(raised.value) and "fix: export" in str(raised.value)
    assert [missing] == [str(p.file).lstrip("$") for p in raised.value.problems]


async def test_socket_mode_takes_events_from_the_websocket_and_acks_after_storing(
    tmp_path: Path, slack: FakeSlack, receiver: Receiver
) -> None:
    config = configuration(
        tmp_path,
        slack,
        receiver,
        {"GUICHET_SLACK_APP_TOKEN": APP_TOKEN, "GUICHET_SLACK_SIGNING_SECRET": ""},
        mode="socket",
    )
    app = Guichet(config)
    await app.start()
    try:
        await slack.connected()
        await slack.envelope(
            "env-1", "events_api", direct_message("j'ai oublié mon mot de passe", event_id="EvSOCK")
        )
        # The ack came after the message was stored.
        assert [e for e in await transcript(app, ANA) if e[0] == "user"] == [
            ("user", "j'ai oublié mon mot de passe")
        ]
        await settled(app)
        answer = (await slack.posted(2))[0]
        article = app.engine.article("fr", "password-reset")
        assert article is not None
        assert answer["channel"] == "D111" and answer["text"] == escape(f"{article.title}\n\n{article.body}")
        # The HTTP endpoint does not exist in Socket Mode.
        async with (
            aiohttp.ClientSession() as http,
            http.post(f"{app.url}/slack/events", data=b"{}") as answer_,
        ):
            assert answer_.status in (404, 405)
    finally:
        await app.stop()


# -- one whole conversation ------------------------------------------------------------------


async def test_a_whole_conversation_in_a_thread_from_faq_to_the_agents_reply(
    desk: Guichet, slack: FakeSlack, receiver: Receiver
) -> None:
    """A FAQ answered, then a request the knowledge base cannot answer: qualified, ticketed,
    handed to level 2, and the agent's reply lands in the same Slack thread."""
    seen = 0

    async def turn() -> list[dict[str, Any]]:
        nonlocal seen
        await settled(desk)
        posts = slack.posts[seen:]
        seen = len(slack.posts)
        assert posts, "the bot said nothing"
        assert {(p["channel"], p.get("thread_ts")) for p in posts} == {("C111", root)}, posts
        return posts

    async def say(text: str) -> list[dict[str, Any]]:
        body, _ = mention(text, thread_ts=root)
        assert (await deliver(desk, body))[0] == 200
        return await turn()

    async def pick(post: dict[str, Any], payload: str) -> list[dict[str, Any]]:
        assert (await deliver(desk, click(post, payload), form=True))[0] == 200
        return await turn()

    def buttons(post: dict[str, Any]) -> list[dict[str, Any]]:
        return [
            b for block in post.get("blocks", []) if block["type"] == "actions" for b in block["elements"]
        ]

    # 1. A question the knowledge base answers, asked in #general: answered in its thread.
    body, root = mention("j'ai oublié mon mot de passe")
    await deliver(desk, body)
    answer, follow_up = await turn()
    article = desk.engine.article("fr", "password-reset")
    assert article is not None and answer["text"] == escape(f"{article.title}\n\n{article.body}")
    (glad,) = await pick(follow_up, "helped:yes")
    assert glad["text"].startswith("Parfait")

    # 2. Something it does not solve (the crash article does not help, or nothing fits): a
    # ticket is offered, accepted and qualified.
    request = "Le logiciel de paie Zorglub refuse de démarrer, écran noir"
    offer = (await say(request))[-1]
    if any(b["value"] == "none" for b in buttons(offer)):
        offer = (await pick(offer, "none"))[-1]
    if [b["value"] for b in buttons(offer)] == ["helped:yes", "helped:no"]:
        posts = await pick(offer, "helped:no")
    else:
        assert [b["value"] for b in buttons(offer)] == ["ticket:yes", "ticket:no"]
        posts = await pick(offer, "ticket:yes")
    number = None
    for _ in range(10):
        if match := NUMBER.search(" ".join(p["text"] for p in posts)):
            number = match.group(0)
            break
        slots = [b for b in buttons(posts[-1]) if b["value"].startswith("slot:")]
        posts = await (pick(posts[-1], slots[-1]["value"]) if slots else say("je ne sais pas"))
    assert number, [p["text"] for p in slack.posts]

    # 3. Level 2 got the ticket, with the identity Slack verified.
    (document,) = await receiver.arrived("ticket.created")
    assert document["ticket"]["number"] == number
    assert document["requester"]["email"] == "ana.martin@acme.example"
    assert document["requester"]["channel"] == "slack"
    assert any(line["text"] == request for line in document["transcript"])

    # 4. The agent answers: the reply lands in the same thread, escaped, signed with the name.
    status, _ = await post_event(
        desk.url,
        desk.queue_secrets["support"][0],
        {
            "type": "agent.message",
            "ticket": number,
            "queue": "support",
            "agent": {"name": "Marie"},
            "text": "Bonjour Ana, <!here> pouvez-vous redémarrer le poste ?",
        },
    )
    assert status == 202
    relayed = (await _eventually(lambda: [p for p in slack.posts[seen:] if "Marie" in p["text"]]))[0]
    assert relayed["channel"] == "C111" and relayed["thread_ts"] == root
    assert relayed["text"] == "*Marie*\nBonjour Ana, &lt;!here&gt; pouvez-vous redémarrer le poste ?"

    # 5. Ana's answer in the thread goes to the agent.
    seen = len(slack.posts)
    body, _ = mention("C'est fait, toujours l'écran noir", thread_ts=root)
    await deliver(desk, body)
    (relay,) = await receiver.arrived("requester.message")
    assert relay["message"] == "C'est fait, toujours l'écran noir" and relay["ticket"]["number"] == number


async def _eventually(probe: Any, seconds: float = 10.0) -> Any:
    deadline = time.monotonic() + seconds
    while not (found := probe()):
        if time.monotonic() > deadline:
            raise AssertionError("not within the time")
        await asyncio.sleep(0.02)
    return found

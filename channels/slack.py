"""The Slack channel: direct messages, the app's Messages tab and @mentions in channels.

Slack reaches Guichet in one of two ways, both handled by one slack-bolt `AsyncApp`:

- Events API (`mode: events`): Slack POSTs to `settings.events_path` on Guichet's own HTTP
  server; bolt checks the `X-Slack-Signature` HMAC (and its 5-minute window) and answers the
  `url_verification` challenge.
- Socket Mode (`mode: socket`): Guichet opens a WebSocket to Slack with the app-level token
  (no public URL needed); bolt's aiohttp Socket Mode handler acknowledges each envelope.

Either way bolt runs with `process_before_response=True`, so the 200 (or the envelope ack)
goes out only after `on_message` has stored the message: a crash in between makes Slack send
the event again, and the store drops the copy because `platform_message_id` is the
`event_id`. Retries Slack announces with `X-Slack-Retry-Num` are answered at once when the
event_id is one this process just stored.

Every Slack user has one conversation (`conversation_id` = their user id), whether they write
in a direct message, in the Messages tab or mention the bot in a channel. Where to answer is
carried in `Inbound.raw["reply_context"]` = {"channel", "thread_ts"?}: the manager copies it
into every reply (and keeps it for level 2's later replies), so a mention in a channel is
answered in its thread, and so is the agent who takes the ticket.

Text is escaped on the way out (`&`, `<`, `>`), so no one can make the bot post `<!channel>`
or `<@U…>`; on the way in Slack's markup (`<mailto:a@b|a@b>`, `<http://x|x>`, `<@U…>`) is
turned back into plain text. Choices become Block Kit buttons whose value is the payload.
The person's name and email come from their Slack profile (users.info, cached): Slack has
verified that address, so it is the person's identity at the desk.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import aiohttp
from aiohttp import web
from slack_bolt.adapter.aiohttp import to_aiohttp_response, to_bolt_request
from slack_bolt.adapter.socket_mode.async_handler import AsyncSocketModeHandler
from slack_bolt.app.async_app import AsyncApp
from slack_bolt.context.ack.async_ack import AsyncAck
from slack_bolt.context.async_context import AsyncBoltContext
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from bot.errors import ConfigError, DeliveryError
from bot.messages import Inbound, Outbound, clean_text
from bot.settings import Settings, SlackSettings, missing_channel_secrets
from channels.base import Channel, OnMessage
from nlu.problems import DataProblem

log = logging.getLogger("guichet.slack")

MAX_INBOUND_CHARS = 4000  # Slack's advice for one message; longer text is cut
SECTION_CHARS = 3000  # Block Kit's limit for a section's text
MESSAGE_CHARS = 3900  # below Slack's 4000-character advice for a plain message
BUTTON_TITLE_CHARS = 75  # Block Kit's limit for a button's label
MAX_RATE_LIMIT_WAIT = 5.0  # wait this long for a 429 ourselves; longer, the outbox retries
PROFILE_SECONDS = 3600.0
PROFILE_TIMEOUT = 2.0  # the lookup happens before the ack, which Slack wants within 3 s
CHOICE_ACTION = "guichet_choice_"
CHOICE_BLOCK = "guichet_choices"

# chat.postMessage errors that no retry will fix.
PERMANENT_ERRORS = frozenset(
    {
        "channel_not_found",
        "not_in_channel",
        "account_inactive",
        "is_archived",
        "user_not_found",
        "user_disabled",
        "cannot_dm_bot",
        "msg_too_long",
        "no_text",
        "invalid_blocks",
        "invalid_auth",
        "not_authed",
        "token_revoked",
        "missing_scope",
        "restricted_action",
    }
)

# Message subtypes that are still a person writing (anything else is an edit, a join, a bot…).
_PERSON_SUBTYPES = frozenset({None, "file_share", "thread_broadcast"})

WELCOME = {
    "fr": "Bonjour ! Je suis l'assistant du support informatique. Décrivez votre question ou "
    "votre problème ici, en une phrase : je cherche la réponse ou j'ouvre un ticket.",
    "en": "Hello! I am the IT help desk assistant. Tell me your question or problem here in "
    "one sentence: I will look for the answer or open a ticket.",
}


def escape(text: str) -> str:
    """Slack's control characters as entities: `<!channel>` is then shown, never acted on."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


_MARKUP = re.compile(r"<([^<>\n]*)>")
_SPECIAL = {"here", "channel", "everyone"}


def plain_text(text: str, bot_user_id: str | None = None) -> str:
    """What a person typed, from Slack's markup: links, mentions and entities as plain text.
    A mention of the bot itself is removed (`@Guichet my VPN…` is about the VPN)."""

    def replace(match: re.Match[str]) -> str:
        target, _, label = match.group(1).partition("|")
        if target.startswith("@"):
            return "" if target[1:] == bot_user_id else f"@{label or target[1:]}"
        if target.startswith("#"):
            return f"#{label or target[1:]}"
        if target.startswith("!"):
            word = target[1:].split("^")[0]
            return f"@{word}" if word in _SPECIAL else label
        url = target.removeprefix("mailto:")
        # A label that differs from its link is kept with the link: the desk sees where it goes.
        if not label or label in (url, target) or url.split("://", 1)[-1].rstrip("/") == label:
            return label or url
        return f"{label} ({url})"

    text = _MARKUP.sub(replace, text)
    return text.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")


def _chunks(text: str, size: int) -> list[str]:
    """Escaped text in pieces of at most `size`, cut at a line end when possible and never
    inside an entity."""
    pieces: list[str] = []
    while len(text) > size:
        cut = text.rfind("\n", 0, size)
        if cut <= size // 2:
            cut = size
            amp = text.rfind("&", max(0, size - 5), size)
            if amp != -1 and ";" not in text[amp:size]:
                cut = amp
        pieces.append(text[:cut])
        text = text[cut:].lstrip("\n")
    if text:
        pieces.append(text)
    return pieces


def missing_secrets(settings: SlackSettings) -> list[DataProblem]:
    """What Slack needs in this mode and the environment does not give (as `guichet check`
    reports it; checked again here for a channel built from settings made in code)."""
    return missing_channel_secrets(Settings(slack=settings))


@dataclass(frozen=True, slots=True)
class Profile:
    name: str | None = None
    email: str | None = None  # only a profile of this workspace's own members
    language: str | None = None
    fetched: float = 0.0


class SlackChannel(Channel):
    name = "slack"

    def __init__(self, app: web.Application, settings: SlackSettings) -> None:
        problems = missing_secrets(settings)
        if problems:
            # Without the signing secret every forged request would be accepted; without the
            # tokens nothing can be sent: refuse to start rather than run half a channel.
            raise ConfigError(problems)
        self.settings = settings
        self.client = AsyncWebClient(token=settings.bot_token, base_url=settings.api_base, timeout=10)
        self.bolt = AsyncApp(
            client=self.client,
            signing_secret=settings.signing_secret or "",
            process_before_response=True,  # ack only once the message is stored
            request_verification_enabled=settings.mode == "events",
            logger=logging.getLogger("guichet.slack.bolt"),
        )
        self.bolt.event("message")(self._message)
        self.bolt.event("app_mention")(self._mention)
        self.bolt.event("app_home_opened")(self._home_opened)
        self.bolt.action(re.compile(f"^{CHOICE_ACTION}\\d+$"))(self._choice)
        # Any other event the app is subscribed to: bolt would answer 404, and Slack would
        # retry it and in the end disable the subscription.
        self.bolt.event(re.compile(".*"))(self._ignore)
        self.bolt.action(re.compile(".*"))(self._ack_only)  # a link button: Slack wants an ack
        self._on_message: OnMessage | None = None
        self._socket: AsyncSocketModeHandler | None = None
        self._connecting: asyncio.Task[None] | None = None
        self._profiles: dict[str, Profile] = {}
        self._stored: OrderedDict[str, None] = OrderedDict()  # event_ids stored lately
        self._welcomed: set[str] = set()
        self._background: set[asyncio.Task[None]] = set()
        if settings.mode == "events":
            app.router.add_post(settings.events_path, self._events)

    async def start(self, on_message: OnMessage) -> None:
        self._on_message = on_message
        if self.settings.mode == "socket":
            self._socket = AsyncSocketModeHandler(self.bolt, self.settings.app_token, web_client=self.client)
            # The client retries on its own until Slack answers: Guichet starts without waiting.
            self._connecting = asyncio.create_task(
                self._socket.connect_async(),  # type: ignore[no-untyped-call]  # bolt leaves it unannotated
                name="slack socket mode",
            )

    async def stop(self) -> None:
        if self._socket is not None:
            await self._socket.close_async()  # type: ignore[no-untyped-call]
        for task in [self._connecting, *self._background]:
            if task is not None and not task.done():
                task.cancel()

    # -- Slack → Guichet --------------------------------------------------------------------

    async def _events(self, request: web.Request) -> web.StreamResponse:
        try:
            bolt_request = await to_bolt_request(request)
        except (ValueError, RecursionError):
            return web.json_response({"error": "invalid_body"}, status=400)
        return await to_aiohttp_response(await self.bolt.async_dispatch(bolt_request))

    async def _ignore(self) -> None:
        return None

    async def _ack_only(self, ack: AsyncAck) -> None:
        await ack()

    async def _message(self, body: dict[str, Any], event: dict[str, Any], context: AsyncBoltContext) -> None:
        # In channels the bot answers only when mentioned (app_mention); a direct message or
        # the Messages tab is a conversation with the bot.
        if event.get("channel_type") != "im" or not _from_a_person(event):
            return
        await self._accept(body, event, context, event.get("thread_ts"))

    async def _mention(self, body: dict[str, Any], event: dict[str, Any], context: AsyncBoltContext) -> None:
        if str(event.get("channel", "")).startswith("D") or not _from_a_person(event):
            return  # a mention in a direct message also comes as message.im
        await self._accept(body, event, context, event.get("thread_ts") or event.get("ts"))

    async def _accept(
        self, body: dict[str, Any], event: dict[str, Any], context: AsyncBoltContext, thread_ts: Any
    ) -> None:
        event_id = str(body.get("event_id") or f"{event.get('channel')}:{event.get('ts')}")
        if event_id in self._stored:
            log.info("event %s is a retry of one already stored", event_id)
            return
        user, channel = event.get("user"), event.get("channel")
        if not isinstance(user, str) or not isinstance(channel, str):
            return
        text = clean_text(plain_text(str(event.get("text") or ""), context.bot_user_id))
        if not text:
            return  # a bare mention, a file without words: nothing to answer
        reply_context = {"channel": channel, **({"thread_ts": str(thread_ts)} if thread_ts else {})}
        await self._store(
            body,
            user,
            text[:MAX_INBOUND_CHARS],
            event_id,
            reply_context,
            {"event_id": event_id, "type": event.get("type"), "channel": channel, "ts": event.get("ts")},
        )

    async def _choice(self, ack: AsyncAck, body: dict[str, Any], action: dict[str, Any]) -> None:
        user = (body.get("user") or {}).get("id")
        container = body.get("container") or {}
        message = body.get("message") or {}
        channel = container.get("channel_id") or (body.get("channel") or {}).get("id")
        if not isinstance(user, str) or not isinstance(channel, str) or not action.get("value"):
            await ack()
            return
        owner = str(action.get("block_id") or "").split(":")
        if len(owner) == 3 and owner[1] != user:
            # Buttons in a channel thread are visible to all: only the person they were
            # offered to answers with them.
            log.info("%s clicked a choice offered to %s: ignored", user, owner[1])
            await ack()
            return
        thread_ts = container.get("thread_ts") or message.get("thread_ts")
        title = str((action.get("text") or {}).get("text") or action["value"])
        # Slack does not resend interactions; the id only has to be unique per click.
        click_id = f"action:{channel}:{container.get('message_ts')}:{action.get('action_ts')}:{user}"
        reply_context = {"channel": channel, **({"thread_ts": str(thread_ts)} if thread_ts else {})}
        await self._store(
            body,
            user,
            clean_text(title) or str(action["value"]),
            click_id,
            reply_context,
            {
                "action_id": action.get("action_id"),
                "channel": channel,
                "message_ts": container.get("message_ts"),
            },
            payload=str(action["value"]),
        )
        await ack()
        if message.get("ts") and message.get("blocks"):
            self._later(self._mark_chosen(channel, message, title))

    async def _store(
        self,
        body: Mapping[str, Any],
        user: str,
        text: str,
        platform_id: str,
        reply_context: dict[str, str],
        details: dict[str, Any],
        payload: str | None = None,
    ) -> None:
        profile = await self._profile(user, body)
        inbound = Inbound(
            channel=self.name,
            conversation_id=user,
            user_id=user,
            text=text,
            platform_message_id=platform_id,
            language=profile.language,
            payload=payload,
            user_name=profile.name,
            user_email=profile.email,
            raw={"slack": {"team_id": body.get("team_id"), **details}, "reply_context": reply_context},
        )
        assert self._on_message is not None, "start() was not called"
        await self._on_message(inbound)  # raises on failure: bolt answers 500 and Slack retries
        self._stored[platform_id] = None
        while len(self._stored) > 10_000:
            self._stored.popitem(last=False)

    async def _home_opened(self, event: dict[str, Any], body: dict[str, Any]) -> None:
        user, channel = event.get("user"), event.get("channel")
        if event.get("tab") != "messages" or not isinstance(user, str) or not isinstance(channel, str):
            return
        if user in self._welcomed:
            return
        self._welcomed.add(user)
        self._later(self._welcome(user, channel, body))

    async def _welcome(self, user: str, channel: str, body: Mapping[str, Any]) -> None:
        """A short welcome the first time someone opens the Messages tab: only when the
        conversation is empty, so a restart (which forgets `_welcomed`) does not repeat it."""
        try:
            history = await self.client.conversations_history(channel=channel, limit=1)
            if history.get("messages"):
                return
            profile = await self._profile(user, body)
            text = WELCOME["en" if profile.language == "en" else "fr"]
            await self.client.chat_postMessage(channel=channel, text=escape(text))
        except (SlackApiError, aiohttp.ClientError, TimeoutError) as exc:
            log.warning("no welcome for %s: %s", user, exc)

    async def _mark_chosen(self, channel: str, message: Mapping[str, Any], title: str) -> None:
        """Replace the buttons of a message by the choice made, so it cannot be clicked twice."""
        blocks = [b for b in message.get("blocks") or [] if b.get("type") != "actions"]
        blocks.append({"type": "context", "elements": [{"type": "mrkdwn", "text": f"→ {escape(title)}"}]})
        try:
            await self.client.chat_update(
                channel=channel, ts=str(message["ts"]), blocks=blocks, text=str(message.get("text") or "")
            )
        except (SlackApiError, aiohttp.ClientError, TimeoutError) as exc:
            log.info("could not update the message with buttons: %s", exc)

    async def _profile(self, user: str, body: Mapping[str, Any]) -> Profile:
        cached = self._profiles.get(user)
        if cached is not None and time.monotonic() - cached.fetched < PROFILE_SECONDS:
            return cached
        try:
            async with asyncio.timeout(PROFILE_TIMEOUT):
                answer = await self.client.users_info(user=user, include_locale=True)
        except (SlackApiError, aiohttp.ClientError, TimeoutError) as exc:
            # The message is still taken, without a name; the next one tries again.
            log.warning("no Slack profile for %s: %s", user, exc)
            return cached or Profile()
        data = answer.get("user") or {}
        fields = data.get("profile") or {}
        locale = str(data.get("locale") or "")[:2].lower()
        email = fields.get("email")
        # A member of another organisation (Slack Connect) or a bot: its address is not an
        # identity at this desk.
        own = data.get("team_id") == body.get("team_id") or (
            body.get("enterprise_id") is not None
            and (data.get("enterprise_user") or {}).get("enterprise_id") == body.get("enterprise_id")
        )
        trusted = own and not data.get("is_bot") and not data.get("deleted") and not data.get("is_stranger")
        profile = Profile(
            name=fields.get("real_name")
            or data.get("real_name")
            or fields.get("display_name")
            or data.get("name"),
            email=email.strip().lower() if trusted and isinstance(email, str) and "@" in email else None,
            language=locale if locale in ("fr", "en") else None,
            fetched=time.monotonic(),
        )
        self._profiles[user] = profile
        return profile

    def _later(self, work: Any) -> None:
        task: asyncio.Task[None] = asyncio.create_task(work)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    # -- Guichet → Slack --------------------------------------------------------------------

    async def send(self, message: Outbound, seq: int | None) -> None:
        context = message.context
        # No context: the person's direct message with the app (posting to a user id opens it).
        channel = str(context.get("channel") or message.conversation_id)
        thread_ts = context.get("thread_ts")
        for post in render(message):
            if thread_ts:
                post["thread_ts"] = str(thread_ts)
            await self._post(channel, post)

    async def _post(self, channel: str, post: dict[str, Any]) -> None:
        for attempt in (1, 2):
            try:
                await self.client.chat_postMessage(channel=channel, **post)
                return
            except SlackApiError as exc:
                error = str(exc.response.get("error") or exc.response.status_code)
                if exc.response.status_code == 429 or error == "ratelimited":
                    headers = exc.response.headers or {}
                    wait = _seconds(headers.get("Retry-After") or headers.get("retry-after"))
                    if attempt == 1 and wait <= MAX_RATE_LIMIT_WAIT:
                        await asyncio.sleep(wait)
                        continue
                    raise DeliveryError(self.name, f"rate limited, retry after {wait:g} s") from exc
                raise DeliveryError(self.name, error, permanent=error in PERMANENT_ERRORS) from exc
            except (aiohttp.ClientError, TimeoutError) as exc:
                raise DeliveryError(self.name, f"Slack unreachable: {exc!r}") from exc


def render(message: Outbound) -> list[dict[str, Any]]:
    """The chat.postMessage arguments for one reply: plain escaped text, or sections and
    buttons for a reply with choices (with the text as the notification's fallback)."""
    text = escape(message.text)
    if message.sender == "agent" and message.agent_name:
        text = f"*{escape(message.agent_name)}*\n{text}"
    if not message.choices:
        return [{"text": piece} for piece in _chunks(text, MESSAGE_CHARS)] or [{"text": " "}]
    blocks: list[dict[str, Any]] = [
        {"type": "section", "text": {"type": "mrkdwn", "text": piece}}
        for piece in _chunks(text, SECTION_CHARS)
    ]
    buttons = [
        {
            "type": "button",
            "action_id": f"{CHOICE_ACTION}{n}",
            # plain_text is never parsed for mentions: the title goes as it is.
            "text": {"type": "plain_text", "text": choice.title[:BUTTON_TITLE_CHARS] or "…", "emoji": True},
            "value": choice.payload,
        }
        for n, choice in enumerate(message.choices)
    ]
    for start in range(0, len(buttons), 25):  # Block Kit: at most 25 elements per actions block
        blocks.append(
            {
                "type": "actions",
                "block_id": f"{CHOICE_BLOCK}:{message.conversation_id}:{start}",  # whose choices
                "elements": buttons[start : start + 25],
            }
        )
    fallback = escape(message.as_text())
    if message.sender == "agent" and message.agent_name:
        fallback = f"{escape(message.agent_name)}: {fallback}"
    return [{"text": fallback[:MESSAGE_CHARS], "blocks": blocks[:50]}]


def _from_a_person(event: Mapping[str, Any]) -> bool:
    """Not a bot (ours or another), not an edit, deletion or channel notice."""
    return (
        not event.get("bot_id")
        and not event.get("bot_profile")
        and event.get("subtype") in _PERSON_SUBTYPES
        and not event.get("hidden")
        and isinstance(event.get("user"), str)
    )


def _seconds(value: Any) -> float:
    try:
        return max(0.0, float(value))
    except (TypeError, ValueError):
        return 1.0

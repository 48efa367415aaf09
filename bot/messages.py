"""The message types that cross every boundary: channel → manager → outbox → channel.

They are frozen so that no room can change a message another room already holds, and they
never pack structure into text: choices, the platform's ids and the raw event travel as fields.
"""

from __future__ import annotations

import itertools
import re
import secrets
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

Sender = Literal["user", "bot", "agent"]

# Control characters other than tab and newline, bidi overrides and zero-width characters are
# removed at the boundary: they hide text from the level-2 agent or turn it around on screen.
_UNSAFE = re.compile(
    "[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\u200b-\u200f\u202a-\u202e\u2060-\u2069\ufeff\ud800-\udfff]"
)


def clean_text(text: str) -> str:
    """Normalise inbound text: NFC, no control, bidi or zero-width characters, no lone surrogates."""
    text = unicodedata.normalize("NFC", _UNSAFE.sub("", text))
    return text.replace("\r\n", "\n").replace("\r", "\n").strip()


def language_hint(code: object) -> str | None:
    """A platform's language tag ("fr-FR", "en") as a language Guichet speaks, else None."""
    code = str(code or "")[:2].lower()
    return code if code in ("fr", "en") else None


def utcnow() -> datetime:
    return datetime.now(UTC)


_PROCESS = secrets.token_hex(8)  # 64 random bits per process
_COUNTER = itertools.count()


def new_id() -> str:
    """A unique id: this process's random prefix and a counter (32 hex digits like a UUID).
    A uuid4 per message cost a system call for randomness on every reply."""
    return f"{_PROCESS}{next(_COUNTER):016x}"


@dataclass(frozen=True, slots=True)
class Choice:
    """One option offered to the person; `payload` is what comes back when it is picked."""

    title: str
    payload: str


@dataclass(frozen=True, slots=True)
class Inbound:
    """A message a person sent on a channel, as the channel understood it."""

    channel: str
    conversation_id: str
    user_id: str
    text: str
    platform_message_id: str
    received_at: datetime = field(default_factory=utcnow)
    language: str | None = None  # a hint from the platform (browser, Telegram language_code)
    payload: str | None = None  # set when the person picked a Choice
    user_name: str | None = None
    # An address the platform verified (a Slack profile's email, an email's sender): the
    # person's identity across channels.
    user_email: str | None = None
    raw: Mapping[str, Any] = field(default_factory=dict)
    # "agent" for a level-2 event travelling through the conversation in order with the
    # person's messages (raw["level2"] holds it).
    sender: Sender = "user"
    agent_name: str | None = None

    @property
    def conversation_key(self) -> str:
        return conversation_key(self.channel, self.conversation_id)

    def to_dict(self) -> dict[str, Any]:
        return {
            "channel": self.channel,
            "conversation_id": self.conversation_id,
            "user_id": self.user_id,
            "text": self.text,
            "platform_message_id": self.platform_message_id,
            "received_at": self.received_at.isoformat(),
            "language": self.language,
            "payload": self.payload,
            "user_name": self.user_name,
            "user_email": self.user_email,
            "raw": dict(self.raw),
            "sender": self.sender,
            "agent_name": self.agent_name,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Inbound:
        return cls(
            channel=data["channel"],
            conversation_id=data["conversation_id"],
            user_id=data["user_id"],
            text=data["text"],
            platform_message_id=data["platform_message_id"],
            received_at=datetime.fromisoformat(data["received_at"]),
            language=data.get("language"),
            payload=data.get("payload"),
            user_name=data.get("user_name"),
            user_email=data.get("user_email"),
            raw=data.get("raw") or {},
            sender=data.get("sender", "user"),
            agent_name=data.get("agent_name"),
        )


@dataclass(frozen=True, slots=True)
class Outbound:
    """A message Guichet sends to a person on a channel.

    `reply_to` names the inbound message it answers and `last_in_turn` marks the final reply
    to it, so that a request/response channel (the REST channel) knows when to answer.
    """

    channel: str
    conversation_id: str
    text: str
    id: str = field(default_factory=new_id)
    choices: tuple[Choice, ...] = ()
    sender: Sender = "bot"
    agent_name: str | None = None
    language: str | None = None
    reply_to: str | None = None
    last_in_turn: bool = True
    created_at: datetime = field(default_factory=utcnow)
    # How the channel addresses this reply (an email's recipient and thread, a Slack
    # thread_ts): the `reply_context` the channel put in the person's latest Inbound.raw,
    # copied by the manager so that level 2's replies reach the same place.
    context: Mapping[str, Any] = field(default_factory=dict)

    @property
    def conversation_key(self) -> str:
        return conversation_key(self.channel, self.conversation_id)

    def as_text(self) -> str:
        """The one place where a reply degrades to plain text for channels without buttons."""
        if not self.choices:
            return self.text
        lines = [self.text, *(f"{n}. {c.title}" for n, c in enumerate(self.choices, start=1))]
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        return {
            "channel": self.channel,
            "conversation_id": self.conversation_id,
            "text": self.text,
            "id": self.id,
            "choices": [{"title": c.title, "payload": c.payload} for c in self.choices],
            "sender": self.sender,
            "agent_name": self.agent_name,
            "language": self.language,
            "reply_to": self.reply_to,
            "last_in_turn": self.last_in_turn,
            "created_at": self.created_at.isoformat(),
            "context": dict(self.context),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Outbound:
        return cls(
            channel=data["channel"],
            conversation_id=data["conversation_id"],
            text=data["text"],
            id=data["id"],
            choices=tuple(Choice(c["title"], c["payload"]) for c in data.get("choices", ())),
            sender=data.get("sender", "bot"),
            agent_name=data.get("agent_name"),
            language=data.get("language"),
            reply_to=data.get("reply_to"),
            last_in_turn=data.get("last_in_turn", True),
            created_at=datetime.fromisoformat(data["created_at"]),
            context=data.get("context") or {},
        )


@dataclass(frozen=True, slots=True)
class TranscriptEntry:
    """One line of a conversation as a person or a level-2 agent would read it."""

    seq: int
    sender: Sender
    text: str
    time: datetime
    message_id: str
    choices: tuple[Choice, ...] = ()
    agent_name: str | None = None
    reply_to: str | None = None  # for a reply: the platform id of the message it answers

    def to_dict(self) -> dict[str, Any]:
        return {
            "seq": self.seq,
            "from": self.sender,
            "text": self.text,
            "time": self.time.isoformat(),
            "id": self.message_id,
            "choices": [{"title": c.title, "payload": c.payload} for c in self.choices],
            "agent_name": self.agent_name,
            "reply_to": self.reply_to,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TranscriptEntry:
        return cls(
            seq=int(data["seq"]),
            sender=data["from"],
            text=data["text"],
            time=datetime.fromisoformat(data["time"]),
            message_id=data["id"],
            choices=tuple(Choice(c["title"], c["payload"]) for c in data.get("choices", ())),
            agent_name=data.get("agent_name"),
            reply_to=data.get("reply_to"),
        )


@dataclass(frozen=True, slots=True)
class AcceptResult:
    """What storing an inbound message gave; a channel acknowledges the platform after it."""

    accepted: bool  # False: the platform message id was already accepted (a retry)
    seq: int | None  # the inbound's place in the transcript (None for a duplicate)


def conversation_key(channel: str, conversation_id: str) -> str:
    return f"{channel}:{conversation_id}"

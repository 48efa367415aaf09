"""The state store contract, shared by the embedded store (SQLite on local disk) and Redis.

What the manager relies on:
- `accept` stores an inbound message and its transcript line, or says it is a duplicate of a
  platform message id already accepted; a channel acknowledges the platform only after it.
- `complete` is atomic: the inbound leaves the inbox, the conversation state is saved, and the
  replies enter the transcript and the outbox together, so a crash either happened before (the
  message is handled again) or after (nothing is done twice).
- The outbox hands out due items under a lease, so that several processes never send the same
  item at once, and a process that dies loses nothing: the lease runs out and it is due again.
"""

from __future__ import annotations

import hashlib
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from bot.messages import AcceptResult, Inbound, Outbound, TranscriptEntry
from triage.tickets import Ticket


@dataclass(frozen=True, slots=True)
class ConversationState:
    """What the bot remembers of one conversation between two messages."""

    key: str
    mode: str = "bot"
    language: str | None = None
    # What the bot waits for, e.g. {"kind": "choice", "options": [...]}; empty when nothing.
    pending: Mapping[str, Any] = field(default_factory=dict)
    facts: Mapping[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "mode": self.mode,
            "language": self.language,
            "pending": dict(self.pending),
            "facts": dict(self.facts),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ConversationState:
        return cls(
            key=data["key"],
            mode=data.get("mode", "bot"),
            language=data.get("language"),
            pending=data.get("pending") or {},
            facts=data.get("facts") or {},
        )


@dataclass(frozen=True, slots=True)
class Question:
    """A question no article answered: what grows the knowledge base."""

    at: datetime
    language: str
    channel: str
    text: str
    # A hash of the conversation it came from: lets `guichet forget` find it, names nobody.
    source: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {
            "at": self.at.isoformat(),
            "language": self.language,
            "channel": self.channel,
            "text": self.text,
            "source": self.source,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Question:
        return cls(
            datetime.fromisoformat(data["at"]),
            data["language"],
            data["channel"],
            data["text"],
            data.get("source", ""),
        )


def source_of(conversation_key: str) -> str:
    return hashlib.sha256(conversation_key.encode()).hexdigest()[:24]


@dataclass(frozen=True, slots=True)
class OutboxItem:
    """Something to deliver: a chat reply (destination "channel:<name>") or, later, a webhook."""

    id: str
    destination: str
    body: Mapping[str, Any]
    seq: int | None = None  # the transcript line of a chat reply
    attempts: int = 0
    last_error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "destination": self.destination,
            "body": dict(self.body),
            "seq": self.seq,
            "attempts": self.attempts,
            "last_error": self.last_error,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> OutboxItem:
        return cls(
            id=data["id"],
            destination=data["destination"],
            body=data["body"],
            seq=data.get("seq"),
            attempts=int(data.get("attempts", 0)),
            last_error=data.get("last_error"),
        )

    @classmethod
    def for_reply(cls, reply: Outbound) -> OutboxItem:
        return cls(id=reply.id, destination=f"channel:{reply.channel}", body=reply.to_dict())


@dataclass(frozen=True, slots=True)
class Effects:
    """What handling one message changes besides the conversation: tickets opened or updated,
    and items for other destinations (handoff webhooks), committed with it atomically."""

    tickets: Sequence[Ticket] = ()
    items: Sequence[OutboxItem] = ()


NO_EFFECTS = Effects()


def records_transcript(inbound: Inbound) -> bool:
    """A person's message is a transcript line when accepted; a level-2 event is not: what it
    changes is recorded by the replies it causes (the agent's message as relayed)."""
    return inbound.sender == "user"


def transcript_entry_for(message: Inbound | Outbound, seq: int) -> TranscriptEntry:
    if isinstance(message, Inbound):
        return TranscriptEntry(
            seq=seq,
            sender=message.sender,
            text=message.text,
            time=message.received_at,
            message_id=message.platform_message_id,
            agent_name=message.agent_name,
        )
    return TranscriptEntry(
        seq=seq,
        sender=message.sender,
        text=message.text,
        time=message.created_at,
        message_id=message.id,
        choices=message.choices,
        agent_name=message.agent_name,
        reply_to=message.reply_to,
    )


class Store(ABC):
    """Abstract state store. Both implementations pass tests/test_store_contract.py."""

    @abstractmethod
    async def open(self) -> None: ...

    @abstractmethod
    async def close(self) -> None: ...

    # Inbound ------------------------------------------------------------------------------
    @abstractmethod
    async def accept(self, inbound: Inbound) -> AcceptResult: ...

    @abstractmethod
    async def pending(self, conversation_key: str) -> list[Inbound]:
        """Accepted messages of a conversation not yet completed, oldest first."""

    @abstractmethod
    async def conversations_with_pending(self) -> list[str]: ...

    @abstractmethod
    async def complete(
        self,
        inbound: Inbound,
        state: ConversationState,
        replies: Sequence[Outbound],
        due: datetime,
        effects: Effects = NO_EFFECTS,
    ) -> list[OutboxItem]:
        """Atomically: inbound handled, state saved, replies in the transcript and the outbox,
        tickets saved and the effects' items in the outbox.

        Everything is due at `due`: the caller delivers at once itself and sets `due` a lease
        away, so the outbox sweep only sends what that caller did not. Returns the replies'
        items (with their transcript seq), then the effects' items.
        """

    # Conversation -------------------------------------------------------------------------
    @abstractmethod
    async def load_state(self, conversation_key: str) -> ConversationState | None: ...

    @abstractmethod
    async def transcript(
        self, conversation_key: str, after_seq: int = 0, limit: int = 500
    ) -> list[TranscriptEntry]: ...

    # Outbox -------------------------------------------------------------------------------
    @abstractmethod
    async def enqueue(self, item: OutboxItem, due: datetime | None = None) -> None:
        """Add an item that is not a reply to an inbound (a webhook, a message from an agent)."""

    @abstractmethod
    async def claim_due(self, now: datetime, limit: int, lease_seconds: float) -> list[OutboxItem]:
        """Due items, each leased to the caller until now + lease_seconds."""

    @abstractmethod
    async def delivered(self, item_id: str) -> None: ...

    @abstractmethod
    async def retry_later(self, item_id: str, attempts: int, due: datetime, error: str) -> None: ...

    @abstractmethod
    async def dead_letter(self, item_id: str, attempts: int, error: str) -> None: ...

    @abstractmethod
    async def dead_letters(self) -> list[OutboxItem]: ...

    @abstractmethod
    async def replay(self, item_id: str, due: datetime) -> bool:
        """Move a dead letter back to the outbox; False if there is no such dead letter."""

    @abstractmethod
    async def outbox_size(self) -> int: ...

    # Tickets --------------------------------------------------------------------------------
    @abstractmethod
    async def ticket(self, number: str) -> Ticket | None: ...

    @abstractmethod
    async def tickets_of(self, requester_id: str, limit: int = 50) -> list[Ticket]:
        """The requester's tickets, newest first."""

    @abstractmethod
    async def remember_once(self, name: str, ttl_seconds: float) -> bool:
        """True the first time a name is seen within ttl_seconds (replayed event ids)."""

    # Figures for the manager ------------------------------------------------------------------
    @abstractmethod
    async def count(self, name: str, amount: int = 1, ttl_seconds: float = 86400.0) -> int:
        """Add to a counter that disappears ttl_seconds after it was first counted in (rate
        caps, daily statistics); returns the new value."""

    @abstractmethod
    async def add_counts(self, names: list[str], ttl_seconds: float) -> None:
        """Add one to each of these counters, in one write (the daily statistics of a message)."""

    @abstractmethod
    async def counts(self, names: list[str]) -> dict[str, int]:
        """The live counters among these names (missing or expired ones are left out)."""

    @abstractmethod
    async def note_unanswered(self, question: Question, ttl_seconds: float) -> None:
        """Keep a question nobody could answer, for `guichet report unanswered`, until it expires."""

    @abstractmethod
    async def drop_unanswered(self, sources: Sequence[str]) -> int:
        """Delete the kept questions that came from these conversations (by source_of)."""

    @abstractmethod
    async def unanswered(self, since: datetime) -> list[Question]:
        """The questions kept since that time, oldest first."""

    # Personal data (bot/privacy.py) -------------------------------------------------------------
    @abstractmethod
    def all_tickets(self) -> AsyncIterator[Ticket]:
        """Every ticket, in no particular order (finding a person wherever they appear)."""

    @abstractmethod
    async def put_tickets(self, tickets: Sequence[Ticket], forget_requester: str | None = None) -> None:
        """Save tickets as given (e.g. anonymised), dropping the index of a forgotten requester."""

    @abstractmethod
    async def drop_undelivered(self, needles: Sequence[str]) -> int:
        """Delete outbox items and dead letters whose body mentions any of these texts (a
        forgotten person's pending replies and handoffs); returns how many."""

    @abstractmethod
    async def idle_conversations(self, before: datetime, limit: int = 1000) -> list[str]:
        """Conversations whose last transcript line is older than `before` (retention)."""

    @abstractmethod
    async def scrub(self) -> None:
        """After an erasure: leave no copy of erased data in the store's own files."""

    @abstractmethod
    async def erase_conversation(self, conversation_key: str) -> int:
        """Delete a conversation: state, transcript and inbox; returns the transcript lines removed."""

    # Shared counters, secrets and per-conversation locks ----------------------------------------
    @abstractmethod
    async def next_number(self, sequence: str) -> int:
        """1, 2, 3, … atomically for this sequence, never reused."""

    @abstractmethod
    async def secret(self, name: str, create: str) -> str:
        """The stored secret of this name, storing `create` first if there is none; with
        `create` empty, nothing is stored and "" means there is none (a guessed name leaves
        no trace)."""

    @abstractmethod
    async def try_lock(self, name: str, owner: str, ttl_seconds: float) -> bool: ...

    @abstractmethod
    async def unlock(self, name: str, owner: str) -> None: ...

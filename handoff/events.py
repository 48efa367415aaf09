"""What level 2 posts back to Guichet: checked at the boundary, then trusted.

Order of the checks: size (413), JSON and its shape against handoff/schema/event.v1.json
(400), the queue it claims (401 when unknown), then the signature with that queue's secrets
(401). The texts come out cleaned (no NUL, bidi or zero-width controls, lone surrogates).

What is left to the caller, which holds the store: refuse an id it has already seen (409: a
replay inside the 5-minute window passes the signature check), and check that the ticket
exists and belongs to the queue that signed the event.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from bot.messages import clean_text
from handoff.payload import load_schema, validate
from handoff.signing import SignatureError, verify

_SCHEMA = load_schema("event.v1.json")
MAX_DEPTH = 8
MAX_ID_LENGTH = 128


class EventError(Exception):
    """An event refused at the boundary: `status` is the HTTP status to answer (400 bad JSON
    or shape, 401 bad signature or unknown queue, 409 replayed id, 413 too large) and
    `reason` a sentence for the response's body."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


@dataclass(frozen=True, slots=True)
class Level2Event:
    id: str  # the webhook-id: check it for a replay before acting on the event
    type: str
    ticket: str
    queue: str
    agent_name: str | None
    text: str | None
    created_at: str | None


def parse_event(
    headers: Mapping[str, str],
    body: bytes,
    secret_for_queue: Callable[[str], Sequence[str]],
    *,
    tolerance_seconds: int = 300,
    now: float | None = None,
    max_bytes: int = 64 * 1024,
) -> Level2Event:
    if len(body) > max_bytes:
        raise EventError(413, f"the event is larger than {max_bytes} bytes")
    try:
        data: Any = json.loads(body, object_pairs_hook=_no_repeated_keys)
    except (ValueError, RecursionError) as exc:  # JSONDecodeError, UnicodeDecodeError are ValueErrors
        raise EventError(400, f"the body is not valid JSON: {exc}") from exc
    if _depth(data) > MAX_DEPTH:
        raise EventError(400, "the JSON is nested too deeply")
    problems = validate(data, _SCHEMA)
    if problems:
        raise EventError(400, "; ".join(problems[:5]))
    secrets_ = secret_for_queue(data["queue"])
    if not secrets_:
        raise EventError(401, f"unknown queue {data['queue']!r}")
    try:
        event_id = verify(secrets_, headers, body, tolerance_seconds=tolerance_seconds, now=now)
    except SignatureError as exc:
        raise EventError(401, exc.reason) from exc
    if len(event_id) > MAX_ID_LENGTH:
        raise EventError(400, f"webhook-id is longer than {MAX_ID_LENGTH} characters")
    text = clean_text(data["text"]) if "text" in data else None
    if data["type"] == "agent.message" and not text:
        raise EventError(400, "an agent.message needs a text")
    # The name is shown to the person in front of the agent's words: one line, no controls.
    agent_name = " ".join(clean_text(data.get("agent", {}).get("name", "")).split()) or None
    if data["type"] == "ticket.assigned" and agent_name is None:
        raise EventError(400, "a ticket.assigned needs the agent's name")
    return Level2Event(
        id=event_id,
        type=data["type"],
        ticket=data["ticket"],
        queue=data["queue"],
        agent_name=agent_name,
        text=text or None,
        created_at=data.get("created_at"),
    )


def _no_repeated_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """A key given twice is refused: which "type" or "ticket" was meant?"""
    data = dict(pairs)
    if len(data) != len(pairs):
        names = [name for name, _ in pairs]
        raise ValueError(f"a key is repeated: {sorted({n for n in names if names.count(n) > 1})}")
    return data


def _depth(value: Any, level: int = 0) -> int:
    if level > MAX_DEPTH:
        return level
    if isinstance(value, dict):
        return max((_depth(v, level + 1) for v in value.values()), default=level + 1)
    if isinstance(value, list):
        return max((_depth(v, level + 1) for v in value), default=level + 1)
    return level

"""What level 2 posts back to Guichet: checked at the boundary, then trusted.

Order of the checks: size, JSON shape against handoff/schema/event.v1.json, the queue it
claims, then the signature with that queue's secrets. The caller refuses a replayed id (the
conversation inbox deduplicates it) and checks that the ticket belongs to that queue.
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


class EventError(Exception):
    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


@dataclass(frozen=True, slots=True)
class Level2Event:
    id: str
    type: str
    ticket: str
    queue: str
    agent_name: str | None
    text: str | None
    created_at: str | None


def parse_event(
    headers: Mapping[str, str],
    body: bytes,
    secrets_for_queue: Callable[[str], Sequence[str]],
    *,
    tolerance_seconds: int = 300,
    now: float | None = None,
    max_bytes: int = 64 * 1024,
) -> Level2Event:
    if len(body) > max_bytes:
        raise EventError(413, f"the event is larger than {max_bytes} bytes")
    try:
        data: Any = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise EventError(400, f"the body is not valid JSON: {exc}") from exc
    if _depth(data) > MAX_DEPTH:
        raise EventError(400, "the JSON is nested too deeply")
    problems = validate(data, _SCHEMA)
    if problems:
        raise EventError(400, "; ".join(problems[:5]))
    secrets_ = secrets_for_queue(data["queue"])
    if not secrets_:
        raise EventError(401, f"unknown queue {data['queue']!r}")
    try:
        event_id = verify(secrets_, headers, body, tolerance_seconds=tolerance_seconds, now=now)
    except SignatureError as exc:
        raise EventError(401, exc.reason) from exc
    text = clean_text(data["text"]) if "text" in data else None
    if data["type"] == "agent.message" and not text:
        raise EventError(400, "an agent.message needs a text")
    return Level2Event(
        id=event_id,
        type=data["type"],
        ticket=data["ticket"],
        queue=data["queue"],
        agent_name=clean_text(data["agent"]["name"]) if data.get("agent", {}).get("name") else None,
        text=text or None,
        created_at=data.get("created_at"),
    )


def _depth(value: Any, level: int = 0) -> int:
    if level > MAX_DEPTH:
        return level
    if isinstance(value, dict):
        return max((_depth(v, level + 1) for v in value.values()), default=level + 1)
    if isinstance(value, list):
        return max((_depth(v, level + 1) for v in value), default=level + 1)
    return level

"""The documents Guichet sends to level 2, version 1 (schema: handoff/schema/ticket.v1.json).

`ticket.created` carries everything level 2 needs to take a ticket without asking again:
the qualified ticket, SLA deadlines, recurring flag and linked tickets, the requester, a
summary and the full transcript, the articles level 1 already suggested, and the reply route.
`ticket.updated` (a duplicate attached, cancelled, confirmed solved, reopened) and
`requester.message` (the person wrote while level 2 holds the ticket) carry the ticket again,
so a receiver never depends on the order of arrival. Texts are plain text: escape them.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from bot.messages import TranscriptEntry, utcnow
from triage.tickets import Ticket

SCHEMA_VERSION = 1
SCHEMA_URL = "https://guichet.dev/schemas/handoff/ticket.v1.json"
SCHEMA_DIR = Path(__file__).parent / "schema"


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment is not None else None


def _envelope(kind: str, event_id: str, ticket: Ticket, events_url: str) -> dict[str, Any]:
    channel, _, conversation = ticket.requester.conversation_key.partition(":")
    return {
        "schema": SCHEMA_URL,
        "version": SCHEMA_VERSION,
        "type": kind,
        "id": event_id,
        "created_at": utcnow().isoformat(),
        "queue": ticket.queue,
        "ticket": {
            "number": ticket.number,
            "status": ticket.status,
            "category": ticket.category,
            "priority": ticket.priority,
            "priority_reasons": list(ticket.priority_reasons),
            "impact": ticket.impact,
            "urgency": ticket.urgency,
            "opened_at": ticket.opened_at.isoformat(),
            "sla": {
                "first_response_due": _iso(ticket.first_response_due),
                "resolution_due": _iso(ticket.resolution_due),
            },
            "recurring": ticket.recurring,
            "linked_tickets": list(ticket.linked),
            "assignee": ticket.assignee,
        },
        "requester": {
            "id": ticket.requester.id,
            "name": ticket.requester.name,
            "email": ticket.requester.email,
            "phone": ticket.requester.phone,
            "channel": ticket.requester.channel,
            "language": ticket.requester.language,
        },
        "language": ticket.language,
        "reply_route": {
            "events_url": events_url,
            "ticket": ticket.number,
            "queue": ticket.queue,
            "channel": channel,
            "conversation": conversation,
        },
    }


def ticket_payload(
    *,
    event_id: str,
    ticket: Ticket,
    transcript: Sequence[TranscriptEntry],
    events_url: str,
    suggested: Sequence[Mapping[str, str]] = (),
) -> dict[str, Any]:
    document = _envelope("ticket.created", event_id, ticket, events_url)
    document.update(
        {
            "summary": ticket.summary or ticket.description,
            "description": ticket.description,
            "details": dict(ticket.details),
            "transcript": [
                {
                    "sender": entry.sender,
                    "text": entry.text,
                    "time": entry.time.isoformat(),
                    "agent_name": entry.agent_name,
                }
                for entry in transcript
            ],
            "suggested_articles": [dict(s) for s in suggested],
        }
    )
    return document


def event_payload(
    *,
    event_id: str,
    kind: str,
    ticket: Ticket,
    events_url: str = "",
    message: str | None = None,
    change: str | None = None,
) -> dict[str, Any]:
    document = _envelope(kind, event_id, ticket, events_url)
    if change is not None:
        document["change"] = change
    if message is not None:
        document["message"] = message
    return document


def load_schema(name: str = "ticket.v1.json") -> dict[str, Any]:
    data: dict[str, Any] = json.loads((SCHEMA_DIR / name).read_text(encoding="utf-8"))
    return data


def validate(document: Any, schema: Mapping[str, Any], path: str = "$") -> list[str]:
    """Every violation of the JSON Schema subset the schemas here use, as "path: problem".

    The subset: type, const, enum, required, properties, additionalProperties (false),
    items, minLength, maxLength, pattern, format date-time, allOf, if/then."""
    problems: list[str] = []
    expected = schema.get("type")
    if expected is not None and not _is_type(document, expected):
        return [f"{path}: expected {expected}, got {type(document).__name__}"]
    if "const" in schema and document != schema["const"]:
        problems.append(f"{path}: must be {schema['const']!r}")
    if "enum" in schema and document not in schema["enum"]:
        problems.append(f"{path}: {document!r} is not one of {schema['enum']}")
    if isinstance(document, str):
        if len(document) < schema.get("minLength", 0):
            problems.append(f"{path}: shorter than {schema['minLength']}")
        if "maxLength" in schema and len(document) > schema["maxLength"]:
            problems.append(f"{path}: longer than {schema['maxLength']}")
        if "pattern" in schema and not re.search(schema["pattern"], document):
            problems.append(f"{path}: does not match {schema['pattern']}")
        if schema.get("format") == "date-time":
            try:
                moment = datetime.fromisoformat(document)
                if moment.tzinfo is None:
                    problems.append(f"{path}: a date-time needs its UTC offset")
            except ValueError:
                problems.append(f"{path}: not an ISO 8601 date-time")
    if isinstance(document, dict):
        for name in schema.get("required", ()):
            if name not in document:
                problems.append(f"{path}: missing {name!r}")
        properties = schema.get("properties", {})
        for name, value in document.items():
            if name in properties:
                problems += validate(value, properties[name], f"{path}.{name}")
            elif schema.get("additionalProperties") is False:
                problems.append(f"{path}: unexpected property {name!r}")
    if isinstance(document, list) and "items" in schema:
        for index, item in enumerate(document):
            problems += validate(item, schema["items"], f"{path}[{index}]")
    for part in schema.get("allOf", ()):
        if "if" in part:
            if not validate(document, part["if"], path):
                problems += validate(document, part.get("then", {}), path)
        else:
            problems += validate(document, part, path)
    return problems


_TYPES: dict[str, tuple[type, ...]] = {
    "object": (dict,),
    "array": (list,),
    "string": (str,),
    "integer": (int,),
    "number": (int, float),
    "boolean": (bool,),
    "null": (type(None),),
}


def _is_type(value: Any, expected: str | Sequence[str]) -> bool:
    names = [expected] if isinstance(expected, str) else list(expected)
    for name in names:
        if isinstance(value, bool) and name in ("integer", "number"):
            continue
        if isinstance(value, _TYPES[name]):
            return True
    return False

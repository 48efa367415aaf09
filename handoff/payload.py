"""The documents Guichet sends to level 2, version 1 (schema: handoff/schema/ticket.v1.json).

`ticket.created` carries everything level 2 needs to take a ticket without asking again:
the qualified ticket, SLA deadlines, recurring flag and linked tickets, the requester, a
summary and the full transcript, the articles level 1 already suggested, and the reply route.
`ticket.updated` (a duplicate attached, cancelled, confirmed solved, reopened) and
`requester.message` (the person wrote while level 2 holds the ticket) carry the ticket again,
so a receiver never depends on the order of arrival. Texts are plain text: escape them.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Callable, Mapping, Sequence
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
            "email_verified": ticket.requester.email_verified,
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
    attachment_url: Callable[[str], str | None] = lambda ref: None,
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
            "attachments": attachments_of(ticket.attachments, attachment_url),
        }
    )
    return document


def attachments_of(
    attachments: Sequence[Mapping[str, Any]], attachment_url: Callable[[str], str | None]
) -> list[dict[str, Any]]:
    """Each attachment as level 2 sees it: with a download URL when Guichet keeps the content."""
    listed = []
    for attachment in attachments:
        item: dict[str, Any] = {
            "name": str(attachment.get("name") or "attachment"),
            "type": str(attachment.get("type") or "application/octet-stream"),
            "size": int(attachment.get("size") or 0),
            "ref": str(attachment.get("ref") or ""),
        }
        url = attachment_url(item["ref"])
        if url:
            item["url"] = url
        listed.append(item)
    return listed


def event_payload(
    *,
    event_id: str,
    kind: str,
    ticket: Ticket,
    events_url: str = "",
    message: str | None = None,
    change: str | None = None,
    attachments: Sequence[Mapping[str, Any]] = (),
    attachment_url: Callable[[str], str | None] = lambda ref: None,
) -> dict[str, Any]:
    document = _envelope(kind, event_id, ticket, events_url)
    if change is not None:
        document["change"] = change
    if message is not None:
        document["message"] = message
    if attachments:
        document["attachments"] = attachments_of(attachments, attachment_url)
    return document


def load_schema(name: str = "ticket.v1.json") -> dict[str, Any]:
    """One of the schemas in handoff/schema/, by file name ("ticket.v1.json") or stem ("ticket.v1")."""
    file = name if name.endswith(".json") else f"{name}.json"
    if "/" in file or "\\" in file or file.startswith("."):
        raise ValueError(f"not a schema name: {name!r}")
    data: dict[str, Any] = json.loads((SCHEMA_DIR / file).read_text(encoding="utf-8"))
    return data


# The keywords `validate` understands; a schema using any other is refused rather than half
# checked. Annotations ($schema, title, description, …) check nothing.
KEYWORDS = frozenset(
    {
        "type", "const", "enum", "required", "properties", "additionalProperties", "items",
        "minLength", "maxLength", "pattern", "format", "allOf", "if", "then",
    }
)  # fmt: skip
ANNOTATIONS = frozenset({"$schema", "$id", "title", "description", "examples"})
# RFC 3339 date-time, as JSON Schema's "date-time" format means it: a date, "T", a time and
# an offset (Z or ±hh:mm). datetime.fromisoformat alone takes much more ("20261122", no zone).
_DATE_TIME = re.compile(
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt][0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]+)?([Zz]|[+-][0-9]{2}:[0-9]{2})"
)


@functools.lru_cache(maxsize=64)
def _pattern(source: str) -> re.Pattern[str]:
    """A schema's pattern with ECMA-262's meaning: \\d is ASCII, and a final $ is the end of
    the text (Python's $ also matches before a final newline: "HD-1\\n" would pass)."""
    if source.endswith("$") and not source.endswith("\\$"):
        source = source[:-1] + r"\Z"
    return re.compile(source, re.ASCII)


def validate(document: Any, schema: str | Mapping[str, Any], path: str = "$") -> list[str]:
    """Every violation of a JSON Schema (a name as for `load_schema`, or the schema itself),
    as "path: problem"; [] when the document is valid.

    Only the subset of draft 2020-12 that the schemas here use (KEYWORDS); a schema using
    another keyword raises ValueError. const and enum compare like JSON: true is not 1."""
    if isinstance(schema, str):
        schema = load_schema(schema)
    unknown = set(schema) - KEYWORDS - ANNOTATIONS
    if unknown:
        raise ValueError(f"{path}: the schema uses keywords this validator does not check: {sorted(unknown)}")
    if schema.get("format", "date-time") != "date-time":
        raise ValueError(f"{path}: the only format this validator checks is date-time")
    problems: list[str] = []
    expected = schema.get("type")
    if expected is not None and not _is_type(document, expected):
        return [f"{path}: expected {expected}, got {_json_type(document)}"]
    if "const" in schema and not _same(document, schema["const"]):
        problems.append(f"{path}: must be {schema['const']!r}")
    if "enum" in schema and not any(_same(document, option) for option in schema["enum"]):
        problems.append(f"{path}: {document!r} is not one of {schema['enum']}")
    if isinstance(document, str):
        problems += _string_problems(document, schema, path)
    if isinstance(document, dict):
        for name in schema.get("required", ()):
            if name not in document:
                problems.append(f"{path}: missing {name!r}")
        properties = schema.get("properties", {})
        extra = schema.get("additionalProperties", True)
        for name, value in document.items():
            if name in properties:
                problems += validate(value, properties[name], f"{path}.{name}")
            elif extra is False:
                problems.append(f"{path}: unexpected property {name!r}")
            elif isinstance(extra, Mapping):
                problems += validate(value, extra, f"{path}.{name}")
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


def _string_problems(text: str, schema: Mapping[str, Any], path: str) -> list[str]:
    problems = []
    # Lengths count code points, as JSON Schema does (not UTF-16 units, not bytes).
    if len(text) < schema.get("minLength", 0):
        problems.append(f"{path}: shorter than {schema['minLength']} characters")
    if "maxLength" in schema and len(text) > schema["maxLength"]:
        problems.append(f"{path}: longer than {schema['maxLength']} characters")
    if "pattern" in schema and not _pattern(schema["pattern"]).search(text):
        problems.append(f"{path}: does not match {schema['pattern']}")
    if schema.get("format") == "date-time":
        if not _DATE_TIME.fullmatch(text):
            problems.append(f"{path}: not an RFC 3339 date-time with its offset")
        else:
            try:
                datetime.fromisoformat(text.upper().replace("Z", "+00:00"))
            except ValueError:
                problems.append(f"{path}: not a real date-time")
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


def _json_type(value: Any) -> str:
    for name in ("boolean", "null", "integer", "number", "string", "array", "object"):
        if _is_type(value, name):
            return name
    return type(value).__name__


def _same(a: Any, b: Any) -> bool:
    """JSON equality: Python says True == 1, JSON Schema says a boolean is not a number."""
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a == b
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    return bool(a == b)

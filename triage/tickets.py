"""The ticket: what level 1 learned about a request it could not solve, and where it stands.

A ticket is a plain value: the policy makes it, the store keeps it (by number, and by
requester for recurring-problem detection and "where is my ticket?"), the handoff carries it
to level 2, and level 2's events move its status.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

# Where a ticket stands. "open": handed to level 2, nobody took it yet.
STATUSES = ("open", "assigned", "waiting", "resolved", "closed", "cancelled")
ACTIVE = frozenset({"open", "assigned", "waiting"})


def format_number(number_format: str, year: int, number: int) -> str:
    return number_format.format(year=year, number=number)


@dataclass(frozen=True, slots=True)
class Requester:
    """Who asked. `id` is the person across channels: a verified email when there is one,
    else the channel's own id ("webchat:<session>")."""

    id: str
    channel: str
    conversation_key: str
    name: str | None = None
    email: str | None = None
    phone: str | None = None
    language: str = "fr"
    # True only when `email` is an address the channel proved (a Slack profile, a DKIM- or
    # SPF-aligned mail, a linked channel); an address typed or claimed in a From is not.
    email_verified: bool = False

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Requester:
        return cls(**{f.name: data[f.name] for f in dataclasses.fields(cls) if f.name in data})


@dataclass(frozen=True, slots=True)
class Ticket:
    number: str
    requester: Requester
    status: str
    opened_at: datetime
    category: str
    priority: str
    description: str
    summary: str = ""
    impact: str | None = None
    urgency: str | None = None
    priority_reasons: tuple[str, ...] = ()
    first_response_due: datetime | None = None
    resolution_due: datetime | None = None
    # What the qualification dialogue learned: since, device, … (strings).
    details: Mapping[str, str] = field(default_factory=dict)
    recurring: bool = False
    linked: tuple[str, ...] = ()
    queue: str | None = None
    assignee: str | None = None
    suggested_articles: tuple[str, ...] = ()
    language: str = "fr"
    updated_at: datetime | None = None
    # Files the person sent (an email's attachments, a Telegram photo): name, type, size and
    # ref ("sha256:…" for content Guichet keeps, "telegram:<file_id>" for a platform's own).
    attachments: tuple[Mapping[str, Any], ...] = ()

    @property
    def active(self) -> bool:
        return self.status in ACTIVE

    def to_dict(self) -> dict[str, Any]:
        data = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        data["requester"] = self.requester.to_dict()
        data["details"] = dict(self.details)
        data["priority_reasons"] = list(self.priority_reasons)
        data["linked"] = list(self.linked)
        data["suggested_articles"] = list(self.suggested_articles)
        data["attachments"] = [dict(a) for a in self.attachments]
        for name in ("opened_at", "first_response_due", "resolution_due", "updated_at"):
            value = data[name]
            data[name] = value.isoformat() if value is not None else None
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Ticket:
        def when(name: str) -> datetime | None:
            value = data.get(name)
            return datetime.fromisoformat(value) if value else None

        opened = when("opened_at")
        assert opened is not None, "a stored ticket always has its opening time"
        return cls(
            number=data["number"],
            requester=Requester.from_dict(data["requester"]),
            status=data["status"],
            opened_at=opened,
            category=data["category"],
            priority=data["priority"],
            description=data.get("description", ""),
            summary=data.get("summary", ""),
            impact=data.get("impact"),
            urgency=data.get("urgency"),
            priority_reasons=tuple(data.get("priority_reasons", ())),
            first_response_due=when("first_response_due"),
            resolution_due=when("resolution_due"),
            details=dict(data.get("details") or {}),
            recurring=bool(data.get("recurring", False)),
            linked=tuple(data.get("linked", ())),
            queue=data.get("queue"),
            assignee=data.get("assignee"),
            suggested_articles=tuple(data.get("suggested_articles", ())),
            language=data.get("language", "fr"),
            updated_at=when("updated_at"),
            attachments=tuple(dict(a) for a in data.get("attachments", ())),
        )


def newest_first(tickets: Sequence[Ticket]) -> list[Ticket]:
    return sorted(tickets, key=lambda t: t.opened_at, reverse=True)

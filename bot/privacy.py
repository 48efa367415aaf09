"""A person's data, on request (GDPR articles 15 and 17): everything Guichet holds about them,
exported; or erased.

A person is named by an email address (the identity the channels verify, or the contact
given for a ticket), or by a channel's own id, `telegram:12345` or `webchat:<session>`. They
are found on every ticket whose requester they are (by id, email or phone), and in every
conversation those tickets came from, plus their own chat conversation.

Erasing deletes those conversations (state, transcript, pending messages) and the files they
sent, and anonymises their tickets: the number, category, priority and times stay, so the
desk's statistics stay right, but no name, address, phone, description or summary does.
"""

from __future__ import annotations

import asyncio
import hashlib
import re
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from bot.messages import utcnow
from bot.settings import PrivacySettings
from bot.store.base import Store, source_of
from triage.tickets import Requester, Ticket

ERASED = "[effacé / erased]"
_CHANNEL_ID = re.compile(r"^(webchat|rest|telegram|slack|email):\S+$")


@dataclass
class Found:
    person: str
    tickets: list[Ticket] = field(default_factory=list)
    conversations: list[str] = field(default_factory=list)


@dataclass
class Erased:
    person: str
    tickets: list[str] = field(default_factory=list)
    conversations: list[str] = field(default_factory=list)
    transcript_lines: int = 0
    attachments: int = 0
    mails: int = 0
    undelivered: int = 0
    questions: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "person": self.person,
            "tickets_anonymised": self.tickets,
            "conversations_deleted": self.conversations,
            "transcript_lines_deleted": self.transcript_lines,
            "attachments_deleted": self.attachments,
            "sent_mails_deleted": self.mails,
            "undelivered_messages_dropped": self.undelivered,
            "unanswered_questions_deleted": self.questions,
        }


def normalise(person: str) -> str:
    person = person.strip()
    if "@" in person and not _CHANNEL_ID.match(person):
        return person.lower()
    return person


async def find(store: Store, person: str) -> Found:
    person = normalise(person)
    found = Found(person)
    async for ticket in store.all_tickets():
        requester = ticket.requester
        if person in (requester.id, (requester.email or "").lower(), requester.phone or ""):
            found.tickets.append(ticket)
    keys = {t.requester.conversation_key for t in found.tickets}
    if _CHANNEL_ID.match(person):
        keys.add(person)  # their own chat, ticket or not
    found.conversations = sorted(keys)
    return found


async def export(store: Store, person: str) -> dict[str, Any]:
    """Everything held about the person, as JSON a person can read."""
    found = await find(store, person)
    conversations = []
    for key in found.conversations:
        entries = await store.transcript(key, 0, 100_000)
        conversations.append({"conversation": key, "transcript": [e.to_dict() for e in entries]})
    return {
        "person": found.person,
        "exported_at": utcnow().isoformat(),
        "tickets": [t.to_dict() for t in sorted(found.tickets, key=lambda t: t.opened_at)],
        "conversations": conversations,
    }


async def forget(
    store: Store, person: str, attachments_dir: Path | None, mail_dir: Path | None = None
) -> Erased:
    found = await find(store, person)
    erased = Erased(found.person)
    for key in found.conversations:
        erased.transcript_lines += await store.erase_conversation(key)
    erased.conversations = found.conversations
    anonymous = "forgotten:" + hashlib.sha256(found.person.encode()).hexdigest()[:16]
    files: set[str] = set()
    kept = []
    for ticket in found.tickets:
        files |= {
            str(a.get("ref", ""))[7:]
            for a in ticket.attachments
            if str(a.get("ref", "")).startswith("sha256:")
        }
        kept.append(_anonymised(ticket, anonymous))
    if kept:
        await store.put_tickets(kept, forget_requester=found.person)
    erased.tickets = sorted(t.number for t in kept)
    erased.questions = await store.drop_unanswered([source_of(k) for k in found.conversations])
    # Replies and handoffs still waiting to be delivered name the person: not sent any more.
    erased.undelivered = await store.drop_undelivered([found.person, *(f'"{n}"' for n in erased.tickets)])
    erased.attachments, erased.mails = await asyncio.to_thread(
        _delete_files, files, attachments_dir, mail_dir, found.person
    )
    await store.scrub()
    return erased


def _delete_files(
    digests: set[str], attachments_dir: Path | None, mail_dir: Path | None, person: str
) -> tuple[int, int]:
    """The person's attachments, and the sent mail files (the embedded default keeps sent mail
    as files, channels/email_relay.py) that name them."""
    attachments = mails = 0
    if attachments_dir is not None:
        for digest in digests:
            path = attachments_dir / digest
            if re.fullmatch(r"[0-9a-f]{64}", digest) and path.exists():
                path.unlink()
                attachments += 1
    if mail_dir is not None and mail_dir.is_dir() and "@" in person:
        needle = person.encode()
        for path in mail_dir.glob("*.eml"):
            if needle in path.read_bytes().lower():
                path.unlink()
                mails += 1
    return attachments, mails


def _anonymised(ticket: Ticket, anonymous: str) -> Ticket:
    requester = Requester(
        id=anonymous,
        channel=ticket.requester.channel,
        conversation_key=f"{ticket.requester.channel}:{anonymous}",  # a chat id is personal too
        name=None,
        email=None,
        phone=None,
        language=ticket.requester.language,
    )
    return replace(
        ticket,
        requester=requester,
        description=ERASED,
        summary=ERASED,
        details={},
        attachments=(),
        updated_at=utcnow(),
    )


@dataclass
class Expired:
    conversations: int = 0
    transcript_lines: int = 0
    tickets: int = 0
    attachments: int = 0

    def __str__(self) -> str:
        return (
            f"{self.conversations} idle conversation(s) ({self.transcript_lines} lines), "
            f"{self.tickets} closed ticket(s) anonymised, {self.attachments} attachment(s)"
        )


async def expire(
    store: Store, settings: PrivacySettings, attachments_dir: Path | None, now: datetime | None = None
) -> Expired:
    """What the retention periods say is no longer to be kept: deleted, or anonymised."""
    now = now or utcnow()
    done = Expired()
    idle = await store.idle_conversations(now - timedelta(days=settings.transcripts_days))
    for key in idle:
        done.transcript_lines += await store.erase_conversation(key)
    done.conversations = len(idle)
    await store.drop_unanswered([source_of(k) for k in idle])
    limit = now - timedelta(days=settings.contacts_days)
    old = [
        t
        async for t in store.all_tickets()
        if not t.active
        and not t.requester.id.startswith("forgotten:")
        and (t.updated_at or t.opened_at) < limit
    ]
    for ticket in old:
        anonymous = "forgotten:" + hashlib.sha256(ticket.requester.id.encode()).hexdigest()[:16]
        await store.put_tickets([_anonymised(ticket, anonymous)], forget_requester=None)
    done.tickets = len(old)
    if attachments_dir is not None:
        done.attachments = await asyncio.to_thread(
            _older_files, attachments_dir, (now - timedelta(days=settings.attachments_days)).timestamp()
        )
    if done.conversations or done.tickets or done.attachments:
        await store.scrub()
    return done


def _older_files(directory: Path, before: float) -> int:
    removed = 0
    if directory.is_dir():
        for path in directory.iterdir():
            if path.is_file() and path.stat().st_mtime < before:
                path.unlink()
                removed += 1
    return removed

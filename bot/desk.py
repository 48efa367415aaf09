"""The ticket desk: opens tickets from a qualified request, answers "where is my ticket?",
relays the person's words to level 2 and level 2's events to the person.

It decides nothing about the conversation's flow (bot/policy.py does); it turns a decision
into tickets, replies and handoff documents that the store commits together.
"""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import logging
import secrets
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from bot.guesses import Guesses
from bot.messages import Choice, Inbound, Outbound, new_id, utcnow
from bot.metrics import Metrics
from bot.settings import Settings
from bot.store.base import NO_EFFECTS, ConversationState, Effects, OutboxItem, Store
from bot.texts import say
from handoff.payload import event_payload, ticket_payload
from handoff.routing import route
from nlu.engine import Parse
from triage.assess import assess_aside
from triage.priority import priority as rate
from triage.recurring import PastTicket, relate
from triage.sla import deadlines, in_business_hours
from triage.slots import summary
from triage.tickets import ACTIVE, Requester, Ticket, format_number

log = logging.getLogger("guichet.desk")

LINK_MINUTES = 10

WEBHOOK = "webhook:"


@dataclasses.dataclass(frozen=True, slots=True)
class Outcome:
    state: ConversationState
    replies: list[Outbound]
    effects: Effects = NO_EFFECTS


def attachment_signature(key: bytes, digest: str) -> str:
    return hmac.new(key, f"attachment:{digest}".encode(), hashlib.sha256).hexdigest()


def person(inbound: Inbound, state: ConversationState) -> Requester:
    """Who is writing: one identity across channels when the platform verified an email."""
    email = inbound.user_email or state.facts.get("verified_email")
    channel_id = f"{inbound.channel}:{inbound.user_id}"
    return Requester(
        id=email.lower() if email else channel_id,
        channel=inbound.channel,
        conversation_key=inbound.conversation_key,
        name=inbound.user_name,
        email=email,
        language=state.language or "fr",
        email_verified=bool(email),
    )


class TicketDesk:
    def __init__(
        self, store: Store, settings: Settings, events_url: str, metrics: Metrics | None = None
    ) -> None:
        self.metrics = metrics or Metrics()
        self.store = store
        self.settings = settings
        self.events_url = events_url
        self.attachment_key = b""  # set by the app: signs the download links of attachments
        self.guesses = Guesses(store)

    def attachment_url(self, ref: str) -> str | None:
        """A download link level 2 can use as is (the signature is the credential), for the
        content Guichet keeps itself."""
        if (
            not ref.startswith("sha256:")
            or not self.attachment_key
            or "/handoff/events" not in self.events_url
        ):
            return None
        digest = ref.removeprefix("sha256:")
        base = self.events_url.rsplit("/handoff/events", 1)[0]
        return f"{base}/handoff/attachments/{digest}?sig={attachment_signature(self.attachment_key, digest)}"

    # Opening -------------------------------------------------------------------------------
    async def open_ticket(
        self,
        state: ConversationState,
        inbound: Inbound,
        language: str,
        draft: Mapping[str, Any],
        parse: Parse | None,
    ) -> Outcome:
        """A ticket from the qualified draft: a new one, or the person's open one it repeats."""
        triage = self.settings.triage
        now = utcnow()
        writer = person(inbound, state)
        contact = draft.get("email") or writer.email
        requester = dataclasses.replace(
            writer,
            language=language,
            email=contact,
            phone=draft.get("phone"),
            email_verified=writer.email_verified and str(contact).lower() == str(writer.email).lower(),
        )
        description = str(draft.get("description") or state.facts.get("last_request") or "")
        assessment = await assess_aside(description, parse, triage, language)
        category = draft.get("category") or assessment.category
        history = await self.store.tickets_of(requester.id)
        relation = relate(
            requester.id,
            category,
            description,
            draft.get("device"),
            None,
            now,
            [_past(t) for t in history],
            triage,
        )
        if relation.duplicate_of is not None:
            existing = next(t for t in history if t.number == relation.duplicate_of)
            return await self._attach(state, inbound, language, existing, description)

        impact = draft.get("impact") or assessment.impact
        urgency = draft.get("urgency") or assessment.urgency
        level, reasons = rate(
            impact,
            urgency,
            triage,
            category=category,
            requester_email=requester.email,
            text=description,
            security=assessment.security,
        )
        first_due, resolution_due = deadlines(now, level, triage)
        year = now.astimezone(ZoneInfo(triage.business_hours.timezone)).year
        number = format_number(
            self.settings.tickets.number_format, year, await self.store.next_number(f"tickets-{year}")
        )
        queue = route(
            self.settings.handoff,
            category=category,
            priority=level,
            language=language,
            in_business_hours=in_business_hours(now, triage),
        )
        details = {
            k: str(v)
            for k, v in draft.items()
            if k in ("since", "device", "impact", "urgency", "reason") and v
        }
        ticket = Ticket(
            number=number,
            requester=requester,
            status="open",
            opened_at=now,
            category=category,
            priority=level,
            description=description,
            summary=summary({**draft, "description": description}, language),
            impact=impact,
            urgency=urgency,
            priority_reasons=tuple(reasons),
            first_response_due=first_due,
            resolution_due=resolution_due,
            details=details,
            recurring=relation.recurring,
            linked=relation.linked,
            queue=queue,
            suggested_articles=tuple(state.facts.get("suggested", ())),
            language=language,
            attachments=tuple(state.facts.get("attachments", ())),
        )
        items = [await self._handoff(ticket, "ticket.created")] if queue else []
        if not queue:
            log.warning(
                "ticket %s: no level-2 queue is configured; it stays in the store",
                number,
                extra={"ticket": number},
            )
        tickets = [*state.facts.get("tickets", []), number][-50:]
        facts = {**state.facts, "tickets": tickets, "active_ticket": number, "draft": {}, "attachments": []}
        new_state = dataclasses.replace(state, mode="handed_off", pending={}, facts=facts)
        local = first_due.astimezone(ZoneInfo(triage.business_hours.timezone))
        replies = [
            _reply(
                inbound,
                language,
                say(
                    "ticket_opened",
                    language,
                    number=number,
                    priority=level,
                    first_response=_when(local, language),
                ),
            )
        ]
        if relation.recurring:
            replies.append(
                _reply(
                    inbound, language, say("ticket_recurring", language, linked=", ".join(relation.linked))
                )
            )
        return Outcome(new_state, replies, Effects(tickets=[ticket], items=items))

    async def _attach(
        self, state: ConversationState, inbound: Inbound, language: str, existing: Ticket, text: str
    ) -> Outcome:
        updated = dataclasses.replace(existing, updated_at=utcnow())
        items = (
            [await self._handoff(updated, "ticket.updated", message=text, change="duplicate_attached")]
            if existing.queue
            else []
        )
        facts = {
            **state.facts,
            "tickets": [*state.facts.get("tickets", []), existing.number][-50:],
            "active_ticket": existing.number,
            "draft": {},
        }
        new_state = dataclasses.replace(state, mode="handed_off", pending={}, facts=facts)
        reply = _reply(inbound, language, say("ticket_attached", language, number=existing.number))
        return Outcome(new_state, [reply], Effects(tickets=[updated], items=items))

    async def _handoff(self, ticket: Ticket, kind: str, **extra: Any) -> OutboxItem:
        """The signed document for level 2, committed with the conversation, delivered later."""
        assert ticket.queue is not None
        event_id = f"msg_{new_id()}"
        if kind == "ticket.created":
            transcript = await self.store.transcript(ticket.requester.conversation_key)
            body = ticket_payload(
                event_id=event_id,
                ticket=ticket,
                transcript=transcript,
                events_url=self.events_url,
                suggested=[self._article_ref(a, ticket.language) for a in ticket.suggested_articles],
                attachment_url=self.attachment_url,
            )
        else:
            body = event_payload(
                event_id=event_id,
                kind=kind,
                ticket=ticket,
                events_url=self.events_url,
                attachment_url=self.attachment_url,
                **extra,
            )
        return OutboxItem(id=event_id, destination=f"{WEBHOOK}{ticket.queue}", body=body)

    def _article_ref(self, article_id: str, language: str) -> dict[str, str]:
        return {"id": article_id, "language": language}

    # Where is my ticket? ------------------------------------------------------------------
    async def status(
        self, state: ConversationState, inbound: Inbound, language: str, number: str | None
    ) -> list[Outbound]:
        me = person(inbound, state)
        mine = {t.number: t for t in await self.store.tickets_of(me.id)}
        # Tickets opened in this conversation count as the person's too (a web chat visitor
        # has no verified identity, but the conversation is theirs).
        for known in state.facts.get("tickets", []):
            if known not in mine and (ticket := await self.store.ticket(known)) is not None:
                mine[known] = ticket
        if number is not None:
            ticket = mine.get(number)
            if ticket is None:  # someone else's, or none: the same answer, so nothing leaks
                if minutes := await self.guesses.wait(inbound):
                    return [
                        _reply(inbound, language, say("too_many_guesses", language, minutes=str(minutes)))
                    ]
                await self.guesses.missed(inbound)
                return [_reply(inbound, language, say("ticket_unknown", language, number=number))]
            return [_reply(inbound, language, self._status_line(ticket, language))]
        if not mine:
            return [_reply(inbound, language, say("no_ticket", language))]
        recent = sorted(mine.values(), key=lambda t: t.opened_at, reverse=True)[:5]
        return [_reply(inbound, language, "\n".join(self._status_line(t, language) for t in recent))]

    def _status_line(self, ticket: Ticket, language: str) -> str:
        status = say(f"status_{ticket.status}", language, agent=ticket.assignee or "?")
        title = ticket.description if len(ticket.description) <= 60 else ticket.description[:57] + "…"
        return say("ticket_status_one", language, number=ticket.number, title=title, status=status)

    # One person across channels ---------------------------------------------------------------
    async def link_code(self, inbound: Inbound) -> str | None:
        """A one-time code tying another channel to this verified address; None if unverified."""
        if not inbound.user_email:
            return None
        expires = (utcnow() + timedelta(minutes=LINK_MINUTES)).timestamp()
        while True:
            code = f"LINK-{secrets.randbelow(10**8):08d}"
            value = f"{inbound.user_email.lower()}|{expires:.0f}"
            if await self.store.secret(f"link:{code}", value) == value:
                return code

    async def redeem(self, code: str) -> str | None:
        """The verified address a code stands for, once, within its time; else None."""
        stored = await self.store.secret(f"link:{code}", "")
        email, _, expires = stored.partition("|")
        if not email or not expires.isdigit() or float(expires) < utcnow().timestamp():
            return None
        if not await self.store.remember_once(f"link-used:{code}", LINK_MINUTES * 60 * 2):
            return None
        return email

    # While level 2 holds the ticket -------------------------------------------------------------
    async def relay_to_level2(
        self, state: ConversationState, inbound: Inbound, language: str, *, acknowledge: bool
    ) -> Outcome:
        ticket = await self.active_ticket(state)
        if ticket is None:
            return Outcome(dataclasses.replace(state, mode="bot"), [])
        items = (
            [
                await self._handoff(
                    ticket,
                    "requester.message",
                    message=inbound.text,
                    attachments=inbound.raw.get("attachments") or (),
                )
            ]
            if ticket.queue
            else []
        )
        replies = (
            [_reply(inbound, language, say("relayed", language, number=ticket.number))] if acknowledge else []
        )
        return Outcome(state, replies, Effects(items=items))

    async def cancel(self, state: ConversationState, inbound: Inbound, language: str) -> Outcome:
        ticket = await self.active_ticket(state)
        new_state = dataclasses.replace(
            state, mode="bot", pending={}, facts={**state.facts, "active_ticket": None}
        )
        if ticket is None:
            return Outcome(new_state, [_reply(inbound, language, say("ack", language))])
        cancelled = dataclasses.replace(ticket, status="cancelled", updated_at=utcnow())
        items = (
            [await self._handoff(cancelled, "ticket.updated", change="cancelled_by_requester")]
            if ticket.queue
            else []
        )
        reply = _reply(inbound, language, say("ticket_cancelled", language, number=ticket.number))
        return Outcome(new_state, [reply], Effects(tickets=[cancelled], items=items))

    async def confirm_resolution(
        self, state: ConversationState, inbound: Inbound, language: str, number: str, solved: bool
    ) -> Outcome:
        ticket = await self.store.ticket(number)
        if ticket is None:
            return Outcome(state, [_reply(inbound, language, say("ack", language))])
        if solved:
            closed = dataclasses.replace(ticket, status="closed", updated_at=utcnow())
            items = (
                [await self._handoff(closed, "ticket.updated", change="confirmed_solved")]
                if ticket.queue
                else []
            )
            facts = {**state.facts, "active_ticket": None}
            new_state = dataclasses.replace(state, mode="bot", pending={}, facts=facts)
            reply = _reply(inbound, language, say("solved_thanks", language, number=number))
            return Outcome(new_state, [reply], Effects(tickets=[closed], items=items))
        reopened = dataclasses.replace(ticket, status="open", updated_at=utcnow())
        items = [await self._handoff(reopened, "ticket.updated", change="reopened")] if ticket.queue else []
        facts = {**state.facts, "active_ticket": number}
        new_state = dataclasses.replace(state, mode="handed_off", pending={}, facts=facts)
        reply = _reply(inbound, language, say("reopened", language, number=number))
        return Outcome(new_state, [reply], Effects(tickets=[reopened], items=items))

    async def level2_event(self, state: ConversationState, event: Inbound) -> Outcome:
        """An event from level 2, handled in order with the person's own messages."""
        data = event.raw.get("level2", {})
        number = str(data.get("ticket", ""))
        ticket = await self.store.ticket(number)
        language = (ticket.language if ticket else None) or state.language or "fr"
        if ticket is None:
            log.warning("level-2 event %s for unknown ticket %r ignored", event.platform_message_id, number)
            return Outcome(state, [])
        active = state.facts.get("active_ticket") == number
        kind = data.get("type")
        self._count_breaches(ticket, str(kind))
        agent = event.agent_name or ticket.assignee
        mode = state.mode
        replies: list[Outbound] = []
        pending: Mapping[str, Any] = state.pending
        changed = ticket
        if kind == "agent.message":
            replies.append(_reply(event, language, event.text, sender="agent", agent_name=agent))
            changed = dataclasses.replace(
                ticket,
                status="assigned" if ticket.status in ("open", "waiting") else ticket.status,
                assignee=ticket.assignee or agent,
            )
            mode = "human" if active else mode
        elif kind == "ticket.assigned":
            changed = dataclasses.replace(ticket, status="assigned", assignee=agent)
            replies.append(
                _reply(event, language, say("agent_assigned", language, agent=agent or "?", number=number))
            )
            mode = "human" if active else mode
        elif kind == "ticket.waiting":
            changed = dataclasses.replace(ticket, status="waiting")
            text = say("agent_waiting", language, number=number)
            replies.append(_reply(event, language, f"{text}\n{event.text}" if event.text else text))
        elif kind == "ticket.resolved":
            changed = dataclasses.replace(ticket, status="resolved")
            text = say("agent_resolved", language, number=number)
            replies.append(_reply(event, language, f"{text}\n{event.text}" if event.text else text))
            options = [
                (say("helped_yes", language), f"resolved:yes:{number}"),
                (say("helped_no", language), f"resolved:no:{number}"),
            ]
            replies.append(_reply(event, language, say("is_it_solved", language), choices=options))
            pending = {"kind": "choice", "options": [{"title": t, "payload": p} for t, p in options]}
            mode = "bot" if active or mode == "bot" else mode
        elif kind == "ticket.handed_back":
            replies.append(_reply(event, language, say("handed_back", language)))
            mode = "bot" if active else mode
        elif kind == "ticket.closed":
            changed = dataclasses.replace(ticket, status="closed")
            replies.append(_reply(event, language, say("ticket_closed_notice", language, number=number)))
            mode = "bot" if active else mode
        facts = dict(state.facts)
        if active and mode == "bot" and kind != "ticket.resolved":
            facts["active_ticket"] = None
        new_state = dataclasses.replace(state, mode=mode, pending=pending, facts=facts)
        changed = dataclasses.replace(changed, updated_at=utcnow())
        return Outcome(new_state, replies, Effects(tickets=[changed]))

    def _count_breaches(self, ticket: Ticket, kind: str) -> None:
        """The SLA deadlines a level-2 event shows were missed (bot/metrics.py)."""
        now = utcnow()
        first = kind in ("agent.message", "ticket.assigned") and ticket.status == "open"
        if first and ticket.first_response_due is not None and now > ticket.first_response_due:
            self.metrics.sla_breaches.labels("first_response", ticket.priority).inc()
        done = kind in ("ticket.resolved", "ticket.closed") and ticket.status not in ("resolved", "closed")
        if done and ticket.resolution_due is not None and now > ticket.resolution_due:
            self.metrics.sla_breaches.labels("resolution", ticket.priority).inc()

    async def active_ticket(self, state: ConversationState) -> Ticket | None:
        number = state.facts.get("active_ticket")
        if not number:
            return None
        ticket = await self.store.ticket(number)
        return ticket if ticket is not None and ticket.status in ACTIVE else None


def _past(ticket: Ticket) -> PastTicket:
    return PastTicket(
        number=ticket.number,
        requester=ticket.requester.id,
        category=ticket.category,
        description=ticket.description,
        opened_at=ticket.opened_at,
        status=ticket.status,
        asset=ticket.details.get("device"),
    )


def _reply(
    inbound: Inbound,
    language: str,
    text: str,
    *,
    choices: Sequence[tuple[str, str]] = (),
    sender: str = "bot",
    agent_name: str | None = None,
) -> Outbound:
    return Outbound(
        channel=inbound.channel,
        conversation_id=inbound.conversation_id,
        text=text,
        choices=tuple(Choice(t, p) for t, p in choices),
        sender="agent" if sender == "agent" else "bot",
        agent_name=agent_name,
        language=language,
        reply_to=inbound.platform_message_id,
    )


def _when(moment: datetime, language: str) -> str:
    today = utcnow().astimezone(moment.tzinfo).date()
    if moment.date() == today:
        day = "aujourd'hui" if language == "fr" else "today"
    elif moment.date() == today + timedelta(days=1):
        day = "demain" if language == "fr" else "tomorrow"
    else:
        day = f"le {moment:%d/%m/%Y}" if language == "fr" else moment.strftime("%Y-%m-%d")
    return f"{day} {'à' if language == 'fr' else 'at'} {moment:%H:%M}"

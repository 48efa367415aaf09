"""The conversation manager: each conversation's messages in order, many conversations at once.

A channel hands an inbound message to `receive`, which stores it (deduplicated on the
platform's id) and returns; only then does the channel acknowledge the platform. A task per
busy conversation drains that conversation's inbox in order: the policy decides the replies,
the store commits inbound-handled + state + replies atomically, and the replies are delivered
at once through the outbox. After a crash, `recover` picks up every inbox left non-empty.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
import random
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta

import aiohttp

from bot.errors import DeliveryError, StoreError
from bot.messages import AcceptResult, Inbound, Outbound, new_id, utcnow
from bot.metrics import Metrics
from bot.policy import UNANSWERED, Policy
from bot.settings import OutboxSettings
from bot.stats import DeskStats
from bot.store.base import NO_EFFECTS, ConversationState, Effects, OutboxItem, Question, Store, source_of
from bot.texts import say
from handoff.webhook import next_delay, post

log = logging.getLogger("guichet.manager")

# A person who answers the bot's question later than this had left: an abandoned conversation.
ABANDONED_AFTER_SECONDS = 30 * 60

# The time a process holds a conversation or an outbox item before another may take it over.
LEASE_SECONDS = 30.0

WEBHOOK = "webhook:"

# The channel side of delivery: (message, its transcript seq) → sent, or DeliveryError.
Sender = Callable[[Outbound, int | None], Awaitable[None]]


@dataclasses.dataclass(frozen=True, slots=True)
class WebhookTarget:
    """A level-2 queue as the outbox sees it: where to post and the secret to sign with."""

    url: str
    secret: str
    timeout_seconds: float


class Outbox:
    """Delivers outbox items: chat replies to their channel, handoff documents to their level-2
    queue's webhook; at once when possible, later with backoff if not, then a dead letter."""

    def __init__(
        self,
        store: Store,
        settings: OutboxSettings,
        webhook_schedule: tuple[float, ...] = (5.0,),
        metrics: Metrics | None = None,
    ) -> None:
        self.metrics = metrics or Metrics()
        self.store = store
        self.settings = settings
        self.webhook_schedule = webhook_schedule
        self.senders: dict[str, Sender] = {}
        self.webhooks: dict[str, WebhookTarget] = {}
        self.disabled: set[str] = set()  # queues whose endpoint answered 410 Gone
        self._session: aiohttp.ClientSession | None = None
        self._sweeper: asyncio.Task[None] | None = None
        self._background: set[asyncio.Task[bool]] = set()
        self._parallel = asyncio.Semaphore(32)

    def register(self, channel_name: str, sender: Sender) -> None:
        self.senders[f"channel:{channel_name}"] = sender

    def register_webhook(self, queue: str, target: WebhookTarget) -> None:
        self.webhooks[queue] = target

    def deliver_soon(self, item: OutboxItem) -> None:
        task = asyncio.create_task(self.deliver(item), name=f"deliver {item.id}")
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def deliver(self, item: OutboxItem) -> bool:
        if item.destination.startswith(WEBHOOK):
            async with self._parallel:
                return await self._deliver_webhook(item)
        sender = self.senders.get(item.destination)
        try:
            if sender is None:
                raise DeliveryError(item.destination, "no such channel is running", permanent=False)
            await sender(Outbound.from_dict(item.body), item.seq)
        except DeliveryError as exc:
            await self._failed(item, str(exc), permanent=exc.permanent)
            return False
        except Exception as exc:  # a channel bug must not lose the message: retry it later
            log.exception("delivery to %s failed", item.destination)
            await self._failed(item, f"{type(exc).__name__}: {exc}", permanent=False)
            return False
        await self.store.delivered(item.id)
        self.metrics.delivered(item.destination, item.body.get("created_at"))
        return True

    async def _deliver_webhook(self, item: OutboxItem) -> bool:
        queue = item.destination[len(WEBHOOK) :]
        target = self.webhooks.get(queue)
        if target is None:
            await self._failed(item, f"no level-2 queue named {queue!r} is configured", permanent=False)
            return False
        if queue in self.disabled:
            await self.store.dead_letter(
                item.id, item.attempts, f"queue {queue} is disabled (it answered 410 Gone)"
            )
            return False
        if self._session is None:
            self._session = aiohttp.ClientSession()
        # The same bytes on every attempt: the signature covers them and the receiver
        # deduplicates on the id.
        body = json.dumps(item.body, ensure_ascii=False, separators=(",", ":")).encode()
        attempt = await post(self._session, target.url, target.secret, item.id, body, target.timeout_seconds)
        if attempt.outcome == "delivered":
            await self.store.delivered(item.id)
            self.metrics.delivered(item.destination, item.body.get("created_at"))
            return True
        attempts = item.attempts + 1
        error = f"{attempt.outcome}: {attempt.error or attempt.status}"
        if attempt.outcome == "gone":
            # 410: the receiver removed this endpoint. Stop calling it until the configuration
            # changes (a restart); what was meant for it waits in the dead letters for a replay.
            log.error("level-2 queue %s answered 410 Gone: disabled until Guichet restarts", queue)
            self.disabled.add(queue)
        if attempt.outcome in ("gone", "rejected") or attempts > len(self.webhook_schedule):
            log.warning(
                "handoff %s to queue %s dead-lettered after %d attempts: %s", item.id, queue, attempts, error
            )
            await self.store.dead_letter(item.id, attempts, error)
            self.metrics.dead_letters.labels(item.destination).inc()
            return False
        delay = next_delay(attempts, attempt.retry_after, schedule=self.webhook_schedule)
        await self.store.retry_later(item.id, attempts, utcnow() + timedelta(seconds=delay), error)
        return False

    async def _failed(self, item: OutboxItem, error: str, *, permanent: bool) -> None:
        attempts = item.attempts + 1
        if permanent or attempts >= self.settings.max_attempts:
            log.warning(
                "outbox item %s to %s dead-lettered after %d attempts: %s",
                item.id,
                item.destination,
                attempts,
                error,
            )
            await self.store.dead_letter(item.id, attempts, error)
            self.metrics.dead_letters.labels(item.destination.removeprefix("channel:")).inc()
            return
        delay = min(self.settings.max_delay_seconds, self.settings.base_delay_seconds * 2 ** (attempts - 1))
        delay = random.uniform(delay / 2, delay)  # jitter, so retries of many items do not align
        await self.store.retry_later(item.id, attempts, utcnow() + timedelta(seconds=delay), error)

    def start(self, interval: float = 1.0) -> None:
        self._sweeper = asyncio.create_task(self._sweep(interval), name="outbox-sweeper")

    async def stop(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sweeper
        if self._background:
            await asyncio.wait(list(self._background), timeout=5)
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def sweep_once(self, horizon_seconds: float = 0.0) -> int:
        """Deliver what is due (or due within the horizon: after a restart of the only
        process, the leases it held before it died are void)."""
        items = await self.store.claim_due(utcnow() + timedelta(seconds=horizon_seconds), 200, LEASE_SECONDS)
        # Chat replies in order; webhooks side by side (a slow receiver must not hold the rest).
        hooks = [i for i in items if i.destination.startswith(WEBHOOK)]
        for item in items:
            if not item.destination.startswith(WEBHOOK):
                await self.deliver(item)
        if hooks:
            await asyncio.gather(*(self.deliver(item) for item in hooks))
        return len(items)

    async def _sweep(self, interval: float) -> None:
        while True:
            try:
                if await self.sweep_once() == 0:
                    await asyncio.sleep(interval)
            except StoreError as exc:
                log.error("outbox sweep: %s", exc)
                await asyncio.sleep(interval * random.uniform(1, 3))


class ConversationManager:
    def __init__(
        self,
        store: Store,
        policy: Policy,
        outbox: Outbox,
        metrics: Metrics | None = None,
        stats: DeskStats | None = None,
    ) -> None:
        self.metrics = metrics or outbox.metrics
        self.stats = stats
        self.store = store
        self.policy = policy
        self.outbox = outbox
        self.owner = new_id()  # this process, for conversation locks shared through the store
        self._running: dict[str, asyncio.Task[None]] = {}
        self._again: set[str] = set()
        self._recovery: asyncio.Task[None] | None = None
        # Per channel: told when a person's message gets no reply at all (see Channel.no_reply).
        self.no_reply: dict[str, Callable[[Inbound], Awaitable[None]]] = {}

    async def receive(self, inbound: Inbound) -> AcceptResult:
        """Store an inbound message (the caller acknowledges the platform after this returns)."""
        result = await self.store.accept(inbound)
        if result.accepted:
            self.schedule(inbound.conversation_key)
        return result

    def schedule(self, key: str) -> None:
        if key in self._running:
            self._again.add(key)
        else:
            self._running[key] = asyncio.create_task(self._drain(key), name=f"conversation {key}")

    async def _drain(self, key: str) -> None:
        try:
            while True:
                await self._drain_once(key)
                if key not in self._again:
                    return
                self._again.discard(key)
        finally:
            del self._running[key]

    async def _drain_once(self, key: str) -> None:
        delay = 0.02
        while not await self.store.try_lock(key, self.owner, LEASE_SECONDS):
            # Another process holds this conversation; it will see our message in the inbox.
            await asyncio.sleep(delay)
            delay = min(delay * 2, 1.0)
            if delay >= 1.0:
                return
        try:
            state = await self.store.load_state(key) or ConversationState(key=key)
            for inbound in await self.store.pending(key):
                state = await self._handle(state, inbound)
        except StoreError as exc:
            log.error("conversation %s: %s; will retry", key, exc, extra={"conversation": key})
        finally:
            await self.store.unlock(key, self.owner)

    async def _handle(self, state: ConversationState, inbound: Inbound) -> ConversationState:
        effects = NO_EFFECTS
        try:
            outcome = await self.policy.handle(state, inbound)
            new_state, replies, effects = outcome.state, outcome.replies, outcome.effects
        except Exception:
            # A bug in the policy must neither lose the message nor loop on it forever.
            log.exception(
                "policy failed on a message of %s",
                inbound.conversation_key,
                extra={"conversation": inbound.conversation_key, "channel": inbound.channel},
            )
            new_state = state
            replies = [
                Outbound(
                    channel=inbound.channel,
                    conversation_id=inbound.conversation_id,
                    text=say("error", state.language or "fr"),
                    reply_to=inbound.platform_message_id,
                )
            ]
        if inbound.sender == "user" and inbound.raw.get(REPLY_CONTEXT):
            context = inbound.raw[REPLY_CONTEXT]
            new_state = dataclasses.replace(new_state, facts={**new_state.facts, REPLY_CONTEXT: context})
        new_state = await self._count(state, new_state, inbound, replies, effects)
        replies = _mark_last(_addressed(new_state, replies))
        items = await self.store.complete(
            inbound, new_state, replies, utcnow() + timedelta(seconds=LEASE_SECONDS), effects
        )
        if not replies and inbound.sender == "user" and inbound.channel in self.no_reply:
            await self.no_reply[inbound.channel](inbound)
        for item in items:
            if item.destination.startswith("channel:"):
                await self.outbox.deliver(item)
            else:  # a webhook may take seconds: the conversation does not wait for it
                self.outbox.deliver_soon(item)
        return new_state

    async def _count(
        self,
        before: ConversationState,
        after: ConversationState,
        inbound: Inbound,
        replies: list[Outbound],
        effects: Effects,
    ) -> ConversationState:
        """The manager's figures (bot/metrics.py); returns the state with what they need kept."""
        metrics, channel = self.metrics, inbound.channel
        for reply in replies:
            metrics.replies.labels(channel, reply.sender).inc()
        opened = [t for t in effects.tickets if t.updated_at is None and t.queue]  # in this turn
        for ticket in opened:
            metrics.handoffs.labels(
                channel, ticket.queue, ticket.priority, ticket.details.get("reason", "other")
            ).inc()
        handoffs = [(str(t.queue), t.priority) for t in opened]
        if inbound.sender != "user":
            return after
        metrics.inbound.labels(channel).inc()
        now = utcnow()
        if replies:
            metrics.reply_seconds.labels(channel).observe((now - inbound.received_at).total_seconds())
        solved = int(after.facts.get("solved_at_level1", 0)) > int(before.facts.get("solved_at_level1", 0))
        if solved:
            metrics.solved_level1.labels(channel).inc()
        waited = before.facts.get("waiting_since")
        # The person comes back long after the bot asked something: they had left.
        abandoned = bool(
            waited
            and (before.pending or before.mode == "qualifying")
            and (now - datetime.fromisoformat(waited)).total_seconds() > ABANDONED_AFTER_SECONDS
        )
        if abandoned:
            metrics.abandoned.labels(channel, "qualifying" if before.mode == "qualifying" else "choice").inc()
        facts = dict(after.facts)
        first_response = None
        if replies and "first_message_at" not in facts:
            facts["first_message_at"] = inbound.received_at.isoformat()
            first_response = (now - inbound.received_at).total_seconds()
            metrics.first_response_seconds.labels(channel).observe(first_response)
        facts["waiting_since"] = now.isoformat() if (after.pending or after.mode == "qualifying") else None
        question = facts.pop(UNANSWERED, None)
        if self.stats is not None:
            await self.stats.record(
                channel=channel,
                at=inbound.received_at,
                first_response=first_response,
                solved=solved,
                handoffs=handoffs,
                abandoned=abandoned,
                unanswered=(
                    Question(
                        now,
                        after.language or "fr",
                        channel,
                        str(question),
                        source_of(inbound.conversation_key),
                    )
                    if question
                    else None
                ),
            )
        return dataclasses.replace(after, facts=facts)

    async def recover(self, min_age_seconds: float = 0.0) -> None:
        """Schedule the conversations whose inbox was left non-empty: after a crash (at start-up,
        every one), or by a process that died (later, only those waiting longer than a lease,
        so that live processes keep the conversations they are serving)."""
        now = utcnow()
        for key in await self.store.conversations_with_pending():
            if key in self._running:
                continue
            if min_age_seconds:
                pending = await self.store.pending(key)
                if not pending or (now - pending[0].received_at).total_seconds() < min_age_seconds:
                    continue
            self.schedule(key)

    @property
    def started(self) -> bool:
        return self._recovery is not None and not self._recovery.done()

    def start(self, interval: float = 5.0) -> None:
        self._recovery = asyncio.create_task(self._recover_loop(interval), name="conversation-recovery")

    async def _recover_loop(self, interval: float) -> None:
        min_age = 0.0
        while True:
            try:
                await self.recover(min_age)
                min_age = LEASE_SECONDS
            except StoreError as exc:
                log.error("recovery: %s", exc)
            await asyncio.sleep(interval)

    async def stop(self) -> None:
        if self._recovery is not None:
            self._recovery.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._recovery
        if self._running:
            await asyncio.wait(list(self._running.values()), timeout=5)

    async def idle(self) -> None:
        """Wait until no conversation is being handled (for tests and benchmarks)."""
        while self._running:
            await asyncio.wait(list(self._running.values()))


REPLY_CONTEXT = "reply_context"


def _addressed(state: ConversationState, replies: list[Outbound]) -> list[Outbound]:
    """Give each reply the channel's addressing of the person's latest message (kept in the
    state so that level 2's later replies are addressed the same way)."""
    context = state.facts.get(REPLY_CONTEXT) or {}
    if not context:
        return replies
    tickets = state.facts.get("tickets") or []
    ticket = state.facts.get("active_ticket") or (tickets[-1] if tickets else None)
    if ticket:  # the ticket the reply is about (an email's subject quotes it)
        context = {**context, "ticket": ticket}
    return [r if r.context else dataclasses.replace(r, context=context) for r in replies]


def _mark_last(replies: list[Outbound]) -> list[Outbound]:
    last = len(replies) - 1
    return [
        r if r.last_in_turn == (i == last) else dataclasses.replace(r, last_in_turn=i == last)
        for i, r in enumerate(replies)
    ]

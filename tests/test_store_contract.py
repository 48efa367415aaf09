"""The state store contract, run against both implementations: embedded (SQLite) and Redis."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from bot.errors import StoreError, StoreLockedError
from bot.messages import Choice, Inbound, Outbound, new_id, utcnow
from bot.store.base import ConversationState, Effects, OutboxItem, Question, Store, source_of
from bot.store.embedded import EmbeddedStore
from bot.store.redis import RedisStore
from triage.tickets import Requester, Ticket


@pytest.fixture(params=["embedded", "redis"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Store]:
    if request.param == "embedded":
        instance: Store = EmbeddedStore(tmp_path / "store")
    else:
        instance = RedisStore(request.getfixturevalue("redis_url"), prefix=f"test-{new_id()}:")
    await instance.open()
    try:
        yield instance
    finally:
        await instance.close()


def inbound(text: str, conversation: str = "c1", message_id: str | None = None) -> Inbound:
    return Inbound(
        channel="webchat",
        conversation_id=conversation,
        user_id="u1",
        text=text,
        platform_message_id=message_id or new_id(),
    )


def reply_to(message: Inbound, text: str, choices: tuple[Choice, ...] = ()) -> Outbound:
    return Outbound(
        channel=message.channel,
        conversation_id=message.conversation_id,
        text=text,
        choices=choices,
        reply_to=message.platform_message_id,
    )


def soon() -> datetime:
    return utcnow() + timedelta(seconds=30)


async def test_accept_deduplicates_on_the_platform_message_id(store: Store) -> None:
    first = await store.accept(inbound("bonjour", message_id="m-1"))
    again = await store.accept(inbound("bonjour", message_id="m-1"))
    assert first.accepted and first.seq == 1
    assert not again.accepted and again.seq is None
    assert [m.text for m in await store.pending("webchat:c1")] == ["bonjour"]
    assert [e.text for e in await store.transcript("webchat:c1")] == ["bonjour"]


async def test_pending_keeps_order_per_conversation(store: Store) -> None:
    for n in range(5):
        await store.accept(inbound(f"a{n}", "a"))
        await store.accept(inbound(f"b{n}", "b"))
    assert [m.text for m in await store.pending("webchat:a")] == [f"a{n}" for n in range(5)]
    assert [m.text for m in await store.pending("webchat:b")] == [f"b{n}" for n in range(5)]
    assert sorted(await store.conversations_with_pending()) == ["webchat:a", "webchat:b"]


async def test_complete_saves_state_transcript_and_outbox_together(store: Store) -> None:
    message = inbound("mot de passe oublié")
    await store.accept(message)
    state = ConversationState(key="webchat:c1", mode="bot", language="fr", facts={"last_request": "x"})
    choices = (Choice("Oui", "ticket:yes"), Choice("Non", "ticket:no"))
    items = await store.complete(
        message, state, [reply_to(message, "Voici la marche à suivre", choices)], soon()
    )

    assert await store.pending("webchat:c1") == []
    assert await store.conversations_with_pending() == []
    assert await store.load_state("webchat:c1") == state
    transcript = await store.transcript("webchat:c1")
    assert [(e.seq, e.sender, e.text) for e in transcript] == [
        (1, "user", "mot de passe oublié"),
        (2, "bot", "Voici la marche à suivre"),
    ]
    assert transcript[1].choices == choices
    assert [i.seq for i in items] == [2]
    assert Outbound.from_dict(items[0].body).choices == choices


async def test_complete_refuses_a_message_that_is_not_the_oldest_pending(store: Store) -> None:
    first, second = inbound("one"), inbound("two")
    await store.accept(first)
    await store.accept(second)
    with pytest.raises(StoreError):
        await store.complete(second, ConversationState(key="webchat:c1"), [], soon())
    assert [m.text for m in await store.pending("webchat:c1")] == ["one", "two"]


async def test_outbox_items_are_leased_then_due_again(store: Store) -> None:
    message = inbound("hello")
    await store.accept(message)
    (item,) = await store.complete(
        message,
        ConversationState(key="webchat:c1"),
        [reply_to(message, "hi")],
        utcnow() - timedelta(seconds=1),
    )
    now = utcnow()
    claimed = await store.claim_due(now, 10, lease_seconds=60)
    assert [i.id for i in claimed] == [item.id]
    assert await store.claim_due(now, 10, lease_seconds=60) == []  # leased: nobody else gets it
    later = now + timedelta(seconds=61)
    assert [i.id for i in await store.claim_due(later, 10, lease_seconds=60)] == [item.id]
    await store.delivered(item.id)
    assert await store.claim_due(later + timedelta(seconds=120), 10, 60) == []
    assert await store.outbox_size() == 0


async def test_retry_then_dead_letter_then_replay(store: Store) -> None:
    item = OutboxItem(
        id=new_id(), destination="webhook:level2", body={"ticket": "HD-2026-000001", "tags": []}
    )
    await store.enqueue(item)
    (claimed,) = await store.claim_due(utcnow(), 10, 30)
    await store.retry_later(claimed.id, 1, utcnow() - timedelta(seconds=1), "HTTP 503")
    (again,) = await store.claim_due(utcnow(), 10, 30)
    assert (again.attempts, again.last_error) == (1, "HTTP 503")
    await store.dead_letter(again.id, 2, "HTTP 410")
    assert await store.claim_due(utcnow() + timedelta(hours=1), 10, 30) == []
    (dead,) = await store.dead_letters()
    assert (dead.id, dead.attempts, dead.last_error) == (item.id, 2, "HTTP 410")
    assert dead.body["ticket"] == "HD-2026-000001"
    assert await store.replay(item.id, utcnow()) is True
    assert await store.replay(item.id, utcnow()) is False
    assert await store.dead_letters() == []
    (replayed,) = await store.claim_due(utcnow(), 10, 30)
    assert replayed.id == item.id and replayed.attempts == 0


async def test_numbers_are_unique_under_concurrency(store: Store) -> None:
    numbers = await asyncio.gather(*(store.next_number("tickets-2026") for _ in range(200)))
    assert sorted(numbers) == list(range(1, 201))
    assert await store.next_number("tickets-2027") == 1


async def test_secret_is_created_once(store: Store) -> None:
    first = await store.secret("webchat", "aaa")
    assert first == "aaa"
    assert await store.secret("webchat", "bbb") == "aaa"
    # Looked up without a value to create: nothing is stored, so a guessed name leaves no trace.
    assert await store.secret("link:LINK-00000000", "") == ""
    assert await store.secret("link:LINK-00000000", "later") == "later"


async def test_transcript_pages_by_seq(store: Store) -> None:
    for n in range(5):
        await store.accept(inbound(f"m{n}"))
    assert [e.seq for e in await store.transcript("webchat:c1", after_seq=2)] == [3, 4, 5]
    assert [e.seq for e in await store.transcript("webchat:c1", after_seq=1, limit=2)] == [2, 3]


async def test_unicode_and_hostile_text_round_trip(store: Store) -> None:
    text = "Ça ne marche pas 🙁 <script>alert(1)</script> \"quotes\" 'apostrophes' \\ back"
    message = inbound(text)
    await store.accept(message)
    (pending,) = await store.pending("webchat:c1")
    assert pending.text == text
    await store.complete(message, ConversationState(key="webchat:c1"), [reply_to(message, text)], soon())
    assert [e.text for e in await store.transcript("webchat:c1")] == [text, text]


async def test_locks_exclude_other_owners(store: Store) -> None:
    assert await store.try_lock("webchat:c1", "me", 30)
    if isinstance(store, EmbeddedStore):
        return  # one process per embedded store (see the next test): its lock is in-process
    assert not await store.try_lock("webchat:c1", "other", 30)
    await store.unlock("webchat:c1", "other")  # not the owner: no effect
    assert not await store.try_lock("webchat:c1", "other", 30)
    await store.unlock("webchat:c1", "me")
    assert await store.try_lock("webchat:c1", "other", 30)


def ticket(number: str, requester: str, opened: datetime, status: str = "open") -> Ticket:
    return Ticket(
        number=number,
        requester=Requester(id=requester, channel="webchat", conversation_key="webchat:c1", email=requester),
        status=status,
        opened_at=opened,
        category="network",
        priority="P3",
        description="le VPN coupe toutes les 5 minutes — « ça » <b>",
        details={"since": "ce matin"},
        linked=("HD-2026-000001",),
    )


async def test_complete_saves_tickets_and_handoff_items_with_the_conversation(store: Store) -> None:
    message = inbound("oui")
    await store.accept(message)
    now = utcnow()
    opened = ticket("HD-2026-000002", "ana@example.com", now)
    webhook = OutboxItem(id="evt-1", destination="webhook:support", body={"ticket": opened.number})
    items = await store.complete(
        message,
        ConversationState(key=message.conversation_key, mode="handed_off"),
        [reply_to(message, "ticket HD-2026-000002")],
        soon(),
        Effects(tickets=[opened], items=[webhook]),
    )
    assert [i.destination for i in items] == ["channel:webchat", "webhook:support"]
    assert await store.ticket("HD-2026-000002") == opened
    assert await store.ticket("HD-2026-999999") is None
    # Both items wait a lease (the caller delivers them), then the sweep finds them.
    assert await store.claim_due(utcnow(), 10, 30) == []
    due = await store.claim_due(utcnow() + timedelta(seconds=31), 10, 30)
    assert {i.id for i in due} == {items[0].id, "evt-1"}


async def test_tickets_of_a_requester_newest_first_and_updated_in_place(store: Store) -> None:
    now = utcnow()
    older = ticket("HD-1", "ana@example.com", now - timedelta(days=3))
    newer = ticket("HD-2", "ana@example.com", now)
    other = ticket("HD-3", "bob@example.com", now)
    for t in (older, newer, other):
        message = inbound("x")
        await store.accept(message)
        await store.complete(
            message, ConversationState(key=message.conversation_key), [], soon(), Effects(tickets=[t])
        )
    message = inbound("resolved")
    await store.accept(message)
    resolved = Ticket.from_dict(older.to_dict() | {"status": "resolved"})
    await store.complete(
        message, ConversationState(key=message.conversation_key), [], soon(), Effects(tickets=[resolved])
    )
    mine = await store.tickets_of("ana@example.com")
    assert [t.number for t in mine] == ["HD-2", "HD-1"]
    assert mine[1].status == "resolved"
    assert [t.number for t in await store.tickets_of("bob@example.com")] == ["HD-3"]
    assert await store.tickets_of("nobody@example.com") == []


async def test_level2_events_are_not_transcript_lines_until_relayed(store: Store) -> None:
    event = Inbound(
        channel="webchat",
        conversation_id="c1",
        user_id="level2",
        text="Bonjour, je regarde",
        platform_message_id="l2:evt-9",
        sender="agent",
        agent_name="Marie",
        raw={"level2": {"type": "agent.message"}},
    )
    result = await store.accept(event)
    assert result.accepted and result.seq is None
    assert [m.agent_name for m in await store.pending(event.conversation_key)] == ["Marie"]
    assert await store.transcript(event.conversation_key) == []
    assert not (await store.accept(event)).accepted


async def test_remember_once_refuses_a_replayed_name_until_it_expires(store: Store) -> None:
    assert await store.remember_once("event:abc", 0.3)
    assert not await store.remember_once("event:abc", 0.3)
    assert await store.remember_once("event:def", 0.3)
    await asyncio.sleep(0.4)
    assert await store.remember_once("event:abc", 0.3)


async def test_counters_add_up_and_expire(store: Store) -> None:
    assert [await store.count("caps:ana", 1, 60) for _ in range(3)] == [1, 2, 3]
    assert await store.count("stats:2026-11-22:in:rest", 5, 60) == 5
    await store.count("short", 1, 0.001)
    await asyncio.sleep(1.1)  # Redis keeps a second at least
    assert await store.counts(["caps:ana", "stats:2026-11-22:in:rest", "short", "never"]) == {
        "caps:ana": 3,
        "stats:2026-11-22:in:rest": 5,
    }
    assert await store.count("short", 1, 60) == 1  # an expired counter starts again
    await store.add_counts(["caps:ana", "d:in", "d:in"], 60)
    assert await store.counts(["caps:ana", "d:in"]) == {"caps:ana": 4, "d:in": 2}


async def test_unanswered_questions_are_kept_for_their_retention_only(store: Store) -> None:
    now = utcnow()
    old = Question(now - timedelta(days=40), "fr", "webchat", "la machine à café chante")
    new = Question(now - timedelta(minutes=5), "en", "email", "my chair squeaks ☕ <b>")
    await store.note_unanswered(old, ttl_seconds=30 * 86400)  # already past its retention
    await store.note_unanswered(new, ttl_seconds=30 * 86400)
    assert await store.unanswered(now - timedelta(days=60)) == [new]
    assert await store.unanswered(now) == []


async def test_a_person_can_be_found_and_erased(store: Store) -> None:
    message = inbound("mon badge ne marche plus")
    await store.accept(message)
    now = utcnow()
    opened = ticket("HD-2026-000007", "ana@example.com", now)
    webhook = OutboxItem(id="evt-7", destination="webhook:support", body={"number": opened.number})
    await store.complete(
        message, ConversationState(key=message.conversation_key), [reply_to(message, "noté")], soon(),
        Effects(tickets=[opened], items=[webhook]),
    )  # fmt: skip
    await store.note_unanswered(
        Question(now, "fr", "webchat", "badge", source_of(message.conversation_key)), 3600
    )
    await store.note_unanswered(
        Question(now, "fr", "webchat", "autre", source_of("webchat:someone-else")), 3600
    )
    assert [t.number async for t in store.all_tickets()] == ["HD-2026-000007"]
    assert await store.drop_undelivered(['"HD-2026-000007"']) == 1  # the pending handoff
    assert await store.drop_unanswered([source_of(message.conversation_key)]) == 1
    assert [q.text for q in await store.unanswered(now - timedelta(minutes=1))] == ["autre"]
    assert await store.idle_conversations(now - timedelta(days=1)) == []
    assert await store.idle_conversations(now + timedelta(days=1)) == [message.conversation_key]
    assert await store.erase_conversation(message.conversation_key) == 2  # the message and the reply
    assert await store.idle_conversations(now + timedelta(days=1)) == []
    assert await store.transcript(message.conversation_key) == []
    assert await store.load_state(message.conversation_key) is None
    anonymous = replace(
        opened, requester=replace(opened.requester, id="forgotten:1", email=None), description=""
    )
    await store.put_tickets([anonymous], forget_requester="ana@example.com")
    assert await store.tickets_of("ana@example.com") == []
    assert await store.ticket("HD-2026-000007") == anonymous
    await store.scrub()


async def test_embedded_store_serves_one_process(tmp_path: Path) -> None:
    first = EmbeddedStore(tmp_path / "store")
    await first.open()
    try:
        with pytest.raises(StoreLockedError, match="another Guichet process"):
            await EmbeddedStore(tmp_path / "store").open()
    finally:
        await first.close()


async def test_redis_store_says_where_it_could_not_connect() -> None:
    store = RedisStore("redis://:hunter2@127.0.0.1:1/0")
    with pytest.raises(StoreError, match=r"redis://\*\*\*@127\.0\.0\.1:1/0") as caught:
        await store.open()
    assert "hunter2" not in str(caught.value)

"""The outbox: a reply that cannot be delivered is retried with backoff, then dead-lettered,
and an operator can replay it; nothing is ever dropped silently."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import pytest
from aiohttp import web

from bot.errors import DeliveryError
from bot.manager import Outbox, WebhookTarget
from bot.messages import Outbound, utcnow
from bot.settings import OutboxSettings
from bot.store.base import OutboxItem
from bot.store.embedded import EmbeddedStore
from tests.processes import free_port


class FlakyChannel:
    """A channel whose platform refuses the first `failures` sends."""

    def __init__(self, failures: int, *, permanent: bool = False, crash: bool = False) -> None:
        self.failures, self.permanent, self.crash = failures, permanent, crash
        self.sent: list[tuple[str, int | None]] = []
        self.attempts = 0

    async def send(self, message: Outbound, seq: int | None) -> None:
        self.attempts += 1
        if self.attempts <= self.failures:
            if self.crash:
                raise ValueError("a bug in the channel")
            raise DeliveryError("test", "platform answered 503", permanent=self.permanent)
        self.sent.append((message.text, seq))


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[EmbeddedStore]:
    instance = EmbeddedStore(tmp_path / "store")
    await instance.open()
    yield instance
    await instance.close()


async def enqueue(store: EmbeddedStore, text: str) -> OutboxItem:
    reply = Outbound(channel="test", conversation_id="c", text=text)
    item = OutboxItem(id=reply.id, destination="channel:test", body=reply.to_dict(), seq=7)
    await store.enqueue(item)
    return item


async def sweep_until_idle(outbox: Outbox, store: EmbeddedStore, rounds: int = 20) -> None:
    """Sweep as time passes: each round claims what is due an hour later than the last."""
    for hour in range(rounds):
        for item in await store.claim_due(utcnow() + timedelta(hours=hour), 100, 30):
            await outbox.deliver(item)


@pytest.mark.parametrize("crash", [False, True], ids=["refused", "channel bug"])
async def test_failed_sends_are_retried_until_they_pass(store: EmbeddedStore, crash: bool) -> None:
    channel = FlakyChannel(failures=3, crash=crash)
    outbox = Outbox(store, OutboxSettings(max_attempts=10, base_delay_seconds=1, max_delay_seconds=60))
    outbox.register("test", channel.send)
    await enqueue(store, "Bonjour")
    await sweep_until_idle(outbox, store)
    assert channel.sent == [("Bonjour", 7)]
    assert channel.attempts == 4
    assert await store.outbox_size() == 0 and await store.dead_letters() == []


async def test_retries_back_off(store: EmbeddedStore) -> None:
    channel = FlakyChannel(failures=100)
    outbox = Outbox(store, OutboxSettings(max_attempts=10, base_delay_seconds=10, max_delay_seconds=600))
    outbox.register("test", channel.send)
    item = await enqueue(store, "x")
    (claimed,) = await store.claim_due(utcnow(), 10, 30)
    await outbox.deliver(claimed)
    # Attempt 1 failed: due again between 5 and 10 s later (jittered), not before.
    assert await store.claim_due(utcnow() + timedelta(seconds=4.9), 10, 30) == []
    (again,) = await store.claim_due(utcnow() + timedelta(seconds=10.1), 10, 30)
    assert (again.id, again.attempts, again.last_error) == (item.id, 1, "test: platform answered 503")


async def test_a_message_that_keeps_failing_is_dead_lettered_then_replayed(store: EmbeddedStore) -> None:
    channel = FlakyChannel(failures=5)
    outbox = Outbox(store, OutboxSettings(max_attempts=3, base_delay_seconds=1, max_delay_seconds=60))
    outbox.register("test", channel.send)
    item = await enqueue(store, "Votre ticket HD-2026-000001")
    await sweep_until_idle(outbox, store)
    (dead,) = await store.dead_letters()
    assert (dead.id, dead.attempts) == (item.id, 3)
    assert channel.sent == []
    assert await store.replay(item.id, utcnow())
    await sweep_until_idle(outbox, store)
    assert channel.sent == [("Votre ticket HD-2026-000001", 7)]


async def test_a_permanent_refusal_is_dead_lettered_at_once(store: EmbeddedStore) -> None:
    channel = FlakyChannel(failures=1, permanent=True)
    outbox = Outbox(store, OutboxSettings())
    outbox.register("test", channel.send)
    await enqueue(store, "x")
    await sweep_until_idle(outbox, store)
    assert channel.attempts == 1
    assert len(await store.dead_letters()) == 1


async def test_a_channel_that_is_not_running_keeps_its_messages(store: EmbeddedStore) -> None:
    outbox = Outbox(store, OutboxSettings(max_attempts=10))
    item = await enqueue(store, "waiting for its channel")
    await sweep_until_idle(outbox, store, rounds=3)
    channel = FlakyChannel(failures=0)
    outbox.register("test", channel.send)
    await sweep_until_idle(outbox, store)
    assert channel.sent == [("waiting for its channel", item.seq)]


async def test_a_410_disables_the_queue_and_nothing_meant_for_it_is_lost(store: EmbeddedStore) -> None:
    calls = 0

    async def gone(request: web.Request) -> web.Response:
        nonlocal calls
        calls += 1
        return web.Response(status=410)

    app = web.Application()
    app.router.add_post("/hook", gone)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    outbox = Outbox(store, OutboxSettings(), webhook_schedule=(0.1,))
    outbox.register_webhook("support", WebhookTarget(f"http://127.0.0.1:{port}/hook", "whsec_" + "A" * 32, 5))
    try:
        for n in range(3):
            item = OutboxItem(id=f"msg_{n}", destination="webhook:support", body={"n": n})
            await store.enqueue(item)
            assert not await outbox.deliver(item)
    finally:
        await outbox.stop()
        await runner.cleanup()
    assert calls == 1  # the endpoint is not called again once it said it is gone
    dead = await store.dead_letters()
    assert sorted(d.id for d in dead) == ["msg_0", "msg_1", "msg_2"]
    assert "410" in (dead[0].last_error or "") and await store.outbox_size() == 0

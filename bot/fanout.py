"""Replies for people connected to another process (several `guichet run` on Redis).

A person's WebSocket, or a REST request waiting for its reply, lives in one process, but the
reply may be made by another one: the process that held the conversation at that moment, or
the one that received level 2's event. Such a reply is published on a Redis channel; every
process hears it and hands it to its own connections, and the one holding the person's
connection delivers it. The reply is already in the store (the transcript), so a message
published while nobody listens is still shown when the person comes back.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from bot.messages import Inbound, Outbound

log = logging.getLogger("guichet.fanout")

# (channel name, reply, its transcript seq) → delivered to a connection of this process?
DeliverHere = Callable[[str, Outbound, int | None], Awaitable[bool]]
# (channel name, the message that got no reply) → a request of this process was waiting?
SilentHere = Callable[[str, Inbound], Awaitable[bool]]


class Fanout:
    def __init__(self, url: str, prefix: str, deliver_here: DeliverHere, silent_here: SilentHere) -> None:
        self.url = url
        self.topic = f"{prefix}fanout"
        self.deliver_here = deliver_here
        self.silent_here = silent_here
        self._client: aioredis.Redis | None = None
        self._listener: asyncio.Task[None] | None = None
        self._ready = asyncio.Event()

    async def start(self) -> None:
        self._client = aioredis.Redis.from_url(self.url, decode_responses=True)
        self._listener = asyncio.create_task(self._listen(), name="fanout")
        await asyncio.wait_for(self._ready.wait(), 10)

    async def stop(self) -> None:
        if self._listener is not None:
            self._listener.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._listener
        if self._client is not None:
            await self._client.aclose()

    async def reply(self, channel: str, message: Outbound, seq: int | None) -> None:
        await self._publish({"kind": "reply", "channel": channel, "message": message.to_dict(), "seq": seq})

    async def silent(self, channel: str, inbound: Inbound) -> None:
        await self._publish({"kind": "silent", "channel": channel, "inbound": inbound.to_dict()})

    async def _publish(self, event: dict[str, Any]) -> None:
        assert self._client is not None, "start() was not called"
        await self._client.publish(self.topic, json.dumps(event, ensure_ascii=False))

    async def _listen(self) -> None:
        delay = 0.5
        while True:
            try:
                assert self._client is not None
                async with self._client.pubsub() as pubsub:
                    await pubsub.subscribe(self.topic)
                    self._ready.set()
                    delay = 0.5
                    async for event in pubsub.listen():
                        if event.get("type") == "message":
                            await self._handle(json.loads(event["data"]))
            except asyncio.CancelledError:
                raise
            except (RedisError, OSError, ValueError) as exc:
                # Replies made meanwhile by other processes are in the transcript: the page
                # shows them on its next reconnection.
                log.warning("fanout: %s; listening again in %.1f s", exc, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 30.0)

    async def _handle(self, event: dict[str, Any]) -> None:
        try:
            if event["kind"] == "reply":
                await self.deliver_here(
                    event["channel"], Outbound.from_dict(event["message"]), event.get("seq")
                )
            elif event["kind"] == "silent":
                await self.silent_here(event["channel"], Inbound.from_dict(event["inbound"]))
        except Exception:  # one bad event must not stop the others
            log.exception("fanout: could not hand over an event")

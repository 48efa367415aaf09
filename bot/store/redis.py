"""The Redis store, for several Guichet processes sharing one state.

Each operation that must be atomic is one Lua script, so a process killed between two
commands cannot leave half an operation behind. Durability is Redis's own: without AOF
nothing survives a Redis restart; with `appendfsync everysec` about a second may be lost.

Keys (all under the prefix, `guichet:` by default):
    seen:<channel>:<platform id>   accepted platform message ids (expire after `seen_days`)
    inbox:<conv>                   list of pending inbound messages, oldest first
    pending                        set of conversations with something in their inbox
    conv:<conv>                    hash: state
    transcript:<conv>              list of transcript entries; an entry's seq is its index + 1
    outbox:items / outbox:due      hash id → item, sorted set id → due time (leases move it on)
    outbox:dead                    hash id → dead-lettered item
    tickets                        hash number → ticket
    tickets-of:<requester>         sorted set number → opening time
    count:<name>                   expiring counters (statistics, rate caps)
    unanswered                     sorted set of questions nobody could answer, by time
    seq:<name>, secret:<name>, lock:<name>, remembered:<name>
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Sequence
from datetime import datetime
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from bot.errors import StoreError
from bot.messages import AcceptResult, Inbound, Outbound, TranscriptEntry, new_id, utcnow
from bot.store.base import (
    NO_EFFECTS,
    ConversationState,
    Effects,
    OutboxItem,
    Question,
    Store,
    records_transcript,
    transcript_entry_for,
)
from triage.tickets import Ticket

_ACCEPT = """
if not redis.call('SET', KEYS[1], '1', 'NX', 'EX', ARGV[3]) then return 0 end
redis.call('RPUSH', KEYS[2], ARGV[1])
redis.call('SADD', KEYS[3], ARGV[4])
if ARGV[2] == '' then return -1 end
return redis.call('RPUSH', KEYS[4], ARGV[2])
"""

# KEYS: inbox, pending set, conv hash, transcript, outbox items, outbox due, tickets hash,
#       then each ticket's requester index
# ARGV: expected platform id, state json, due, conv key, ticket count, extra item count,
#       then (number, ticket json, opened_at) per ticket, (id, item json) per extra item,
#       then (reply entry json, item json) pairs
_COMPLETE = """
local head = redis.call('LINDEX', KEYS[1], 0)
if not head then return redis.error_reply('nothing pending') end
if cjson.decode(head)['platform_message_id'] ~= ARGV[1] then return redis.error_reply('not the oldest pending') end
redis.call('LPOP', KEYS[1])
if redis.call('LLEN', KEYS[1]) == 0 then redis.call('SREM', KEYS[2], ARGV[4]) end
redis.call('HSET', KEYS[3], 'state', ARGV[2])
local n_tickets = tonumber(ARGV[5])
local n_items = tonumber(ARGV[6])
local i = 7
for t = 1, n_tickets do
  redis.call('HSET', KEYS[7], ARGV[i], ARGV[i + 1])
  redis.call('ZADD', KEYS[7 + t], ARGV[i + 2], ARGV[i])
  i = i + 3
end
for _ = 1, n_items do
  if redis.call('HSETNX', KEYS[5], ARGV[i], ARGV[i + 1]) == 1 then
    redis.call('ZADD', KEYS[6], ARGV[3], ARGV[i])
  end
  i = i + 2
end
local seqs = {}
while i <= #ARGV do
  local seq = redis.call('RPUSH', KEYS[4], ARGV[i])
  -- the item's JSON has no seq yet: append it as text rather than re-encode (cjson would
  -- turn an empty list into an empty object)
  local item = string.sub(ARGV[i + 1], 1, -2) .. ',"seq":' .. seq .. '}'
  local id = cjson.decode(ARGV[i + 1])['id']
  redis.call('HSET', KEYS[5], id, item)
  redis.call('ZADD', KEYS[6], ARGV[3], id)
  table.insert(seqs, seq)
  i = i + 2
end
return seqs
"""

_CLAIM = """
local ids = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', ARGV[1], 'LIMIT', 0, ARGV[3])
local items = {}
for _, id in ipairs(ids) do
  redis.call('ZADD', KEYS[2], ARGV[2], id)
  local item = redis.call('HGET', KEYS[1], id)
  if item then table.insert(items, item) else redis.call('ZREM', KEYS[2], id) end
end
return items
"""

_RETRY = """
local item = redis.call('HGET', KEYS[1], ARGV[1])
if not item then return 0 end
local data = cjson.decode(item)
data['attempts'] = tonumber(ARGV[2])
data['last_error'] = ARGV[3]
redis.call('HSET', KEYS[1], ARGV[1], cjson.encode(data))
redis.call('ZADD', KEYS[2], ARGV[4], ARGV[1])
return 1
"""

_DEAD = """
local item = redis.call('HGET', KEYS[1], ARGV[1])
if not item then return 0 end
local data = cjson.decode(item)
data['attempts'] = tonumber(ARGV[2])
data['last_error'] = ARGV[3]
redis.call('HDEL', KEYS[1], ARGV[1])
redis.call('ZREM', KEYS[2], ARGV[1])
redis.call('HSET', KEYS[3], ARGV[1], cjson.encode(data))
return 1
"""

_REPLAY = """
local item = redis.call('HGET', KEYS[3], ARGV[1])
if not item then return 0 end
local data = cjson.decode(item)
data['attempts'] = 0
redis.call('HDEL', KEYS[3], ARGV[1])
redis.call('HSET', KEYS[1], ARGV[1], cjson.encode(data))
redis.call('ZADD', KEYS[2], ARGV[2], ARGV[1])
return 1
"""

_UNLOCK = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


class RedisStore(Store):
    def __init__(self, url: str, *, prefix: str = "guichet:", seen_days: int = 30) -> None:
        self.url = url
        self.prefix = prefix
        self.seen_seconds = seen_days * 86400
        self._client: aioredis.Redis | None = None
        self._scripts: dict[str, Any] = {}

    @property
    def client(self) -> aioredis.Redis:
        if self._client is None:
            raise StoreError("the Redis store is not open")
        return self._client

    def _key(self, *parts: str) -> str:
        return self.prefix + ":".join(parts)

    async def open(self) -> None:
        # A blocking pool: a burst of concurrent operations waits for a connection instead of failing.
        pool = aioredis.BlockingConnectionPool.from_url(
            self.url, max_connections=64, timeout=10, decode_responses=True
        )
        client = aioredis.Redis.from_pool(pool)  # owns the pool: closing the client closes it
        try:
            await client.ping()
        except (RedisError, OSError) as exc:
            await client.aclose()
            raise StoreError(f"cannot reach Redis at {_redacted(self.url)}: {exc}") from exc
        self._client = client
        for name, source in (
            ("accept", _ACCEPT),
            ("complete", _COMPLETE),
            ("claim", _CLAIM),
            ("retry", _RETRY),
            ("dead", _DEAD),
            ("replay", _REPLAY),
            ("unlock", _UNLOCK),
        ):
            self._scripts[name] = client.register_script(source)

    async def close(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    async def _run(self, name: str, keys: list[str], args: list[Any]) -> Any:
        try:
            return await self._scripts[name](keys=keys, args=args)
        except RedisError as exc:
            raise StoreError(f"Redis {name}: {exc}") from exc

    async def accept(self, inbound: Inbound) -> AcceptResult:
        conv = inbound.conversation_key
        placeholder = (
            json.dumps(transcript_entry_for(inbound, 0).to_dict(), ensure_ascii=False)
            if records_transcript(inbound)
            else ""
        )
        seq = await self._run(
            "accept",
            [
                self._key("seen", inbound.channel, inbound.platform_message_id),
                self._key("inbox", conv),
                self._key("pending"),
                self._key("transcript", conv),
            ],
            [
                json.dumps(inbound.to_dict(), ensure_ascii=False),
                placeholder,
                self.seen_seconds,
                conv,
            ],
        )
        if not seq:
            return AcceptResult(False, None)
        return AcceptResult(True, int(seq) if int(seq) > 0 else None)

    async def pending(self, conversation_key: str) -> list[Inbound]:
        raw = await self.client.lrange(self._key("inbox", conversation_key), 0, -1)
        return [Inbound.from_dict(json.loads(item)) for item in raw]

    async def conversations_with_pending(self) -> list[str]:
        return sorted(str(k) for k in await self.client.smembers(self._key("pending")))

    async def complete(
        self,
        inbound: Inbound,
        state: ConversationState,
        replies: Sequence[Outbound],
        due: datetime,
        effects: Effects = NO_EFFECTS,
    ) -> list[OutboxItem]:
        conv = inbound.conversation_key
        args: list[Any] = [
            inbound.platform_message_id,
            json.dumps(state.to_dict(), ensure_ascii=False),
            due.timestamp(),
            conv,
            len(effects.tickets),
            len(effects.items),
        ]
        for ticket in effects.tickets:
            args += [
                ticket.number,
                json.dumps(ticket.to_dict(), ensure_ascii=False),
                ticket.opened_at.timestamp(),
            ]
        for extra in effects.items:
            args += [extra.id, json.dumps(extra.to_dict(), ensure_ascii=False)]
        items = [OutboxItem.for_reply(reply) for reply in replies]
        for reply, item in zip(replies, items, strict=True):
            args.append(json.dumps(transcript_entry_for(reply, 0).to_dict(), ensure_ascii=False))
            args.append(
                json.dumps({k: v for k, v in item.to_dict().items() if k != "seq"}, ensure_ascii=False)
            )
        seqs = await self._run(
            "complete",
            [
                self._key("inbox", conv),
                self._key("pending"),
                self._key("conv", conv),
                self._key("transcript", conv),
                self._key("outbox", "items"),
                self._key("outbox", "due"),
                self._key("tickets"),
                *(self._key("tickets-of", t.requester.id) for t in effects.tickets),
            ],
            args,
        )
        return [
            *(
                OutboxItem(item.id, item.destination, item.body, int(seq))
                for item, seq in zip(items, seqs, strict=True)
            ),
            *effects.items,
        ]

    async def ticket(self, number: str) -> Ticket | None:
        raw = await self.client.hget(self._key("tickets"), number)
        return Ticket.from_dict(json.loads(raw)) if raw else None

    async def tickets_of(self, requester_id: str, limit: int = 50) -> list[Ticket]:
        found = await self.client.zrevrange(self._key("tickets-of", requester_id), 0, limit - 1)
        numbers = [str(n) for n in found]
        if not numbers:
            return []
        raw = await self.client.hmget(self._key("tickets"), numbers)
        return [Ticket.from_dict(json.loads(data)) for data in raw if data]

    async def all_tickets(self) -> AsyncIterator[Ticket]:
        async for _, data in self.client.hscan_iter(self._key("tickets"), count=500):
            yield Ticket.from_dict(json.loads(data))

    async def put_tickets(self, tickets: Sequence[Ticket], forget_requester: str | None = None) -> None:
        async with self.client.pipeline(transaction=True) as pipe:
            for ticket in tickets:
                pipe.hset(
                    self._key("tickets"), ticket.number, json.dumps(ticket.to_dict(), ensure_ascii=False)
                )
                pipe.zadd(
                    self._key("tickets-of", ticket.requester.id),
                    {ticket.number: ticket.opened_at.timestamp()},
                )
            if forget_requester is not None:
                pipe.delete(self._key("tickets-of", forget_requester))
            await pipe.execute()

    async def drop_undelivered(self, needles: Sequence[str]) -> int:
        dropped = 0
        items, due, dead = (
            self._key("outbox", "items"),
            self._key("outbox", "due"),
            self._key("outbox", "dead"),
        )
        for key in (items, dead):
            async for item_id, item in self.client.hscan_iter(key, count=500):
                if any(n and n in item for n in needles):
                    async with self.client.pipeline(transaction=True) as pipe:
                        pipe.hdel(key, item_id)
                        pipe.zrem(due, item_id)
                        await pipe.execute()
                    dropped += 1
        return dropped

    async def idle_conversations(self, before: datetime, limit: int = 1000) -> list[str]:
        idle: list[str] = []
        prefix = self._key("transcript", "")
        async for key in self.client.scan_iter(match=f"{prefix}*", count=500):
            last = await self.client.lindex(key, -1)
            if last and datetime.fromisoformat(json.loads(last)["time"]) < before:
                idle.append(str(key)[len(prefix) :])
                if len(idle) >= limit:
                    break
        return idle

    async def scrub(self) -> None:
        # The append-only file still holds the erased writes until it is rewritten.
        try:
            await self.client.bgrewriteaof()
        except RedisError as exc:  # already rewriting, or AOF off: nothing on disk to rewrite
            if "already in progress" not in str(exc).lower():
                raise StoreError(f"Redis BGREWRITEAOF: {exc}") from exc

    async def erase_conversation(self, conversation_key: str) -> int:
        transcript = self._key("transcript", conversation_key)
        async with self.client.pipeline(transaction=True) as pipe:
            pipe.llen(transcript)
            pipe.delete(transcript, self._key("conv", conversation_key), self._key("inbox", conversation_key))
            pipe.srem(self._key("pending"), conversation_key)
            lines, *_ = await pipe.execute()
        return int(lines)

    async def remember_once(self, name: str, ttl_seconds: float) -> bool:
        key = self._key("remembered", name)
        return bool(await self.client.set(key, "1", nx=True, px=max(1, int(ttl_seconds * 1000))))

    async def load_state(self, conversation_key: str) -> ConversationState | None:
        raw = await self.client.hget(self._key("conv", conversation_key), "state")
        return ConversationState.from_dict(json.loads(raw)) if raw else None

    async def transcript(
        self, conversation_key: str, after_seq: int = 0, limit: int = 500
    ) -> list[TranscriptEntry]:
        raw = await self.client.lrange(
            self._key("transcript", conversation_key), after_seq, after_seq + limit - 1
        )
        entries = []
        for offset, item in enumerate(raw, start=after_seq + 1):
            data = json.loads(item)
            data["seq"] = offset
            entries.append(TranscriptEntry.from_dict(data))
        return entries

    async def enqueue(self, item: OutboxItem, due: datetime | None = None) -> None:
        async with self.client.pipeline(transaction=True) as pipe:
            pipe.hsetnx(self._key("outbox", "items"), item.id, json.dumps(item.to_dict(), ensure_ascii=False))
            pipe.zadd(self._key("outbox", "due"), {item.id: (due or utcnow()).timestamp()}, nx=True)
            await pipe.execute()

    async def claim_due(self, now: datetime, limit: int, lease_seconds: float) -> list[OutboxItem]:
        raw = await self._run(
            "claim",
            [self._key("outbox", "items"), self._key("outbox", "due")],
            [now.timestamp(), now.timestamp() + lease_seconds, limit],
        )
        return [OutboxItem.from_dict(json.loads(item)) for item in raw]

    async def delivered(self, item_id: str) -> None:
        async with self.client.pipeline(transaction=True) as pipe:
            pipe.hdel(self._key("outbox", "items"), item_id)
            pipe.zrem(self._key("outbox", "due"), item_id)
            await pipe.execute()

    async def retry_later(self, item_id: str, attempts: int, due: datetime, error: str) -> None:
        await self._run(
            "retry",
            [self._key("outbox", "items"), self._key("outbox", "due")],
            [item_id, attempts, error, due.timestamp()],
        )

    async def dead_letter(self, item_id: str, attempts: int, error: str) -> None:
        await self._run(
            "dead",
            [self._key("outbox", "items"), self._key("outbox", "due"), self._key("outbox", "dead")],
            [item_id, attempts, error],
        )

    async def dead_letters(self) -> list[OutboxItem]:
        raw = await self.client.hgetall(self._key("outbox", "dead"))
        return [OutboxItem.from_dict(json.loads(item)) for _, item in sorted(raw.items())]

    async def replay(self, item_id: str, due: datetime) -> bool:
        done = await self._run(
            "replay",
            [self._key("outbox", "items"), self._key("outbox", "due"), self._key("outbox", "dead")],
            [item_id, due.timestamp()],
        )
        return bool(done)

    async def outbox_size(self) -> int:
        return int(await self.client.zcard(self._key("outbox", "due")))

    async def count(self, name: str, amount: int = 1, ttl_seconds: float = 86400.0) -> int:
        key = self._key("count", name)
        async with self.client.pipeline(transaction=True) as pipe:
            pipe.incrby(key, amount)
            pipe.expire(key, max(1, int(ttl_seconds)), nx=True)  # from the first count in
            value, _ = await pipe.execute()
        return int(value)

    async def add_counts(self, names: list[str], ttl_seconds: float) -> None:
        async with self.client.pipeline(transaction=False) as pipe:
            for name in names:
                key = self._key("count", name)
                pipe.incr(key)
                pipe.expire(key, max(1, int(ttl_seconds)), nx=True)
            await pipe.execute()

    async def counts(self, names: list[str]) -> dict[str, int]:
        if not names:
            return {}
        values = await self.client.mget([self._key("count", n) for n in names])
        return {name: int(value) for name, value in zip(names, values, strict=True) if value is not None}

    async def note_unanswered(self, question: Question, ttl_seconds: float) -> None:
        key = self._key("unanswered")
        at = question.at.timestamp()
        member = json.dumps({**question.to_dict(), "id": new_id()}, ensure_ascii=False)
        async with self.client.pipeline(transaction=True) as pipe:
            pipe.zadd(key, {member: at})
            # Scored by time: what is older than the retention period goes as new ones come.
            pipe.zremrangebyscore(key, "-inf", utcnow().timestamp() - ttl_seconds)
            await pipe.execute()

    async def drop_unanswered(self, sources: Sequence[str]) -> int:
        wanted, key = set(sources), self._key("unanswered")
        doomed = [m async for m, _ in self.client.zscan_iter(key) if json.loads(m).get("source") in wanted]
        if doomed:
            await self.client.zrem(key, *doomed)
        return len(doomed)

    async def unanswered(self, since: datetime) -> list[Question]:
        members = await self.client.zrangebyscore(self._key("unanswered"), since.timestamp(), "+inf")
        return [Question.from_dict(json.loads(str(m))) for m in members]

    async def next_number(self, sequence: str) -> int:
        return int(await self.client.incr(self._key("seq", sequence)))

    async def secret(self, name: str, create: str) -> str:
        key = self._key("secret", name)
        if create:
            await self.client.set(key, create, nx=True)
        value = await self.client.get(key)
        return str(value) if value is not None else ""

    async def try_lock(self, name: str, owner: str, ttl_seconds: float) -> bool:
        return bool(
            await self.client.set(self._key("lock", name), owner, nx=True, px=int(ttl_seconds * 1000))
        )

    async def unlock(self, name: str, owner: str) -> None:
        await self._run("unlock", [self._key("lock", name)], [owner])


def _redacted(url: str) -> str:
    """The URL without its password, for error messages and logs."""
    if "@" not in url:
        return url
    scheme, _, rest = url.partition("://")
    return f"{scheme}://***@{rest.split('@', 1)[1]}"

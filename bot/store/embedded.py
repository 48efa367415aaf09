"""The embedded store: one SQLite database on local disk, for a single Guichet process.

Write-ahead logging with `synchronous=NORMAL`: every committed transaction is in the
operating system's hands before the call returns, so a `kill -9` of Guichet loses nothing
that was acknowledged. A power cut may lose the last transactions (use `durability: full`
for an fsync on every commit, at a cost in throughput).

SQLite calls run on the event loop on purpose: each is tens of microseconds, less than the
cost of handing the work to a thread and back. Writes use group commit: every write made in
one turn of the event loop joins one transaction, committed at the end of that turn, and no
writer returns before its commit. A busy desk pays for one commit per turn, not per message.
"""

from __future__ import annotations

import asyncio
import fcntl
import json
import os
import sqlite3
from collections.abc import AsyncIterator, Callable, Sequence
from datetime import datetime
from pathlib import Path
from typing import IO, TypeVar

from bot.errors import StoreError, StoreLockedError
from bot.messages import AcceptResult, Inbound, Outbound, TranscriptEntry, utcnow
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

T = TypeVar("T")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS seen (channel TEXT, platform_id TEXT, PRIMARY KEY (channel, platform_id)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS inbox (id INTEGER PRIMARY KEY AUTOINCREMENT, conv TEXT NOT NULL, message TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS inbox_conv ON inbox (conv, id);
CREATE TABLE IF NOT EXISTS conversations (conv TEXT PRIMARY KEY, state TEXT, last_seq INTEGER NOT NULL DEFAULT 0);
CREATE TABLE IF NOT EXISTS transcript (conv TEXT, seq INTEGER, entry TEXT NOT NULL, PRIMARY KEY (conv, seq)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS outbox (id TEXT PRIMARY KEY, item TEXT NOT NULL, due REAL NOT NULL);
CREATE INDEX IF NOT EXISTS outbox_due ON outbox (due);
CREATE TABLE IF NOT EXISTS dead_letters (id TEXT PRIMARY KEY, item TEXT NOT NULL, failed_at REAL NOT NULL);
CREATE TABLE IF NOT EXISTS sequences (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS secrets (name TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS tickets (number TEXT PRIMARY KEY, requester TEXT NOT NULL, opened_at REAL NOT NULL, ticket TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS tickets_requester ON tickets (requester, opened_at);
CREATE TABLE IF NOT EXISTS remembered (name TEXT PRIMARY KEY, until REAL NOT NULL);
CREATE TABLE IF NOT EXISTS counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL, until REAL NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS unanswered (id INTEGER PRIMARY KEY AUTOINCREMENT, at REAL NOT NULL, until REAL NOT NULL, question TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS unanswered_at ON unanswered (at);
"""


class EmbeddedStore(Store):
    def __init__(self, directory: Path, *, durability: str = "process") -> None:
        self.directory = directory
        self.durability = durability
        self._db: sqlite3.Connection | None = None
        self._lock_file: IO[str] | None = None
        self._commit: asyncio.Future[None] | None = None  # the open transaction's commit

    @property
    def db(self) -> sqlite3.Connection:
        if self._db is None:
            raise StoreError("the embedded store is not open")
        return self._db

    async def open(self) -> None:
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            lock_file = (self.directory / "guichet.lock").open("w")
        except OSError as exc:
            raise StoreError(f"cannot use the data directory {self.directory}: {exc}") from exc
        try:
            fcntl.flock(lock_file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            lock_file.close()
            raise StoreLockedError(
                f"another Guichet process already uses {self.directory}; the embedded store serves one "
                "process (set GUICHET_REDIS_URL to run several)"
            ) from exc
        lock_file.write(str(os.getpid()))
        lock_file.flush()
        self._lock_file = lock_file
        db = sqlite3.connect(
            self.directory / "guichet.sqlite3", isolation_level=None, check_same_thread=False
        )
        db.execute("PRAGMA journal_mode=WAL")
        db.execute(f"PRAGMA synchronous={'FULL' if self.durability == 'full' else 'NORMAL'}")
        db.execute("PRAGMA busy_timeout=5000")
        # Deleted rows are overwritten, not left in free pages: an erased person is gone.
        db.execute("PRAGMA secure_delete=ON")
        db.executescript(_SCHEMA)
        self._db = db

    async def close(self) -> None:
        if self._commit is not None:
            await asyncio.shield(self._commit)
        if self._db is not None:
            self._db.close()
            self._db = None
        if self._lock_file is not None:
            fcntl.flock(self._lock_file, fcntl.LOCK_UN)
            self._lock_file.close()
            self._lock_file = None

    async def _write(self, operation: Callable[[sqlite3.Connection], T]) -> T:
        """Run one write operation in the open transaction and return once it is committed.

        Operations check what they need before they write, so one that raises has written
        nothing; if SQLite itself fails mid-operation, the whole transaction is rolled back
        and every writer of this turn gets the error (none of them was acknowledged yet).
        """
        db = self.db
        if self._commit is None:
            db.execute("BEGIN IMMEDIATE")
            self._commit = asyncio.get_running_loop().create_future()
            asyncio.get_running_loop().call_soon(self._commit_now)
        commit = self._commit
        try:
            result = operation(db)
        except sqlite3.Error as exc:
            self._fail(StoreError(f"the embedded store failed: {exc}"))
            raise StoreError(f"the embedded store failed: {exc}") from exc
        await asyncio.shield(commit)
        return result

    def _fail(self, error: StoreError) -> None:
        commit, self._commit = self._commit, None
        if self.db.in_transaction:
            self.db.execute("ROLLBACK")
        if commit is not None and not commit.done():
            commit.set_exception(error)
            commit.exception()  # marked as retrieved: the writers that await it get it too

    def _commit_now(self) -> None:
        commit, self._commit = self._commit, None
        if commit is None:  # already rolled back by _fail
            return
        try:
            self.db.execute("COMMIT")
        except sqlite3.Error as exc:
            self._commit = commit
            self._fail(StoreError(f"the embedded store could not commit: {exc}"))
            return
        commit.set_result(None)

    @staticmethod
    def _append_transcript(db: sqlite3.Connection, conv: str, message: Inbound | Outbound) -> int:
        (seq,) = db.execute(
            "INSERT INTO conversations (conv, last_seq) VALUES (?, 1) "
            "ON CONFLICT (conv) DO UPDATE SET last_seq = last_seq + 1 RETURNING last_seq",
            (conv,),
        ).fetchone()
        entry = transcript_entry_for(message, seq)
        db.execute(
            "INSERT INTO transcript (conv, seq, entry) VALUES (?, ?, ?)",
            (conv, seq, json.dumps(entry.to_dict(), ensure_ascii=False)),
        )
        return int(seq)

    async def accept(self, inbound: Inbound) -> AcceptResult:
        conv = inbound.conversation_key

        def operation(db: sqlite3.Connection) -> AcceptResult:
            inserted = db.execute(
                "INSERT OR IGNORE INTO seen (channel, platform_id) VALUES (?, ?)",
                (inbound.channel, inbound.platform_message_id),
            ).rowcount
            if not inserted:
                return AcceptResult(False, None)
            db.execute(
                "INSERT INTO inbox (conv, message) VALUES (?, ?)",
                (conv, json.dumps(inbound.to_dict(), ensure_ascii=False)),
            )
            if not records_transcript(inbound):
                return AcceptResult(True, None)
            return AcceptResult(True, self._append_transcript(db, conv, inbound))

        return await self._write(operation)

    async def pending(self, conversation_key: str) -> list[Inbound]:
        rows = self.db.execute("SELECT message FROM inbox WHERE conv = ? ORDER BY id", (conversation_key,))
        return [Inbound.from_dict(json.loads(message)) for (message,) in rows]

    async def conversations_with_pending(self) -> list[str]:
        return [conv for (conv,) in self.db.execute("SELECT DISTINCT conv FROM inbox")]

    async def complete(
        self,
        inbound: Inbound,
        state: ConversationState,
        replies: Sequence[Outbound],
        due: datetime,
        effects: Effects = NO_EFFECTS,
    ) -> list[OutboxItem]:
        conv = inbound.conversation_key

        def operation(db: sqlite3.Connection) -> list[OutboxItem]:
            row = db.execute(
                "SELECT id, message FROM inbox WHERE conv = ? ORDER BY id LIMIT 1", (conv,)
            ).fetchone()
            if row is None or json.loads(row[1])["platform_message_id"] != inbound.platform_message_id:
                raise StoreError(
                    f"{conv}: completing {inbound.platform_message_id!r}, which is not the oldest pending"
                )
            db.execute("DELETE FROM inbox WHERE id = ?", (row[0],))
            db.execute(
                "UPDATE conversations SET state = ? WHERE conv = ?",
                (json.dumps(state.to_dict(), ensure_ascii=False), conv),
            )
            items = []
            for reply in replies:
                seq = self._append_transcript(db, reply.conversation_key, reply)
                item = OutboxItem(
                    id=reply.id, destination=f"channel:{reply.channel}", body=reply.to_dict(), seq=seq
                )
                db.execute(
                    "INSERT INTO outbox (id, item, due) VALUES (?, ?, ?)",
                    (item.id, json.dumps(item.to_dict(), ensure_ascii=False), due.timestamp()),
                )
                items.append(item)
            for ticket in effects.tickets:
                self._save_ticket(db, ticket)
            for item in effects.items:
                db.execute(
                    "INSERT OR IGNORE INTO outbox (id, item, due) VALUES (?, ?, ?)",
                    (item.id, json.dumps(item.to_dict(), ensure_ascii=False), due.timestamp()),
                )
                items.append(item)
            return items

        return await self._write(operation)

    @staticmethod
    def _save_ticket(db: sqlite3.Connection, ticket: Ticket) -> None:
        db.execute(
            "INSERT INTO tickets (number, requester, opened_at, ticket) VALUES (?, ?, ?, ?) "
            "ON CONFLICT (number) DO UPDATE SET requester = excluded.requester, ticket = excluded.ticket",
            (
                ticket.number,
                ticket.requester.id,
                ticket.opened_at.timestamp(),
                json.dumps(ticket.to_dict(), ensure_ascii=False),
            ),
        )

    async def ticket(self, number: str) -> Ticket | None:
        row = self.db.execute("SELECT ticket FROM tickets WHERE number = ?", (number,)).fetchone()
        return Ticket.from_dict(json.loads(row[0])) if row else None

    async def tickets_of(self, requester_id: str, limit: int = 50) -> list[Ticket]:
        rows = self.db.execute(
            "SELECT ticket FROM tickets WHERE requester = ? ORDER BY opened_at DESC LIMIT ?",
            (requester_id, limit),
        )
        return [Ticket.from_dict(json.loads(data)) for (data,) in rows]

    async def all_tickets(self) -> AsyncIterator[Ticket]:
        for (data,) in self.db.execute("SELECT ticket FROM tickets").fetchall():
            yield Ticket.from_dict(json.loads(data))

    async def put_tickets(self, tickets: Sequence[Ticket], forget_requester: str | None = None) -> None:
        # The requester column is the index: a ticket saved under a new requester leaves the old.
        def operation(db: sqlite3.Connection) -> None:
            for ticket in tickets:
                self._save_ticket(db, ticket)

        await self._write(operation)

    async def drop_undelivered(self, needles: Sequence[str]) -> int:
        def operation(db: sqlite3.Connection) -> int:
            dropped = 0
            for table in ("outbox", "dead_letters"):
                for item_id, item in db.execute(f"SELECT id, item FROM {table}").fetchall():
                    if any(n and n in item for n in needles):
                        db.execute(f"DELETE FROM {table} WHERE id = ?", (item_id,))
                        dropped += 1
            return dropped

        return await self._write(operation)

    async def idle_conversations(self, before: datetime, limit: int = 1000) -> list[str]:
        rows = self.db.execute(
            "SELECT t.conv, t.entry FROM conversations c JOIN transcript t ON t.conv = c.conv AND t.seq = c.last_seq"
        )
        idle = [conv for conv, entry in rows if datetime.fromisoformat(json.loads(entry)["time"]) < before]
        return idle[:limit]

    async def scrub(self) -> None:
        # Old page images of erased rows live in the write-ahead log until a checkpoint, which
        # runs outside any transaction: wait for this turn's commit, then checkpoint at once
        # (no await in between, so no writer can open a new one).
        while self._commit is not None:
            await asyncio.shield(self._commit)
        try:
            self.db.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()
        except sqlite3.Error as exc:
            raise StoreError(f"the embedded store could not checkpoint: {exc}") from exc

    async def erase_conversation(self, conversation_key: str) -> int:
        def operation(db: sqlite3.Connection) -> int:
            lines = db.execute("DELETE FROM transcript WHERE conv = ?", (conversation_key,)).rowcount
            db.execute("DELETE FROM conversations WHERE conv = ?", (conversation_key,))
            db.execute("DELETE FROM inbox WHERE conv = ?", (conversation_key,))
            return int(lines)

        return await self._write(operation)

    async def remember_once(self, name: str, ttl_seconds: float) -> bool:
        now = utcnow().timestamp()

        def operation(db: sqlite3.Connection) -> bool:
            db.execute("DELETE FROM remembered WHERE name = ? AND until < ?", (name, now))
            return bool(
                db.execute(
                    "INSERT OR IGNORE INTO remembered (name, until) VALUES (?, ?)", (name, now + ttl_seconds)
                ).rowcount
            )

        return await self._write(operation)

    async def load_state(self, conversation_key: str) -> ConversationState | None:
        row = self.db.execute(
            "SELECT state FROM conversations WHERE conv = ?", (conversation_key,)
        ).fetchone()
        if row is None or row[0] is None:
            return None
        return ConversationState.from_dict(json.loads(row[0]))

    async def transcript(
        self, conversation_key: str, after_seq: int = 0, limit: int = 500
    ) -> list[TranscriptEntry]:
        rows = self.db.execute(
            "SELECT entry FROM transcript WHERE conv = ? AND seq > ? ORDER BY seq LIMIT ?",
            (conversation_key, after_seq, limit),
        )
        return [TranscriptEntry.from_dict(json.loads(entry)) for (entry,) in rows]

    async def enqueue(self, item: OutboxItem, due: datetime | None = None) -> None:
        data = json.dumps(item.to_dict(), ensure_ascii=False)
        when = (due or utcnow()).timestamp()
        await self._write(
            lambda db: db.execute(
                "INSERT OR IGNORE INTO outbox (id, item, due) VALUES (?, ?, ?)", (item.id, data, when)
            )
        )

    async def claim_due(self, now: datetime, limit: int, lease_seconds: float) -> list[OutboxItem]:
        def operation(db: sqlite3.Connection) -> list[OutboxItem]:
            rows = db.execute(
                "SELECT id, item FROM outbox WHERE due <= ? ORDER BY due LIMIT ?", (now.timestamp(), limit)
            ).fetchall()
            db.executemany(
                "UPDATE outbox SET due = ? WHERE id = ?",
                [(now.timestamp() + lease_seconds, item_id) for item_id, _ in rows],
            )
            return [OutboxItem.from_dict(json.loads(item)) for _, item in rows]

        return await self._write(operation)

    async def delivered(self, item_id: str) -> None:
        await self._write(lambda db: db.execute("DELETE FROM outbox WHERE id = ?", (item_id,)))

    async def retry_later(self, item_id: str, attempts: int, due: datetime, error: str) -> None:
        def operation(db: sqlite3.Connection) -> None:
            row = db.execute("SELECT item FROM outbox WHERE id = ?", (item_id,)).fetchone()
            if row is None:
                return
            data = json.loads(row[0]) | {"attempts": attempts, "last_error": error}
            db.execute(
                "UPDATE outbox SET item = ?, due = ? WHERE id = ?",
                (json.dumps(data, ensure_ascii=False), due.timestamp(), item_id),
            )

        await self._write(operation)

    async def dead_letter(self, item_id: str, attempts: int, error: str) -> None:
        def operation(db: sqlite3.Connection) -> None:
            row = db.execute("SELECT item FROM outbox WHERE id = ?", (item_id,)).fetchone()
            if row is None:
                return
            data = json.loads(row[0]) | {"attempts": attempts, "last_error": error}
            db.execute("DELETE FROM outbox WHERE id = ?", (item_id,))
            db.execute(
                "INSERT OR REPLACE INTO dead_letters (id, item, failed_at) VALUES (?, ?, ?)",
                (item_id, json.dumps(data, ensure_ascii=False), utcnow().timestamp()),
            )

        await self._write(operation)

    async def dead_letters(self) -> list[OutboxItem]:
        rows = self.db.execute("SELECT item FROM dead_letters ORDER BY failed_at")
        return [OutboxItem.from_dict(json.loads(item)) for (item,) in rows]

    async def replay(self, item_id: str, due: datetime) -> bool:
        def operation(db: sqlite3.Connection) -> bool:
            row = db.execute("SELECT item FROM dead_letters WHERE id = ?", (item_id,)).fetchone()
            if row is None:
                return False
            data = json.loads(row[0]) | {"attempts": 0}
            db.execute("DELETE FROM dead_letters WHERE id = ?", (item_id,))
            db.execute(
                "INSERT OR REPLACE INTO outbox (id, item, due) VALUES (?, ?, ?)",
                (item_id, json.dumps(data, ensure_ascii=False), due.timestamp()),
            )
            return True

        return await self._write(operation)

    async def outbox_size(self) -> int:
        (count,) = self.db.execute("SELECT COUNT(*) FROM outbox").fetchone()
        return int(count)

    async def next_number(self, sequence: str) -> int:
        def operation(db: sqlite3.Connection) -> int:
            (value,) = db.execute(
                "INSERT INTO sequences (name, value) VALUES (?, 1) ON CONFLICT (name) DO UPDATE SET value = value + 1 "
                "RETURNING value",
                (sequence,),
            ).fetchone()
            return int(value)

        return await self._write(operation)

    async def count(self, name: str, amount: int = 1, ttl_seconds: float = 86400.0) -> int:
        now = utcnow().timestamp()

        def operation(db: sqlite3.Connection) -> int:
            (value,) = db.execute(
                "INSERT INTO counters (name, value, until) VALUES (?, ?, ?) ON CONFLICT (name) DO UPDATE SET "
                "value = CASE WHEN until < ? THEN excluded.value ELSE value + excluded.value END, "
                "until = CASE WHEN until < ? THEN excluded.until ELSE until END RETURNING value",
                (name, amount, now + ttl_seconds, now, now),
            ).fetchone()
            return int(value)

        return await self._write(operation)

    async def add_counts(self, names: list[str], ttl_seconds: float) -> None:
        now = utcnow().timestamp()

        def operation(db: sqlite3.Connection) -> None:
            db.executemany(
                "INSERT INTO counters (name, value, until) VALUES (?, 1, ?) ON CONFLICT (name) DO UPDATE SET "
                "value = CASE WHEN until < ? THEN 1 ELSE value + 1 END, "
                "until = CASE WHEN until < ? THEN excluded.until ELSE until END",
                [(name, now + ttl_seconds, now, now) for name in names],
            )

        await self._write(operation)

    async def counts(self, names: list[str]) -> dict[str, int]:
        now = utcnow().timestamp()
        found: dict[str, int] = {}
        for start in range(0, len(names), 500):  # SQLite's limit on bound parameters
            chunk = names[start : start + 500]
            marks = ",".join("?" * len(chunk))
            rows = self.db.execute(
                f"SELECT name, value FROM counters WHERE until >= ? AND name IN ({marks})", (now, *chunk)
            )
            found.update({str(name): int(value) for name, value in rows})
        return found

    async def note_unanswered(self, question: Question, ttl_seconds: float) -> None:
        at = question.at.timestamp()
        data = json.dumps(question.to_dict(), ensure_ascii=False)

        def operation(db: sqlite3.Connection) -> None:
            db.execute(
                "INSERT INTO unanswered (at, until, question) VALUES (?, ?, ?)", (at, at + ttl_seconds, data)
            )
            # Expired ones go as new ones come: the table never outlives its retention period.
            db.execute("DELETE FROM unanswered WHERE until < ?", (utcnow().timestamp(),))

        await self._write(operation)

    async def drop_unanswered(self, sources: Sequence[str]) -> int:
        wanted = set(sources)

        def operation(db: sqlite3.Connection) -> int:
            rows = db.execute("SELECT id, question FROM unanswered").fetchall()
            doomed = [(row_id,) for row_id, data in rows if json.loads(data).get("source") in wanted]
            db.executemany("DELETE FROM unanswered WHERE id = ?", doomed)
            return len(doomed)

        return await self._write(operation)

    async def unanswered(self, since: datetime) -> list[Question]:
        now = utcnow().timestamp()
        rows = self.db.execute(
            "SELECT question FROM unanswered WHERE at >= ? AND until >= ? ORDER BY at, id",
            (since.timestamp(), now),
        )
        return [Question.from_dict(json.loads(row[0])) for row in rows]

    async def secret(self, name: str, create: str) -> str:
        def operation(db: sqlite3.Connection) -> str:
            if create:
                db.execute("INSERT OR IGNORE INTO secrets (name, value) VALUES (?, ?)", (name, create))
            row = db.execute("SELECT value FROM secrets WHERE name = ?", (name,)).fetchone()
            return str(row[0]) if row else ""

        return await self._write(operation)

    async def try_lock(self, name: str, owner: str, ttl_seconds: float) -> bool:
        # One process owns the embedded store (see open): its in-process ordering is enough.
        return True

    async def unlock(self, name: str, owner: str) -> None:
        return None

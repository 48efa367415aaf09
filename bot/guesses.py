"""Guessing stopped: link codes and other people's ticket numbers tried one after another get
slower and slower, per sender and per network address.

A few wrong guesses an hour are free (people mistype): 5 per person, 20 per network address
(several people may share one, behind a company's NAT); after that each wrong guess makes the
next one wait twice as long as the one before (30 s, 1 min, 2 min, … up to an hour). Only
counters are kept, named by a hash: nothing is stored for the code or number guessed.
"""

from __future__ import annotations

import hashlib
import math

from bot.messages import Inbound
from bot.store.base import Store

FREE = {"sender": 5, "client": 20}  # wrong guesses per window before the waits begin
WINDOW_SECONDS = 3600.0
FIRST_WAIT_SECONDS = 30.0
LONGEST_WAIT_SECONDS = 3600.0


def _hashed(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()[:20]


def who(inbound: Inbound) -> list[str]:
    """The keys a guess counts against: the person (a proved or claimed address, else the
    conversation) and, where the channel tells it, the network address."""
    mail = inbound.raw.get("email") or {}
    person = inbound.user_email or mail.get("from") or inbound.conversation_key
    keys = [f"sender:{_hashed(str(person).lower())}"]
    if client := inbound.raw.get("client"):
        keys.append(f"client:{_hashed(str(client))}")
    return keys


def wait_after(key: str, misses: int) -> float:
    """How long the next guess waits after this many wrong ones of this key within the window."""
    free = FREE[key.partition(":")[0]]
    if misses < free:
        return 0.0
    return float(min(FIRST_WAIT_SECONDS * 2.0 ** (misses - free), LONGEST_WAIT_SECONDS))


class Guesses:
    def __init__(self, store: Store) -> None:
        self.store = store

    async def wait(self, inbound: Inbound) -> int:
        """Minutes (rounded up) before this person may guess again; 0 when they may now."""
        keys = who(inbound)
        misses = await self.store.counts([f"guess:{k}" for k in keys])
        waiting = [f"guess-wait:{k}:{misses[f'guess:{k}']}" for k in keys if f"guess:{k}" in misses]
        if not waiting:
            return 0
        live = await self.store.counts(waiting)
        longest = max(
            (
                wait_after(k, n)
                for k in keys
                if (n := misses.get(f"guess:{k}", 0)) and f"guess-wait:{k}:{n}" in live
            ),
            default=0.0,
        )
        return math.ceil(longest / 60) if longest else 0

    async def missed(self, inbound: Inbound) -> None:
        for key in who(inbound):
            misses = await self.store.count(f"guess:{key}", 1, WINDOW_SECONDS)
            if wait := wait_after(key, misses):
                await self.store.count(f"guess-wait:{key}:{misses}", 1, wait)

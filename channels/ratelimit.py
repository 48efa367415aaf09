"""Token buckets for per-session and per-address limits on chat channels."""

from __future__ import annotations

import time


class TokenBuckets:
    """One bucket per key: `burst` messages at once, refilled at `rate` per second.

    Buckets that have refilled completely are forgotten, so idle keys cost no memory.
    """

    def __init__(self, rate: float, burst: int) -> None:
        self.rate = rate
        self.burst = float(burst)
        self._buckets: dict[str, tuple[float, float]] = {}
        self._last_prune = time.monotonic()

    def allow(self, key: str) -> bool:
        now = time.monotonic()
        tokens, then = self._buckets.get(key, (self.burst, now))
        tokens = min(self.burst, tokens + (now - then) * self.rate)
        if tokens < 1.0:
            self._buckets[key] = (tokens, now)
            return False
        self._buckets[key] = (tokens - 1.0, now)
        if now - self._last_prune > 60:
            self._prune(now)
        return True

    def _prune(self, now: float) -> None:
        full_after = self.burst / self.rate
        self._buckets = {k: v for k, v in self._buckets.items() if now - v[1] < full_after}
        self._last_prune = now

"""One delivery attempt of a signed document to a level-2 webhook, and when to try again.

    2xx                                   delivered
    410 Gone                              gone: the receiver removed this endpoint (stop calling it)
    429, 503                              retry, not before Retry-After (seconds or an HTTP date)
    408, other 5xx, timeout, no connection retry
    3xx (redirects are not followed),
    other 4xx                             rejected: it will never take this document (dead letter)

The caller keeps the attempt count: `next_delay` gives the wait before the next attempt on
the Standard Webhooks schedule, and after MAX_ATTEMPTS the document is a dead letter.
"""

from __future__ import annotations

import email.utils
import random
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC
from typing import Literal

import aiohttp

from handoff.signing import headers

Outcome = Literal["delivered", "retry", "gone", "rejected"]

# Standard Webhooks' suggested schedule: the wait after the 1st, 2nd, … failed attempt.
SCHEDULE: tuple[float, ...] = (5.0, 300.0, 1800.0, 7200.0, 18000.0, 36000.0, 36000.0)
MAX_ATTEMPTS = 8  # the first attempt and seven retries, about 28 hours; then a dead letter
JITTER = 0.2
MAX_RETRY_AFTER = 86400.0  # a receiver asking for more than a day is not waited for longer
_REASON_BYTES = 300  # of the receiver's answer kept in the error, for the operator


@dataclass(frozen=True, slots=True)
class Attempt:
    outcome: Outcome
    status: int | None = None
    retry_after: float | None = None
    error: str = ""


async def post(
    session: aiohttp.ClientSession,
    url: str,
    secret: str,
    msg_id: str,
    body: bytes,
    timeout: float = 10.0,  # noqa: ASYNC109 - handed to aiohttp for this one request, connect included
) -> Attempt:
    """POST the body once, signed with a fresh timestamp; never raises for a network failure."""
    try:
        async with session.post(
            url,
            data=body,
            headers=headers(secret, msg_id, body),
            timeout=aiohttp.ClientTimeout(total=timeout),
            allow_redirects=False,
        ) as answer:
            status = answer.status
            retry_after = parse_retry_after(answer.headers.get("Retry-After"))
            location = answer.headers.get("Location", "")
            # Only the start of the answer: a receiver cannot make us read a huge body.
            said = await answer.content.read(_REASON_BYTES)
    except TimeoutError:  # aiohttp's timeouts are TimeoutErrors (ServerTimeoutError too)
        return Attempt("retry", error=f"no answer within {timeout:g} s")
    except (aiohttp.ClientError, OSError) as exc:
        return Attempt("retry", error=f"{type(exc).__name__}: {exc}")
    reason = _printable(said.decode("utf-8", "replace"))
    if 200 <= status < 300:
        return Attempt("delivered", status)
    if status == 410:
        return Attempt("gone", status, error="HTTP 410: the receiver removed this endpoint")
    if status in (429, 503):
        return Attempt("retry", status, retry_after, error=_http(status, reason))
    if status == 408 or status >= 500:
        return Attempt("retry", status, error=_http(status, reason))
    if 300 <= status < 400:
        return Attempt(
            "rejected",
            status,
            error=f"HTTP {status}: redirects are not followed (to {_printable(location)!r})",
        )
    return Attempt("rejected", status, error=_http(status, reason) + " (the receiver refuses this document)")


def next_delay(
    attempt: int,
    retry_after: float | None = None,
    *,
    schedule: Sequence[float] = SCHEDULE,
    rng: random.Random | None = None,
) -> float:
    """Seconds to wait after failed attempt number `attempt` (1 = the first attempt): the
    schedule with ±20% jitter, so that many documents failing together do not return
    together, and never less than what the receiver asked for with Retry-After."""
    if attempt < 1:
        raise ValueError(f"attempts are counted from 1, not {attempt}")
    base = schedule[min(attempt, len(schedule)) - 1]
    delay = base * (rng or random).uniform(1 - JITTER, 1 + JITTER)
    return max(delay, min(retry_after or 0.0, MAX_RETRY_AFTER))


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Retry-After as seconds, capped to a day; None when absent or unreadable."""
    if not value:
        return None
    value = value.strip()
    if value.isascii() and value.isdigit():
        return min(float(value), MAX_RETRY_AFTER)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:  # "-0000": no zone given; an HTTP date is always UTC
        when = when.replace(tzinfo=UTC)
    current = time.time() if now is None else now
    return min(max(0.0, when.timestamp() - current), MAX_RETRY_AFTER)


def _http(status: int, reason: str) -> str:
    return f"HTTP {status}: {reason}" if reason else f"HTTP {status}"


def _printable(text: str) -> str:
    """One line for a log or the dead-letter list, whatever the receiver answered."""
    return " ".join("".join(c if c.isprintable() else " " for c in text).split())[:200]

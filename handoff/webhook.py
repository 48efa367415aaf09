"""One delivery attempt of a signed document to a level-2 webhook, and what to do next.

Only 2xx is success. 410 means the receiver removed the endpoint; other 4xx mean it will
never take this document: both are final (a dead letter the operator sees). 429, 408, 5xx,
timeouts and refused connections are worth retrying, after `Retry-After` when it is given.
"""

from __future__ import annotations

import asyncio
import email.utils
import time
from dataclasses import dataclass
from typing import Literal

import aiohttp

from handoff.signing import headers

Outcome = Literal["delivered", "retry", "gone", "rejected"]
MAX_RETRY_AFTER = 86400.0


@dataclass(frozen=True, slots=True)
class Attempt:
    outcome: Outcome
    status: int | None = None
    retry_after: float | None = None
    error: str = ""


async def post(
    session: aiohttp.ClientSession, url: str, secret: str, msg_id: str, body: bytes, seconds: float = 10.0
) -> Attempt:
    try:
        async with session.post(
            url,
            data=body,
            headers=headers(secret, msg_id, body),
            timeout=aiohttp.ClientTimeout(total=seconds),
            allow_redirects=False,
        ) as answer:
            status = answer.status
            retry_after = _retry_after(answer.headers.get("Retry-After"))
            await answer.read()
    except TimeoutError:
        return Attempt("retry", error=f"no answer within {seconds:g} s")
    except (aiohttp.ClientError, OSError, asyncio.CancelledError) as exc:
        if isinstance(exc, asyncio.CancelledError):
            raise
        return Attempt("retry", error=f"{type(exc).__name__}: {exc}")
    if 200 <= status < 300:
        return Attempt("delivered", status)
    if status == 410:
        return Attempt("gone", status, error="HTTP 410: the receiver removed this endpoint")
    if status in (408, 429) or status >= 500:
        return Attempt("retry", status, retry_after, error=f"HTTP {status}")
    return Attempt("rejected", status, error=f"HTTP {status}: the receiver refuses this document")


def _retry_after(value: str | None) -> float | None:
    """Retry-After as seconds or as an HTTP date; None when absent or unreadable."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return min(float(value), MAX_RETRY_AFTER)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return min(max(0.0, when.timestamp() - time.time()), MAX_RETRY_AFTER)

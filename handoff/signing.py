"""Standard Webhooks 1.0 signatures, for the handoff and for level 2's events back.

The signed content is "{id}.{timestamp}.{body}"; the signature header lists one or more
"v1,<base64 HMAC-SHA256>" separated by spaces, so a secret can be rotated without downtime.
A secret is "whsec_" + base64 of its key bytes; a secret without that prefix is used as its
UTF-8 bytes (what some level-2 tools let an operator paste).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets
import time
from collections.abc import Mapping, Sequence

PREFIX = "whsec_"
SIGNED_HEADERS = ("webhook-id", "webhook-timestamp", "webhook-signature")


class SignatureError(Exception):
    """A request whose signature cannot be trusted; `reason` says why, for the 401's body."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def new_secret() -> str:
    return PREFIX + base64.b64encode(secrets.token_bytes(32)).decode()


def _key(secret: str) -> bytes:
    if secret.startswith(PREFIX):
        try:
            return base64.b64decode(secret[len(PREFIX) :], validate=True)
        except (binascii.Error, ValueError) as exc:
            raise ValueError("a whsec_ secret must be base64 after its prefix") from exc
    return secret.encode()


def sign(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    content = f"{msg_id}.{timestamp}.".encode() + body
    digest = hmac.new(_key(secret), content, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def headers(secret: str, msg_id: str, body: bytes, now: float | None = None) -> dict[str, str]:
    """The headers of a signed JSON request. The id becomes a header: no line breaks in it."""
    if not msg_id or any(c in msg_id for c in "\r\n\0"):
        raise ValueError(f"a webhook id must be one non-empty line: {msg_id!r}")
    timestamp = int(time.time() if now is None else now)
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": sign(secret, msg_id, timestamp, body),
        "content-type": "application/json",
    }


def verify(
    secrets_: Sequence[str],
    received: Mapping[str, str],
    body: bytes,
    *,
    tolerance_seconds: int = 300,
    now: float | None = None,
) -> str:
    """The webhook-id of a correctly signed, fresh request, or SignatureError saying why not.

    Header names are matched without regard to case; a header given twice is refused (which
    of two ids or timestamps would count?). Every "v1," signature offered is compared in
    constant time with the one each accepted secret gives. The caller still refuses an id it
    has already seen: a replay inside the tolerance window passes this check."""
    values = _signed_headers(received)
    msg_id, stamp, signatures = (values[name] for name in SIGNED_HEADERS)
    # ASCII digits only, and not absurdly long: int() takes "١٢" and refuses 5,000 digits.
    if not (stamp.isascii() and stamp.isdigit() and len(stamp) <= 12):
        raise SignatureError("webhook-timestamp is not a number of seconds")
    timestamp = int(stamp)
    current = time.time() if now is None else now
    if current - timestamp > tolerance_seconds:
        raise SignatureError(f"webhook-timestamp is too old (more than {tolerance_seconds} s)")
    if timestamp - current > tolerance_seconds:
        raise SignatureError(f"webhook-timestamp is in the future (more than {tolerance_seconds} s)")
    offered = [s[3:].encode() for s in signatures.split() if s.startswith("v1,")]
    if not offered:
        raise SignatureError("no valid signature (none in the v1 scheme)")
    found = False
    for secret in secrets_:
        expected = sign(secret, msg_id, timestamp, body)[3:].encode()
        for candidate in offered:
            # No early exit: the time taken does not tell which entry or which secret matched.
            found |= hmac.compare_digest(expected, candidate)
    if not found:
        raise SignatureError("no valid signature")
    return msg_id


def _signed_headers(received: Mapping[str, str]) -> dict[str, str]:
    """The three Standard Webhooks headers, checked for presence, repetition and line breaks."""
    values: dict[str, str] = {}
    # items() of a multi-dict (aiohttp's request headers) yields a repeated header each time.
    for name, value in received.items():
        lowered = name.lower()
        if lowered not in SIGNED_HEADERS:
            continue
        if lowered in values:
            raise SignatureError(f"header {lowered} is given more than once")
        if "\r" in value or "\n" in value or "\0" in value:
            raise SignatureError(f"header {lowered} holds a line break")
        values[lowered] = value.strip()
    for name in SIGNED_HEADERS:
        if not values.get(name):
            raise SignatureError(f"missing header {name}")
    return values

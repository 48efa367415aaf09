"""Standard Webhooks 1.0 signatures, for the handoff and for level 2's events back.

The signed content is "{id}.{timestamp}.{body}"; the signature header lists one or more
"v1,<base64 HMAC-SHA256>" separated by spaces, so a secret can be rotated without downtime.
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


class SignatureError(Exception):
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
    The caller still refuses an id it has already seen (a replay inside the tolerance)."""
    lowered = {k.lower(): v for k, v in received.items()}
    values = []
    for name in ("webhook-id", "webhook-timestamp", "webhook-signature"):
        value = lowered.get(name)
        if not value:
            raise SignatureError(f"missing header {name}")
        if "\r" in value or "\n" in value:
            raise SignatureError(f"header {name} holds a line break")
        values.append(value.strip())
    msg_id, stamp, signatures = values
    if not stamp.isdigit():
        raise SignatureError("webhook-timestamp is not a number of seconds")
    timestamp = int(stamp)
    current = time.time() if now is None else now
    if abs(current - timestamp) > tolerance_seconds:
        raise SignatureError("webhook-timestamp is too old or in the future")
    offered = [s.partition(",")[2] for s in signatures.split() if s.startswith("v1,")]
    for secret in secrets_:
        expected = sign(secret, msg_id, timestamp, body).partition(",")[2].encode()
        # Every offered signature is compared, in constant time, against every secret.
        if any(hmac.compare_digest(expected, candidate.encode()) for candidate in offered):
            return msg_id
    raise SignatureError("no valid signature")

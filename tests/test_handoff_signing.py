"""Standard Webhooks 1.0 signatures: the specification's published test vector, then every way
a request can be refused, since Guichet signs its handoffs with this and trusts level 2's
events because of it."""

from __future__ import annotations

import base64
import hashlib
import hmac
from typing import Any

import pytest
from multidict import CIMultiDict

from handoff.signing import SignatureError, headers, new_secret, sign, verify

# Published with the Standard Webhooks specification (and checked by its reference
# libraries); recomputed by hand below before we trust it.
VECTOR_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
VECTOR_ID = "msg_p5jXN8AQM9LWM0D4loKWxJek"
VECTOR_TIMESTAMP = 1614265330
VECTOR_BODY = b'{"test": 2432232314}'
VECTOR_SIGNATURE = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="


def vector_headers(**changed: str) -> dict[str, str]:
    return {
        "webhook-id": VECTOR_ID,
        "webhook-timestamp": str(VECTOR_TIMESTAMP),
        "webhook-signature": VECTOR_SIGNATURE,
        **changed,
    }


def test_the_vector_is_what_the_specification_describes() -> None:
    # HMAC-SHA256, keyed with the base64 after "whsec_", over "{id}.{timestamp}.{body}".
    key = base64.b64decode(VECTOR_SECRET.removeprefix("whsec_"))
    content = f"{VECTOR_ID}.{VECTOR_TIMESTAMP}.".encode() + VECTOR_BODY
    by_hand = "v1," + base64.b64encode(hmac.new(key, content, hashlib.sha256).digest()).decode()
    assert by_hand == VECTOR_SIGNATURE


def test_sign_and_verify_reproduce_the_published_vector() -> None:
    assert sign(VECTOR_SECRET, VECTOR_ID, VECTOR_TIMESTAMP, VECTOR_BODY) == VECTOR_SIGNATURE
    assert verify([VECTOR_SECRET], vector_headers(), VECTOR_BODY, now=VECTOR_TIMESTAMP + 10) == VECTOR_ID


def test_a_secret_without_the_prefix_is_its_utf8_bytes() -> None:
    raw = "clé-partagée"
    expected = hmac.new(raw.encode(), b"msg_1.1700000000.{}", hashlib.sha256).digest()
    assert sign(raw, "msg_1", 1700000000, b"{}") == "v1," + base64.b64encode(expected).decode()
    with pytest.raises(ValueError, match="base64"):
        sign("whsec_not base64!", "msg_1", 1700000000, b"{}")


def test_new_secrets_are_random_whsec_keys_of_24_to_32_bytes() -> None:
    made = {new_secret() for _ in range(20)}
    assert len(made) == 20
    for secret in made:
        assert secret.startswith("whsec_")
        assert 24 <= len(base64.b64decode(secret[6:], validate=True)) <= 32


def test_headers_carry_id_timestamp_signature_and_content_type() -> None:
    secret = new_secret()
    made = headers(secret, "msg_42", b'{"a":1}', now=1_800_000_000.9)
    assert made == {
        "webhook-id": "msg_42",
        "webhook-timestamp": "1800000000",
        "webhook-signature": sign(secret, "msg_42", 1_800_000_000, b'{"a":1}'),
        "content-type": "application/json",
    }
    for bad_id in ("msg\r\nX-Injected: 1", "msg\n", ""):
        with pytest.raises(ValueError, match="one non-empty line"):
            headers(secret, bad_id, b"{}")


def test_header_names_are_matched_whatever_their_case() -> None:
    shouted = {k.upper(): v for k, v in vector_headers().items()}
    assert verify([VECTOR_SECRET], shouted, VECTOR_BODY, now=VECTOR_TIMESTAMP) == VECTOR_ID
    multi = CIMultiDict({"Webhook-Id": VECTOR_ID, "Webhook-Timestamp": str(VECTOR_TIMESTAMP)})
    multi["WEBHOOK-SIGNATURE"] = VECTOR_SIGNATURE
    assert verify([VECTOR_SECRET], multi, VECTOR_BODY, now=VECTOR_TIMESTAMP) == VECTOR_ID


def test_key_rotation_several_secrets_and_several_signatures() -> None:
    old, new = new_secret(), new_secret()
    body = b'{"rotated": true}'
    signed_old = headers(old, "msg_1", body, now=1000)
    stamp = int(signed_old["webhook-timestamp"])
    # The receiver accepts both while the sender moves from old to new.
    assert verify([new, old], signed_old, body, now=1000) == "msg_1"
    # The sender signs with both: a receiver knowing either one accepts.
    both = f"{sign(new, 'msg_1', stamp, body)} {signed_old['webhook-signature']}"
    for known in ([old], [new]):
        assert verify(known, {**signed_old, "webhook-signature": both}, body, now=1000) == "msg_1"
    # Entries of other schemes (v1a: asymmetric) are skipped, not an error.
    mixed = f"v1a,c29tZXRoaW5n {signed_old['webhook-signature']}"
    assert verify([old], {**signed_old, "webhook-signature": mixed}, body, now=1000) == "msg_1"
    with pytest.raises(SignatureError, match="no valid signature"):
        verify([new_secret()], {**signed_old, "webhook-signature": both}, body, now=1000)
    with pytest.raises(SignatureError, match="none in the v1 scheme"):
        verify([old], {**signed_old, "webhook-signature": "v1a,c29tZXRoaW5n"}, body, now=1000)
    with pytest.raises(SignatureError, match="no valid signature"):
        verify([], signed_old, body, now=1000)


def test_comparison_is_constant_time_over_every_secret_and_entry(monkeypatch: pytest.MonkeyPatch) -> None:
    compared: list[tuple[bytes, bytes]] = []
    real = hmac.compare_digest

    def spy(a: Any, b: Any) -> bool:
        compared.append((a, b))
        return real(a, b)

    monkeypatch.setattr("hmac.compare_digest", spy)  # what handoff.signing calls
    first, second = new_secret(), new_secret()
    wrong = (
        f"v1,{base64.b64encode(b'x' * 32).decode()} {sign(second, VECTOR_ID, VECTOR_TIMESTAMP, VECTOR_BODY)}"
    )
    received = vector_headers(**{"webhook-signature": wrong})
    assert verify([first, second], received, VECTOR_BODY, now=VECTOR_TIMESTAMP) == VECTOR_ID
    # 2 secrets × 2 entries, with no early exit once one matched.
    assert len(compared) == 4


@pytest.mark.parametrize(
    ("changed", "reason"),
    [
        ({"webhook-id": "msg_other"}, "no valid signature"),  # the id is signed too
        ({"webhook-timestamp": str(VECTOR_TIMESTAMP + 1)}, "no valid signature"),
        ({"webhook-signature": "v1,AAAA"}, "no valid signature"),
        ({"webhook-signature": "v1," + VECTOR_SIGNATURE}, "no valid signature"),
        ({"webhook-signature": VECTOR_SIGNATURE.replace("v1,", "v2,")}, "none in the v1 scheme"),
        ({"webhook-id": ""}, "missing header webhook-id"),
        ({"webhook-signature": "   "}, "missing header webhook-signature"),
        ({"webhook-timestamp": "yesterday"}, "not a number"),
        ({"webhook-timestamp": "-1614265330"}, "not a number"),
        ({"webhook-timestamp": "1614265330.0"}, "not a number"),
        ({"webhook-timestamp": "١٦١٤٢٦٥٣٣٠"}, "not a number"),  # Arabic-Indic digits
        ({"webhook-timestamp": "9" * 5000}, "not a number"),
        ({"webhook-id": VECTOR_ID + "\r\nX-Evil: 1"}, "line break"),
        ({"webhook-signature": VECTOR_SIGNATURE + "\n"}, "line break"),
    ],
)
def test_refused_headers_say_why(changed: dict[str, str], reason: str) -> None:
    with pytest.raises(SignatureError, match=reason) as refused:
        verify([VECTOR_SECRET], vector_headers(**changed), VECTOR_BODY, now=VECTOR_TIMESTAMP)
    assert reason in refused.value.reason


def test_each_missing_header_is_named() -> None:
    for name in ("webhook-id", "webhook-timestamp", "webhook-signature"):
        received = {k: v for k, v in vector_headers().items() if k != name}
        with pytest.raises(SignatureError, match=f"missing header {name}"):
            verify([VECTOR_SECRET], received, VECTOR_BODY, now=VECTOR_TIMESTAMP)


def test_a_header_given_twice_is_refused() -> None:
    for name in ("webhook-id", "webhook-timestamp", "Webhook-Signature"):
        received = CIMultiDict(vector_headers())
        received.add(name, received[name])
        with pytest.raises(SignatureError, match="more than once"):
            verify([VECTOR_SECRET], received, VECTOR_BODY, now=VECTOR_TIMESTAMP)


def test_a_changed_body_is_refused() -> None:
    for body in (VECTOR_BODY + b" ", b'{"test": 2432232315}', b""):
        with pytest.raises(SignatureError, match="no valid signature"):
            verify([VECTOR_SECRET], vector_headers(), body, now=VECTOR_TIMESTAMP)


def test_the_timestamp_window_is_five_minutes_either_way() -> None:
    def check(now: float, tolerance: int = 300) -> str:
        return verify([VECTOR_SECRET], vector_headers(), VECTOR_BODY, now=now, tolerance_seconds=tolerance)

    assert check(VECTOR_TIMESTAMP + 300) == VECTOR_ID
    assert check(VECTOR_TIMESTAMP - 300) == VECTOR_ID
    with pytest.raises(SignatureError, match="too old"):
        check(VECTOR_TIMESTAMP + 301)
    with pytest.raises(SignatureError, match="in the future"):
        check(VECTOR_TIMESTAMP - 301)
    with pytest.raises(SignatureError, match="too old"):
        check(VECTOR_TIMESTAMP + 61, tolerance=60)
    # Without `now`, the clock: the vector dates from 2021.
    with pytest.raises(SignatureError, match="too old"):
        verify([VECTOR_SECRET], vector_headers(), VECTOR_BODY)

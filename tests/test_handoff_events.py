"""The way back from level 2: an event is checked at the boundary (size, JSON, shape, queue,
signature) before anything trusts it, and its texts come out clean for the person's channel."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest

from handoff.events import EventError, Level2Event, parse_event
from handoff.payload import validate
from handoff.signing import headers, new_secret

SUPPORT, NETWORK = new_secret(), new_secret()
QUEUES = {"support": [SUPPORT], "network": [NETWORK]}
GOOD: dict[str, Any] = {
    "type": "agent.message",
    "ticket": "HD-2026-000042",
    "queue": "support",
    "agent": {"name": "Marie"},
    "text": "Bonjour, pouvez-vous redémarrer le poste ?",
    "created_at": "2026-11-23T10:00:00+00:00",
}


class Queues:
    """secret_for_queue, recording which queues were asked for."""

    def __init__(self) -> None:
        self.asked: list[str] = []

    def __call__(self, queue: str) -> list[str]:
        self.asked.append(queue)
        return QUEUES.get(queue, [])


def signed(
    event: Any = None,
    *,
    raw: bytes | None = None,
    secret: str = SUPPORT,
    msg_id: str = "evt_1",
    now: float | None = None,
) -> tuple[dict[str, str], bytes]:
    body = raw if raw is not None else json.dumps(event).encode()
    return headers(secret, msg_id, body, now=now), body


def refused(
    received: tuple[dict[str, str], bytes], queues: Queues | None = None, max_bytes: int = 64 * 1024
) -> EventError:
    with pytest.raises(EventError) as error:
        parse_event(*received, queues or Queues(), max_bytes=max_bytes)
    return error.value


def test_a_good_event_becomes_a_level2_event() -> None:
    queues = Queues()
    event = parse_event(*signed(GOOD, msg_id="evt_77"), queues)
    assert event == Level2Event(
        id="evt_77",
        type="agent.message",
        ticket="HD-2026-000042",
        queue="support",
        agent_name="Marie",
        text="Bonjour, pouvez-vous redémarrer le poste ?",
        created_at="2026-11-23T10:00:00+00:00",
    )
    assert queues.asked == ["support"]
    assert validate(GOOD, "event.v1") == []


@pytest.mark.parametrize(
    "event",
    [
        {
            "type": "ticket.assigned",
            "ticket": "HD-2026-000042",
            "queue": "support",
            "agent": {"name": "Marie"},
        },
        {"type": "ticket.waiting", "ticket": "HD-2026-000042", "queue": "support"},
        {
            "type": "ticket.waiting",
            "ticket": "HD-2026-000042",
            "queue": "support",
            "text": "Votre n° de poste ?",
        },
        {
            "type": "ticket.resolved",
            "ticket": "HD-2026-000042",
            "queue": "support",
            "text": "Pilote réinstallé.",
        },
        {"type": "ticket.handed_back", "ticket": "INC0012345", "queue": "support"},
        {"type": "ticket.closed", "ticket": "42", "queue": "support"},
        {"type": "agent.message", "ticket": "HD-2026-000042", "queue": "support", "text": "sans nom"},
    ],
)
def test_every_type_in_its_smallest_form(event: dict[str, Any]) -> None:
    parsed = parse_event(*signed(event), Queues())
    assert (parsed.type, parsed.ticket, parsed.queue, parsed.text) == (
        event["type"],
        event["ticket"],
        "support",
        event.get("text"),
    )
    assert parsed.agent_name == event.get("agent", {}).get("name")
    assert parsed.created_at is None


def test_texts_come_out_clean() -> None:
    # JSON's escapes can carry what a channel must never show: NUL, a bidi override that turns
    # the line around, zero-width characters, a lone surrogate, CR.
    raw = (
        b'{"type": "agent.message", "ticket": "HD-1", "queue": "support",'
        b' "agent": {"name": "  Ma\\u202erie\\n\\nAdmin \\u200b"},'
        b' "text": "  Bon\\u0000jour\\u200b \\ud800!\\r\\nligne 2\\u2067  "}'
    )
    event = parse_event(*signed(raw=raw), Queues())
    assert event.text == "Bonjour !\nligne 2"
    assert event.agent_name == "Marie Admin"  # one line: it stands in front of the agent's words


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"{not json", "not valid JSON"),
        (b'{"type": "agent.message", "ticket": "HD-1"', "not valid JSON"),  # truncated
        (b"\xff\xfe{}", "not valid JSON"),
        (b"", "not valid JSON"),
        (b"[" * 100_000 + b"]" * 100_000, "JSON"),  # deeper than the parser goes (nested or invalid)
        (b'{"a": ' * 20 + b"1" + b"}" * 20, "nested too deeply"),
        (
            b'{"type": "agent.message", "type": "ticket.closed", "ticket": "HD-1", "queue": "support"}',
            "repeated",
        ),
        (b"[]", "$: expected object, got array"),
        (b'"agent.message"', "$: expected object, got string"),
    ],
)
def test_bad_json_is_a_400_before_any_queue_is_looked_up(raw: bytes, reason: str) -> None:
    queues = Queues()
    error = refused(signed(raw=raw), queues, max_bytes=1_000_000)
    assert error.status == 400 and reason in error.reason, error.reason
    assert queues.asked == []


def test_an_oversized_body_is_a_413_before_it_is_parsed() -> None:
    body = json.dumps({**GOOD, "text": "x" * 70_000}).encode()
    error = refused(signed(raw=body))
    assert (error.status, error.reason) == (413, "the event is larger than 65536 bytes")
    with pytest.raises(EventError, match="longer than 4000"):  # the schema still caps the text
        parse_event(*signed(raw=body), Queues(), max_bytes=100_000)


@pytest.mark.parametrize(
    ("event", "reason"),
    [
        ({**GOOD, "type": "ticket.exploded"}, "$.type: 'ticket.exploded' is not one of"),
        ({k: v for k, v in GOOD.items() if k != "type"}, "$: missing 'type'"),
        ({k: v for k, v in GOOD.items() if k != "ticket"}, "$: missing 'ticket'"),
        ({k: v for k, v in GOOD.items() if k != "queue"}, "$: missing 'queue'"),
        ({k: v for k, v in GOOD.items() if k != "text"}, "$: missing 'text'"),
        ({**GOOD, "text": "\u200b\u200b \x00"}, "an agent.message needs a text"),
        ({**GOOD, "text": "x" * 4001}, "$.text: longer than 4000"),
        ({**GOOD, "text": ["a"]}, "$.text: expected string, got array"),
        ({**GOOD, "admin": True}, "$: unexpected property 'admin'"),
        ({**GOOD, "agent": {"name": "Marie", "role": "root"}}, "$.agent: unexpected property 'role'"),
        ({**GOOD, "agent": {"name": ""}}, "$.agent.name: shorter than 1"),
        ({**GOOD, "created_at": "yesterday"}, "$.created_at: not an RFC 3339"),
        ({**GOOD, "ticket": "../../etc/passwd"}, "$.ticket: does not match"),
        ({**GOOD, "ticket": "HD 42"}, "$.ticket: does not match"),
        ({**GOOD, "ticket": "HD-42\n"}, "$.ticket: does not match"),
        ({**GOOD, "ticket": ""}, "$.ticket: does not match"),
        ({**GOOD, "ticket": "H" * 65}, "$.ticket: does not match"),
        ({**GOOD, "ticket": 42}, "$.ticket: expected string, got integer"),
        ({**GOOD, "queue": ""}, "$.queue: shorter than 1"),
        ({"type": "ticket.assigned", "ticket": "HD-1", "queue": "support"}, "$: missing 'agent'"),
        (
            {"type": "ticket.assigned", "ticket": "HD-1", "queue": "support", "agent": {}},
            "$.agent: missing 'name'",
        ),
        (
            {"type": "ticket.assigned", "ticket": "HD-1", "queue": "support", "agent": {"name": "\u200b"}},
            "a ticket.assigned needs the agent's name",
        ),
    ],
)
def test_a_wrong_shape_is_a_400_that_says_why(event: dict[str, Any], reason: str) -> None:
    error = refused(signed(event))
    assert error.status == 400
    assert error.reason.startswith(reason), error.reason


def test_an_unknown_queue_is_a_401() -> None:
    queues = Queues()
    error = refused(signed({**GOOD, "queue": "billing"}), queues)
    assert (error.status, error.reason) == (401, "unknown queue 'billing'")
    assert queues.asked == ["billing"]


def test_the_signature_must_be_the_claimed_queues() -> None:
    # Signed with the network queue's secret but claiming the support queue: refused.
    error = refused(signed(GOOD, secret=NETWORK))
    assert (error.status, error.reason) == (401, "no valid signature")
    assert parse_event(*signed({**GOOD, "queue": "network"}, secret=NETWORK), Queues()).queue == "network"


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        (lambda h: h.update({"webhook-signature": "v1,bm9wZQ=="}), "no valid signature"),
        (lambda h: h.pop("webhook-signature"), "missing header webhook-signature"),
        (lambda h: h.pop("webhook-id"), "missing header webhook-id"),
        (lambda h: h.update({"webhook-timestamp": "soon"}), "webhook-timestamp is not a number"),
        (lambda h: h.update({"webhook-id": "evt_2"}), "no valid signature"),
    ],
)
def test_a_bad_signature_is_a_401(change: Any, reason: str) -> None:
    received, body = signed(GOOD)
    change(received)
    error = refused((received, body))
    assert error.status == 401 and error.reason.startswith(reason), error.reason


def test_the_five_minute_window() -> None:
    old = signed(GOOD, now=time.time() - 301)
    error = refused(old)
    assert error.status == 401 and "too old" in error.reason
    future = signed(GOOD, now=time.time() + 301)
    assert "in the future" in refused(future).reason
    assert parse_event(*signed(GOOD, now=1_000_000), Queues(), now=1_000_100).id == "evt_1"


def test_a_body_changed_after_signing_is_a_401() -> None:
    received, body = signed(GOOD)
    tampered = body.replace(b"Bonjour", b"Bonsoir")
    error = refused((received, tampered))
    assert (error.status, error.reason) == (401, "no valid signature")


def test_an_overlong_webhook_id_is_refused() -> None:
    error = refused(signed(GOOD, msg_id="e" * 129))
    assert (error.status, error.reason) == (400, "webhook-id is longer than 128 characters")


def test_replays_are_the_callers_to_refuse() -> None:
    # The same signed request parses twice to the same id: the caller, which holds the store,
    # answers the second one 409.
    received = signed(GOOD, msg_id="evt_once")
    assert parse_event(*received, Queues()).id == parse_event(*received, Queues()).id == "evt_once"

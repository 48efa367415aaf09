"""The handoff's parts on their own: signatures (with the Standard Webhooks test vector),
one delivery attempt against a real local server answering each status, the documents
against their JSON Schema, and level-2 events refused at the boundary."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import aiohttp
import pytest
from aiohttp import web

from bot.messages import TranscriptEntry
from handoff.events import EventError, parse_event
from handoff.payload import event_payload, load_schema, ticket_payload, validate
from handoff.signing import SignatureError, headers, new_secret, sign, verify
from handoff.webhook import post
from tests.processes import free_port
from triage.tickets import Requester, Ticket

VECTOR_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"


def test_the_published_test_vector() -> None:
    body = b'{"test": 2432232314}'
    assert (
        sign(VECTOR_SECRET, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, body)
        == "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
    )


def test_verify_accepts_rotated_keys_and_refuses_the_rest() -> None:
    old, new = new_secret(), new_secret()
    body = b'{"a": 1}'
    signed = headers(old, "msg_1", body)
    assert verify([new, old], signed, body) == "msg_1"  # the receiver still accepts the old key
    both = {
        **signed,
        "webhook-signature": f"{sign(new, 'msg_1', int(signed['webhook-timestamp']), body)} {signed['webhook-signature']}",
    }
    assert verify([new], both, body) == "msg_1"
    for broken, reason in (
        ({**signed, "webhook-signature": "v1,AAAA"}, "no valid signature"),
        ({k: v for k, v in signed.items() if k != "webhook-id"}, "missing header webhook-id"),
        ({**signed, "webhook-timestamp": "yesterday"}, "not a number"),
        ({**signed, "webhook-id": "msg_1\r\nX-Evil: 1"}, "line break"),
    ):
        with pytest.raises(SignatureError, match=reason):
            verify([old], broken, body)
    with pytest.raises(SignatureError, match="no valid signature"):
        verify([old], signed, body + b" ")  # the body was changed on the way
    stale = headers(old, "msg_2", body, now=time.time() - 301)
    with pytest.raises(SignatureError, match="too old"):
        verify([old], stale, body)


@pytest.fixture
async def statuses() -> AsyncIterator[str]:
    async def answer(request: web.Request) -> web.Response:
        status = int(request.match_info["status"])
        if status == 999:
            await asyncio.sleep(2)
            status = 200
        extra = {"Retry-After": "7"} if status in (429, 503) else {}
        if status == 302:
            extra = {"Location": "/tickets/200"}
        return web.Response(status=status, headers=extra)

    app = web.Application()
    app.router.add_post("/tickets/{status}", answer)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        yield f"http://127.0.0.1:{port}/tickets"
    finally:
        await runner.cleanup()


async def test_one_attempt_per_status(statuses: str) -> None:
    secret = new_secret()
    async with aiohttp.ClientSession() as session:

        async def attempt(status: int, seconds: float = 5.0) -> tuple[str, float | None]:
            result = await post(session, f"{statuses}/{status}", secret, "msg_x", b"{}", seconds)
            return result.outcome, result.retry_after

        assert await attempt(200) == ("delivered", None)
        assert await attempt(204) == ("delivered", None)
        assert await attempt(503) == ("retry", 7.0)
        assert await attempt(429) == ("retry", 7.0)
        assert await attempt(500) == ("retry", None)
        assert await attempt(410) == ("gone", None)
        assert await attempt(400) == ("rejected", None)
        assert await attempt(302) == ("rejected", None)  # redirects are not followed
        assert (await attempt(999, 0.3))[0] == "retry"  # too slow
        closed = await post(session, f"http://127.0.0.1:{free_port()}/x", secret, "msg_x", b"{}")
        assert closed.outcome == "retry" and "Connect" in closed.error


def sample_ticket() -> Ticket:
    now = datetime(2026, 11, 22, 10, 0, tzinfo=UTC)
    return Ticket(
        number="HD-2026-000042",
        requester=Requester(
            id="ana@example.com", channel="webchat", conversation_key="webchat:s1", email="ana@example.com"
        ),
        status="open",
        opened_at=now,
        category="network",
        priority="P2",
        description="<b>VPN</b> coupe",
        priority_reasons=("matrix team × high = P2",),
        first_response_due=now,
        resolution_due=now,
        queue="support",
        recurring=True,
        linked=("HD-2026-000001",),
    )


def test_documents_follow_their_schema() -> None:
    schema = load_schema()
    entry = TranscriptEntry(1, "user", "<script>x</script>", datetime(2026, 11, 22, tzinfo=UTC), "m1")
    created = ticket_payload(
        event_id="msg_1",
        ticket=sample_ticket(),
        transcript=[entry],
        events_url="http://127.0.0.1:8080/handoff/events",
    )
    assert validate(created, schema) == []
    assert created["transcript"][0]["text"] == "<script>x</script>"  # plain text, the receiver escapes
    updated = event_payload(
        event_id="msg_2", kind="ticket.updated", ticket=sample_ticket(), change="reopened"
    )
    assert validate({**updated, "reply_route": created["reply_route"]}, schema) == []
    # Each kind of violation is caught.
    problems = validate(
        {**created, "extra": 1, "version": 2, "ticket": {**created["ticket"], "priority": "P9"}}, schema
    )
    assert any("unexpected property 'extra'" in p for p in problems)
    assert any("$.version" in p for p in problems)
    assert any("P9" in p for p in problems)
    assert validate({k: v for k, v in created.items() if k != "transcript"}, schema) == [
        "$: missing 'transcript'"
    ]
    assert any("date-time" in p for p in validate({**created, "created_at": "hier"}, schema))
    assert validate({**updated, "reply_route": created["reply_route"], "change": None}, schema)


def test_level2_events_are_checked_before_they_are_trusted() -> None:
    secret = new_secret()

    def signed(event: object, raw: bytes | None = None) -> tuple[dict[str, str], bytes]:
        body = raw if raw is not None else json.dumps(event).encode()
        return headers(secret, "evt_1", body), body

    def secrets_for(queue: str) -> list[str]:
        return [secret] if queue == "support" else []

    good = {
        "type": "agent.message",
        "ticket": "HD-2026-000042",
        "queue": "support",
        "agent": {"name": "Marie\u202e"},
        "text": "Bonjour\x00 !",
    }
    event = parse_event(*signed(good), secrets_for)
    assert (event.id, event.agent_name, event.text) == ("evt_1", "Marie", "Bonjour !")
    for bad, status in (
        ({**good, "type": "ticket.exploded"}, 400),
        ({k: v for k, v in good.items() if k != "text"}, 400),
        ({**good, "ticket": "../../etc"}, 400),
        ({**good, "queue": "unknown"}, 401),
        ({**good, "text": "x" * 4001}, 400),
        ({**good, "admin": True}, 400),
    ):
        with pytest.raises(EventError) as refused:
            parse_event(*signed(bad), secrets_for)
        assert refused.value.status == status, bad
    for raw in (b"{not json", b"[" * 50 + b"]" * 50, b"\xff\xfe"):
        with pytest.raises(EventError) as refused:
            parse_event(*signed(None, raw), secrets_for)
        assert refused.value.status == 400
    with pytest.raises(EventError) as refused:
        parse_event(*signed(None, b"{" + b" " * 70_000 + b"}"), secrets_for)
    assert refused.value.status == 413
    forged_headers, body = signed(good)
    with pytest.raises(EventError) as refused:
        parse_event({**forged_headers, "webhook-signature": "v1,bm9wZQ=="}, body, secrets_for)
    assert refused.value.status == 401

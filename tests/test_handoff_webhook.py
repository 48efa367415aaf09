"""The way out to level 2: the handoff document against its JSON Schema, one delivery
attempt against a real local server answering each status, and the retry schedule."""

from __future__ import annotations

import asyncio
import json
import random
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from bot.messages import TranscriptEntry
from handoff.payload import KEYWORDS, SCHEMA_DIR, event_payload, load_schema, ticket_payload, validate
from handoff.signing import SignatureError, new_secret, verify
from handoff.webhook import MAX_ATTEMPTS, MAX_RETRY_AFTER, SCHEDULE, next_delay, parse_retry_after, post
from tests.processes import free_port
from triage.tickets import Requester, Ticket

OPENED = datetime(2026, 11, 23, 9, 30, tzinfo=UTC)
EVENTS_URL = "http://127.0.0.1:8080/handoff/events"


def full_ticket() -> Ticket:
    return Ticket(
        number="HD-2026-000042",
        requester=Requester(
            id="ana@example.com",
            channel="webchat",
            conversation_key="webchat:s1",
            name="Ana <b>Lopes</b>",
            email="ana@example.com",
            phone="+33 6 12 34 56 78",
            language="fr",
        ),
        status="open",
        opened_at=OPENED,
        category="network",
        priority="P2",
        summary="VPN coupé depuis ce matin",
        description="le <b>VPN</b> coupe <script>alert(1)</script>",
        impact="team",
        urgency="high",
        priority_reasons=("matrix team × high = P2",),
        first_response_due=OPENED + timedelta(hours=1),
        resolution_due=OPENED + timedelta(hours=8),
        details={"since": "ce matin", "device": "PC-0042"},
        recurring=True,
        linked=("HD-2026-000001",),
        queue="support",
        language="fr",
    )


def created_document() -> dict[str, Any]:
    transcript = [
        TranscriptEntry(1, "user", "le VPN coupe <img src=x onerror=alert(1)>", OPENED, "m1"),
        TranscriptEntry(2, "bot", "Voici un article…", OPENED, "m2"),
        TranscriptEntry(3, "agent", "Bonjour", OPENED, "m3", agent_name="Marie"),
    ]
    return ticket_payload(
        event_id="msg_1",
        ticket=full_ticket(),
        transcript=transcript,
        events_url=EVENTS_URL,
        suggested=[{"id": "vpn-reset", "title": "Réinitialiser le VPN", "language": "fr"}],
    )


# The documents ----------------------------------------------------------------------------


def test_a_created_ticket_carries_everything_and_follows_its_schema() -> None:
    document = created_document()
    assert validate(document, "ticket.v1.json") == []
    assert validate(document, "ticket.v1") == validate(document, load_schema()) == []
    assert document["type"] == "ticket.created"
    assert document["schema"] == "https://guichet.dev/schemas/handoff/ticket.v1.json"
    assert (document["version"], document["id"], document["queue"]) == (1, "msg_1", "support")
    assert datetime.fromisoformat(document["created_at"]).utcoffset() == timedelta(0)
    ticket = document["ticket"]
    assert ticket["number"] == "HD-2026-000042"
    assert (ticket["priority"], ticket["impact"], ticket["urgency"]) == ("P2", "team", "high")
    assert ticket["priority_reasons"] == ["matrix team × high = P2"]
    assert ticket["sla"] == {
        "first_response_due": "2026-11-23T10:30:00+00:00",
        "resolution_due": "2026-11-23T17:30:00+00:00",
    }
    assert (ticket["recurring"], ticket["linked_tickets"]) == (True, ["HD-2026-000001"])
    assert document["requester"]["phone"] == "+33 6 12 34 56 78"
    assert document["details"] == {"since": "ce matin", "device": "PC-0042"}
    assert document["reply_route"] == {
        "events_url": EVENTS_URL,
        "ticket": "HD-2026-000042",
        "queue": "support",
        "channel": "webchat",
        "conversation": "s1",
    }
    assert [e["sender"] for e in document["transcript"]] == ["user", "bot", "agent"]
    assert document["transcript"][2]["agent_name"] == "Marie"
    assert document["suggested_articles"] == [
        {"id": "vpn-reset", "title": "Réinitialiser le VPN", "language": "fr"}
    ]
    # Plain text, as the person wrote it: the receiver escapes it; nothing here turns it into HTML.
    assert document["description"] == "le <b>VPN</b> coupe <script>alert(1)</script>"
    assert document["transcript"][0]["text"] == "le VPN coupe <img src=x onerror=alert(1)>"
    assert json.loads(json.dumps(document)) == document


def test_updates_and_requester_messages_follow_the_schema() -> None:
    updated = event_payload(
        event_id="msg_2",
        kind="ticket.updated",
        ticket=full_ticket(),
        events_url=EVENTS_URL,
        change="duplicate_attached",
        message="toujours coupé",
    )
    assert validate(updated, "ticket.v1") == []
    assert (updated["type"], updated["change"], updated["message"]) == (
        "ticket.updated",
        "duplicate_attached",
        "toujours coupé",
    )
    said = event_payload(
        event_id="msg_3",
        kind="requester.message",
        ticket=full_ticket(),
        events_url=EVENTS_URL,
        message="merci",
    )
    assert validate(said, "ticket.v1") == []
    assert validate({**updated, "change": None}, "ticket.v1") == ["$.change: None is not one of " + str(
        load_schema()["properties"]["change"]["enum"]
    )]  # fmt: skip
    assert validate({k: v for k, v in said.items() if k != "message"}, "ticket.v1") == [
        "$: missing 'message'"
    ]


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (lambda d: d.pop("transcript"), "$: missing 'transcript'"),  # allOf if ticket.created then …
        (lambda d: d["ticket"].pop("sla"), "$.ticket: missing 'sla'"),
        (lambda d: d.update(extra=1), "$: unexpected property 'extra'"),
        (lambda d: d["requester"].update(role="admin"), "$.requester: unexpected property 'role'"),
        (lambda d: d.update(version=2), "$.version: must be 1"),
        (lambda d: d.update(version=True), "$.version: must be 1"),  # true is not 1 in JSON
        (lambda d: d.update(type="ticket.deleted"), "$.type: 'ticket.deleted' is not one of"),
        (lambda d: d["ticket"].update(priority="P9"), "$.ticket.priority: 'P9' is not one of"),
        (
            lambda d: d["transcript"][0].update(sender="admin"),
            "$.transcript[0].sender: 'admin' is not one of",
        ),
        (lambda d: d["transcript"][1].pop("time"), "$.transcript[1]: missing 'time'"),
        (lambda d: d["ticket"].update(recurring="yes"), "$.ticket.recurring: expected boolean, got string"),
        (lambda d: d["ticket"].update(linked_tickets="HD-1"), "$.ticket.linked_tickets: expected array"),
        (lambda d: d["ticket"].update(linked_tickets=[1]), "$.ticket.linked_tickets[0]: expected string"),
        (lambda d: d["details"].update(since=3), "$.details.since: expected string, got integer"),
        (lambda d: d["ticket"].update(category=""), "$.ticket.category: shorter than 1"),
        (lambda d: d["ticket"].update(number="../../etc"), "$.ticket.number: does not match"),
        (lambda d: d["ticket"].update(number="HD-2026-000042\n"), "$.ticket.number: does not match"),
        (lambda d: d["ticket"].update(number="HD-٢٠٢٦"), "$.ticket.number: does not match"),
        (lambda d: d["reply_route"].update(events_url="javascript:alert(1)"), "$.reply_route.events_url"),
        (lambda d: d.update(created_at="hier"), "$.created_at: not an RFC 3339"),
        (lambda d: d.update(created_at="2026-11-23"), "$.created_at: not an RFC 3339"),
        (lambda d: d.update(created_at="2026-11-23T10:00:00"), "$.created_at: not an RFC 3339"),
        (lambda d: d.update(created_at="2026-02-30T10:00:00Z"), "$.created_at: not a real date-time"),
        (lambda d: d["ticket"]["sla"].update(resolution_due="demain"), "$.ticket.sla.resolution_due: not an"),
        (
            lambda d: d["suggested_articles"][0].update(url="http://x"),
            "$.suggested_articles[0]: unexpected property 'url'",
        ),
    ],
)
def test_the_validator_catches_each_kind_of_violation(change: Any, expected: str) -> None:
    document = created_document()
    change(document)
    problems = validate(document, "ticket.v1")
    assert len(problems) == 1 and problems[0].startswith(expected), problems


def test_a_date_time_with_z_or_an_offset_is_valid() -> None:
    for moment in ("2026-11-23T10:00:00Z", "2026-11-23T10:00:00.123456+01:00", "2026-11-23t10:00:00z"):
        assert validate({**created_document(), "created_at": moment}, "ticket.v1") == []


def test_the_validator_refuses_a_schema_it_cannot_fully_check() -> None:
    with pytest.raises(ValueError, match="minItems"):
        validate([], {"type": "array", "minItems": 1})
    with pytest.raises(ValueError, match="date-time"):
        validate("x", {"type": "string", "format": "email"})
    with pytest.raises(ValueError, match="not a schema name"):
        validate({}, "../pyproject")


def _keywords(schema: Any, where: str) -> Iterator[tuple[str, str]]:
    """Every keyword a schema uses, with where (property names are not keywords)."""
    if not isinstance(schema, dict):
        return
    for key, value in schema.items():
        yield key, where
        if key == "properties":
            for name, sub in value.items():
                yield from _keywords(sub, f"{where}.{name}")
        elif key in ("items", "additionalProperties", "if", "then"):
            yield from _keywords(value, f"{where}/{key}")
        elif key == "allOf":
            for index, sub in enumerate(value):
                yield from _keywords(sub, f"{where}/allOf[{index}]")


@pytest.mark.parametrize("path", sorted(SCHEMA_DIR.glob("*.json")), ids=lambda p: Path(p).name)
def test_the_schemas_use_only_what_the_validator_checks(path: Path) -> None:
    schema = json.loads(path.read_text(encoding="utf-8"))
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert schema["$id"].endswith("/" + path.name)
    annotations = {"$schema", "$id", "title", "description", "examples"}
    unknown = [(key, where) for key, where in _keywords(schema, "$") if key not in KEYWORDS | annotations]
    assert unknown == []


# One delivery attempt -----------------------------------------------------------------------


@dataclass
class Level2:
    """A real local receiver: /status/N answers N; it checks each request's signature."""

    secret: str
    url: str = ""
    seen: list[tuple[str, str, bytes]] = field(default_factory=list)  # (path, verified id or error, body)


@pytest.fixture
async def level2() -> AsyncIterator[Level2]:
    receiver = Level2(new_secret())

    async def answer(request: web.Request) -> web.StreamResponse:
        body = await request.read()
        try:
            checked = verify([receiver.secret], request.headers, body)
        except SignatureError as exc:
            checked = f"refused: {exc.reason}"
        receiver.seen.append((request.path, checked, body))
        status = int(request.match_info["status"])
        extra: dict[str, str] = {}
        if "retry_after" in request.query:
            extra["Retry-After"] = request.query["retry_after"]
        if status == 302:
            extra["Location"] = "/status/200"
        if request.query.get("slow"):
            await asyncio.sleep(float(request.query["slow"]))
        if request.query.get("huge"):
            return web.Response(status=status, body=b"x" * 5_000_000)
        return web.Response(status=status, headers=extra, text=request.query.get("say", ""))

    app = web.Application()
    app.router.add_post("/status/{status}", answer)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    receiver.url = f"http://127.0.0.1:{port}"
    try:
        yield receiver
    finally:
        await runner.cleanup()


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as http:
        yield http


async def test_2xx_is_delivered_signed_with_the_exact_bytes(
    level2: Level2, session: aiohttp.ClientSession
) -> None:
    body = json.dumps(created_document(), ensure_ascii=False).encode()
    for status in (200, 201, 202, 204):
        attempt = await post(session, f"{level2.url}/status/{status}", level2.secret, "msg_1", body)
        assert (attempt.outcome, attempt.status, attempt.retry_after, attempt.error) == (
            "delivered",
            status,
            None,
            "",
        )
    assert level2.seen == [(f"/status/{s}", "msg_1", body) for s in (200, 201, 202, 204)]


@pytest.mark.parametrize(
    ("query", "outcome", "retry_after", "error"),
    [
        ("status/410", "gone", None, "HTTP 410: the receiver removed this endpoint"),
        ("status/429?retry_after=7", "retry", 7.0, "HTTP 429"),
        ("status/503?retry_after=120&say=maintenance", "retry", 120.0, "HTTP 503: maintenance"),
        ("status/503?retry_after=99999999", "retry", MAX_RETRY_AFTER, "HTTP 503"),
        ("status/503?retry_after=soon", "retry", None, "HTTP 503"),
        ("status/503", "retry", None, "HTTP 503"),
        ("status/500?retry_after=60", "retry", None, "HTTP 500"),  # honoured on 429 and 503 only
        ("status/502", "retry", None, "HTTP 502"),
        ("status/408", "retry", None, "HTTP 408"),
        (
            "status/400?say=missing%20field%20queue",
            "rejected",
            None,
            "HTTP 400: missing field queue (the receiver refuses this document)",
        ),
        ("status/401", "rejected", None, "HTTP 401 (the receiver refuses this document)"),
        ("status/404", "rejected", None, "HTTP 404"),
        ("status/422", "rejected", None, "HTTP 422"),
    ],
)
async def test_each_status_has_its_outcome(
    level2: Level2,
    session: aiohttp.ClientSession,
    query: str,
    outcome: str,
    retry_after: float | None,
    error: str,
) -> None:
    attempt = await post(session, f"{level2.url}/{query}", level2.secret, "msg_s", b"{}")
    assert (attempt.outcome, attempt.status, attempt.retry_after) == (
        outcome,
        int(query.split("/")[1].split("?")[0]),
        retry_after,
    )
    assert attempt.error.startswith(error), attempt.error
    assert [checked for _, checked, _ in level2.seen] == ["msg_s"]


async def test_retry_after_as_an_http_date(level2: Level2, session: aiohttp.ClientSession) -> None:
    when = format_datetime(datetime.now(UTC) + timedelta(seconds=90), usegmt=True)
    attempt = await post(session, f"{level2.url}/status/503?retry_after={when}", level2.secret, "m", b"{}")
    assert attempt.outcome == "retry"
    assert attempt.retry_after is not None and 85 <= attempt.retry_after <= 90


async def test_redirects_are_not_followed(level2: Level2, session: aiohttp.ClientSession) -> None:
    attempt = await post(session, f"{level2.url}/status/302", level2.secret, "msg_r", b"{}")
    assert (attempt.outcome, attempt.status) == ("rejected", 302)
    assert "redirects are not followed (to '/status/200')" in attempt.error
    assert [path for path, _, _ in level2.seen] == ["/status/302"]  # the target was never called


async def test_a_slow_receiver_is_a_retry_after_the_timeout(
    level2: Level2, session: aiohttp.ClientSession
) -> None:
    started = time.monotonic()
    attempt = await post(
        session, f"{level2.url}/status/200?slow=3", level2.secret, "msg_t", b"{}", timeout=0.3
    )
    assert time.monotonic() - started < 2
    assert attempt == type(attempt)("retry", None, None, "no answer within 0.3 s")


async def test_nobody_listening_is_a_retry(session: aiohttp.ClientSession) -> None:
    attempt = await post(session, f"http://127.0.0.1:{free_port()}/tickets", new_secret(), "msg_c", b"{}")
    assert (attempt.outcome, attempt.status) == ("retry", None)
    assert "ClientConnectorError" in attempt.error and "127.0.0.1" in attempt.error


async def test_a_huge_answer_is_not_read_whole(level2: Level2, session: aiohttp.ClientSession) -> None:
    attempt = await post(session, f"{level2.url}/status/400?huge=1", level2.secret, "msg_h", b"{}")
    assert attempt.outcome == "rejected"
    assert len(attempt.error) < 300 and attempt.error.startswith("HTTP 400: xxx")


# The schedule -----------------------------------------------------------------------------


def test_the_schedule_is_standard_webhooks_with_jitter() -> None:
    assert SCHEDULE == (5, 300, 1800, 7200, 18000, 36000, 36000)
    assert MAX_ATTEMPTS == 8 == len(SCHEDULE) + 1  # the first attempt, then one retry per step
    rng = random.Random(7)
    for attempt, base in enumerate((5, 300, 1800, 7200, 18000, 36000, 36000, 36000, 36000), start=1):
        delays = [next_delay(attempt, None, rng=rng) for _ in range(200)]
        assert all(0.8 * base <= d <= 1.2 * base for d in delays)
        assert max(delays) - min(delays) > 0.2 * base  # really spread, not one value
    assert 4.0 <= next_delay(1) <= 6.0  # the module's own randomness


def test_retry_after_is_a_floor() -> None:
    rng = random.Random(1)
    assert next_delay(1, 60.0, rng=rng) == 60.0
    assert 0.8 * 7200 <= next_delay(4, 60.0, rng=rng) <= 1.2 * 7200  # the schedule is longer
    assert next_delay(1, 10 * MAX_RETRY_AFTER, rng=rng) == MAX_RETRY_AFTER
    with pytest.raises(ValueError):
        next_delay(0, None)


def test_parse_retry_after() -> None:
    now = datetime(2026, 11, 23, 12, 0, tzinfo=UTC).timestamp()
    assert parse_retry_after("30") == 30.0
    assert parse_retry_after(" 0 ") == 0.0
    assert parse_retry_after("Mon, 23 Nov 2026 12:02:00 GMT", now=now) == 120.0
    assert parse_retry_after("Mon, 23 Nov 2026 12:02:00 -0000", now=now) == 120.0
    assert parse_retry_after("Mon, 23 Nov 2026 11:00:00 GMT", now=now) == 0.0  # already past
    for unreadable in (None, "", "-5", "1.5", "soon", "Mon, 31 Nov 2026 12:00:00 GMT", "٣٠"):
        assert parse_retry_after(unreadable, now=now) is None, unreadable

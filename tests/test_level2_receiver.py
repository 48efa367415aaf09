"""examples/level2_receiver.py as a help desk would run it: a real process that verifies
signatures, keeps each ticket once (also across a restart), prints tickets safely, and sends
an agent's commands typed on its terminal back to Guichet, signed."""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

from bot.messages import TranscriptEntry
from handoff.payload import ticket_payload
from handoff.signing import SignatureError, headers, new_secret, verify
from tests.processes import ROOT, free_port
from triage.tickets import Requester, Ticket

NUMBER = "HD-2026-000042"


def document(event_id: str, number: str = NUMBER, queue: str = "support") -> dict[str, Any]:
    now = datetime(2026, 11, 23, 9, 30, tzinfo=UTC)
    ticket = Ticket(
        number=number,
        requester=Requester(
            id="ana@example.com", channel="webchat", conversation_key="webchat:s1", name="Ana"
        ),
        status="open",
        opened_at=now,
        category="network",
        priority="P2",
        # A person's words may hold terminal escapes and bidi overrides: the desk must not obey them.
        summary="VPN \x1b[2J\x1b[31mcoupé\u202e <b>urgent</b>",
        description="le VPN coupe",
        first_response_due=now,
        resolution_due=now,
        queue=queue,
    )
    transcript = [TranscriptEntry(1, "user", "le VPN coupe", now, "m1")]
    return ticket_payload(
        event_id=event_id, ticket=ticket, transcript=transcript, events_url="http://unused/handoff/events"
    )


@dataclass
class Guichet:
    """Stands in for Guichet's POST /handoff/events: records each event and its signature check."""

    secret: str
    queue_secrets: dict[str, str] = field(default_factory=dict)  # a queue with a secret of its own
    port: int = field(default_factory=free_port)
    events: list[tuple[str, dict[str, Any]]] = field(default_factory=list)

    async def receive(self, request: web.Request) -> web.Response:
        body = await request.read()
        event = json.loads(body)
        try:
            checked = verify([self.queue_secrets.get(event["queue"], self.secret)], request.headers, body)
        except SignatureError as exc:
            checked = f"refused: {exc.reason}"
        self.events.append((checked, event))
        return web.json_response({"accepted": True}, status=202)

    @contextlib.asynccontextmanager
    async def serving(self) -> AsyncIterator[str]:
        """Listening on its port; yields the URL a desk's --guichet takes."""
        app = web.Application()
        app.router.add_post("/handoff/events", self.receive)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", self.port).start()
        try:
            yield f"http://127.0.0.1:{self.port}/"
        finally:
            await runner.cleanup()

    async def wait_for(self, count: int) -> list[tuple[str, dict[str, Any]]]:
        for _ in range(200):
            if len(self.events) >= count:
                break
            await asyncio.sleep(0.05)
        return self.events


@dataclass
class DeskProcess:
    process: asyncio.subprocess.Process
    url: str
    output: list[str] = field(default_factory=list)

    async def type(self, line: str) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(line.encode() + b"\n")
        await self.process.stdin.drain()

    async def post(self, body: bytes, signed: dict[str, str]) -> tuple[int, dict[str, str], str]:
        async with aiohttp.ClientSession() as http, http.post(self.url, data=body, headers=signed) as answer:
            return answer.status, dict(answer.headers), await answer.text()

    def printed(self) -> str:
        return "".join(self.output)


@contextlib.asynccontextmanager
async def desk(*options: str, stdin: int | None = asyncio.subprocess.PIPE) -> AsyncIterator[DeskProcess]:
    port = free_port()
    process = await asyncio.create_subprocess_exec(
        sys.executable, "examples/level2_receiver.py", "--port", str(port), *options,
        cwd=ROOT, stdin=stdin, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    running = DeskProcess(process, f"http://127.0.0.1:{port}/tickets")

    async def read() -> None:
        assert process.stdout is not None
        async for line in process.stdout:
            running.output.append(line.decode("utf-8", "replace"))

    reader = asyncio.create_task(read())
    try:
        for _ in range(200):
            if "listening on" in running.printed() or process.returncode is not None:
                break
            await asyncio.sleep(0.05)
        assert "listening on" in running.printed(), running.printed()
        yield running
    finally:
        if process.returncode is None:
            process.terminate()
        await asyncio.wait_for(process.wait(), 10)
        await reader


async def test_the_desk_keeps_each_signed_ticket_once_and_answers_from_the_terminal(tmp_path: Path) -> None:
    secret = new_secret()
    guichet = Guichet(secret)
    log = tmp_path / "tickets.jsonl"
    body = json.dumps(document("msg_1"), ensure_ascii=False).encode()
    async with guichet.serving() as url:
        async with desk("--secret", secret, "--guichet", url, "--log-file", str(log)) as d:
            status, _, said = await d.post(body, headers(secret, "msg_1", body))
            assert (status, json.loads(said)) == (200, {"ok": True})
            # Guichet retries after a lost answer: the same id is acknowledged, not kept twice.
            status, _, said = await d.post(body, headers(secret, "msg_1", body))
            assert (status, json.loads(said)) == (200, {"duplicate": True})
            # Signed with another secret: refused, and not kept.
            other = json.dumps(document("msg_2")).encode()
            status, _, said = await d.post(other, headers(new_secret(), "msg_2", other))
            assert (status, json.loads(said)) == (401, {"error": "no valid signature"})
            status, _, said = await d.post(other, {"webhook-id": "msg_2", "content-type": "application/json"})
            assert (status, json.loads(said)) == (401, {"error": "missing header webhook-timestamp"})

            lines = log.read_text(encoding="utf-8").splitlines()
            assert [json.loads(line) for line in lines] == [json.loads(body)]

            await d.type(f"reply {NUMBER} Bonjour, je regarde ça")
            await d.type(f"assign {NUMBER} Marie Curie")
            await d.type(f"resolve {NUMBER}")
            events = await guichet.wait_for(3)
            await d.type("list")
            for _ in range(100):
                if f"{NUMBER}  P2  open" in d.printed():  # `list` ran: every command before it too
                    break
                await asyncio.sleep(0.05)
        printed = d.printed()

    assert all(checked.startswith("evt_") for checked, _ in events), events  # each one verified
    assert len({checked for checked, _ in events}) == 3  # each event has its own id
    sent = [{k: v for k, v in e.items() if k != "created_at"} for _, e in events]
    assert sent == [
        {
            "type": "agent.message",
            "ticket": NUMBER,
            "queue": "support",
            "agent": {"name": "Agent"},
            "text": "Bonjour, je regarde ça",
        },
        {"type": "ticket.assigned", "ticket": NUMBER, "queue": "support", "agent": {"name": "Marie Curie"}},
        {"type": "ticket.resolved", "ticket": NUMBER, "queue": "support", "agent": {"name": "Marie Curie"}},
    ]
    assert all(datetime.fromisoformat(e["created_at"]).tzinfo is not None for _, e in events)
    # The ticket was printed, as text: no terminal escape or bidi override got through.
    assert f"== {NUMBER}  P2  network  queue support" in printed
    assert "<b>urgent</b>" in printed
    assert "\x1b" not in printed and "\u202e" not in printed
    assert "! refused a request: no valid signature" in printed
    assert f"-> agent.message {NUMBER}: HTTP 202" in printed


async def test_a_restarted_desk_remembers_what_it_received(tmp_path: Path) -> None:
    secret = new_secret()
    log = tmp_path / "tickets.jsonl"
    body = json.dumps(document("msg_9")).encode()
    async with desk("--secret", secret, "--log-file", str(log)) as first:
        assert (await first.post(body, headers(secret, "msg_9", body)))[0] == 200
    async with desk("--secret", secret, "--log-file", str(log)) as second:
        status, _, said = await second.post(body, headers(secret, "msg_9", body))
        assert (status, json.loads(said)) == (200, {"duplicate": True})
        await second.type("list")
        for _ in range(100):
            if NUMBER in second.printed():
                break
            await asyncio.sleep(0.05)
        assert NUMBER in second.printed()  # the ticket itself was reloaded, so replies work
    assert len(log.read_text(encoding="utf-8").splitlines()) == 1


async def test_fail_rate_answers_503_and_no_terminal_does_not_stop_the_desk(tmp_path: Path) -> None:
    secret = new_secret()
    log = tmp_path / "tickets.jsonl"
    body = json.dumps(document("msg_5")).encode()
    async with desk(
        "--secret", secret, "--fail-rate", "1", "--log-file", str(log), stdin=asyncio.subprocess.DEVNULL
    ) as d:
        await asyncio.sleep(0.3)  # stdin is already at its end: the desk must still be serving
        assert d.process.returncode is None
        status, answer_headers, said = await d.post(body, headers(secret, "msg_5", body))
        assert (status, answer_headers.get("Retry-After"), said) == (503, "1", "busy (--fail-rate)")
        assert "still receiving tickets" in d.printed()
    assert not log.exists()  # a refused delivery is not kept: Guichet will send it again
    assert d.process.returncode == 0 and "desk stopped" in d.printed()


async def test_one_desk_serves_two_queues_and_signs_each_queues_events_with_its_secret() -> None:
    """The sample sends support and security tickets to one desk, each queue with its own secret."""
    secrets = {"support": new_secret(), "security": new_secret()}
    guichet = Guichet(secret="", queue_secrets=secrets)
    tickets = {"support": NUMBER, "security": "HD-2026-000043"}
    both = f"{secrets['support']} {secrets['security']}"
    async with guichet.serving() as url, desk("--secret", both, "--guichet", url) as d:
        for queue, number in tickets.items():
            body = json.dumps(document(f"msg_{queue}", number, queue)).encode()
            status, _, _ = await d.post(body, headers(secrets[queue], f"msg_{queue}", body))
            assert status == 200
        await d.type(f"reply {tickets['security']} On bloque le compte")
        await d.type(f"reply {NUMBER} Je regarde")
        events = await guichet.wait_for(2)
    checked = [(e["ticket"], e["queue"], verified.startswith("evt_")) for verified, e in events]
    assert checked == [("HD-2026-000043", "security", True), (NUMBER, "support", True)]

"""examples/level2_receiver.py as a help desk would run it: a real process that verifies
signatures, keeps each ticket once, and sends an agent's reply typed on its terminal back
to Guichet, signed."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

from handoff.payload import ticket_payload
from handoff.signing import headers, new_secret, verify
from tests.processes import ROOT, free_port
from tests.test_handoff_units import sample_ticket


async def test_the_example_desk_receives_tickets_and_answers_from_the_terminal(tmp_path: Path) -> None:
    secret = new_secret()
    events: list[tuple[str, dict[str, Any]]] = []

    async def guichet_events(request: web.Request) -> web.Response:  # stands in for Guichet
        body = await request.read()
        events.append((verify([secret], request.headers, body), json.loads(body)))
        return web.json_response({"accepted": True}, status=202)

    app = web.Application()
    app.router.add_post("/handoff/events", guichet_events)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    guichet_port, desk_port = free_port(), free_port()
    await web.TCPSite(runner, "127.0.0.1", guichet_port).start()
    log = tmp_path / "tickets.jsonl"
    desk = subprocess.Popen(  # noqa: ASYNC220 - returns at once; the desk runs beside the test
        [sys.executable, "examples/level2_receiver.py", "--secret", secret, "--port", str(desk_port),
         "--guichet", f"http://127.0.0.1:{guichet_port}", "--log-file", str(log)],
        cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    try:
        document = ticket_payload(
            event_id="msg_1", ticket=sample_ticket(), transcript=[], events_url="http://unused/handoff/events"
        )
        body = json.dumps(document).encode()
        url = f"http://127.0.0.1:{desk_port}/tickets"
        async with aiohttp.ClientSession() as http:
            for _ in range(100):
                try:
                    async with http.post(url, data=body, headers=headers(secret, "msg_1", body)) as answer:
                        assert answer.status == 200
                        break
                except aiohttp.ClientConnectionError:
                    await asyncio.sleep(0.1)
            async with http.post(url, data=body, headers=headers(secret, "msg_1", body)) as again:
                assert (await again.json()) == {"duplicate": True}
            async with http.post(url, data=body, headers=headers(new_secret(), "msg_2", body)) as forged:
                assert forged.status == 401
        assert [json.loads(line)["id"] for line in log.read_text().splitlines()] == ["msg_1"]

        assert desk.stdin is not None
        desk.stdin.write("reply HD-2026-000042 Bonjour, je regarde ça\nresolve HD-2026-000042\n")
        desk.stdin.flush()
        for _ in range(100):
            if len(events) == 2:
                break
            await asyncio.sleep(0.05)
        assert [e["type"] for _, e in events] == ["agent.message", "ticket.resolved"]
        assert events[0][1] == {
            "type": "agent.message",
            "ticket": "HD-2026-000042",
            "queue": "support",
            "agent": {"name": "Agent"},
            "text": "Bonjour, je regarde ça",
        }
        assert events[0][0] != events[1][0]  # each event has its own id
    finally:
        desk.terminate()
        output = desk.communicate(timeout=10)[0]
        await runner.cleanup()
    assert "HD-2026-000042" in output and "refused a request" in output

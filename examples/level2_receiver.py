"""A small level-2 desk: receives Guichet's signed tickets and lets an agent answer from a terminal.

    python examples/level2_receiver.py --secret whsec_… [--port 9000] [--guichet http://127.0.0.1:8080]

`guichet handoff queues` prints the secret of each queue. Type `help` for the commands.
Standard library and aiohttp only; run it from the repository (it uses handoff/signing.py).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import sys
import uuid
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from handoff.signing import SignatureError, headers, verify

HELP = """commands:
  list                      the tickets received
  show HD-…                 a ticket's summary and transcript
  reply HD-… text…          send a message to the person, on their channel
  assign HD-… Name          take the ticket (the person is told)
  wait HD-… [text…]         waiting for the person's answer
  resolve HD-… [text…]      resolved: the person is asked whether it is solved
  handback HD-…             give the conversation back to the bot
  close HD-…                close the ticket
  name Name                 the agent name sent with messages (default: Agent)
  quit"""


def printable(text: Any) -> str:
    """Plain text for a terminal: no control characters from the person's words."""
    return "".join(c if c.isprintable() or c == "\n" else "�" for c in str(text))


def _append(path: str, line: str) -> None:
    with open(path, "a", encoding="utf-8") as log:
        log.write(line)


class Desk:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.secrets = args.secret.split()
        self.seen: set[str] = set()
        self.tickets: dict[str, dict[str, Any]] = {}
        self.agent = "Agent"
        self.random = random.Random()

    async def receive(self, request: web.Request) -> web.Response:
        body = await request.read()
        if self.args.fail_rate and self.random.random() < self.args.fail_rate:
            return web.Response(status=503, headers={"Retry-After": "1"}, text="busy (--fail-rate)")
        try:
            msg_id = verify(self.secrets, request.headers, body)
        except SignatureError as exc:
            print(f"\n! refused a request: {exc.reason}", flush=True)
            return web.json_response({"error": exc.reason}, status=401)
        if msg_id in self.seen:  # Guichet retried after a lost answer: already handled
            return web.json_response({"duplicate": True})
        self.seen.add(msg_id)
        document = json.loads(body)
        number = document["ticket"]["number"]
        self.tickets.setdefault(number, {}).update(document)
        if self.args.log_file:
            line = json.dumps(document, ensure_ascii=False) + "\n"
            await asyncio.to_thread(_append, self.args.log_file, line)
        self.announce(document)
        return web.json_response({"ok": True})

    def announce(self, d: dict[str, Any]) -> None:
        t, who = d["ticket"], d["requester"]
        if d["type"] == "ticket.created":
            recurring = f"  RECURRING, linked: {', '.join(t['linked_tickets'])}" if t["recurring"] else ""
            print(
                f"\n== {t['number']}  {t['priority']}  {t['category']}  queue {d['queue']}{recurring}\n"
                f"   from {printable(who.get('name') or who['id'])} <{printable(who.get('email') or who.get('phone') or '-')}>"
                f" on {who['channel']} ({d['language']})\n"
                f"   {printable(d['summary'])}\n"
                f"   first response due {t['sla']['first_response_due']}, resolution due {t['sla']['resolution_due']}",
                flush=True,
            )
        elif d["type"] == "requester.message":
            print(
                f"\n<< {t['number']} {printable(who.get('name') or who['id'])}: {printable(d['message'])}",
                flush=True,
            )
        else:
            print(f"\n.. {t['number']} updated: {d.get('change')} (status {t['status']})", flush=True)

    async def send(self, kind: str, number: str, text: str | None = None) -> None:
        ticket = self.tickets.get(number)
        if ticket is None:
            print(f"no ticket {number} received yet", flush=True)
            return
        event: dict[str, Any] = {
            "type": kind,
            "ticket": number,
            "queue": ticket["queue"],
            "agent": {"name": self.agent},
        }
        if text:
            event["text"] = text
        body = json.dumps(event, ensure_ascii=False).encode()
        url = (
            ticket["reply_route"]["events_url"]
            if not self.args.guichet
            else f"{self.args.guichet}/handoff/events"
        )
        signed = headers(self.secrets[0], f"evt_{uuid.uuid4().hex}", body)
        async with aiohttp.ClientSession() as http, http.post(url, data=body, headers=signed) as answer:
            print(f"-> {kind} {number}: HTTP {answer.status} {await answer.text()}", flush=True)

    def show(self, number: str) -> None:
        d = self.tickets.get(number)
        if d is None:
            print(f"no ticket {number}")
            return
        print(printable(d.get("summary", "")))
        for line in d.get("transcript", []):
            print(f"  [{line['sender']}] {printable(line['text'])}")
        print("  suggested by level 1:", ", ".join(a["id"] for a in d.get("suggested_articles", [])) or "-")

    async def commands(self) -> None:
        loop = asyncio.get_running_loop()
        print(HELP, flush=True)
        while True:
            line = await loop.run_in_executor(None, sys.stdin.readline)
            if not line:
                return
            words = line.split()
            if not words:
                continue
            command, rest = words[0], words[1:]
            try:
                if command == "quit":
                    return
                if command == "list":
                    for number, d in self.tickets.items():
                        print(f"{number}  {d['ticket']['priority']}  {printable(d.get('summary', ''))[:70]}")
                elif command == "show" and rest:
                    self.show(rest[0])
                elif command == "name" and rest:
                    self.agent = " ".join(rest)
                elif command in ("reply", "wait", "resolve") and rest:
                    kind = {"reply": "agent.message", "wait": "ticket.waiting", "resolve": "ticket.resolved"}[
                        command
                    ]
                    await self.send(kind, rest[0], " ".join(rest[1:]) or None)
                elif command == "assign" and rest:
                    if len(rest) > 1:
                        self.agent = " ".join(rest[1:])
                    await self.send("ticket.assigned", rest[0])
                elif command in ("handback", "close") and rest:
                    await self.send(
                        {"handback": "ticket.handed_back", "close": "ticket.closed"}[command], rest[0]
                    )
                else:
                    print(HELP)
            except aiohttp.ClientError as exc:
                print(f"cannot reach Guichet: {exc}", flush=True)


async def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--secret", required=True, help="the queue's signing secret (several, space-separated)"
    )
    parser.add_argument("--port", type=int, default=9000)
    parser.add_argument(
        "--guichet", default=None, help="Guichet's base URL (default: the ticket's reply route)"
    )
    parser.add_argument("--fail-rate", type=float, default=0.0, help="answer 503 to this share of requests")
    parser.add_argument("--log-file", default=None, help="append each ticket received, one JSON per line")
    args = parser.parse_args()
    desk = Desk(args)
    app = web.Application()
    app.router.add_post("/tickets", desk.receive)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", args.port).start()
    print(f"level-2 desk listening on http://127.0.0.1:{args.port}/tickets", flush=True)
    try:
        await desk.commands()
    finally:
        await runner.cleanup()


if __name__ == "__main__":
    asyncio.run(main())

"""A small level-2 desk: receives Guichet's signed tickets and lets an agent answer from a terminal.

    python examples/level2_receiver.py --secret whsec_… [--port 9000] [--guichet http://127.0.0.1:8080]
        [--log-file tickets.jsonl] [--fail-rate 0.3]

`guichet handoff queues` prints the secret of each queue: give this desk the secrets of every
queue it serves, space-separated. Type `help` for the commands.
Standard library and aiohttp only; run it from the repository (it uses handoff/signing.py).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import signal
import sys
import threading
import uuid
from datetime import UTC, datetime
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
  assign HD-… [Name]        take the ticket (the person is told); Name becomes the agent name
  wait HD-… [text…]         waiting for the person's answer
  resolve HD-… [text…]      resolved: the person is asked whether it is solved
  handback HD-…             give the conversation back to the bot
  close HD-…                close the ticket
  name Name                 the agent name sent with events (default: Agent)
  help, quit"""

EVENTS = {
    "reply": "agent.message",
    "assign": "ticket.assigned",
    "wait": "ticket.waiting",
    "resolve": "ticket.resolved",
    "handback": "ticket.handed_back",
    "close": "ticket.closed",
}


def printable(text: Any) -> str:
    """Plain text for a terminal: the person's words cannot move the cursor, change colours
    (ANSI escapes) or reverse a line (bidi controls)."""
    return "".join(c if c.isprintable() or c == "\n" else "\N{REPLACEMENT CHARACTER}" for c in str(text))


def say(text: str) -> None:
    print(text, flush=True)


class Desk:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.secrets = args.secret.split()
        # One desk may serve several queues, each with its own secret: a queue's events are
        # signed with the secret its tickets came with (the first secret until one came).
        self.queue_secrets: dict[str, str] = {}
        self.seen: set[str] = set()  # webhook-ids already handled: Guichet retries after a lost answer
        self.tickets: dict[str, dict[str, Any]] = {}
        self.agent = "Agent"
        self.random = random.Random()
        self.http: aiohttp.ClientSession | None = None
        if args.log_file and Path(args.log_file).exists():  # a restart remembers what it received
            for line in Path(args.log_file).read_text(encoding="utf-8").splitlines():
                if line.strip():
                    self.remember(json.loads(line))

    def remember(self, document: dict[str, Any]) -> None:
        # Guichet sends the document's id as its webhook-id.
        self.seen.add(document["id"])
        self.tickets.setdefault(document["ticket"]["number"], {}).update(document)

    async def receive(self, request: web.Request) -> web.Response:
        body = await request.read()
        if self.args.fail_rate and self.random.random() < self.args.fail_rate:
            return web.Response(status=503, headers={"Retry-After": "1"}, text="busy (--fail-rate)")
        try:
            msg_id = verify(self.secrets, request.headers, body)
        except SignatureError as exc:
            say(f"\n! refused a request: {exc.reason}")
            return web.json_response({"error": exc.reason}, status=401)
        secret = next(s for s in self.secrets if self.signed_with(s, request, body))
        if msg_id in self.seen:
            return web.json_response({"duplicate": True})
        try:
            document = json.loads(body)
            number = document["ticket"]["number"]
            document["id"] = document.get("id", msg_id)
        except (ValueError, TypeError, KeyError):
            return web.json_response({"error": "not a Guichet handoff document"}, status=400)
        # Written before the answer, with no await in between: a ticket we said we have is kept,
        # and a retry arriving meanwhile finds its id already seen.
        if self.args.log_file:
            with open(self.args.log_file, "a", encoding="utf-8") as log:  # noqa: ASYNC230 - one short line
                log.write(json.dumps(document, ensure_ascii=False) + "\n")
        self.seen.add(msg_id)
        self.remember(document)
        self.queue_secrets[str(document.get("queue"))] = secret
        self.announce(document, number)
        return web.json_response({"ok": True})

    @staticmethod
    def signed_with(secret: str, request: web.Request, body: bytes) -> bool:
        try:
            verify([secret], request.headers, body)
        except SignatureError:
            return False
        return True

    def announce(self, d: dict[str, Any], number: str) -> None:
        t, who = d.get("ticket", {}), d.get("requester", {})
        person = printable(who.get("name") or who.get("id", "?"))
        if d.get("type") == "ticket.created":
            linked = ", ".join(t.get("linked_tickets", []))
            sla = t.get("sla", {})
            say(
                f"\n== {printable(number)}  {t.get('priority')}  {printable(t.get('category'))}"
                f"  queue {printable(d.get('queue'))}{'  RECURRING, linked: ' + printable(linked) if t.get('recurring') else ''}\n"
                f"   from {person} <{printable(who.get('email') or who.get('phone') or '-')}>"
                f"{'' if who.get('email_verified') or not who.get('email') else ' (UNVERIFIED address)'}"
                f" on {printable(who.get('channel'))} ({printable(d.get('language'))})\n"
                f"   {printable(d.get('summary', ''))}\n"
                f"   first response due {sla.get('first_response_due')}, resolution due {sla.get('resolution_due')}"
            )
        elif d.get("type") == "requester.message":
            say(f"\n<< {printable(number)} {person}: {printable(d.get('message', ''))}")
        else:
            change = printable(d.get("change"))
            say(f"\n.. {printable(number)} updated: {change} (status {printable(t.get('status'))})")
            if d.get("message"):
                say(f"<< {person}: {printable(d['message'])}")

    async def send(self, kind: str, number: str, text: str | None = None) -> None:
        ticket = self.tickets.get(number)
        if ticket is None:
            say(f"no ticket {printable(number)} received yet")
            return
        event: dict[str, Any] = {
            "type": kind,
            "ticket": number,
            "queue": ticket["queue"],
            "agent": {"name": self.agent},
            "created_at": datetime.now(UTC).isoformat(),
        }
        if text:
            event["text"] = text
        body = json.dumps(event, ensure_ascii=False).encode()
        if self.args.guichet:
            url = self.args.guichet.rstrip("/") + "/handoff/events"
        else:
            url = ticket["reply_route"]["events_url"]
        secret = self.queue_secrets.get(str(ticket["queue"]), self.secrets[0])
        signed = headers(secret, f"evt_{uuid.uuid4().hex}", body)
        assert self.http is not None
        async with self.http.post(url, data=body, headers=signed) as answer:
            say(f"-> {kind} {number}: HTTP {answer.status} {printable(await answer.text())}")

    def show(self, number: str) -> None:
        d = self.tickets.get(number)
        if d is None:
            say(f"no ticket {printable(number)}")
            return
        say(printable(d.get("summary", "")))
        for line in d.get("transcript", []):
            who = line.get("agent_name") or line["sender"]
            say(f"  [{printable(who)}] {printable(line['text'])}")
        articles = ", ".join(printable(a["id"]) for a in d.get("suggested_articles", []))
        say(f"  suggested by level 1: {articles or '-'}")

    async def command(self, line: str) -> bool:
        """Run one command line; False when it was `quit`."""
        words = line.split()
        if not words:
            return True
        command, rest = words[0], words[1:]
        if command == "quit":
            return False
        if command == "list":
            for number, d in self.tickets.items():
                status = d["ticket"].get("status", "?")
                say(
                    f"{number}  {d['ticket'].get('priority')}  {status:9} {printable(d.get('summary', ''))[:60]}"
                )
            if not self.tickets:
                say("no ticket yet")
        elif command == "show" and rest:
            self.show(rest[0])
        elif command == "name" and rest:
            self.agent = " ".join(rest)
        elif command == "reply" and len(rest) >= 2:
            await self.send(EVENTS[command], rest[0], " ".join(rest[1:]))
        elif command == "assign" and rest:
            self.agent = " ".join(rest[1:]) or self.agent
            await self.send(EVENTS[command], rest[0])
        elif command in ("wait", "resolve") and rest:
            await self.send(EVENTS[command], rest[0], " ".join(rest[1:]) or None)
        elif command in ("handback", "close") and rest:
            await self.send(EVENTS[command], rest[0])
        else:
            say(HELP)
        return True

    async def commands(self, lines: asyncio.Queue[str | None]) -> None:
        say(HELP)
        while (line := await lines.get()) is not None:
            try:
                if not await self.command(line):
                    return
            except (aiohttp.ClientError, OSError) as exc:
                say(f"cannot reach Guichet: {exc}")
        say("(no more input: still receiving tickets; Ctrl-C or SIGTERM stops the desk)")
        await asyncio.Event().wait()


def read_stdin(loop: asyncio.AbstractEventLoop, lines: asyncio.Queue[str | None]) -> None:
    """Terminal lines into the loop. A daemon thread: a pending readline never holds up exit."""
    for line in sys.stdin:
        loop.call_soon_threadsafe(lines.put_nowait, line)
    loop.call_soon_threadsafe(lines.put_nowait, None)


async def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--secret",
        required=True,
        help="the queues' signing secrets, space-separated: one per queue this desk serves, or "
        "an old and a new one during a key rotation",
    )
    parser.add_argument("--port", type=int, default=9000)
    parser.add_argument("--host", default="127.0.0.1", help="0.0.0.0 in a container")
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
    await web.TCPSite(runner, args.host, args.port).start()
    say(f"level-2 desk listening on http://{args.host}:{args.port}/tickets")
    loop = asyncio.get_running_loop()
    lines: asyncio.Queue[str | None] = asyncio.Queue()
    threading.Thread(target=read_stdin, args=(loop, lines), daemon=True).start()
    session = asyncio.create_task(desk.commands(lines))
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, session.cancel)
    try:
        async with aiohttp.ClientSession() as desk.http:
            await session
    except asyncio.CancelledError:
        pass
    finally:
        await runner.cleanup()
        say("desk stopped")


if __name__ == "__main__":
    asyncio.run(main())

"""Channel load: inbound messages per second through to the reply, and p99 latency, per channel.

    python bench/channels.py [--seconds 10] [--connections 16] [--only smtp,telegram,slack]

Each figure comes from a real `guichet run` process on the embedded store, fed by a load
generator in this process over the channel's real protocol, until its reply has come out the
other side:

- smtp: mails over SMTP (a small asyncio client, several connections) → Guichet's automatic
  reply arriving at an SMTP relay run here (aiosmtpd). Latency: end of DATA → reply relayed.
  Peer: bench/smtp_peer.py, an aiosmtpd server that answers each mail with a fixed text
  through the same relay (no understanding, no store, no ticket).
- telegram: webhook updates POSTed with the secret header → the reply reaching a Bot API
  mimic run here (tests/fake_telegram.py), with Telegram's sending quotas (1/s per chat, 30/s
  in all) lifted: what is measured is Guichet. Peer: a bare aiohttp handler.
- slack: signed Events API requests → the reply reaching a Web API mimic run here
  (tests/fake_slack.py). Peer: as for Telegram.

Every mail is from a different sender and every chat a different person, so the per-sender
caps on automatic replies do not apply. Goals (issue 5), 2-core machine, embedded store:
Telegram ≥ 500 updates/s, Slack ≥ 500 events/s, SMTP ≥ 100 mails/s with the automatic reply.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import hmac
import itertools
import json
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web
from aiosmtpd.smtp import SMTP, Envelope, Session

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bot.progress import Progress  # noqa: E402
from tests.fake_telegram import FakeTelegram  # noqa: E402
from tests.processes import GuichetProcess, config_copy, free_port  # noqa: E402

MAILS = [
    ("Mot de passe oublié", "Bonjour, j'ai oublié mon mot de passe Windows, comment faire ?"),
    ("VPN", "My VPN does not connect since this morning."),
    ("Imprimante", "L'imprimante du 2e étage n'imprime plus rien."),
    ("Outlook", "Outlook does not receive any email since yesterday."),
    ("Écran", "Mon écran reste noir au démarrage du portable."),
    ("Teams", "How do I share my screen in a Teams meeting?"),
]


@dataclass
class Figure:
    label: str
    sent: dict[str, float] = field(default_factory=dict)  # message id → time sent
    latencies: list[float] = field(default_factory=list)
    errors: int = 0
    reasons: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0
    waiters: dict[str, asyncio.Event] = field(default_factory=dict)  # closed loop: one per mail

    @property
    def rate(self) -> float:
        return len(self.latencies) / self.seconds if self.seconds else 0.0

    def p(self, percent: float) -> float:
        if not self.latencies:
            return float("nan")
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(percent / 100 * len(ordered)))] * 1000

    def arrived(self, message_id: str) -> None:
        started = self.sent.pop(message_id, None)
        if started is not None:
            self.latencies.append(time.monotonic() - started)
        waiter = self.waiters.pop(message_id, None)
        if waiter is not None:
            waiter.set()


# SMTP ---------------------------------------------------------------------------------------
class Relay:
    """The relay Guichet (or the peer) sends its replies through: it notes when each arrives."""

    def __init__(self) -> None:
        self.figure: Figure | None = None
        self.server: asyncio.Server | None = None
        self.port = 0

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        raw = envelope.original_content or b""
        assert isinstance(raw, bytes)
        head = raw.split(b"\r\n\r\n", 1)[0]
        for line in head.split(b"\r\n"):
            if line.lower().startswith(b"in-reply-to:") and self.figure is not None:
                self.figure.arrived(line.split(b":", 1)[1].strip().decode())
        return "250 OK"

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self.server = await loop.create_server(lambda: SMTP(self, loop=loop), "127.0.0.1", 0)
        self.port = int(self.server.sockets[0].getsockname()[1])


class SmtpClient:
    """A minimal SMTP client on asyncio: one connection, one mail after another."""

    def __init__(self, port: int) -> None:
        self.port = port

    async def open(self) -> None:
        self.reader, self.writer = await asyncio.open_connection("127.0.0.1", self.port)
        await self._expect(b"220")
        self.writer.write(b"EHLO load.example\r\n")
        await self._expect(b"250")

    async def _expect(self, code: bytes) -> None:
        while True:
            line = await self.reader.readline()
            if not line:
                raise ConnectionError("the server hung up")
            if not line.startswith(code):
                raise RuntimeError(line.decode(errors="replace").strip())
            if line[3:4] == b" ":
                return

    async def send(self, sender: str, recipient: str, data: bytes) -> None:
        self.writer.write(f"MAIL FROM:<{sender}>\r\nRCPT TO:<{recipient}>\r\nDATA\r\n".encode())
        await self._expect(b"250")
        await self._expect(b"250")
        await self._expect(b"354")
        self.writer.write(data + b"\r\n.\r\n")
        await self._expect(b"250")

    async def close(self) -> None:
        self.writer.write(b"QUIT\r\n")
        self.writer.close()


def mail(n: int) -> tuple[str, str, bytes]:
    subject, body = MAILS[n % len(MAILS)]
    message_id = f"<load{n}.{time.monotonic_ns()}@load.example>"
    sender = f"person{n}@load.example"
    data = (
        f"From: Person {n} <{sender}>\r\nTo: support@example.com\r\nSubject: {subject}\r\n"
        f"Message-ID: {message_id}\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n"
        f"Content-Transfer-Encoding: 8bit\r\n\r\n{body}\r\n"
    ).encode()
    return sender, message_id, data


async def smtp_load(
    ports: int | list[int],
    relay: Relay,
    label: str,
    seconds: float,
    connections: int,
    *,
    wait_reply: bool = False,
) -> Figure:
    """Mails over `connections` SMTP connections (spread over the ports), each sent once the
    previous one was accepted — or, with wait_reply, once its automatic reply came back."""
    ports = [ports] if isinstance(ports, int) else ports
    figure = Figure(label)
    relay.figure = figure
    numbers = itertools.count()
    deadline = time.monotonic() + seconds
    bar = Progress(label, 100)

    async def connection(port: int) -> None:
        client = SmtpClient(port)
        await client.open()
        while time.monotonic() < deadline:
            sender, message_id, data = mail(next(numbers))
            figure.sent[message_id] = time.monotonic()
            replied = figure.waiters[message_id] = asyncio.Event()
            try:
                await client.send(sender, "support@example.com", data)
                if wait_reply:
                    await asyncio.wait_for(replied.wait(), 30)
            except (RuntimeError, ConnectionError, TimeoutError) as exc:
                figure.errors += 1
                reason = str(exc)[:60] or "no reply within 30 s"
                figure.reasons[reason] = figure.reasons.get(reason, 0) + 1
                figure.sent.pop(message_id, None)
                if not isinstance(exc, TimeoutError):
                    client = SmtpClient(port)
                    await client.open()
            figure.waiters.pop(message_id, None)
            bar.update(int(100 * (1 - max(0.0, deadline - time.monotonic()) / seconds)))
        await client.close()

    started = time.monotonic()
    await asyncio.gather(*(connection(ports[n % len(ports)]) for n in range(connections)))
    # Replies still on their way count, within a grace period.
    grace = time.monotonic() + 30
    while figure.sent and time.monotonic() < grace:  # noqa: ASYNC110 (replies arrive in another server's callbacks)
        await asyncio.sleep(0.05)
    figure.seconds = time.monotonic() - started
    if figure.sent:
        figure.errors += len(figure.sent)
        figure.reasons["no reply within 30 s"] = len(figure.sent)
    bar.close()
    return figure


async def bench_smtp(args: argparse.Namespace, workdir: Path) -> list[Figure]:
    relay = Relay()
    await relay.start()
    receiver = await level2_receiver()
    figures = []
    smtp_port = free_port()
    config = config_copy(
        workdir / "config-smtp",
        email={
            "port": smtp_port,
            "relay": {"host": "127.0.0.1", "port": relay.port, "security": "none"},
            "auto_reply": {"per_sender": 10, "total": 10_000_000},
        },
        handoff={"queues": {q: {"url": receiver} for q in ("support", "security")}},
    )
    guichet = GuichetProcess(
        config, workdir / "data-smtp", free_port(), env={"GUICHET_SMTP_PORT": str(smtp_port)}
    )
    guichet.start()
    try:
        guichet.wait_for_model()
        await smtp_load(smtp_port, relay, "smtp warm-up", 2, args.connections)
        figures.append(await smtp_load(smtp_port, relay, "smtp guichet", args.seconds, args.connections))
    finally:
        guichet.stop()
    peer_port = free_port()
    peer = await asyncio.create_subprocess_exec(
        sys.executable, str(ROOT / "bench" / "smtp_peer.py"), str(peer_port), str(relay.port)
    )
    try:
        await wait_port(peer_port)
        figures.append(
            await smtp_load(peer_port, relay, "smtp peer (aiosmtpd)", args.seconds, args.connections)
        )
    finally:
        peer.terminate()
        await peer.wait()
    return figures


async def level2_receiver() -> str:
    """A level-2 desk that takes every ticket at once (the handoff is not what is measured)."""
    app = web.Application()

    async def take(request: web.Request) -> web.Response:
        await request.read()
        return web.json_response({"ok": True})

    app.router.add_post("/tickets", take)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    return f"http://127.0.0.1:{port}/tickets"


async def wait_port(port: int, seconds: float = 15) -> None:
    deadline = time.monotonic() + seconds
    while True:
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.close()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.1)


# Chat channels (Slack, Telegram) -----------------------------------------------------------------
# Messages that each get exactly one reply (small talk, or "no answer, shall I open a ticket?"
# with its buttons), so that a reply is never taken for the answer to the next message.
CHAT = [
    "bonjour",
    "the coffee machine sings opera",
    "merci beaucoup",
    "hello there",
    "la plante verte chante faux",
]


class Replies:
    """Where a platform mimic reports each reply posted to a conversation."""

    def __init__(self) -> None:
        self.waiting: dict[str, tuple[float, asyncio.Event]] = {}
        self.figure = Figure("")

    def posted(self, conversation: str) -> None:
        entry = self.waiting.pop(conversation, None)
        if entry is not None:
            started, event = entry
            self.figure.latencies.append(time.monotonic() - started)
            event.set()


Post = Callable[[aiohttp.ClientSession, int, int, str], Awaitable[int]]


async def chat_load(
    label: str, replies: Replies, post: Post, seconds: float, connections: int, name: Callable[[int], str]
) -> Figure:
    """Every conversation sends its next message once the reply to the previous one came."""
    figure = Figure(label)
    replies.figure = figure
    deadline = time.monotonic() + seconds
    bar = Progress(label, 100)

    async def conversation(http: aiohttp.ClientSession, index: int) -> None:
        for n in itertools.count():
            if time.monotonic() >= deadline:
                return
            event = asyncio.Event()
            replies.waiting[name(index)] = (time.monotonic(), event)
            status = await post(http, index, n, CHAT[n % len(CHAT)])
            try:
                if status != 200:
                    raise RuntimeError(f"HTTP {status}")
                await asyncio.wait_for(event.wait(), 30)
            except (RuntimeError, TimeoutError) as exc:
                figure.errors += 1
                reason = str(exc) or "no reply within 30 s"
                figure.reasons[reason] = figure.reasons.get(reason, 0) + 1
                replies.waiting.pop(name(index), None)
            bar.update(int(100 * (1 - max(0.0, deadline - time.monotonic()) / seconds)))

    started = time.monotonic()
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=connections)) as http:
        await asyncio.gather(*(conversation(http, i) for i in range(connections)))
    figure.seconds = time.monotonic() - started
    bar.close()
    return figure


async def peer_server(handle: Callable[[web.Request], Awaitable[web.Response]], path: str) -> str:
    """The peer of a chat figure: a bare aiohttp handler that answers at once."""
    app = web.Application()
    app.router.add_post(path, handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    return f"http://127.0.0.1:{port}"


async def bench_slack(args: argparse.Namespace, workdir: Path) -> list[Figure]:
    from tests.fake_slack import BOT_TOKEN, FakeSlack

    secret = "bench-signing-secret-0123456789ab"
    replies = Replies()

    class Slack(FakeSlack):
        def _chat_postMessage(self, args: dict[str, Any]) -> dict[str, Any]:
            answer = super()._chat_postMessage(args)
            replies.posted(str(args.get("channel")))
            return answer

    slack = Slack()
    slack.calls = _Forgetful()
    for index in range(args.connections):
        slack.add_user(f"U{index:04d}", f"Person {index}", f"person{index}@bench.example")
    await slack.start()
    receiver = await level2_receiver()
    config = config_copy(
        workdir / "config-slack",
        slack={"enabled": True, "api_base": slack.api_base},
        webchat={"enabled": False},
        email={"enabled": False},
        handoff={"queues": {q: {"url": receiver} for q in ("support", "security")}},
    )
    env = {"GUICHET_SLACK_BOT_TOKEN": BOT_TOKEN, "GUICHET_SLACK_SIGNING_SECRET": secret}
    guichet = GuichetProcess(config, workdir / "data-slack", free_port(), env=env)
    events = itertools.count()

    def signed(body: bytes, ts: str | None = None) -> dict[str, str]:
        ts = ts or str(int(time.time()))
        mac = hmac.new(secret.encode(), b"v0:" + ts.encode() + b":" + body, hashlib.sha256).hexdigest()
        return {
            "Content-Type": "application/json",
            "X-Slack-Request-Timestamp": ts,
            "X-Slack-Signature": f"v0={mac}",
        }

    def event(index: int, text: str) -> bytes:
        n = next(events)
        ts = f"{1800000000 + n}.{index:06d}"
        return json.dumps(
            {
                "token": "legacy",
                "team_id": "T111",
                "api_app_id": "A111",
                "type": "event_callback",
                "event_id": f"EvBench{n:09d}",
                "event_time": 1800000000 + n,
                "event": {
                    "type": "message",
                    "channel_type": "im",
                    "channel": f"D{index:04d}",
                    "user": f"U{index:04d}",
                    "text": text,
                    "ts": ts,
                    "event_ts": ts,
                },
            }
        ).encode()

    def poster(url: str) -> Post:
        async def post(http: aiohttp.ClientSession, index: int, n: int, text: str) -> int:
            body = event(index, text)
            async with http.post(f"{url}/slack/events", data=body, headers=signed(body)) as answer:
                await answer.read()
                return answer.status

        return post

    figures = []
    guichet.start()
    try:
        guichet.wait_for_model()
        name = lambda index: f"D{index:04d}"  # noqa: E731
        await chat_load("slack warm-up", replies, poster(guichet.url), 2, args.connections, name)
        figures.append(
            await chat_load(
                "slack guichet", replies, poster(guichet.url), args.seconds, args.connections, name
            )
        )
    finally:
        guichet.stop()

    async def bare(request: web.Request) -> web.Response:
        # What any Events API endpoint must do: check the signature, read the JSON, answer.
        body = await request.read()
        expected = signed(body, request.headers.get("X-Slack-Request-Timestamp", ""))["X-Slack-Signature"]
        if not hmac.compare_digest(expected, request.headers.get("X-Slack-Signature", "")):
            return web.Response(status=401)
        data = json.loads(body)
        replies.posted(data["event"]["channel"])
        return web.Response(text="")

    peer = await peer_server(bare, "/slack/events")
    figures.append(
        await chat_load("slack peer (aiohttp)", replies, poster(peer), args.seconds, args.connections, name)
    )
    await slack.stop()
    return figures


TELEGRAM_SECRET = "bench-webhook-secret"
TELEGRAM_CHATS = 10_000  # chat ids of the load: 10,000 + conversation index
# Update ids unique in a process: phases that share one store (Redis) would drop repeats.
_UPDATES = itertools.count(1)


def telegram_mimic(replies: Replies) -> FakeTelegram:
    """The Bot API mimic of tests/fake_telegram.py, telling `replies` of each sendMessage."""

    class Telegram(FakeTelegram):
        async def _api(self, request: web.Request) -> web.Response:
            answer = await super()._api(request)
            if request.match_info["method"] == "sendMessage":
                replies.posted(str((await request.post()).get("chat_id")))
            return answer

    telegram = Telegram()
    telegram.calls = _Forgetful()
    return telegram


def telegram_poster(urls: list[str]) -> Post:
    """Webhook updates with the secret header, conversation i to urls[i % len(urls)]."""
    headers = {"Content-Type": "application/json", "X-Telegram-Bot-Api-Secret-Token": TELEGRAM_SECRET}

    async def post(http: aiohttp.ClientSession, index: int, n: int, text: str) -> int:
        chat = TELEGRAM_CHATS + index
        user = {"id": chat, "is_bot": False, "first_name": f"Person {index}", "language_code": "fr"}
        message = {
            "message_id": n,
            "from": user,
            "chat": {"id": chat, "type": "private"},
            "date": 1800000000,
            "text": text,
        }
        body = json.dumps({"update_id": next(_UPDATES), "message": message}).encode()
        async with http.post(
            f"{urls[index % len(urls)]}/telegram/webhook", data=body, headers=headers
        ) as answer:
            await answer.read()
            return answer.status

    return post


def telegram_chat(index: int) -> str:
    return str(TELEGRAM_CHATS + index)


async def bench_telegram(args: argparse.Namespace, workdir: Path) -> list[Figure]:
    from tests.fake_telegram import TOKEN

    secret = TELEGRAM_SECRET
    replies = Replies()
    telegram = telegram_mimic(replies)
    await telegram.start()
    receiver = await level2_receiver()
    config = config_copy(
        workdir / "config-telegram",
        telegram={
            "enabled": True, "mode": "webhook", "api_base": telegram.api_base,
            # Telegram lets a bot send 1 message/s per chat and 30/s in all; lifted here, since
            # what is measured is Guichet's own capacity, not Telegram's quota.
            "per_chat_per_second": 100000, "global_per_second": 100000,
        },
        webchat={"enabled": False},
        email={"enabled": False},
        handoff={"queues": {q: {"url": receiver} for q in ("support", "security")}},
    )  # fmt: skip
    env = {"GUICHET_TELEGRAM_TOKEN": TOKEN, "GUICHET_TELEGRAM_WEBHOOK_SECRET": secret}
    guichet = GuichetProcess(config, workdir / "data-telegram", free_port(), env=env)
    name = telegram_chat

    def poster(url: str) -> Post:
        return telegram_poster([url])

    figures = []
    guichet.start()
    try:
        guichet.wait_for_model()
        await chat_load("telegram warm-up", replies, poster(guichet.url), 2, args.connections, name)
        figures.append(
            await chat_load(
                "telegram guichet", replies, poster(guichet.url), args.seconds, args.connections, name
            )
        )
    finally:
        guichet.stop()

    async def bare(request: web.Request) -> web.Response:
        # What any webhook endpoint must do: check the secret, read the JSON, answer.
        if request.headers.get("X-Telegram-Bot-Api-Secret-Token") != secret:
            return web.Response(status=401)
        data = json.loads(await request.read())
        replies.posted(str(data["message"]["chat"]["id"]))
        return web.Response(text="")

    peer = await peer_server(bare, "/telegram/webhook")
    figures.append(
        await chat_load(
            "telegram peer (aiohttp)", replies, poster(peer), args.seconds, args.connections, name
        )
    )
    await telegram.stop()
    return figures


class _Forgetful(list[Any]):
    """A call log that keeps nothing: a load run would fill memory with it."""

    def append(self, item: Any) -> None:
        return None


# Report ---------------------------------------------------------------------------------------
GOALS = {"smtp": 100.0, "telegram": 500.0, "slack": 500.0}

Bench = Callable[[argparse.Namespace, Path], Awaitable[list[Figure]]]
BENCHES: dict[str, Bench] = {"smtp": bench_smtp, "telegram": bench_telegram, "slack": bench_slack}


def report(channel: str, figures: list[Figure]) -> None:
    guichet, peer = figures[0], figures[-1]
    goal = GOALS[channel]
    print(f"\n{channel}: {'label':<26} {'msgs/s':>8} {'p50 ms':>8} {'p99 ms':>8} {'errors':>7}")
    for figure in figures:
        print(
            f"{'':>{len(channel) + 1}} {figure.label:<26} {figure.rate:>8.1f} {figure.p(50):>8.1f}"
            f" {figure.p(99):>8.1f} {figure.errors:>7}"
        )
    for figure in figures:
        for reason, count in figure.reasons.items():
            print(f"  {figure.label}: {count} × {reason}")
    verdict = "met" if guichet.rate >= goal and not guichet.errors else "NOT met"
    ratio = guichet.rate / peer.rate if peer.rate else float("nan")
    print(f"  Guichet / peer: {ratio:.2f}; goal ≥ {goal:.0f}/s with no error: {verdict}")


async def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=10.0, help="duration of each timed phase")
    parser.add_argument("--connections", type=int, default=16, help="concurrent connections or chats")
    parser.add_argument(
        "--only", default=",".join(BENCHES), help=f"comma-separated, among {', '.join(BENCHES)}"
    )
    args = parser.parse_args()
    chosen = [c.strip() for c in args.only.split(",") if c.strip()]
    unknown = [c for c in chosen if c not in BENCHES]
    if unknown:
        parser.error(f"unknown channel(s) {', '.join(unknown)}: choose among {', '.join(BENCHES)}")
    with tempfile.TemporaryDirectory(prefix="guichet-bench-") as directory:
        for channel in chosen:
            report(channel, await BENCHES[channel](args, Path(directory)))
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))

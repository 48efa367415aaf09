"""Web chat and REST channel load: messages per second, reply latency, peak memory, cold start.

    python bench/webchat.py [--seconds 10] [--conversations 64] [--rate 500]

Each run starts its own servers on loopback: Guichet on the embedded store (one process),
Guichet on Redis (two processes sharing a redis-server started here), and a bare aiohttp
echo server as the peer (bench/echo_server.py). Guichet's throughput is printed as a share
of the echo server's, measured in the same run by the same load generator, because these
machines are noisy and the load generator shares their two cores.

Goals (issue 2): ≥ 1,000 messages/s sustained and p99 < 50 ms at 500 messages/s on the
embedded store; `guichet run` to first answer in under 3 s.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bot.progress import Progress  # noqa: E402
from tests.processes import GuichetProcess, config_copy, free_port, start_redis  # noqa: E402

MESSAGES = [
    "j'ai oublié mon mot de passe",
    "my vpn wont connect",
    "bonjour",
    "l'imprimante n'imprime plus",
    "how do I share my screen in Teams",
    "merci",
    "mon compte est bloqué",
    "outlook does not receive emails",
    "le wifi invité ne marche pas",
    "the coffee machine sings opera",
    "je veux installer un logiciel",
    "my laptop is very slow",
]
LIMITS = {"per_session": {"rate": 100000.0, "burst": 100000}, "per_ip": {"rate": 100000.0, "burst": 100000}}


@dataclass
class Result:
    label: str
    latencies: list[float] = field(default_factory=list)
    errors: int = 0
    seconds: float = 0.0
    peak_mb: float | None = None

    @property
    def rate(self) -> float:
        return len(self.latencies) / self.seconds if self.seconds else 0.0

    def percentile(self, p: float) -> float:
        if not self.latencies:
            return float("nan")
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))] * 1000


class TimedProgress:
    """A progress bar over a fixed duration."""

    def __init__(self, label: str, seconds: float) -> None:
        self.bar, self.seconds, self.started = Progress(label, 100), seconds, time.monotonic()

    def show(self, done: int) -> None:
        self.bar.update(int(100 * (time.monotonic() - self.started) / self.seconds))

    def end(self) -> None:
        self.bar.close()


# One conversation over each transport: send(text) returns when the bot's reply has arrived.
Sender = Callable[[str], Awaitable[None]]


async def websocket_conversation(
    http: aiohttp.ClientSession, url: str
) -> tuple[Sender, Callable[[], Awaitable[None]]]:
    ws = await http.ws_connect(f"{url}/webchat/ws")
    await ws.send_json({"type": "hello", "token": None, "locale": "fr"})
    while json.loads((await ws.receive()).data)["type"] != "welcome":
        pass
    ids = itertools.count()

    async def send(text: str) -> None:
        await ws.send_json({"type": "message", "id": f"b{next(ids)}", "text": text})
        while True:
            frame = await ws.receive(timeout=30)
            if frame.type != aiohttp.WSMsgType.TEXT:
                raise ConnectionError(f"socket closed: {frame}")
            data = json.loads(frame.data)
            kind = data["type"]
            # The turn ends with its last reply: a turn may have two (an article, then "did
            # this help?"), and returning at the first would send the next message early.
            if kind == "message" and data.get("last", True):
                return
            if kind == "error":
                raise RuntimeError(frame.data)

    async def close() -> None:
        await ws.close()

    return send, close


async def rest_conversation(
    http: aiohttp.ClientSession, url: str
) -> tuple[Sender, Callable[[], Awaitable[None]]]:
    sender = f"bench-{random.getrandbits(64):x}"

    async def send(text: str) -> None:
        async with http.post(
            f"{url}/webhooks/rest/webhook", json={"sender": sender, "message": text}
        ) as answer:
            if answer.status != 200 or not await answer.json():
                raise RuntimeError(f"HTTP {answer.status}")

    async def close() -> None:
        return None

    return send, close


async def closed_loop(
    urls: list[str],
    transport: str,
    conversations: int,
    seconds: float,
    label: str,
    message: Callable[[int, int], str] | None = None,
) -> Result:
    """Every conversation sends its next message as soon as the reply to the previous one came.
    `message(conversation, n)` gives the n-th message of a conversation (default: MESSAGES in turn)."""
    result = Result(label)
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector) as http:
        opener = websocket_conversation if transport == "ws" else rest_conversation
        pairs = [await opener(http, urls[n % len(urls)]) for n in range(conversations)]
        progress = TimedProgress(label, seconds)
        deadline = time.monotonic() + seconds

        async def run(send: Sender, offset: int) -> None:
            for n in itertools.count(offset):
                if time.monotonic() >= deadline:
                    return
                text = MESSAGES[n % len(MESSAGES)] if message is None else message(offset, n)
                started = time.perf_counter()
                try:
                    await send(text)
                    result.latencies.append(time.perf_counter() - started)
                except (RuntimeError, ConnectionError, aiohttp.ClientError, TimeoutError):
                    result.errors += 1

        async def report() -> None:
            while time.monotonic() < deadline:
                progress.show(len(result.latencies))
                await asyncio.sleep(0.25)

        started = time.monotonic()
        await asyncio.gather(report(), *(run(send, n) for n, (send, _) in enumerate(pairs)))
        result.seconds = time.monotonic() - started
        progress.show(len(result.latencies))
        progress.end()
        for _, close in pairs:
            await close()
    return result


async def open_loop(urls: list[str], rate: float, conversations: int, seconds: float, label: str) -> Result:
    """Messages sent at a fixed total rate whatever the replies do: latency under a known load."""
    result = Result(label)
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as http:
        pairs = [await websocket_conversation(http, urls[n % len(urls)]) for n in range(conversations)]
        locks = [asyncio.Lock() for _ in pairs]
        progress = TimedProgress(label, seconds)
        tasks: set[asyncio.Task[None]] = set()

        async def one(index: int, text: str, scheduled: float) -> None:
            async with locks[index]:  # one message in flight per conversation, as a person types
                try:
                    await pairs[index][0](text)
                    result.latencies.append(time.perf_counter() - scheduled)
                except (RuntimeError, ConnectionError, aiohttp.ClientError, TimeoutError):
                    result.errors += 1

        started = time.perf_counter()
        total = int(rate * seconds)
        for n in range(total):
            scheduled = started + n / rate
            delay = scheduled - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            task = asyncio.create_task(one(n % conversations, MESSAGES[n % len(MESSAGES)], scheduled))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
            if n % 100 == 0:
                progress.show(len(result.latencies))
        await asyncio.gather(*tasks)
        result.seconds = time.perf_counter() - started
        progress.show(len(result.latencies))
        progress.end()
        for _, close in pairs:
            await close()
    return result


def peak_mb(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def start_echo(workdir: Path) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, str(ROOT / "bench" / "echo_server.py"), str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    for _ in range(200):
        try:
            import urllib.request

            urllib.request.urlopen(f"{url}/healthz", timeout=0.5).close()
            return process, url
        except OSError:
            time.sleep(0.05)
    raise RuntimeError("the echo server did not start")


def cold_start(workdir: Path) -> float:
    """Seconds from `guichet run` to the first answer over the REST channel."""
    import urllib.request

    port = free_port()
    server = GuichetProcess(ROOT / "config", workdir / "cold-data", port)
    started = time.monotonic()
    server.data_dir.parent.mkdir(parents=True, exist_ok=True)
    with server.log.open("ab") as log:
        server.process = subprocess.Popen(
            [sys.executable, "-m", "bot.cli", "run", "--config", str(ROOT / "config"), "--port", str(port)],
            env=server.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=ROOT,
        )
    body = json.dumps({"sender": "cold", "message": "j'ai oublié mon mot de passe"}).encode()
    try:
        while time.monotonic() - started < 30:
            try:
                request = urllib.request.Request(
                    f"{server.url}/webhooks/rest/webhook",
                    data=body,
                    headers={"Content-Type": "application/json"},
                )
                with urllib.request.urlopen(request, timeout=5) as answer:
                    if json.loads(answer.read()):
                        return time.monotonic() - started
            except OSError:
                time.sleep(0.01)
        raise RuntimeError("no first answer within 30 s")
    finally:
        server.stop()


async def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=10.0, help="duration of each timed phase")
    parser.add_argument("--conversations", type=int, default=64, help="concurrent conversations")
    parser.add_argument("--rate", type=float, default=500.0, help="messages/s of the fixed-rate phase")
    parser.add_argument("--redis-processes", type=int, default=2, help="Guichet processes sharing Redis")
    args = parser.parse_args()

    results: list[tuple[str, str, int, Result]] = []
    with tempfile.TemporaryDirectory(prefix="guichet-bench-") as tmp:
        work = Path(tmp)
        print("Cold start (guichet run → first answer), 3 runs: ", end="", flush=True)
        colds = [cold_start(work / f"cold{n}") for n in range(3)]
        print(
            ", ".join(f"{c:.2f} s" for c in colds)
            + f"  (goal < 3 s: {'met' if max(colds) < 3 else 'NOT met'})"
        )

        echo, echo_url = start_echo(work)
        try:
            results.append(
                (
                    "echo peer",
                    "ws",
                    1,
                    await closed_loop(
                        [echo_url],
                        "ws",
                        args.conversations,
                        args.seconds,
                        "echo peer, WebSocket, closed loop",
                    ),
                )
            )
            results[-1][3].peak_mb = peak_mb(echo.pid)
        finally:
            echo.terminate()

        config = config_copy(work / "config", webchat=LIMITS)
        server = GuichetProcess(config, work / "data", free_port())
        server.start()
        server.wait_for_model()  # steady state: the model trains in the background after a cold start
        try:
            assert server.process is not None
            for transport in ("ws", "rest"):
                label = f"embedded, {'WebSocket' if transport == 'ws' else 'REST'}, closed loop"
                results.append(
                    (
                        "embedded",
                        transport,
                        1,
                        await closed_loop([server.url], transport, args.conversations, args.seconds, label),
                    )
                )
            results.append(
                (
                    "embedded",
                    f"ws @ {args.rate:.0f}/s",
                    1,
                    await open_loop(
                        [server.url],
                        args.rate,
                        args.conversations,
                        args.seconds,
                        f"embedded, WebSocket, {args.rate:.0f} msgs/s",
                    ),
                )
            )
            for _, _, _, result in results[-3:]:
                result.peak_mb = peak_mb(server.process.pid)
        finally:
            server.stop()

        redis, redis_url = start_redis(work / "redis")
        servers = [
            GuichetProcess(config, work / f"data-r{n}", free_port(), env={"GUICHET_REDIS_URL": redis_url})
            for n in range(args.redis_processes)
        ]
        try:
            for s in servers:
                s.start()
                s.wait_for_model()
            urls = [s.url for s in servers]
            n = len(servers)
            results.append(
                (
                    "redis",
                    "ws",
                    n,
                    await closed_loop(
                        urls, "ws", args.conversations, args.seconds, f"Redis x{n}, WebSocket, closed loop"
                    ),
                )
            )
            results.append(
                (
                    "redis",
                    f"ws @ {args.rate:.0f}/s",
                    n,
                    await open_loop(
                        urls,
                        args.rate,
                        args.conversations,
                        args.seconds,
                        f"Redis x{n}, WebSocket, {args.rate:.0f} msgs/s",
                    ),
                )
            )
            peaks = [peak_mb(s.process.pid) for s in servers if s.process is not None]
            for _, _, _, result in results[-2:]:
                result.peak_mb = max((p for p in peaks if p is not None), default=None)
        finally:
            for s in servers:
                s.stop()
            redis.terminate()

    print()
    print(
        f"{'server':<11} {'transport':<14} {'procs':>5} {'msgs/s':>9} {'p50 ms':>8} {'p99 ms':>8} "
        f"{'errors':>6} {'peak MB':>8}"
    )
    for server_name, transport, procs, r in results:
        peak = f"{r.peak_mb:.0f}" if r.peak_mb else "-"
        print(
            f"{server_name:<11} {transport:<14} {procs:>5} {r.rate:>9.0f} {r.percentile(50):>8.1f} "
            f"{r.percentile(99):>8.1f} {r.errors:>6} {peak:>8}"
        )
    echo_rate = results[0][3].rate
    embedded_ws = results[1][3]
    embedded_rest = results[2][3]
    fixed = results[3][3]
    slowest = min(embedded_ws.rate, embedded_rest.rate)
    print()
    print(
        f"Guichet (embedded, WebSocket) reaches {embedded_ws.rate / echo_rate:.0%} of the bare echo server's rate "
        f"in this run ({embedded_ws.rate:.0f} vs {echo_rate:.0f} msgs/s)."
    )
    print(
        f"Goal ≥ 1000 msgs/s sustained (embedded, WebSocket and REST): {'met' if slowest >= 1000 else 'NOT met'} "
        f"({embedded_ws.rate:.0f} and {embedded_rest.rate:.0f}); "
        f"goal p99 < 50 ms at {args.rate:.0f} msgs/s: "
        f"{'met' if fixed.percentile(99) < 50 and fixed.rate >= args.rate * 0.95 else 'NOT met'} "
        f"(p99 {fixed.percentile(99):.1f} ms at {fixed.rate:.0f} msgs/s achieved)."
    )


if __name__ == "__main__":
    os.environ.setdefault("PYTHONHASHSEED", "0")
    asyncio.run(main())

"""Handoff delivery: tickets delivered per second and delivery latency, with a level-2
receiver that fails a share of requests; nothing may be lost or delivered twice.

    python bench/handoff.py [--tickets 2000] [--fail-rate 0.2] [--store embedded|redis]

Guichet's outbox (the real one: store, signing, retries with jitter, dead letters) delivers
ticket documents to a local aiohttp receiver that answers 503 to --fail-rate of requests.
The peer, measured in the same run against the same receiver, is a bare aiohttp client
posting the same documents unsigned, with no store and no retries: the ratio shows what
durability and signing cost. Latency is from the ticket's acceptance to its first
successful receipt.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import statistics
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bot.manager import Outbox, WebhookTarget  # noqa: E402
from bot.messages import utcnow  # noqa: E402
from bot.progress import Progress  # noqa: E402
from bot.settings import OutboxSettings  # noqa: E402
from bot.store.base import OutboxItem, Store  # noqa: E402
from handoff.signing import new_secret, verify  # noqa: E402
from tests.processes import free_port, start_redis  # noqa: E402


class Receiver:
    def __init__(self, fail_rate: float, secret: str | None) -> None:
        self.fail_rate = fail_rate
        self.secret = secret
        self.first_seen: dict[str, float] = {}
        self.deliveries = 0
        self.refused = 0
        self.bad_signatures = 0
        self.port = free_port()
        self.random = random.Random(7)

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        if self.random.random() < self.fail_rate:
            self.refused += 1
            return web.Response(status=503, headers={"Retry-After": "0"})
        msg_id = request.headers.get("webhook-id", "")
        if self.secret is not None:
            try:
                verify([self.secret], request.headers, body)
            except Exception:
                self.bad_signatures += 1
                return web.Response(status=401)
        else:
            msg_id = json.loads(body)["id"]
        self.deliveries += 1
        self.first_seen.setdefault(msg_id, time.perf_counter())
        return web.Response(status=204)

    async def start(self) -> web.AppRunner:
        app = web.Application()
        app.router.add_post("/tickets", self.handle)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", self.port).start()
        return runner


def document(n: int) -> dict[str, Any]:
    return {
        "type": "ticket.created",
        "id": f"msg_{n:08d}",
        "ticket": {"number": f"HD-2026-{n:06d}", "priority": "P3", "category": "network"},
        "summary": "Le VPN se coupe toutes les cinq minutes depuis ce matin. " * 3,
        "transcript": [{"sender": "user", "text": "le vpn coupe", "time": "2026-11-22T10:00:00+00:00"}] * 6,
    }


async def run_guichet(args: argparse.Namespace, store: Store) -> dict[str, float]:
    secret = new_secret()
    receiver = Receiver(args.fail_rate, secret)
    runner = await receiver.start()
    outbox = Outbox(store, OutboxSettings(), webhook_schedule=(0.05, 0.1, 0.2, 0.4, 0.8, 1.6, 3.2))
    outbox.register_webhook(
        "support", WebhookTarget(f"http://127.0.0.1:{receiver.port}/tickets", secret, 10.0)
    )
    accepted: dict[str, float] = {}
    progress = Progress("guichet outbox", args.tickets)
    start = time.perf_counter()
    # Tickets arrive as the manager hands them over: enqueued durably, then delivered at once.
    for n in range(args.tickets):
        item = OutboxItem(id=f"msg_{n:08d}", destination="webhook:support", body=document(n))
        # Leased for 30 s as the manager's `complete` does: the sweeper only retries failures.
        await store.enqueue(item, utcnow() + timedelta(seconds=30))
        accepted[item.id] = time.perf_counter()
        outbox.deliver_soon(item)
        if n % 50 == 0:
            await asyncio.sleep(0)
    outbox.start(interval=0.02)
    deadline = time.perf_counter() + args.timeout
    while len(receiver.first_seen) < args.tickets and time.perf_counter() < deadline:
        progress.update(len(receiver.first_seen))
        await asyncio.sleep(0.05)
    elapsed = time.perf_counter() - start
    progress.update(len(receiver.first_seen))
    progress.close()
    await outbox.stop()
    latencies = sorted(receiver.first_seen[i] - accepted[i] for i in receiver.first_seen)
    dead = len(await store.dead_letters())
    await runner.cleanup()
    return {
        "delivered": len(receiver.first_seen),
        "per_second": len(receiver.first_seen) / elapsed,
        "p50_ms": 1000 * statistics.median(latencies) if latencies else float("nan"),
        "p99_ms": 1000 * latencies[int(0.99 * (len(latencies) - 1))] if latencies else float("nan"),
        "refused": receiver.refused,
        "duplicates": receiver.deliveries - len(receiver.first_seen),
        "bad_signatures": receiver.bad_signatures,
        "dead_letters": dead,
        "lost": args.tickets - len(receiver.first_seen) - dead,
    }


async def run_peer(args: argparse.Namespace) -> dict[str, float]:
    receiver = Receiver(args.fail_rate, None)
    runner = await receiver.start()
    url = f"http://127.0.0.1:{receiver.port}/tickets"
    accepted: dict[str, float] = {}
    limit = asyncio.Semaphore(32)
    start = time.perf_counter()
    async with aiohttp.ClientSession() as http:

        async def send(n: int) -> None:
            body = json.dumps(document(n)).encode()
            accepted[f"msg_{n:08d}"] = time.perf_counter()
            while True:  # the naive peer retries at once until accepted
                async with limit, http.post(url, data=body) as answer:
                    if answer.status < 300:
                        return

        await asyncio.gather(*(send(n) for n in range(args.tickets)))
    elapsed = time.perf_counter() - start
    latencies = sorted(receiver.first_seen[i] - accepted[i] for i in receiver.first_seen)
    await runner.cleanup()
    return {
        "delivered": len(receiver.first_seen),
        "per_second": len(receiver.first_seen) / elapsed,
        "p50_ms": 1000 * statistics.median(latencies),
        "p99_ms": 1000 * latencies[int(0.99 * (len(latencies) - 1))],
    }


async def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--tickets", type=int, default=2000)
    parser.add_argument("--fail-rate", type=float, default=0.2, help="share of requests the receiver refuses")
    parser.add_argument("--store", choices=["embedded", "redis"], default="embedded")
    parser.add_argument("--timeout", type=float, default=120.0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as work:
        redis_process = None
        if args.store == "redis":
            from bot.store.redis import RedisStore

            redis_process, url = start_redis(Path(work))
            store: Store = RedisStore(url)
        else:
            from bot.store.embedded import EmbeddedStore

            store = EmbeddedStore(Path(work) / "store")
        await store.open()
        try:
            ours = await run_guichet(args, store)
        finally:
            await store.close()
            if redis_process is not None:
                redis_process.terminate()
        peer = await run_peer(args)
    print(
        f"\nHandoff delivery, {args.tickets} tickets, receiver refusing {args.fail_rate:.0%} ({args.store} store)"
    )
    print(f"{'':<34}{'delivered/s':>12}{'p50 ms':>9}{'p99 ms':>9}")
    print(
        f"{'Guichet (durable, signed, retried)':<34}{ours['per_second']:>12.0f}{ours['p50_ms']:>9.1f}{ours['p99_ms']:>9.1f}"
    )
    print(
        f"{'peer: bare aiohttp client':<34}{peer['per_second']:>12.0f}{peer['p50_ms']:>9.1f}{peer['p99_ms']:>9.1f}"
    )
    print(f"ratio Guichet / peer: {ours['per_second'] / peer['per_second']:.2f}")
    print(
        f"refused by the receiver and retried: {ours['refused']}; duplicates the receiver dropped by id: "
        f"{ours['duplicates']}; bad signatures: {ours['bad_signatures']}; dead letters: {ours['dead_letters']}; "
        f"lost: {ours['lost']}"
    )
    if ours["lost"] or ours["bad_signatures"]:
        print("FAILED: a handoff was lost or badly signed", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))

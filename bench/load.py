"""Mixed load on a whole desk: web chat, REST, Telegram webhook and SMTP at once, for a fixed
time, on one process with the embedded store and on two and four processes sharing Redis;
then Guichet against a real Rasa 3.6 server on the REST channel, in the same run.

    python bench/load.py [--seconds 15] [--conversations 48] [--no-rasa] [--encoder-cost]

Every conversation sends its next message once the reply to the previous one has come out the
other side (the WebSocket frame, the REST answer, the Bot API mimic's sendMessage, the relay's
mail). Prints messages per second, p50/p99 latency and errors per kind, the total and the
peak memory of the Guichet processes. Goal (issue 6): Guichet sustains at least 20 times
Rasa's messages per second on the REST channel, at a lower p99.

`--encoder-cost` measures instead what the sentence encoder (`nlu.encoder`) costs: one process
on the REST channel with and without it, in the same run, on varied messages (the project's
held-out requests and out-of-scope lines, each made unique by a number, so that no vector is
remembered from an earlier message: the repeated messages of the mixed load hide that cost).
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import random
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.channels import (  # noqa: E402
    TELEGRAM_SECRET,
    Figure,
    Relay,
    Replies,
    chat_load,
    level2_receiver,
    smtp_load,
    telegram_chat,
    telegram_mimic,
    telegram_poster,
)
from bench.webchat import LIMITS, Result, closed_loop, peak_mb  # noqa: E402
from tests.fake_telegram import TOKEN  # noqa: E402
from tests.processes import GuichetProcess, config_copy, free_port, start_redis  # noqa: E402


@dataclass
class Row:
    label: str
    rate: float
    p50: float
    p99: float
    errors: int


def row_of(label: str, figure: Result | Figure) -> Row:
    if isinstance(figure, Result):
        return Row(label, figure.rate, figure.percentile(50), figure.percentile(99), figure.errors)
    return Row(label, figure.rate, figure.p(50), figure.p(99), figure.errors)


class Desk:
    """The platform peers one load run needs: a Bot API mimic, a mail relay, a level-2 desk."""

    def __init__(self) -> None:
        self.replies = Replies()
        self.relay = Relay()
        self.telegram = telegram_mimic(self.replies)
        self.level2 = ""

    async def start(self) -> None:
        await self.telegram.start()
        await self.relay.start()
        self.level2 = await level2_receiver()


def deployment(
    workdir: Path, desk: Desk, count: int, redis_url: str | None
) -> list[tuple[GuichetProcess, int]]:
    config = config_copy(
        workdir / f"config-{count}",
        store={"kind": "redis" if redis_url else "embedded"},
        webchat=LIMITS,
        telegram={
            "enabled": True, "mode": "webhook", "api_base": desk.telegram.api_base,
            "per_chat_per_second": 100000, "global_per_second": 100000,  # Telegram's quotas lifted: Guichet is measured
        },
        email={
            "relay": {"host": "127.0.0.1", "port": desk.relay.port, "security": "none"},
            "auto_reply": {"per_sender": 10, "total": 10_000_000},
        },
        handoff={"queues": {q: {"url": desk.level2} for q in ("support", "security")}},
    )  # fmt: skip
    processes = []
    for n in range(count):
        smtp = free_port()
        env = {
            "GUICHET_TELEGRAM_TOKEN": TOKEN,
            "GUICHET_TELEGRAM_WEBHOOK_SECRET": TELEGRAM_SECRET,
            "GUICHET_SMTP_PORT": str(smtp),
        }
        if redis_url:
            env["GUICHET_REDIS_URL"] = redis_url
        processes.append((GuichetProcess(config, workdir / f"data-{count}-{n}", free_port(), env=env), smtp))
    for process, _ in processes:
        process.start(timeout=60)
        process.wait_for_model()
    return processes


async def mixed(
    label: str, desk: Desk, processes: list[tuple[GuichetProcess, int]], args: argparse.Namespace
) -> list[Row]:
    urls = [p.url for p, _ in processes]
    quarter = max(1, args.conversations // 4)
    peak = [0.0]

    async def watch_memory() -> None:
        deadline = time.monotonic() + args.seconds + 5
        while time.monotonic() < deadline:
            total = sum(peak_mb(p.process.pid) or 0.0 for p, _ in processes if p.process is not None)
            peak[0] = max(peak[0], total)
            await asyncio.sleep(0.5)

    ports = [port for _, port in processes]
    results = await asyncio.gather(
        closed_loop(urls, "ws", quarter, args.seconds, f"{label} web chat"),
        closed_loop(urls, "rest", quarter, args.seconds, f"{label} REST"),
        chat_load(
            f"{label} Telegram",
            desk.replies,
            telegram_poster(urls),
            args.seconds,
            quarter,
            telegram_chat,  # the chat ids the poster writes from
        ),
        # Each connection waits for the automatic reply before its next mail, like the others.
        smtp_load(ports, desk.relay, f"{label} SMTP", args.seconds, quarter, wait_reply=True),
        watch_memory(),
    )
    ws, rest, telegram, mails = results[:-1]
    assert isinstance(ws, Result) and isinstance(rest, Result)
    assert isinstance(telegram, Figure) and isinstance(mails, Figure)
    rows = [
        row_of("web chat (WebSocket)", ws),
        row_of("REST", rest),
        row_of("Telegram webhook", telegram),
        row_of("SMTP + auto-reply", mails),
    ]
    total = sum(r.rate for r in rows)
    rows.append(
        Row(
            f"all ({len(processes)} process{'es' if len(processes) > 1 else ''}, peak {peak[0]:.0f} MB)",
            total,
            float("nan"),
            float("nan"),
            sum(r.errors for r in rows),
        )
    )
    return rows


async def rest_versus_rasa(workdir: Path, args: argparse.Namespace) -> list[Row]:
    from bench import rasa_assistant

    model = rasa_assistant.build()
    port = free_port()
    rasa = rasa_assistant.serve(model, port)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 300
        async with aiohttp.ClientSession() as http:
            while True:
                try:
                    async with http.get(
                        f"{url}/webhooks/rest/", timeout=aiohttp.ClientTimeout(total=2)
                    ) as answer:
                        if answer.status == 200:
                            break
                except (aiohttp.ClientError, TimeoutError):
                    pass
                if time.monotonic() > deadline or rasa.poll() is not None:
                    raise RuntimeError("the Rasa server did not come up")
                await asyncio.sleep(1)
        rasa_result = await closed_loop(
            [url], "rest", args.conversations // 4 or 1, args.seconds, "Rasa 3.6 REST"
        )
    finally:
        rasa.terminate()
        rasa.wait(timeout=30)
    config = config_copy(workdir / "config-rest", webchat=LIMITS, email={"enabled": False})
    guichet = GuichetProcess(config, workdir / "data-rest", free_port())
    guichet.start(timeout=60)
    try:
        guichet.wait_for_model()
        ours = await closed_loop(
            [guichet.url], "rest", args.conversations // 4 or 1, args.seconds, "Guichet REST"
        )
    finally:
        guichet.stop()
    return [row_of("Guichet REST (1 process)", ours), row_of("Rasa 3.6 REST (rasa run)", rasa_result)]


def varied_messages() -> Callable[[int, int], str]:
    """The project's held-out requests and out-of-scope lines (written apart from config/nlu),
    each message made unique by its conversation and rank: every one needs its own vector."""
    from nlu.datasets import load_rasa_yaml

    pool = [text for text, _ in load_rasa_yaml(ROOT / "tests" / "data" / "nlu_heldout.yml")]
    with (ROOT / "tests" / "data" / "out_of_scope.csv").open(encoding="utf-8") as file:
        pool += [row["text"] for row in csv.DictReader(file)]
    random.Random(7).shuffle(pool)
    return lambda conversation, n: f"{pool[n % len(pool)]} ({conversation}.{n})"


async def encoder_cost(workdir: Path, args: argparse.Namespace) -> list[Row]:
    rows = []
    message = varied_messages()
    for encoder in ("none", "use-multilingual-3"):
        config = config_copy(workdir / f"config-encoder-{encoder}", webchat=LIMITS, email={"enabled": False})
        guichet = GuichetProcess(
            config,
            workdir / f"data-encoder-{encoder}",
            free_port(),
            env={"GUICHET_NLU_ENCODER": encoder},
        )
        guichet.start(timeout=120)
        try:
            guichet.wait_for_model(timeout=600)  # a first training with vectors takes a minute
            label = "Guichet REST, " + ("words only" if encoder == "none" else f"with {encoder}")
            result = await closed_loop(
                [guichet.url], "rest", args.conversations // 4 or 1, args.seconds, label, message
            )
            peak = peak_mb(guichet.process.pid) if guichet.process is not None else None
        finally:
            guichet.stop()
        rows.append(row_of(f"{label} ({peak or 0:.0f} MB)", result))
    return rows


def table(title: str, rows: list[Row]) -> None:
    print(f"\n{title}\n  {'':<38} {'msgs/s':>8} {'p50 ms':>8} {'p99 ms':>8} {'errors':>7}")
    for r in rows:
        print(f"  {r.label:<38} {r.rate:>8.0f} {r.p50:>8.1f} {r.p99:>8.1f} {r.errors:>7}")


async def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=15.0)
    parser.add_argument("--conversations", type=int, default=48, help="in all, a quarter per kind")
    parser.add_argument("--no-rasa", action="store_true", help="skip the comparison with Rasa")
    parser.add_argument(
        "--encoder-cost",
        action="store_true",
        help="only: the REST channel with and without the sentence encoder",
    )
    args = parser.parse_args()
    if args.encoder_cost:
        with tempfile.TemporaryDirectory(prefix="guichet-load-") as directory:
            rows = await encoder_cost(Path(directory), args)
        table("The REST channel, varied messages, with and without the sentence encoder:", rows)
        words, vectors = rows
        print(
            f"\n  with the encoder: {vectors.rate / words.rate:.2f}× the messages per second; "
            f"p50 {vectors.p50:.1f} ms vs {words.p50:.1f} ms, p99 {vectors.p99:.1f} ms vs {words.p99:.1f} ms"
        )
        return 0
    desk = Desk()
    await desk.start()
    summary: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="guichet-load-") as directory:
        workdir = Path(directory)
        redis, redis_url = start_redis(workdir / "redis")
        try:
            for count, url in ((1, None), (2, redis_url), (4, redis_url)):
                processes = deployment(workdir, desk, count, url)
                try:
                    label = "embedded" if url is None else f"redis×{count}"
                    rows = await mixed(label, desk, processes, args)
                finally:
                    for process, _ in processes:
                        process.stop()
                table(f"Mixed load, {label}:", rows)
                summary[label] = rows[-1].rate
        finally:
            redis.terminate()
            redis.wait(timeout=10)
        if not args.no_rasa:
            rows = await rest_versus_rasa(workdir, args)
            table("The REST channel, Guichet and Rasa in the same run:", rows)
            ours, theirs = rows
            ratio = ours.rate / theirs.rate if theirs.rate else float("inf")
            met = ratio >= 20 and ours.p99 < theirs.p99
            print(
                f"\n  Guichet / Rasa: {ratio:.1f}× the messages per second; p99 {ours.p99:.0f} ms vs {theirs.p99:.0f} ms"
            )
            print(f"  goal ≥ 20× at a lower p99: {'met' if met else 'NOT met'}")
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))

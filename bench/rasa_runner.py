"""Running a trained Rasa model for a benchmark: over HTTP (`rasa run --enable-api`, as Guichet
talks to it) for predictions, and in-process (Rasa's own Python) for parse latency."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import tempfile
import time
import urllib.request
from collections.abc import Sequence
from pathlib import Path

import aiohttp

from bench.rasa_models import RASA_HOME
from bot.progress import Progress
from tests.processes import free_port

_IN_PROCESS = """
import asyncio, json, statistics, sys, time
from rasa.core.agent import Agent
texts = json.load(open(sys.argv[2]))
agent = Agent.load(sys.argv[1])
async def main():
    for text in texts[:20]:
        await agent.parse_message(text)  # warm-up
    times = []
    for text in texts:
        started = time.perf_counter()
        await agent.parse_message(text)
        times.append(time.perf_counter() - started)
    times.sort()
    print(json.dumps({"median_ms": 1000 * statistics.median(times), "p99_ms": 1000 * times[int(0.99 * len(times))]}))
asyncio.run(main())
"""


def in_process_latency(model: Path, texts: Sequence[str]) -> dict[str, float]:
    """Median and p99 of Rasa's own `Agent.parse_message`, in Rasa's Python, no HTTP."""
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as sample:
        json.dump(list(texts), sample)
    try:
        result = subprocess.run(
            [str(RASA_HOME / "bin" / "python"), "-c", _IN_PROCESS, str(model), sample.name],
            capture_output=True,
            text=True,
            timeout=900,
            check=True,
        )
    finally:
        os.unlink(sample.name)
    return dict(json.loads(result.stdout.strip().splitlines()[-1]))


class RasaServer:
    """`rasa run --enable-api` on a free loopback port with one model."""

    def __init__(self, model: Path) -> None:
        self.model = model
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.process: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> RasaServer:
        self.process = subprocess.Popen(
            [
                str(RASA_HOME / "bin" / "rasa"),
                "run",
                "--enable-api",
                "-i",
                "127.0.0.1",
                "-p",
                str(self.port),
                "-m",
                str(self.model),
                "--quiet",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
            cwd=self.model.parent,
        )
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"Rasa exited with {self.process.returncode} loading {self.model}")
            try:
                with urllib.request.urlopen(f"{self.url}/status", timeout=2) as answer:
                    if answer.status == 200:
                        return self
            except OSError:
                time.sleep(1)
        raise RuntimeError("Rasa did not come up in 300 s")

    def __exit__(self, *exc: object) -> None:
        if self.process is not None:
            os.killpg(self.process.pid, signal.SIGTERM)
            self.process.wait(timeout=60)

    def predict(
        self, texts: Sequence[str], label: str, beneath_fallback: bool = False
    ) -> list[tuple[str, float]]:
        """(intent, confidence) for each text, from /model/parse, eight requests at a time.

        With `beneath_fallback`, an `nlu_fallback` answer gives way to the intent Rasa ranked
        first beneath it, with its own confidence: on a public data set the out-of-scope
        decision is the benchmark's tuned threshold (or there is none), as for the built-in
        engine, not the pipeline's fixed 0.4."""
        return asyncio.run(self._predict(texts, label, beneath_fallback))

    async def _predict(
        self, texts: Sequence[str], label: str, beneath_fallback: bool
    ) -> list[tuple[str, float]]:
        results: list[tuple[str, float]] = [("", 0.0)] * len(texts)
        progress = Progress(label, len(texts))
        done = 0
        queue: asyncio.Queue[int] = asyncio.Queue()
        for index in range(len(texts)):
            queue.put_nowait(index)

        async def worker(http: aiohttp.ClientSession) -> None:
            nonlocal done
            while not queue.empty():
                index = queue.get_nowait()
                async with http.post(f"{self.url}/model/parse", json={"text": texts[index]}) as answer:
                    body = await answer.json()
                intent = body.get("intent") or {}
                if beneath_fallback and intent.get("name") == "nlu_fallback":
                    ranked = (r for r in body.get("intent_ranking") or () if r.get("name") != "nlu_fallback")
                    intent = next(ranked, intent)
                results[index] = (
                    str(intent.get("name") or "nlu_fallback"),
                    float(intent.get("confidence") or 0.0),
                )
                done += 1
                if done % 50 == 0:
                    progress.update(done)

        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=120)) as http:
            await asyncio.gather(*(worker(http) for _ in range(8)))
        progress.close()
        return results

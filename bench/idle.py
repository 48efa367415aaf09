"""Idle web chat connections: how much memory one Guichet process needs to hold them open.

    python bench/idle.py [--connections 10000]

Opens that many WebSockets to one `guichet run` (embedded store), each with its session (hello
→ welcome), as people who opened the chat and went for a coffee; then prints the process's
resident memory before and after, per connection, and checks one of them still gets an
answer. Goal (issue 6): 10,000 idle connections in under 1 GB.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from pathlib import Path

import aiohttp

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bot.progress import Progress  # noqa: E402
from tests.processes import GuichetProcess, config_copy, free_port  # noqa: E402


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


async def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--connections", type=int, default=10_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="guichet-idle-") as directory:
        workdir = Path(directory)
        config = config_copy(
            workdir / "config",
            webchat={"per_ip": {"rate": 1_000_000.0, "burst": 1_000_000}},  # all from one address here
            email={"enabled": False},
        )
        guichet = GuichetProcess(config, workdir / "data", free_port())
        guichet.start(timeout=60)
        try:
            guichet.wait_for_model()
            assert guichet.process is not None
            pid = guichet.process.pid
            before = rss_mb(pid)
            connector = aiohttp.TCPConnector(limit=0)
            sockets: list[aiohttp.ClientWebSocketResponse] = []
            bar = Progress("opening connections", args.connections)
            started = time.monotonic()
            async with aiohttp.ClientSession(connector=connector) as http:
                gate = asyncio.Semaphore(200)  # connect in waves, as a morning rush would

                async def connect() -> None:
                    async with gate:
                        ws = await http.ws_connect(f"{guichet.url}/webchat/ws", heartbeat=None)
                        await ws.send_json({"type": "hello", "token": None, "locale": "fr"})
                        while (await ws.receive_json(timeout=60))["type"] != "welcome":
                            pass
                        sockets.append(ws)
                        bar.update(len(sockets))

                await asyncio.gather(*(connect() for _ in range(args.connections)))
                bar.close()
                opened = time.monotonic() - started
                await asyncio.sleep(2)
                after = rss_mb(pid)
                # One of them asks something: the others being open costs it nothing.
                probe = sockets[len(sockets) // 2]
                asked = time.monotonic()
                await probe.send_json(
                    {"type": "message", "id": "probe", "text": "j'ai oublié mon mot de passe"}
                )
                while (await probe.receive_json(timeout=30))["type"] != "message":
                    pass
                answered_ms = (time.monotonic() - asked) * 1000
                per = (after - before) * 1024 / max(1, len(sockets))
                print(f"\n{len(sockets)} idle web chat connections opened in {opened:.1f} s")
                print(
                    f"  process memory: {before:.0f} MB before, {after:.0f} MB after ({per:.1f} KB per connection)"
                )
                print(f"  one of them asks a question: answered in {answered_ms:.0f} ms")
                verdict = "met" if after < 1024 and len(sockets) >= 10_000 else "NOT met"
                print(f"  goal 10,000 connections in under 1 GB: {verdict}")
                for ws in sockets:
                    await ws.close()
        finally:
            guichet.stop()
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))

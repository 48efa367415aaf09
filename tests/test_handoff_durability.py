"""A handoff accepted is never lost: not when level 2 is down, not on `kill -9` of Guichet
between acceptance and delivery; a handoff that keeps failing waits in the dead letters
until an operator replays it with `guichet handoff dead-letters`."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

import pytest

from handoff.signing import new_secret
from tests.conftest import MODEL_DIR
from tests.level2 import Receiver, open_ticket_over_rest
from tests.processes import ROOT, GuichetProcess, config_copy, free_port


def desk_config(tmp_path: Path, receiver: Receiver, schedule: list[float]) -> Path:
    return config_copy(
        tmp_path / "config",
        handoff={
            "queues": {
                "support": {"url": receiver.url, "secret_env": "GUICHET_QUEUE_SUPPORT_SECRET"},
                "security": {"url": receiver.url, "secret_env": "GUICHET_QUEUE_SUPPORT_SECRET"},
            },
            "retry_schedule_seconds": schedule,
        },
    )


@pytest.mark.slow
async def test_kill_9_between_acceptance_and_delivery_loses_nothing(tmp_path: Path) -> None:
    secret = new_secret()
    receiver = Receiver(secrets=[secret])  # not started yet: level 2 is down
    # Retries for a minute (level 2 down for an hour, in the small): nothing becomes a dead letter.
    config = desk_config(tmp_path, receiver, [0.5] * 120)
    server = GuichetProcess(
        config,
        tmp_path / "data",
        free_port(),
        env={"GUICHET_QUEUE_SUPPORT_SECRET": secret, "GUICHET_MODEL_DIR": str(MODEL_DIR)},
    )
    server.start()
    try:
        server.wait_for_model()
        numbers = [
            await open_ticket_over_rest(
                server.url, f"person{n}", f"Le logiciel Zorglub{n} plante au démarrage"
            )
            for n in range(3)
        ]
        server.kill()  # the three handoffs were accepted, none delivered
        await receiver.start()
        server.start()
        await receiver.arrived("ticket.created", 3)
        delivered = receiver.of_type("ticket.created")
        assert sorted(d["ticket"]["number"] for d in delivered) == sorted(numbers)
        assert all(r.signature_ok for r in receiver.received)
    finally:
        server.stop()
        await receiver.stop()


@pytest.mark.slow
async def test_dead_letters_are_listed_and_replayed_by_the_operator(tmp_path: Path) -> None:
    secret = new_secret()
    receiver = Receiver(secrets=[secret], fail_first=1000)  # level 2 refuses everything
    await receiver.start()
    config = desk_config(tmp_path, receiver, [0.1, 0.1])
    env = {"GUICHET_QUEUE_SUPPORT_SECRET": secret, "GUICHET_MODEL_DIR": str(MODEL_DIR)}
    server = GuichetProcess(config, tmp_path / "data", free_port(), env=env)
    server.start()

    def guichet(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "bot.cli", "handoff", *args, "--config", str(config)],
            env=server.env,
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=60,
        )

    try:
        server.wait_for_model()
        number = await open_ticket_over_rest(server.url, "zoe", "Le logiciel Zorglub plante au démarrage")
        for _ in range(100):  # 1 attempt + 2 retries, then a dead letter
            listing = guichet("dead-letters")
            if number in listing.stdout:
                break
            await asyncio.sleep(0.1)
        assert listing.returncode == 0 and number in listing.stdout, listing
        assert "503" in listing.stdout and "attempts=3" in listing.stdout
        assert receiver.received == []
        item_id = listing.stdout.split()[0]

        receiver.fail_first = 0  # level 2 is back
        replay = guichet("dead-letters", "--replay", item_id)
        assert replay.returncode == 0 and replay.stdout.startswith("replayed"), replay
        await receiver.arrived("ticket.created")
        (document,) = receiver.of_type("ticket.created")
        assert document["ticket"]["number"] == number
        assert "No dead letters" in guichet("dead-letters").stdout
    finally:
        server.stop()
        await receiver.stop()
    # With the process stopped, the command opens the store itself.
    assert "No dead letters" in guichet("dead-letters").stdout
    unknown = guichet("dead-letters", "--replay", "msg_nope")
    assert "NOT FOUND" in unknown.stdout


@pytest.mark.slow
async def test_the_secret_guichet_made_is_shown_while_it_runs_and_signs_its_handoffs(tmp_path: Path) -> None:
    """The five-minute trial: `guichet run`, then `guichet handoff queues` in another terminal
    gives the secret the level-2 desk needs, without stopping Guichet."""
    receiver = Receiver()  # its secret is not known yet
    await receiver.start()
    config = config_copy(tmp_path / "config", handoff={"queues": {"support": {"url": receiver.url}}})
    server = GuichetProcess(config, tmp_path / "data", free_port(), env={"GUICHET_MODEL_DIR": str(MODEL_DIR)})
    server.start()
    try:
        server.wait_for_model()
        shown = await asyncio.to_thread(
            subprocess.run,
            [sys.executable, "-m", "bot.cli", "handoff", "queues", "--config", str(config)],
            env=server.env,
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert shown.returncode == 0, shown
        line = next(line for line in shown.stdout.splitlines() if line.startswith("support:"))
        secret = line.split()[-1]
        assert secret.startswith("whsec_"), shown.stdout
        receiver.secrets = [secret]
        number = await open_ticket_over_rest(server.url, "ines", "Le logiciel Zorglub plante au démarrage")
        await receiver.arrived("ticket.created")
        (received,) = receiver.received
        assert received.signature_ok and received.document["ticket"]["number"] == number
    finally:
        server.stop()
        await receiver.stop()

"""`guichet handoff …`: what an operator needs when level 2 was unreachable.

The store is opened directly when nobody holds it (a stopped embedded store, or Redis);
a running embedded process holds its store, so the command then asks that process over
HTTP, with the token it wrote next to its data."""

from __future__ import annotations

import asyncio
import json
import urllib.error
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bot.admin_api import TOKEN_FILE
from bot.config import check_configuration
from bot.errors import ConfigError, StoreLockedError
from bot.messages import utcnow
from bot.settings import Settings
from handoff.signing import new_secret


def _settings(config_dir: Path) -> Settings:
    configuration, problems = check_configuration(config_dir)
    if configuration is None:
        raise ConfigError(problems)
    return configuration.settings


def dead_letters(config_dir: Path, replay: Sequence[str], replay_all: bool) -> int:
    settings = _settings(config_dir)
    try:
        items = asyncio.run(_direct(settings, replay, replay_all))
    except StoreLockedError:
        items = _through_process(settings, replay, replay_all)
    if not items:
        print("No dead letters: every handoff was delivered or is still being retried.")
        return 0
    for item in items:
        body = item.get("body", {})
        ticket = body.get("ticket", {})
        number = ticket.get("number") if isinstance(ticket, dict) else ticket
        state = item.get("_replayed")
        mark = "" if state is None else "replayed  " if state else "NOT FOUND "
        print(
            f"{mark}{item['id']}  {item['destination']:<20} {body.get('type', '?'):<18} {number or '?':<16} "
            f"attempts={item.get('attempts', 0)}  last error: {item.get('last_error') or '-'}"
        )
    if not replay and not replay_all:
        print(f"\n{len(items)} dead letter(s). Replay one with --replay ID, or all with --replay-all.")
    return 0


async def _direct(settings: Settings, replay: Sequence[str], replay_all: bool) -> list[dict[str, Any]]:
    from bot.app import make_store_for

    store = make_store_for(settings)
    await store.open()
    try:
        items = [item.to_dict() for item in await store.dead_letters()]
        chosen = [i for i in items if replay_all or i["id"] in replay]
        for item in chosen:
            item["_replayed"] = await store.replay(item["id"], utcnow())
        missing = [
            {"id": r, "destination": "?", "_replayed": False}
            for r in replay
            if r not in {i["id"] for i in items}
        ]
        return chosen + missing if (replay or replay_all) else items
    finally:
        await store.close()


def _through_process(settings: Settings, replay: Sequence[str], replay_all: bool) -> list[dict[str, Any]]:
    base = "/admin/dead-letters"

    def call(path: str, method: str = "GET") -> Any:
        try:
            return _admin_call(settings, path, method)
        except urllib.error.HTTPError as exc:
            if exc.code == 404:
                return {"replayed": False}
            raise

    items: list[dict[str, Any]] = call(base)
    if not replay and not replay_all:
        return items
    chosen = [i for i in items if replay_all or i["id"] in replay]
    chosen += [{"id": r, "destination": "?"} for r in replay if r not in {i["id"] for i in items}]
    for item in chosen:
        item["_replayed"] = bool(call(f"{base}/{item['id']}/replay", "POST").get("replayed"))
    return chosen


def queues(config_dir: Path) -> int:
    settings = _settings(config_dir)
    if not settings.handoff.queues:
        print("No level-2 queue is configured (handoff.queues in guichet.yml): tickets stay in the store.")
        return 0

    async def secrets() -> dict[str, str]:
        from bot.app import make_store_for

        store = make_store_for(settings)
        await store.open()
        try:
            return {
                name: await store.secret(f"queue:{name}", new_secret())
                for name, queue in settings.handoff.queues.items()
                if not queue.secret_env
            }
        finally:
            await store.close()

    problem = ""
    try:
        made = asyncio.run(secrets())
    except StoreLockedError:
        try:  # the running process holds the store: it tells
            made = _admin_call(settings, "/admin/queues")
        except (StoreLockedError, OSError, ValueError) as exc:
            made, problem = {}, str(exc)
    for name, queue in settings.handoff.queues.items():
        if queue.secret_env:
            where = f"secret from ${queue.secret_env}"
        elif name in made:
            where = f"secret (made by Guichet, give it to the receiver): {made[name]}"
        else:
            where = f"secret made by Guichet, not readable now ({problem or 'not made yet'})"
        print(f"{name}: {queue.url}  {where}")
    return 0


def _admin_call(settings: Settings, path: str, method: str = "GET") -> Any:
    """One of the running process's operator endpoints (bot/admin_api.py), with the token it
    wrote next to its data."""
    token_path = Path(settings.store.path) / TOKEN_FILE
    try:
        admin = json.loads(token_path.read_text())
        token, url = admin["token"], f"{admin['url']}{path}"
    except (OSError, ValueError, KeyError) as exc:
        raise StoreLockedError(f"the store is in use and {token_path} cannot be read: {exc}") from exc
    request = urllib.request.Request(url, method=method, headers={"Authorization": f"Bearer {token}"})
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.load(response)

"""Operator endpoints of a running process, for `guichet handoff dead-letters` and
`guichet handoff queues` when the embedded store is held by that process. A bearer token written next to the data (mode 0600)
authorises them: whoever can read the data directory may manage it. The file also says
where the process listens, whatever port it was given on its command line."""

from __future__ import annotations

import asyncio
import hmac
import json
import os
import secrets
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

from aiohttp import web

from bot import privacy
from bot.messages import utcnow
from bot.stats import DeskStats, page
from bot.store.base import Store

TOKEN_FILE = "admin-token"


class AdminApi:
    def __init__(
        self,
        http: web.Application,
        store: Store,
        stats: DeskStats | None = None,
        organisation: str = "",
        made_secrets: Callable[[], dict[str, str]] = dict,
    ) -> None:
        self.store = store
        self.made_secrets = made_secrets
        self.stats = stats
        self.organisation = organisation
        self.token = secrets.token_urlsafe(32)
        http.router.add_get("/admin/dead-letters", self._list)
        http.router.add_post("/admin/dead-letters/{item_id}/replay", self._replay)
        http.router.add_get("/admin/queues", self._queues)
        http.router.add_get("/stats", self._stats)
        http.router.add_get("/admin/unanswered", self._unanswered)
        http.router.add_get("/admin/people/{person}", self._export)
        http.router.add_delete("/admin/people/{person}", self._forget)
        self.attachments_dir: Path | None = None

    def write_token(self, data_dir: Path, url: str) -> None:
        data_dir.mkdir(parents=True, exist_ok=True)
        path = data_dir / TOKEN_FILE
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as file:
            json.dump({"url": url, "token": self.token}, file)

    def _authorised(self, request: web.Request, *, query: bool = False) -> bool:
        given = request.headers.get("Authorization", "")
        if query and "token" in request.query:  # a link a manager opens in a browser
            given = f"Bearer {request.query['token']}"
        return hmac.compare_digest(given.encode(), f"Bearer {self.token}".encode())

    async def _export(self, request: web.Request) -> web.Response:
        if not self._authorised(request):
            return web.json_response({"error": "unauthorised"}, status=401)
        return web.json_response(await privacy.export(self.store, request.match_info["person"]))

    async def _forget(self, request: web.Request) -> web.Response:
        if not self._authorised(request):
            return web.json_response({"error": "unauthorised"}, status=401)
        mail_dir = self.attachments_dir.parent / "sent-mail" if self.attachments_dir else None
        erased = await privacy.forget(
            self.store, request.match_info["person"], self.attachments_dir, mail_dir
        )
        return web.json_response(erased.to_dict())

    async def _unanswered(self, request: web.Request) -> web.Response:
        if not self._authorised(request):
            return web.json_response({"error": "unauthorised"}, status=401)
        try:
            days = max(1, min(400, int(request.query.get("days", "30"))))
        except ValueError:
            return web.json_response({"error": "days must be a whole number"}, status=400)
        questions = await self.store.unanswered(utcnow() - timedelta(days=days))
        return web.json_response([q.to_dict() for q in questions])

    async def _stats(self, request: web.Request) -> web.Response:
        """The manager's page (bot/stats.py): `guichet stats` prints its link."""
        if not self._authorised(request, query=True) or self.stats is None:
            return web.Response(
                status=401,
                text="Lien incomplet : lancez `guichet stats` pour obtenir le lien de cette page.\n"
                "Incomplete link: run `guichet stats` for this page's link.\n",
                content_type="text/plain",
            )
        try:
            days = max(1, min(400, int(request.query.get("days", "30"))))
        except ValueError:
            days = 30
        figures = await self.stats.days(days)
        questions = await self.store.unanswered(utcnow() - timedelta(days=days))
        # in a thread: grouping the unanswered questions is a clustering of up to 2,000 of them
        text = await asyncio.to_thread(page, figures, questions, self.organisation)
        return web.Response(
            text=text,
            content_type="text/html",
            headers={"Cache-Control": "no-store", "Referrer-Policy": "no-referrer"},
        )

    async def _queues(self, request: web.Request) -> web.Response:
        """The signing secrets this process made for its level-2 queues: whoever holds the
        token can read the store they are kept in anyway."""
        if not self._authorised(request):
            return web.json_response({"error": "unauthorised"}, status=401)
        return web.json_response(self.made_secrets(), headers={"Cache-Control": "no-store"})

    async def _list(self, request: web.Request) -> web.Response:
        if not self._authorised(request):
            return web.json_response({"error": "unauthorised"}, status=401)
        return web.json_response([item.to_dict() for item in await self.store.dead_letters()])

    async def _replay(self, request: web.Request) -> web.Response:
        if not self._authorised(request):
            return web.json_response({"error": "unauthorised"}, status=401)
        done = await self.store.replay(request.match_info["item_id"], utcnow())
        return web.json_response({"replayed": done}, status=200 if done else 404)

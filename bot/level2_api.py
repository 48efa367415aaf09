"""The way back from level 2: `POST /handoff/events`, signed like the handoff itself.

A verified event becomes a message of the ticket's conversation (sender "agent"), so it is
stored before it is acknowledged and handled in order with the person's own messages; its
webhook id is its platform id, so a replayed event is refused by the inbox's deduplication.
"""

from __future__ import annotations

import hmac
import logging
import re
from collections.abc import Callable, Sequence
from pathlib import Path

from aiohttp import web

from bot.desk import attachment_signature
from bot.manager import ConversationManager
from bot.messages import Inbound
from bot.store.base import Store
from handoff.events import EventError, parse_event

log = logging.getLogger("guichet.level2")

_DIGEST = re.compile(r"[0-9a-f]{64}")

SecretsForQueue = Callable[[str], Sequence[str] | None]


class Level2Api:
    def __init__(
        self, http: web.Application, store: Store, manager: ConversationManager, secrets: SecretsForQueue
    ) -> None:
        self.store = store
        self.manager = manager
        self.secrets = secrets
        self.attachments_dir: Path | None = None  # set by the app with the signing key
        self.attachment_key = b""
        http.router.add_post("/handoff/events", self._event)
        http.router.add_get("/handoff/attachments/{digest}", self._attachment)

    async def _attachment(self, request: web.Request) -> web.StreamResponse:
        """A file a person sent, for the link in the handoff document (its signature is the key)."""
        digest = request.match_info["digest"]
        given = request.query.get("sig", "")
        if (
            not self.attachment_key
            or self.attachments_dir is None
            or not _DIGEST.fullmatch(digest)
            or not hmac.compare_digest(given, attachment_signature(self.attachment_key, digest))
        ):
            return web.json_response({"error": "no such attachment, or a wrong signature"}, status=404)
        path = self.attachments_dir / digest
        if not path.is_file():
            return web.json_response({"error": "no such attachment, or a wrong signature"}, status=404)
        # Served as a download, never rendered: a person's file may be HTML or a script.
        return web.FileResponse(
            path,
            headers={
                "Content-Type": "application/octet-stream",
                "Content-Disposition": "attachment",
                "X-Content-Type-Options": "nosniff",
            },
        )

    async def _event(self, request: web.Request) -> web.Response:
        body = await request.read()
        try:
            event = parse_event(request.headers, body, lambda queue: list(self.secrets(queue) or ()))
        except EventError as exc:
            log.warning("level-2 event refused (%s): %s", exc.status, exc.reason)
            return web.json_response({"error": exc.reason}, status=exc.status)
        ticket = await self.store.ticket(event.ticket)
        if ticket is None:
            return web.json_response({"error": f"no ticket {event.ticket}"}, status=404)
        if ticket.queue != event.queue:
            return web.json_response({"error": f"ticket {event.ticket} belongs to another queue"}, status=403)
        channel, _, conversation_id = ticket.requester.conversation_key.partition(":")
        inbound = Inbound(
            channel=channel,
            conversation_id=conversation_id,
            user_id="level2",
            text=event.text or "",
            platform_message_id=f"l2:{event.id}",
            sender="agent",
            agent_name=event.agent_name,
            raw={"level2": {"type": event.type, "ticket": event.ticket, "queue": event.queue}},
        )
        result = await self.manager.receive(inbound)
        if not result.accepted:
            return web.json_response({"error": f"event {event.id} was already received"}, status=409)
        return web.json_response({"accepted": True, "id": event.id}, status=202)

"""Guichet's NLU over HTTP in Rasa's shape: `POST /model/parse` with `{"text": ...}`, so a tool
written for Rasa NLU can use Guichet's engine unchanged. Out of scope is `nlu_fallback`."""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web

from nlu.engine import NluEngine, parse_to_rasa

RASA_COMPATIBLE = "3.6.21"


def _failure(status: int, reason: str, message: str) -> web.Response:
    # The shape of Rasa's own error answers.
    body: dict[str, Any] = {
        "version": RASA_COMPATIBLE,
        "status": "failure",
        "message": message,
        "reason": reason,
        "details": {},
        "help": None,
        "code": status,
    }
    return web.json_response(body, status=status)


class NluApi:
    def __init__(self, app: web.Application, engine: NluEngine, intent_threshold: float) -> None:
        self.engine = engine
        self.intent_threshold = intent_threshold
        app.router.add_post("/model/parse", self._parse)
        app.router.add_get("/version", self._version)

    async def _version(self, request: web.Request) -> web.Response:
        return web.json_response(
            {"version": RASA_COMPATIBLE, "minimum_compatible_version": RASA_COMPATIBLE, "server": "guichet"}
        )

    async def _parse(self, request: web.Request) -> web.Response:
        try:
            body: Any = await request.json()
        except web.HTTPRequestEntityTooLarge:
            return _failure(413, "PayloadTooLarge", f"The body is over {request.client_max_size} bytes.")
        except ValueError:
            return _failure(400, "BadRequest", "The body is not valid JSON.")
        if not isinstance(body, dict) or not isinstance(body.get("text"), str):
            return _failure(400, "BadRequest", 'Expected a JSON object {"text": "..."}.')
        parse = await self.engine.parse(body["text"])
        return web.json_response(
            parse_to_rasa(parse, self.intent_threshold), dumps=lambda o: json.dumps(o, ensure_ascii=False)
        )

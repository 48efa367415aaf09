"""The peer of bench/webchat.py: a bare aiohttp server speaking the same two protocols
(web chat WebSocket, Rasa REST) that answers every message with a fixed text at once.

It stores nothing and understands nothing, so its figures are the ceiling this machine and
this load generator allow; Guichet's figures are printed as a share of it.
"""

from __future__ import annotations

import json
import sys

import uvloop
from aiohttp import WSMsgType, web


async def websocket(request: web.Request) -> web.WebSocketResponse:
    ws = web.WebSocketResponse()
    await ws.prepare(request)
    seq = 0
    async for frame in ws:
        if frame.type != WSMsgType.TEXT:
            continue
        data = json.loads(frame.data)
        if data.get("type") == "hello":
            await ws.send_json({"type": "welcome", "token": "t", "history": [], "notice": None})
            continue
        seq += 2
        await ws.send_json({"type": "ack", "id": data["id"], "seq": seq - 1})
        await ws.send_json({"type": "message", "seq": seq, "from": "bot", "text": "ok", "choices": []})
    return ws


async def rest(request: web.Request) -> web.Response:
    body = await request.json()
    return web.json_response([{"recipient_id": body["sender"], "text": "ok"}])


async def health(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


def main() -> None:
    app = web.Application()
    app.router.add_get("/webchat/ws", websocket)
    app.router.add_post("/webhooks/rest/webhook", rest)
    app.router.add_get("/healthz", health)
    # The same event loop as `guichet run`, so the comparison is of the work done, not of the loop.
    web.run_app(
        app,
        host="127.0.0.1",
        port=int(sys.argv[1]),
        print=None,
        access_log=None,
        loop=uvloop.new_event_loop(),
    )


if __name__ == "__main__":
    main()

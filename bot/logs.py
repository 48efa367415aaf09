"""Logs an operator can feed to a log platform: one JSON object per line (`--log-format json`
or GUICHET_LOG_FORMAT=json), with the conversation and ticket ids a line is about.

What people write never goes into a log line (nor their addresses): lines name conversations
and tickets by id. At DEBUG level a line may say more; that is the operator's choice.
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime

FIELDS = ("conversation", "ticket", "channel", "queue")
LIBRARIES = ("mail.log", "aiogram", "slack_bolt", "slack_sdk", "aiohttp.access", "asyncio")


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, object] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for name in FIELDS:
            value = getattr(record, name, None)
            if value is not None:
                line[name] = value
        if record.exc_info:
            line["error"] = self.formatException(record.exc_info)
        return json.dumps(line, ensure_ascii=False)


def configure(level: str, form: str) -> None:
    handler = logging.StreamHandler()
    if form == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logging.basicConfig(level=level, handlers=[handler], force=True)
    if level != "DEBUG":
        # Libraries that log the SMTP dialogue or platform events name people: not below DEBUG.
        for name in LIBRARIES:
            logging.getLogger(name).setLevel(logging.WARNING)

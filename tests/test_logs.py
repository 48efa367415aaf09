"""`guichet run --log-format json`: one JSON object per line, and nothing a person wrote — nor
their address — in any line, whatever happened (answers, a ticket, a bounce, a capped reply)."""

from __future__ import annotations

import json
import smtplib
import urllib.request
from pathlib import Path

from tests.conftest import MODEL_DIR
from tests.processes import GuichetProcess, config_copy, free_port

SECRET_WORDS = "ma voisine Gertrude Zorglub"


def post(url: str, sender: str, text: str) -> list[dict[str, object]]:
    request = urllib.request.Request(
        f"{url}/webhooks/rest/webhook",
        data=json.dumps({"sender": sender, "message": text}).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=30) as answer:
        replies: list[dict[str, object]] = json.load(answer)
        return replies


def test_json_logs_name_ids_never_words_or_addresses(tmp_path: Path) -> None:
    smtp = free_port()
    config = config_copy(tmp_path / "config", email={"auto_reply": {"per_sender": 1}})
    env = {"GUICHET_LOG_FORMAT": "json", "GUICHET_SMTP_PORT": str(smtp), "GUICHET_MODEL_DIR": str(MODEL_DIR)}
    process = GuichetProcess(config, tmp_path / "data", free_port(), env=env)
    process.start(timeout=60)
    try:
        process.wait_for_model()
        post(process.url, "ana", f"{SECRET_WORDS} a cassé l'imprimante")
        post(process.url, "ana", "ticket:yes")
        with smtplib.SMTP("127.0.0.1", smtp, timeout=10) as client:
            for n in range(3):  # the second and third are over the per-sender cap: logged
                message = f"Subject: Aide\r\nFrom: gertrude@zorglub.fr\r\nMessage-ID: <z{n}@zorglub.fr>\r\n\r\n{SECRET_WORDS} {n}\r\n"
                client.sendmail("gertrude@zorglub.fr", ["support@example.com"], message.encode())
            bounce = "Subject: Undelivered\r\nFrom: MAILER-DAEMON@zorglub.fr\r\nMessage-ID: <b@zorglub.fr>\r\n\r\nfailed\r\n"
            client.sendmail("", ["support@example.com"], bounce.encode())
        post(process.url, "ana", "bonjour")  # by now the mails are handled too
    finally:
        process.stop()
    lines = [line for line in process.log.read_text(encoding="utf-8").splitlines() if line.strip()]
    records = [json.loads(line) for line in lines if line.startswith("{")]
    others = [line for line in lines if not line.startswith("{")]
    assert all(line.startswith(("Guichet is ready", "Email:", "Level 2:", "Stopping")) for line in others), (
        others
    )
    assert {"time", "level", "logger", "message"} <= set(records[0])
    assert any("capped" in r["message"] and r.get("conversation", "").startswith("email:") for r in records)
    assert any("gets no reply" in r["message"] for r in records)  # the bounce
    text = "\n".join(lines).lower()
    for secret in ("gertrude", "zorglub", "mailer-daemon@"):
        assert secret not in text, secret

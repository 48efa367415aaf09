"""The built-in engine: language, entities, knowledge-base matches, bad input, live KB edits,
and Guichet's own `/model/parse` in Rasa's shape."""

from __future__ import annotations

import logging
import shutil
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from bot.app import Guichet
from bot.config import Configuration, load_configuration
from bot.kb_watch import KnowledgeBaseWatcher
from nlu.engine import BuiltinEngine
from tests.conftest import SAMPLE_CONFIG, configuration_for


@pytest.fixture(scope="module")
def engine() -> BuiltinEngine:
    configuration = load_configuration(SAMPLE_CONFIG, environ={})
    return BuiltinEngine(configuration.training, configuration.articles)


@pytest.mark.parametrize(
    ("text", "hint", "language"),
    [
        ("mot de passe oublie", None, "fr"),
        ("Outlook crash depuis ce matin", None, "fr"),
        ("mon pc rame grave", None, "fr"),
        ("my laptop is toast", None, "en"),
        ("printer jammed again", None, "en"),
        ("VPN", "en", "en"),  # says nothing: the channel's hint decides
        ("VPN", "fr", "fr"),
        # A chat word decides a short message, whatever the product name beside it and the hint.
        ("wifi ko", "en", "fr"),
        ("teams down pls", "fr", "en"),
        ("nope", "fr", "en"),
        ("rdp ko svp", None, "fr"),
        ("password svp", "en", "en"),  # markers of both languages: the statistics, then the hint
        # One word of one language only, with no hint (REST): not the desk's default language.
        ("printer", None, "en"),
        ("imprimante", None, "fr"),
        ("mouse", "fr", "en"),
    ],
)
def test_language(engine: BuiltinEngine, text: str, hint: str | None, language: str) -> None:
    assert engine.parse_now(text, hint).language == language


def test_entities_a_help_desk_needs(engine: BuiltinEngine) -> None:
    text = (
        "Outlook plante depuis ce matin sur PC-12345 (ticket HD-2026-000042), "
        "rappelez-moi au 06 12 34 56 78 ou à jean.dupont@exemple.fr, serveur srv-files-01"
    )
    found = {(e.entity, e.text) for e in engine.parse_now(text).entities}
    assert found >= {
        ("application", "Outlook"),
        ("time", "depuis ce matin"),
        ("asset_tag", "PC-12345"),
        ("ticket_number", "HD-2026-000042"),
        ("phone", "06 12 34 56 78"),
        ("email", "jean.dupont@exemple.fr"),
        ("hostname", "srv-files-01"),
    }


def test_times_are_placed_in_time() -> None:
    from nlu.entities import EntityExtractor

    now = datetime(2026, 11, 22, 10, 30, tzinfo=UTC)
    values = {e.text: e.value for e in EntityExtractor().extract("since yesterday, depuis 3 jours", now)}
    assert values == {
        "since yesterday": "2026-11-21T10:30:00+00:00",
        "depuis 3 jours": "2026-11-19T10:30:00+00:00",
    }


@pytest.mark.parametrize(
    "text",
    [
        "",
        " ",
        "a" * 20_000,
        "🙂🙂🙂",
        "\x00\x01\x1b[31m",
        "\ud800",
        "Wie geht es dir?",
        "<script>alert(1)</script>",
        "HD-" * 5000,
    ],
)
def test_bad_input_gets_a_quick_sensible_parse(engine: BuiltinEngine, text: str) -> None:
    started = time.perf_counter()
    parse = engine.parse_now(text)
    assert time.perf_counter() - started < 0.1
    assert parse.language in ("fr", "en")
    assert all(m.score < 0.5 for m in parse.kb_matches), "nonsense must not look like a confident answer"


def test_an_edited_article_is_picked_up_without_restart(tmp_path: Path) -> None:
    config = tmp_path / "config"
    shutil.copytree(SAMPLE_CONFIG, config)
    configuration = load_configuration(config, environ={})
    engine = BuiltinEngine(configuration.training, configuration.articles)
    watcher = KnowledgeBaseWatcher(config / "kb", engine)
    question = "la machine à café fuit sur la moquette"
    assert all(m.article_id != "coffee-machine" for m in engine.parse_now(question).kb_matches)
    (config / "kb" / "fr" / "coffee-machine.md").write_text(
        "---\nid: coffee-machine\ntitle: Machine à café\nquestions:\n  - la machine à café fuit\n"
        "  - machine a cafe en panne\ntags: [services]\n---\nAppelez les services généraux au 1234.\n",
        encoding="utf-8",
    )
    assert watcher.check_now()
    assert engine.parse_now(question).kb_matches[0].article_id == "coffee-machine"
    assert not watcher.check_now(), "nothing changed since"
    (config / "kb" / "fr" / "coffee-machine.md").unlink()
    assert watcher.check_now()
    assert all(m.article_id != "coffee-machine" for m in engine.parse_now(question).kb_matches)


async def model_parse(url: str, body: Any, raw: bytes | None = None) -> tuple[int, Any]:
    async with aiohttp.ClientSession() as http:
        kwargs: dict[str, Any] = {"data": raw} if raw is not None else {"json": body}
        async with http.post(f"{url}/model/parse", **kwargs) as answer:
            return answer.status, await answer.json()


async def test_model_parse_answers_in_rasas_shape(guichet: Guichet) -> None:
    status, body = await model_parse(guichet.url, {"text": "bonjour"})
    assert status == 200
    assert body["intent"]["name"] == "greet" and body["intent"]["confidence"] >= 0.5
    assert body["intent_ranking"][0] == body["intent"]
    assert body["text"] == "bonjour" and body["entities"] == []
    status, body = await model_parse(guichet.url, {"text": "Teams plante depuis hier sur LT-00421"})
    assert {(e["entity"], e["value"]) for e in body["entities"]} >= {
        ("application", "Teams"),
        ("asset_tag", "LT-00421"),
    }
    assert all({"start", "end", "extractor"} <= set(e) for e in body["entities"])


async def test_model_parse_reports_out_of_scope_as_nlu_fallback(guichet: Guichet) -> None:
    status, body = await model_parse(guichet.url, {"text": "quelle est la recette de la tarte tatin"})
    assert status == 200
    assert body["intent"]["name"] == "nlu_fallback"


def test_an_address_alone_is_no_request_and_keeps_the_conversation_s_language(engine: BuiltinEngine) -> None:
    for text in ("jean.dupont@example.com", " +33 6 12 34 56 78 ", "jean@example.com / 06 12 34 56 78."):
        for hint in ("fr", "en"):
            parse = engine.parse_now(text, hint)
            assert parse.language == hint, text
            assert parse.intent is None and parse.ranking == () and parse.kb_matches == (), text
            assert {e.entity for e in parse.entities} & {"email", "phone"}, text
    # with words around it, it is a request like any other
    parse = engine.parse_now("je n'arrive plus à envoyer de mails depuis jean@example.com", "en")
    assert parse.language == "fr" and parse.intent is not None


async def test_model_parse_reports_an_address_alone_as_nlu_fallback(guichet: Guichet) -> None:
    status, body = await model_parse(guichet.url, {"text": "jean.dupont@example.com"})
    assert status == 200
    assert body["intent"] == {"name": "nlu_fallback", "confidence": 1.0}
    assert [e["entity"] for e in body["entities"]] == ["email"]


async def test_model_parse_refuses_bad_requests_the_way_rasa_does(guichet: Guichet) -> None:
    status, body = await model_parse(guichet.url, None, raw=b"{not json")
    assert (status, body["status"], body["code"]) == (400, "failure", 400)
    status, body = await model_parse(guichet.url, {"message": "no text field"})
    assert (status, body["reason"]) == (400, "BadRequest")
    status, body = await model_parse(guichet.url, {"text": "x" * 50_000})
    assert status == 200 and len(body["text"]) == 2000


async def test_a_configuration_with_only_nlu_data_runs(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="guichet")
    config = tmp_path / "nlu-only"
    shutil.copytree(SAMPLE_CONFIG / "nlu", config / "nlu")
    configuration: Configuration = configuration_for(tmp_path, GUICHET_HTTP_PORT=0)
    configuration = load_configuration(
        config,
        environ={"GUICHET_DATA_DIR": str(tmp_path / "d"), "GUICHET_HTTP_PORT": "0", "GUICHET_SMTP_PORT": "0"},
    )
    app = Guichet(configuration)
    await app.start()
    try:
        status, body = await model_parse(app.url, {"text": "merci beaucoup"})
        assert (status, body["intent"]["name"]) == (200, "thanks")
        async with (
            aiohttp.ClientSession() as http,
            http.post(
                f"{app.url}/webhooks/rest/webhook", json={"sender": "s", "message": "bonjour"}
            ) as answer,
        ):
            assert (await answer.json())[0]["text"].startswith("Bonjour")
    finally:
        await app.stop()
    # The first start with this data said that it trains; the next one loads, and says nothing of it.
    training = [r.message for r in caplog.records if r.message.startswith("training the intent model")]
    assert len(training) == 1 and "words alone" in training[0]
    caplog.clear()
    app = Guichet(configuration)
    await app.start()
    await app.stop()
    messages = [r.message for r in caplog.records]
    assert any("(loaded)" in m for m in messages) and not any(
        m.startswith("training the intent") for m in messages
    )

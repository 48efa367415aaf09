"""Which article a person gets: the one that answers what Guichet understood, not only the one
whose questions share the most words with the message. Measured over the REST channel of a
running desk, on paraphrases written apart from config/ (tests/data/nlu_heldout.yml)."""

from __future__ import annotations

import csv
import shutil
from pathlib import Path

import aiohttp

from bot.app import Guichet
from bot.config import load_configuration
from nlu.datasets import load_rasa_yaml
from nlu.retrieval import KnowledgeBase
from tests.conftest import SAMPLE_CONFIG
from tests.test_config_check import check

DATA = Path(__file__).parent / "data"


def test_an_article_answers_its_own_intent_or_those_it_names() -> None:
    articles = load_configuration(SAMPLE_CONFIG, environ={}).articles
    kb = KnowledgeBase(articles)
    # by its id (password-reset answers password_reset) ...
    assert [a.id for a in kb.answering("fr", "password_reset")] == ["password-reset"]
    # ... or by the intents its front matter names, in each language
    assert [(a.id, a.language) for a in kb.answering("en", "vpn_slow")] == [("vpn-slow-disconnects", "en")]
    assert kb.answering("fr", "greet") == []


def test_guichet_check_names_an_intent_no_example_defines(tmp_path: Path) -> None:
    config = tmp_path / "config"
    shutil.copytree(SAMPLE_CONFIG, config)
    article = config / "kb" / "en" / "vpn-slow-disconnects.md"
    article.write_text(article.read_text().replace("intents: [vpn_slow]", "intents: [vpn_slo]"))
    result = check(config)
    assert result.returncode == 1
    assert "vpn-slow-disconnects.md" in result.stderr and "'vpn_slo'" in result.stderr
    article.write_text(article.read_text().replace("intents: [vpn_slo]", "intents: vpn_slow"))
    result = check(config)
    assert result.returncode == 1
    assert "vpn-slow-disconnects.md:15" in result.stderr and "'intents' must be a list" in result.stderr


async def _first_replies(guichet: Guichet, texts: list[str]) -> list[str]:
    """The first reply to each text, each from a new person (so no conversation carries over)."""
    found = []
    async with aiohttp.ClientSession() as http:
        for n, text in enumerate(texts):
            url = f"{guichet.url}/webhooks/rest/webhook"
            async with http.post(url, json={"sender": f"p{n}", "message": text}) as answer:
                assert answer.status == 200
                replies = await answer.json()
            found.append(replies[0]["text"] if replies else "")
    return found


async def test_paraphrases_get_the_article_of_what_was_understood(guichet: Guichet) -> None:
    articles = guichet.configuration.articles
    answering = {intent: a.id for a in articles for intent in a.answers}
    lines = [
        (text, intent) for text, intent in load_rasa_yaml(DATA / "nlu_heldout.yml") if intent in answering
    ]
    assert len(lines) >= 400
    replies = await _first_replies(guichet, [text for text, _ in lines])

    def answered(reply: str) -> str | None:
        return next((a.id for a in articles if reply.startswith(a.title + "\n\n")), None)

    right = sum(
        answered(reply) == answering[intent] for reply, (_, intent) in zip(replies, lines, strict=True)
    )
    wrong = sum(
        answered(reply) not in (None, answering[intent])
        for reply, (_, intent) in zip(replies, lines, strict=True)
    )
    # From the words of the articles' questions alone: 37% right at once, 2.8% wrong.
    assert right >= 0.85 * len(lines), right / len(lines)
    assert wrong <= 0.03 * len(lines), wrong / len(lines)

    # A question the desk does not cover mostly gets no article (words alone: 3% did).
    with (DATA / "out_of_scope.csv").open(encoding="utf-8") as file:
        outside = [row["text"] for row in csv.DictReader(file)]
    replies = await _first_replies(guichet, outside)
    misled = sum(answered(reply) is not None for reply in replies)
    assert misled <= 0.08 * len(outside), misled / len(outside)

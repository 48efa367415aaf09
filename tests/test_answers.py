"""Which article a person gets: the one that answers what Guichet understood, not only the one
whose questions share the most words with the message. Measured over the REST channel of a
running desk, on paraphrases written apart from config/ (tests/data/nlu_heldout.yml)."""

from __future__ import annotations

import csv
import shutil
from collections.abc import Sequence
from pathlib import Path

import aiohttp

from bot.app import Guichet
from bot.config import load_configuration
from nlu.datasets import load_rasa_yaml
from nlu.engine import BuiltinEngine
from nlu.kb import Article
from nlu.retrieval import KnowledgeBase
from nlu.training_data import TrainingData
from tests.conftest import SAMPLE_CONFIG, configuration_for
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


def test_torn_between_two_intents_understood_surely_the_person_chooses_between_their_articles() -> None:
    from bot.policy import ladder
    from bot.settings import AnsweringSettings
    from nlu.engine import IntentScore, Parse, understood_articles

    articles = load_configuration(SAMPLE_CONFIG, environ={}).articles
    kb = KnowledgeBase(articles)
    # "printer": adding one, or one that does not print, both understood surely
    ranking = (
        IntentScore("printer_add", 0.99),
        IntentScore("printer_not_printing", 0.97),
        IntentScore("vpn_slow", 0.2),
    )
    parse = Parse("printer", "en", ranking[0], ranking)
    matches = understood_articles(parse, kb.answering, threshold=0.7, margin=0.1)
    assert [(m.article_id, m.score) for m in matches] == [
        ("printer-add", 0.99),
        ("printer-not-printing", 0.97),
    ]
    step, offered = ladder(matches, AnsweringSettings())
    assert step == "choose" and [m.article_id for m in offered] == ["printer-add", "printer-not-printing"]
    # one intent clearly ahead: its article alone, answered
    ahead = (IntentScore("printer_not_printing", 0.97), IntentScore("printer_add", 0.6))
    matches = understood_articles(Parse("x", "en", ahead[0], ahead), kb.answering, threshold=0.7, margin=0.1)
    assert [m.article_id for m in matches] == ["printer-not-printing"]
    assert ladder(matches, AnsweringSettings())[0] == "answer"


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

    right = sum(
        _answered(reply, articles) == answering[intent]
        for reply, (_, intent) in zip(replies, lines, strict=True)
    )
    wrong = sum(
        _answered(reply, articles) not in (None, answering[intent])
        for reply, (_, intent) in zip(replies, lines, strict=True)
    )
    # From the words of the articles' questions alone: 37% right at once, 2.8% wrong. (Here,
    # 2026-12-06: 95.3% and 0.5%; before the articles of two intents torn apart were offered
    # as a choice, 95.1% and 1.2%.)
    assert right >= 0.85 * len(lines), right / len(lines)
    assert wrong <= 0.03 * len(lines), wrong / len(lines)

    # A question the desk does not cover mostly gets no article (words alone: 3% did).
    with (DATA / "out_of_scope.csv").open(encoding="utf-8") as file:
        outside = [row["text"] for row in csv.DictReader(file)]
    replies = await _first_replies(guichet, outside)
    misled = sum(_answered(reply, articles) is not None for reply in replies)
    assert misled <= 0.08 * len(outside), misled / len(outside)


def _answered(reply: str, articles: Sequence[Article]) -> str | None:
    """The article a reply gives at once (its title, then its body), or None."""
    return next((a.id for a in articles if reply.startswith(a.title + "\n\n")), None)


def _answer_rates(
    replies: list[str], wanted: list[str | None], articles: Sequence[Article]
) -> tuple[float, float, float]:
    """Of the requests an article answers: right at once, wrong at once; of the others: answered."""
    got = [_answered(reply, articles) for reply in replies]
    inside = [(g, w) for g, w in zip(got, wanted, strict=True) if w is not None]
    outside = [g for g, w in zip(got, wanted, strict=True) if w is None]
    return (
        sum(g == w for g, w in inside) / len(inside),
        sum(g not in (None, w) for g, w in inside) / len(inside),
        sum(g is not None for g in outside) / len(outside),
    )


async def test_a_desk_of_articles_alone_finds_them_by_meaning_with_the_encoder(tmp_path: Path) -> None:
    """A small desk writes articles and no intents. With `nlu.encoder`, an article's questions
    are compared by sentence vector too: "outlook stopped downloading my emails" comes nearer
    the Outlook article than the software installation one its words suggest."""
    config = tmp_path / "config"
    shutil.copytree(SAMPLE_CONFIG, config)
    answering = {
        intent: a.id for a in load_configuration(config, environ={}).articles for intent in a.answers
    }
    shutil.rmtree(config / "nlu")
    configuration = configuration_for(tmp_path, config, GUICHET_NLU_ENCODER="use-multilingual-3")
    assert not configuration.training.intents
    lines: list[tuple[str, str | None]] = [
        (t, answering[i]) for t, i in load_rasa_yaml(DATA / "nlu_heldout.yml") if i in answering
    ]
    with (DATA / "out_of_scope.csv").open(encoding="utf-8") as file:
        lines += [(row["text"], None) for row in csv.DictReader(file)]
    guichet = Guichet(configuration)
    await guichet.start()
    try:
        assert guichet.engine.kb.encoder is not None
        replies = await _first_replies(guichet, [text for text, _ in lines])
    finally:
        await guichet.stop()
    right, wrong, misled = _answer_rates(replies, [w for _, w in lines], configuration.articles)
    # From the articles' words alone (bench/nlu.py): 37% right at once, 2.8% wrong, 3% misled.
    # With the vector blended in by constants tuned on this desk: 73%, 3.6%, 5%. Here, with the
    # ranking fit on other desks and the desk's own article model (2026-12-08): 89%, 4.3%, 8%.
    assert right >= 0.85, right
    assert wrong <= 0.05, wrong
    assert misled <= 0.10, misled


def test_an_article_added_is_found_by_meaning_with_no_intent_model_retrained() -> None:
    from nlu.encoder import USE_MULTILINGUAL, shared

    articles = load_configuration(SAMPLE_CONFIG, environ={}).articles
    engine = BuiltinEngine(TrainingData(), articles)
    engine.use_encoder(shared(USE_MULTILINGUAL))
    paraphrase = "the coffee machine on the third floor keeps eating my coins"
    assert not any(m.article_id == "coffee-machine" for m in engine.parse_now(paraphrase, "en").kb_matches)
    coffee = Article(
        id="coffee-machine",
        language="en",
        title="The coffee machine swallows money",
        body="Call facilities on 1234; they refund the same day.",
        questions=("the drinks machine took my change", "vending machine kept my money"),
        tags=(),
        category=None,
        path=Path("kb/en/coffee-machine.md"),
    )
    engine.reload_articles([*articles, coffee])  # the knowledge base's own article model learns it
    best = engine.parse_now(paraphrase, "en").kb_matches[0]
    assert best.article_id == "coffee-machine" and best.score >= 0.5, best


async def test_a_request_understood_surely_gets_no_article_of_another_intent(tmp_path: Path) -> None:
    """A crash, on a desk with no article for crashes: not the article whose words are closest
    (file restore for "excel", Outlook not receiving mail for "Outlook"), but a ticket."""
    crashes = ["excel plante", "Outlook se ferme tout seul au démarrage", "teams crashes all the time"]
    config = tmp_path / "config"
    shutil.copytree(SAMPLE_CONFIG, config)
    for language in ("fr", "en"):
        (config / "kb" / language / "app-crash.md").unlink()
    guichet = Guichet(configuration_for(tmp_path, config))
    await guichet.start()
    try:
        articles = guichet.configuration.articles
        replies = await _first_replies(guichet, crashes)
        assert [_answered(reply, articles) for reply in replies] == [None, None, None]
        # nor offered to choose: a ticket is (a crash is what level 2 is for)
        async with aiohttp.ClientSession() as http:
            url = f"{guichet.url}/webhooks/rest/webhook"
            async with http.post(url, json={"sender": "crash", "message": crashes[1]}) as r:
                (offer,) = await r.json()
        assert [b["payload"] for b in offer["buttons"]] == ["ticket:yes", "ticket:no"], offer
    finally:
        await guichet.stop()


async def test_the_sample_answers_a_crash_with_its_own_article(guichet: Guichet) -> None:
    # "Outlook ne s'ouvre plus" got the article on Outlook not receiving mail (0.93) before
    # the sample had examples and an article for a crashing application.
    replies = await _first_replies(
        guichet,
        ["Outlook ne s'ouvre plus", "Outlook se ferme tout seul au démarrage", "my outlook won't open"],
    )
    assert [_answered(reply, guichet.configuration.articles) for reply in replies] == ["app-crash"] * 3


async def test_likely_intents_not_sure_enough_are_offered_to_choose_first(guichet: Guichet) -> None:
    # Below the out-of-scope threshold, a forgotten or an expired password is still likely; by
    # their words alone the VPN and keyboard articles came first ("marche").
    async with aiohttp.ClientSession() as http:
        url = f"{guichet.url}/webhooks/rest/webhook"
        async with http.post(url, json={"sender": "ivan", "message": "mon mdp marche pu"}) as answer:
            (choice,) = await answer.json()
    offered = [b["payload"] for b in choice["buttons"]]
    assert offered[:2] == ["article:fr:password-reset", "article:fr:password-expired"], offered
    assert offered[-1] == "none" and len(offered) <= 4
    parse = await guichet.engine.parse("mon mdp marche pu", "fr")
    assert parse.ranking[0].confidence < (guichet.engine.intent_threshold or 0), "not sure: no answer at once"


async def test_one_word_names_a_subject_and_the_person_chooses_what_is_wrong_with_it(
    guichet: Guichet,
) -> None:
    # "teams": its sound, or sharing a screen; "vpn": it does not connect, or it is slow
    async with aiohttp.ClientSession() as http:
        url = f"{guichet.url}/webhooks/rest/webhook"
        offered = {}
        for word in ("teams", "Teams ?", "le vpn"):
            async with http.post(url, json={"sender": f"one-{word}", "message": word}) as answer:
                (choice,) = await answer.json()
            offered[word] = [b["payload"] for b in choice.get("buttons", [])]
    assert {"article:fr:teams-audio", "article:fr:teams-screen-sharing"} <= set(offered["teams"]), offered
    assert offered["Teams ?"] == offered["teams"]
    assert {"article:fr:vpn-cannot-connect", "article:fr:vpn-slow-disconnects"} <= set(offered["le vpn"]), (
        offered
    )

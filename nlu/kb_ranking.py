"""How likely each knowledge-base article is to answer a message, on any desk.

A desk brings its own articles, written its own way: a score that means "sure" on one desk
means little on the next. So the knowledge base (nlu/retrieval.py) turns what it measures into
the probability that an article is the one the person needs, by three steps:

1. Features of the message against each article, every language version of it together (an
   English message may be answered by an article written only in French):
   - `asked`, `body`: the best cosine of the message's sentence vector to the article's title and
     questions, and to a line of its body (`passages`);
   - `asked_words`, `body_words`: the same by words (TF-IDF of stems and character 4-grams,
     nlu.retrieval.features), which catch names, codes and typos;
   - `model`: the probability the desk's article model gives the article. That model is learnt
     from this desk alone when its articles load: a classifier (nlu/classifier.py) of the titles
     and questions, its confidences calibrated by cross-validation on those same questions.
   - `unknown`: the share of the message's content words that no article uses, even nearly:
     the same for every article, it tells the calibration how much of the message the desk's
     knowledge base does not speak of at all.
   With `nlu.kb_encoder: multilingual-e5-small`, `asked_e5` and `body_e5`: the same cosines by a
   second encoder, trained for retrieval (nlu.encoder.PassageEncoder).
   Without a sentence vector (`nlu.encoder: none`, or a message the intent model settles from
   its words alone) the words set is used: `asked_words`, `body_words` and the words-only
   article model.
2. A score: the weighted sum of the standardised features.
3. A probability: a logistic function of the article's score, of its lead over the best other
   article (negative for all but the first) and of its standardised features: the score orders,
   the features say how sure (a low cosine with a large lead is still a guess).

The weights, means, scales and the logistic's coefficients of each feature set are fit by bench/kb_fit.py on the
development desks (bench/dev-desks) and the public intent sets, every desk weighing the same,
never on the frozen desks (bench/desks), which measure what a new desk gets. They are kept in
nlu/kb_ranking.json, so that a desk's threshold (`answering.answer_threshold`) reads as a
probability wherever it is used.
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

if TYPE_CHECKING:  # scikit-learn comes with the classifier's training only
    from nlu.classifier import IntentClassifier
    from nlu.kb import Article

FloatArray = npt.NDArray[np.float32]

VECTOR_FEATURES = ("asked", "body", "asked_words", "body_words", "model", "unknown")
WORD_FEATURES = ("asked_words", "body_words", "model", "unknown")
E5_FEATURES = (*VECTOR_FEATURES, "asked_e5", "body_e5")
FEATURE_SETS = {"vectors": VECTOR_FEATURES, "words": WORD_FEATURES, "vectors_e5": E5_FEATURES}
PARAMETERS = Path(__file__).with_name("kb_ranking.json")

_NUMBERING = re.compile(r"^\s*(?:\d+[.)]|[-*•>])\s*")
_MAX_PASSAGES = 30  # lines of one body that are compared (a long article's first ones)
_MAX_PASSAGE_CHARS = 400


def passages(body: str) -> list[str]:
    """The lines of an article's body worth comparing with a message: list markers removed,
    lines of fewer than three words left out (the whole body when no line is left)."""
    found = []
    for line in body.splitlines():
        line = _NUMBERING.sub("", line).strip()
        if len(line.split()) >= 3:
            found.append(line[:_MAX_PASSAGE_CHARS])
    return found[:_MAX_PASSAGES] or [body.strip()[:_MAX_PASSAGE_CHARS]]


@dataclass(frozen=True)
class Ranking:
    """One feature set's fitted ranking and calibration (see the module's docstring)."""

    features: tuple[str, ...]
    mean: FloatArray
    scale: FloatArray
    weights: FloatArray
    # the logistic's coefficients of (score, lead, each standardised feature), then its intercept
    calibration: FloatArray

    def scores(self, x: FloatArray) -> FloatArray:
        """(articles, features) raw features to one score per article."""
        out: FloatArray = (((x - self.mean) / self.scale) @ self.weights).astype(np.float32)
        return out

    def inputs(self, x: FloatArray) -> FloatArray:
        """What the calibration reads of each article: its score, its lead over the best other
        article (negative for all but the first) and its standardised features."""
        standard = (x - self.mean) / self.scale
        scores = standard @ self.weights
        lead = np.zeros_like(scores)
        if len(scores) > 1:
            order = np.argsort(-scores)
            lead = scores - scores[order[0]]
            lead[order[0]] = scores[order[0]] - scores[order[1]]
        out: FloatArray = np.column_stack([scores, lead, standard]).astype(np.float32)
        return out

    def probabilities(self, x: FloatArray) -> FloatArray:
        """Each article's chance of being the right one, from its features (articles, features)."""
        if len(x) == 0:
            return np.zeros(0, dtype=np.float32)
        z = np.clip(self.inputs(x) @ self.calibration[:-1] + self.calibration[-1], -30.0, 30.0)
        out: FloatArray = (1.0 / (1.0 + np.exp(-z))).astype(np.float32)
        return out

    def as_json(self) -> dict[str, Any]:
        return {
            "features": list(self.features),
            "mean": [round(float(v), 6) for v in self.mean],
            "scale": [round(float(v), 6) for v in self.scale],
            "weights": [round(float(v), 6) for v in self.weights],
            "calibration": [round(float(v), 6) for v in self.calibration],
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Ranking:
        ranking = cls(
            features=tuple(str(f) for f in data["features"]),
            mean=np.asarray(data["mean"], dtype=np.float32),
            scale=np.asarray(data["scale"], dtype=np.float32),
            weights=np.asarray(data["weights"], dtype=np.float32),
            calibration=np.asarray(data["calibration"], dtype=np.float32),
        )
        n = len(ranking.features)
        if not (len(ranking.mean) == len(ranking.scale) == len(ranking.weights) == n):
            raise ValueError("kb_ranking: each feature needs one mean, scale and weight")
        if len(ranking.calibration) != n + 3:
            raise ValueError("kb_ranking: the calibration needs score, lead, each feature and an intercept")
        return ranking


_loaded: dict[str, Ranking] | None = None
_loaded_lock = threading.Lock()


def rankings(path: Path = PARAMETERS) -> dict[str, Ranking]:
    """The fitted rankings by feature set (FEATURE_SETS), read once."""
    global _loaded
    with _loaded_lock:
        if _loaded is None or path != PARAMETERS:
            data = json.loads(path.read_text(encoding="utf-8"))
            found = {name: Ranking.from_json(data[name]) for name in FEATURE_SETS if name in data}
            if path != PARAMETERS:
                return found
            _loaded = found
        return _loaded


# --- the desk's article model ---------------------------------------------------------------


class ArticleModel:
    """A classifier of the desk's own article titles and questions, one class per article id:
    the probability of each article for a message, calibrated on this desk's questions. Two of
    them: with the sentence vector (when the desk has an encoder) and words only."""

    def __init__(self, words: IntentClassifier, vectors: IntentClassifier | None) -> None:
        self.words = words
        self.vectors = vectors

    def probabilities(self, text: str, *, vectors: bool) -> dict[str, float]:
        model = self.vectors if vectors and self.vectors is not None else self.words
        return dict(model.predict(text))


def article_examples(articles: Sequence[Article]) -> list[tuple[str, str]]:
    """(text, article id): each version's title and questions."""
    return [(text, a.id) for a in articles for text in (a.title, *a.questions) if text.strip()]


BACKGROUND_DIR = Path(__file__).with_name("background")
BACKGROUND = "\x00background"  # the label of the background lines: no article id is this


def background() -> list[str]:
    """Messages no knowledge base answers (nlu/background/*.txt: the weather, recipes, jokes,
    sports...), in French and English: the article model learns that they are none of the
    articles, so that an off-topic message is given no article on any desk."""
    lines: list[str] = []
    for path in sorted(BACKGROUND_DIR.glob("*.txt")):
        lines += [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    return lines


_models: OrderedDict[str, ArticleModel] = OrderedDict()
_models_lock = threading.Lock()
_REMEMBERED_MODELS = 8  # desks (or versions of one) whose article models a process keeps


def article_model(
    articles: Sequence[Article],
    encoder: str = "",
    cache_dir: Path | None = None,
    outside: Sequence[str] = (),
) -> ArticleModel | None:
    """The article model of these articles: remembered in the process, read from `cache_dir`
    when trained before with the same texts, else trained now (about a second for 25 articles,
    three for 50 in two languages) and kept there. None with fewer than two articles.
    `outside`: the desk's own examples of what it does not handle (its nlu/ files' out-of-scope
    intent), negatives beside the background lines."""
    examples = article_examples(articles)
    if len({label for _, label in examples}) < 2:
        return None
    examples += [(text, BACKGROUND) for text in (*background(), *outside)]
    digest = hashlib.sha256(f"article-model/1\t{encoder}\n".encode())
    for text, label in examples:
        digest.update(f"{label}\t{text}\n".encode())
    key = digest.hexdigest()[:16]
    with _models_lock:
        found = _models.get(key)
        if found is not None:
            _models.move_to_end(key)
            return found
    model = _load(cache_dir, key, encoder) or _train(examples, encoder, cache_dir, key)
    with _models_lock:
        _models[key] = model
        while len(_models) > _REMEMBERED_MODELS:
            _models.popitem(last=False)
    return model


def _paths(cache_dir: Path, key: str) -> tuple[Path, Path]:
    return cache_dir / f"articles-{key}-words.npz", cache_dir / f"articles-{key}-vectors.npz"


def _load(cache_dir: Path | None, key: str, encoder: str) -> ArticleModel | None:
    if cache_dir is None:
        return None
    from nlu.classifier import IntentClassifier

    words, vectors = _paths(cache_dir, key)
    if not words.exists() or (encoder and not vectors.exists()):
        return None
    try:
        return ArticleModel(IntentClassifier.load(words), IntentClassifier.load(vectors) if encoder else None)
    except (OSError, ValueError, KeyError):  # a file cut short or of another version: train again
        return None


def _train(examples: list[tuple[str, str]], encoder: str, cache_dir: Path | None, key: str) -> ArticleModel:
    from nlu.classifier import IntentClassifier, Settings

    words = IntentClassifier.train(examples, settings=Settings(), oos_label=BACKGROUND)
    vectors = (
        IntentClassifier.train(
            examples, settings=Settings(encoder=encoder, cascade=False), oos_label=BACKGROUND
        )
        if encoder
        else None
    )
    if cache_dir is not None:
        try:
            cache_dir.mkdir(parents=True, exist_ok=True)
            words_path, vectors_path = _paths(cache_dir, key)
            words.save(words_path)
            if vectors is not None:
                vectors.save(vectors_path)
        except OSError:  # a read-only disk: the model still serves from memory
            pass
    return ArticleModel(words, vectors)

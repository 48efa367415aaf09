"""The built-in intent classifier: one-vs-rest linear SVMs over word, word-pair and character
n-gram TF-IDF features, with confidences calibrated so that one threshold tells in-scope from
out-of-scope.

Training (scikit-learn's liblinear, one SVM per core; CLINC150's 15,100 examples in about 6 s
here with the words, 16 s with the sentence vectors as well):

* every text is folded (lower case, no accents, French elisions removed: `nlu.text.words`) and
  cut into three views: light word stems with stem bigrams; unordered pairs of the first 24
  distinct stems (a cheap quadratic kernel: "change … name" against "what … name"); character
  3- and 4-grams of each space-padded word (typos, conjugations, compounds);
* each view is TF-IDF weighted as scikit-learn's TfidfVectorizer does (sublinear tf, smoothed
  idf, L2 norm; on large data sets, features seen in one text only are dropped) and the views
  are put side by side;
* with a sentence encoder (`Settings.encoder`, nlu/encoder.py), its 512-dimensional vector of
  the whole text is a fourth, dense view (times `encoder_weight`): what the words miss, a
  paraphrase or the other language, the vector often has. On the sample desk's held-out
  messages (bench/nlu.py) it takes accuracy from 94.1% to 97.6% and out-of-scope recall from
  53% to 88%, at a few milliseconds a message (the encoder) instead of a fifth of one;
* with an encoder, a second model of the words alone is trained too (while the vectors are
  computed on the other core), and answers alone when its confidence reaches `fast_above`:
  the lowest confidence at which, on held-out examples, letting it answer costs at most
  `cascade_cost` of accuracy, and at least `cascade_floor`. On CLINC150 and BANKING77 that is
  two messages in three, which then take a fifth of a millisecond instead of several, at no
  measurable cost in accuracy; the others get the sentence vector;
* with an encoder, a nearest-neighbour vote beside the SVMs: each of the ten best intents'
  margins gains `neighbour_weight` times the cosine of the text's vector to that intent's
  nearest training example (kept in the model, grouped by intent). The SVM sees the whole
  data, the neighbour sees one close paraphrase; together they are right more often and tell
  out-of-scope apart better: on CLINC150's test set, at the threshold tuned on validation,
  94.1% in scope instead of 93.2%, with 83.5% of out-of-scope recognised instead of 84.1%
  (bench/nlu.py). With `centroid_weight` (all-MiniLM-L6-v2's: 1), each of those intents also
  gains that weight times the cosine to the mean of its examples' vectors: the nearest example
  may be an odd one, the mean is what the intent's examples share (a few examples per intent
  most of all);
* one squared-hinge linear SVM per intent, against every other example. Out-of-scope examples
  (`oos_label`) are negatives for every intent and never an intent themselves. On large data
  each SVM starts on a working set (its examples and the most similar others) and grows it
  with the examples that violate its margin until none is left: liblinear's one-vs-rest
  solution at a third of its cost;
* the confidence of an intent is Platt's sigmoid of its margin, `1 / (1 + exp(-(a·m + b)))`,
  (a, b) fitted on held-out margins (5-fold cross-validation below 4,000 examples, one fifth
  held out above) to the probability that the top intent is right, held-out out-of-scope
  examples counting as wrong. The top margin was the best out-of-scope signal measured on
  CLINC150's validation data (better than the gap to the second, softmax temperatures or
  nearest-neighbour similarity), and the sigmoid keeps its order: a single threshold on the top
  confidence separates in-scope from out-of-scope. `tune_threshold` picks it on held-out data.
  Each intent's confidence is its own sigmoid: they need not add up to one.

Inference needs NumPy only: the same features (each word's stem and character n-grams looked
up once and remembered), the same TF-IDF arithmetic, then a gather of the dense float32 weight
rows of the features present, `values @ W[indices] + b`: about 0.1–0.2 ms a message here.
Models are saved as one `.npz` file (arrays and a JSON header; nothing is pickled).
"""

from __future__ import annotations

import dataclasses
import io
import itertools
import json
import math
import os
import random
import threading
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, replace
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeAlias

import numpy as np
import numpy.typing as npt

from nlu.text import stem, words

if TYPE_CHECKING:  # scikit-learn and SciPy are needed to train only
    from scipy.sparse import csr_matrix  # type: ignore[import-untyped]

    from nlu.encoder import SentenceEncoder

FloatArray = npt.NDArray[np.float32]
IndexArray = npt.NDArray[np.int64]
Progress = Callable[[int, int], None]

FORMAT = "guichet-intent-classifier/1"
_BACKGROUND = "\x00background"  # the internal class of out-of-scope examples (no text label clashes)
_VIEWS = ("words", "pairs", "chars")
_NO_INDICES: npt.NDArray[np.int64] = np.zeros(0, dtype=np.int64)
_NO_VALUES: npt.NDArray[np.float32] = np.zeros(0, dtype=np.float32)
_NEVER = 2.0  # a confidence no answer reaches: the words-only stage never answers alone


@dataclass(frozen=True)
class Settings:
    """What the classifier learns from and how hard; saved with the model."""

    max_chars: int = 2000  # what is read of a longer text
    max_tokens: int = 300  # words kept for the word and character views
    pair_tokens: int = 24  # distinct stems (first ones) that form word pairs: at most 276 pairs
    char_min: int = 3  # character n-grams of each word, from 3 to 4 characters
    char_max: int = 4
    word_weight: float = 1.0
    pair_weight: float = 1.0
    char_weight: float = 1.0
    min_df_large: int = 2  # on data sets of at least `large` examples, features seen once are dropped
    large: int = 5000
    c: float = 0.5  # the SVM's inverse regularisation
    calibration_folds: int = 5  # below 2: no calibration (a fixed curve), for quick experiments
    cross_validate_below: int = 4000  # all folds below this many examples, one held-out fifth above
    working_set_above: int = 3000  # from this many examples, each intent's SVM starts on a working set
    working_set: int = 1200  # negatives first given to each intent's SVM (the most similar ones)
    encoder: str = ""  # a sentence encoder (nlu/encoder.py) whose vector is a fourth view; "" for none
    # The vector's length beside the unit-length TF-IDF views; None: the encoder's own
    # (ENCODER_WEIGHTS), fixed in the model when it is trained.
    encoder_weight: float | None = None
    # With an encoder: a words-only model answers alone where it is sure enough, so that most
    # messages never pay for a sentence vector (a fifth of a millisecond instead of several).
    cascade: bool = True
    cascade_cost: float = 0.002  # held-out accuracy the words-only shortcut may cost, at most
    # ... and never below this confidence: a held-out fifth is a small sample (on BANKING77 it
    # allowed 0.5, which cost 1.1 points on the test set; from 0.95, 0.03 points).
    cascade_floor: float = 0.95
    # With an encoder: the weight of the nearest training example's cosine in each of the ten
    # best intents' margins (0: the SVMs alone). 1 was the best round value on CLINC150's
    # validation lines (0.5: 93.8% / 91%, 1: 94.2% / 90%, 3: 95.0% / 87%, none: 93.7% / 89%).
    neighbour_weight: float = 1.0
    # With an encoder: the weight of the cosine to each voting intent's mean vector in that
    # vote; None: the encoder's own (CENTROID_WEIGHTS), fixed in the model when it is trained.
    centroid_weight: float | None = None


DEFAULT = Settings()

# Each encoder's weight, chosen on validation lines, never a test set: 2 for USE (CLINC150 and
# the sample desk); 3 for all-MiniLM-L6-v2, the best mean over three draws of 10 examples per
# intent of CLINC150 and HWU64 (their validation lines: 83.27%, 2: 83.26%, 4: 82.99%).
ENCODER_WEIGHTS = {"all-minilm-l6-v2": 3.0}
_ENCODER_WEIGHT = 2.0

# The mean vector's weight in the vote, chosen on the same validation lines: for MiniLM, over
# three 10-per-intent draws and the whole training sets of CLINC150 and HWU64 (top-1 accuracy,
# the two regimes' mean: 0 90.68%, 0.5 90.73%, 1 90.80%, 1.5 90.79%, 2 90.75%). Not measured
# for USE, which keeps the nearest example alone (0).
CENTROID_WEIGHTS = {"all-minilm-l6-v2": 1.0}


def centroid_weight(settings: Settings) -> float:
    if settings.centroid_weight is not None:
        return settings.centroid_weight
    return CENTROID_WEIGHTS.get(settings.encoder, 0.0)


def encoder_weight(settings: Settings) -> float:
    if settings.encoder_weight is not None:
        return settings.encoder_weight
    return ENCODER_WEIGHTS.get(settings.encoder, _ENCODER_WEIGHT)


_LONG = 40  # longer "words" (pasted hashes, URLs, "xxxx…") are not remembered between texts


@lru_cache(maxsize=100_000)
def _cached_stem(token: str) -> str:
    return stem(token)


def _stem(token: str) -> str:
    return _cached_stem(token) if len(token) <= _LONG else stem(token)


def _grams(token: str, lo: int, hi: int) -> tuple[str, ...]:
    padded = f" {token} "
    size = len(padded)
    grams: list[str] = []
    for n in range(lo, hi + 1):
        if size <= n:
            grams.append(padded)
            break
        grams.extend(padded[i : i + n] for i in range(size - n + 1))
    return tuple(grams)


_cached_grams = lru_cache(maxsize=100_000)(_grams)


def _char_grams(token: str, lo: int, hi: int) -> tuple[str, ...]:
    """The character n-grams of a word padded with a space on each side (a word shorter than
    n gives itself, padded, once)."""
    return _cached_grams(token, lo, hi) if len(token) <= _LONG else _grams(token, lo, hi)


def analyze(text: str, settings: Settings = DEFAULT) -> tuple[list[str], list[str], list[str]]:
    """The three views' features of a text: word stems and stem bigrams, unordered stem pairs,
    character n-grams of each (space-padded) word. The one analyser of training and inference."""
    tokens = words(text[: settings.max_chars])[: settings.max_tokens]
    stems = [_stem(t) for t in tokens]
    word_feats = [*stems, *(f"{a} {b}" for a, b in itertools.pairwise(stems))]
    distinct = sorted(list(dict.fromkeys(stems))[: settings.pair_tokens])
    pair_feats = [f"{a}|{b}" for a, b in itertools.combinations(distinct, 2)]
    char_feats: list[str] = []
    lo, hi = settings.char_min, settings.char_max
    for token in tokens:
        char_feats.extend(_char_grams(token, lo, hi))
    return word_feats, pair_feats, char_feats


class IntentClassifier:
    """Ranks intents for a text with calibrated confidences. Build with `train` or `load`."""

    def __init__(
        self,
        *,
        intents: list[str],
        vocabularies: list[list[str]],
        idf: npt.NDArray[np.float64],
        weights: FloatArray,
        bias: FloatArray,
        platt: tuple[float, float],
        settings: Settings,
        threshold: float = 0.5,
        info: dict[str, Any] | None = None,
        neighbours: _Neighbours | None = None,
    ) -> None:
        self.intents = intents
        self.settings = settings
        self.threshold = threshold
        self.info: dict[str, Any] = dict(info or {})
        self._vocab_lists = vocabularies
        self._idf = np.ascontiguousarray(idf, dtype=np.float64)
        self._idf_list: list[float] = self._idf.tolist()
        self._vocab: list[dict[str, int]] = []
        offset = 0
        for vocabulary in vocabularies:
            self._vocab.append({f: offset + i for i, f in enumerate(vocabulary)})
            offset += len(vocabulary)
        self._token_cache: dict[str, tuple[str, int, tuple[int, ...]]] = {}
        self._bigrams, self._pairs = _compound_index(vocabularies[0], self._vocab[0], self._vocab[1])
        self._names = list(intents)
        self._w = np.ascontiguousarray(weights, dtype=np.float32)  # (features, intents)
        self._b = np.ascontiguousarray(bias, dtype=np.float32)
        self._platt = (float(platt[0]), float(platt[1]))
        self._view_weights = (settings.word_weight, settings.pair_weight, settings.char_weight)
        self._encoder = _encoder(settings)
        dense = self._encoder.dim if self._encoder is not None else 0
        if self._w.shape != (offset + dense, len(intents)) or self._b.shape != (len(intents),):
            raise ValueError("inconsistent model: weight shapes do not match the vocabularies")
        # The sentence vector's rows, scaled once: margins = sparse part + vector @ this.
        self._w_dense = np.ascontiguousarray(self._w[offset:] * np.float32(encoder_weight(settings)))
        if neighbours is not None and (self._encoder is None or len(neighbours.starts) != len(intents)):
            raise ValueError("inconsistent model: nearest examples without vectors or for other intents")
        self._neighbours = neighbours
        # The words-only stage of a model with sentence vectors, and the confidence from which
        # its answer stands alone (set by `train` or `load`).
        self.fast: IntentClassifier | None = None
        self.fast_above = _NEVER
        # What training saw (not saved): held-out examples, the analysed texts, the margins of
        # the training examples on a large data set.
        self._held_out: _HeldOut | None = None
        self._analyses: list[Analysis] | None = None
        self._scores: FloatArray | None = None
        self._words: _WordsCache | None = None

    def _set_fast(self, fast: IntentClassifier | None, above: float) -> None:
        if fast is not None and (fast.intents != self.intents or fast._encoder is not None):
            raise ValueError("inconsistent model: the words-only stage has other intents or vectors")
        self.fast = fast
        self.fast_above = float(above) if fast is not None else _NEVER

    # ----------------------------------------------------------------- training

    @classmethod
    def train(
        cls,
        examples: Sequence[tuple[str, str]],
        *,
        progress: Progress | None = None,
        seed: int = 0,
        oos_label: str | None = None,
        settings: Settings | None = None,
    ) -> IntentClassifier:
        """Learn from (text, intent) pairs. Examples labelled `oos_label` are out-of-scope
        background: negatives for every intent and for the calibration, never an intent."""
        settings = settings or Settings()
        settings = replace(
            settings, encoder_weight=encoder_weight(settings), centroid_weight=centroid_weight(settings)
        )
        labels = [_BACKGROUND if label == oos_label else label for _, label in examples]
        intents = sorted({label for label in labels if label != _BACKGROUND})
        if len(intents) < 1 or (len(intents) < 2 and _BACKGROUND not in labels):
            raise ValueError("training needs at least two intents (or one intent and out-of-scope examples)")
        if settings.encoder and settings.cascade:
            return cls._train_cascade(examples, labels, progress, seed, oos_label, settings)
        model = cls._train_one(examples, labels, progress, seed, settings)
        model._words = None  # the training's matrices: no later model reuses them
        return model

    @classmethod
    def _train_cascade(
        cls,
        examples: Sequence[tuple[str, str]],
        labels: Sequence[str],
        progress: Progress | None,
        seed: int,
        oos_label: str | None,
        settings: Settings,
    ) -> IntentClassifier:
        """The words-only stage, the model with sentence vectors, then where the first may
        answer alone. The vectors are computed on another thread while the words-only stage
        trains: NumPy's products and liblinear let go of the GIL, so both cores work."""
        texts = [text if isinstance(text, str) else str(text) for text, _ in examples]
        found: list[FloatArray] = []
        failed: list[BaseException] = []

        def embed() -> None:
            try:
                # one BLAS thread: the words-only stage's SVMs work on the other cores meanwhile
                # (with all of them, both fought over the cores: CLINC150 11.3 s instead of 8.3)
                dense = _embed(settings, texts, _Reporter(None), threads=1)
                assert dense is not None
                found.append(dense)
            except BaseException as error:  # raised again on the training thread
                failed.append(error)

        worker = threading.Thread(target=embed, name="guichet-sentence-vectors", daemon=True)
        worker.start()
        try:
            fast = cls._train_one(
                examples,
                labels,
                _part(progress, 0.0, 0.3),
                seed,
                replace(settings, encoder="", cascade=False),
            )
        finally:
            worker.join()
        if failed:
            raise failed[0]
        # The same texts, analysed once; the words-only margins show the SVMs where to start.
        full = cls._train_one(
            examples,
            labels,
            _part(progress, 0.3, 1.0),
            seed,
            settings,
            dense=found[0],
            analyses=fast._analyses,
            candidates=fast._scores,
            words=fast._words,  # the same words, rows and folds: their TF-IDF as computed
        )
        fast._analyses = fast._scores = full._analyses = full._scores = None  # not kept in memory
        fast._words = full._words = None
        above = max(settings.cascade_floor, _fast_above(fast, full, labels, settings.cascade_cost))
        full._set_fast(fast, above)
        full.info["fast_above"] = above
        return full

    @classmethod
    def _train_one(
        cls,
        examples: Sequence[tuple[str, str]],
        labels: Sequence[str],
        progress: Progress | None,
        seed: int,
        settings: Settings,
        *,
        dense: FloatArray | None = None,
        analyses: list[Analysis] | None = None,
        candidates: FloatArray | None = None,
        words: _WordsCache | None = None,
    ) -> IntentClassifier:
        """One model: its TF-IDF views (and vectors), its SVMs, their calibration. `analyses`,
        `dense` and the words' matrices (`words`) may come already computed; `candidates`,
        margins of an earlier model of the same examples, tell the SVMs of a large data set
        where to start."""
        cache: _WordsCache = {} if words is None else words
        report = _Reporter(progress, embedding=bool(settings.encoder) and dense is None)
        if analyses is None:
            analyses = []
            for n, (text, _) in enumerate(examples):
                analyses.append(analyze(text if isinstance(text, str) else str(text), settings))
                if n % 500 == 499:
                    report.analysed(n + 1, len(examples))
        report.analysed(len(examples), len(examples))
        if dense is None:
            dense = _embed(settings, [text for text, _ in examples], report)

        folds = _folds(labels, max(settings.calibration_folds, 2), seed)
        held_out = _HeldOut()
        scores: FloatArray | None = None
        if settings.calibration_folds < 2:  # no calibration asked for: the prior curve
            full, _ = _fit(
                analyses, labels, settings, seed, report=report.fit(0.0, 1.0), dense=dense, cache=cache
            )
        elif len(examples) < settings.cross_validate_below:
            k = settings.calibration_folds
            for fold in range(k):
                _held_out_margins(
                    held_out,
                    analyses,
                    labels,
                    folds,
                    fold,
                    settings,
                    seed,
                    report.fit(fold / (k + 1), (fold + 1) / (k + 1)),
                    dense=dense,
                    cache=cache,
                )
            full, _ = _fit(
                analyses,
                labels,
                settings,
                seed,
                report=report.fit(k / (k + 1), 1.0),
                dense=dense,
                cache=cache,
            )
        else:
            # One fifth held out. The full model's margins on the training examples tell the
            # held-out model's SVMs where to start: most of its work is done by then.
            full, scores = _fit(
                analyses,
                labels,
                settings,
                seed,
                report=report.fit(0.0, 0.7),
                dense=dense,
                candidates=candidates,
                cache=cache,
            )
            _held_out_margins(
                held_out,
                analyses,
                labels,
                folds,
                0,
                settings,
                seed,
                report.fit(0.7, 1.0),
                candidates=scores,
                dense=dense,
                cache=cache,
            )
        platt = _platt(
            np.array(held_out.margins, dtype=np.float64), np.array(held_out.outcomes, dtype=np.float64)
        )
        report.done()
        model = cls(
            intents=full.intents,
            vocabularies=full.vocabularies,
            idf=full.idf,
            weights=full.weights,
            bias=full.bias,
            platt=platt,
            settings=settings,
            info={"examples": len(examples), "calibration_examples": len(held_out.rows), "seed": seed},
            neighbours=_Neighbours.of(dense, labels, full.intents, settings),
        )
        model._held_out = held_out
        model._analyses, model._scores, model._words = analyses, scores, cache
        return model

    # ---------------------------------------------------------------- inference

    def vectorize(self, text: str) -> tuple[IndexArray, FloatArray]:
        """The TF-IDF vector of a text as (feature indices, values): exactly what the training
        vectors of `analyze` are (scikit-learn's TfidfVectorizer arithmetic), views weighted
        and concatenated. The same features as `analyze`, found faster: each word's stem and
        character n-grams are looked up once and remembered."""
        settings = self.settings
        tokens = words(text[: settings.max_chars])[: settings.max_tokens]
        if not tokens:
            return _NO_INDICES, _NO_VALUES
        cache = self._token_cache
        if len(cache) > 100_000:
            cache.clear()
        stems: list[str] = []
        ids: list[int] = []
        char_hits: list[int] = []
        for token in tokens:
            entry = cache.get(token)
            if entry is None:
                entry = self._token_entry(token)
                if len(token) <= _LONG:
                    cache[token] = entry
            stems.append(entry[0])
            ids.append(entry[1])
            char_hits.extend(entry[2])
        # Stems, bigrams and pairs by the stems' indices: a bigram or a pair is only ever in the
        # vocabulary if both its stems are (they are in every text it is in).
        word_hits = [j for j in ids if j >= 0]
        word_hits += [j for j in map(self._bigrams.get, itertools.pairwise(ids)) if j is not None]
        first = dict(zip(stems, ids, strict=True))  # distinct stems in order, with their index
        known = sorted(j for j in itertools.islice(first.values(), settings.pair_tokens) if j >= 0)
        pair_hits = [j for j in map(self._pairs.get, itertools.combinations(known, 2)) if j is not None]
        idf = self._idf_list
        indices: list[int] = []
        values: list[float] = []
        for hits, view_weight in zip((word_hits, pair_hits, char_hits), self._view_weights, strict=True):
            if not hits:
                continue
            counts = Counter(hits)
            if len(counts) == len(hits):  # each feature once (the usual case): tf = 1
                keys = hits
                found = [idf[j] for j in hits]
            else:  # tf = 1 + ln(count)
                keys = list(counts)
                found = [idf[j] if c == 1 else idf[j] * (1.0 + math.log(c)) for j, c in counts.items()]
            scale = view_weight / math.sqrt(sum([w * w for w in found]))
            indices += keys
            values += [w * scale for w in found]
        if not indices:
            return _NO_INDICES, _NO_VALUES
        return np.array(indices, dtype=np.int64), np.array(values, dtype=np.float32)

    def _token_entry(self, token: str) -> tuple[str, int, tuple[int, ...]]:
        """A word's stem, the stem's feature index (-1 if unknown), its known character n-grams."""
        word_vocab, _, char_vocab = self._vocab
        stemmed = _stem(token)
        grams = _char_grams(token, self.settings.char_min, self.settings.char_max)
        found = tuple(j for j in map(char_vocab.get, grams) if j is not None)
        return stemmed, word_vocab.get(stemmed, -1), found

    @property
    def encoder(self) -> SentenceEncoder | None:
        """The sentence encoder this model reads (None: words only)."""
        return self._encoder

    def uses_vectors(self, text: str) -> bool:
        """Whether this text needs the sentence vector (False: the words-only stage is sure)."""
        return self._encoder is not None and self._words_sure(text) is None

    def _words_sure(self, text: str) -> FloatArray | None:
        """The words-only stage's margins when it is sure enough to answer alone, else None."""
        fast = self.fast
        if fast is None:
            return None
        scores = fast.margins(text)
        best = int(scores.argmax())
        return scores if fast.confidences(scores[best : best + 1])[0] >= self.fast_above else None

    def _scored(self, text: str) -> tuple[FloatArray, IntentClassifier]:
        """The margins that decide this text and the model whose calibration reads them: the
        words-only stage's when it is sure, else this model's."""
        scores = self._words_sure(text)
        if scores is not None and self.fast is not None:
            return scores, self.fast
        return self.margins(text), self

    def _scored_many(self, texts: Sequence[str]) -> tuple[FloatArray, FloatArray, FloatArray]:
        """`_scored` of many texts: margins (rows), and each row's Platt parameters (a, b). The
        sentence vectors of the texts that need one are computed in one batch."""
        texts = [t if isinstance(t, str) else str(t) for t in texts]
        n = len(texts)
        a = np.full(n, self._platt[0], dtype=np.float32)
        b = np.full(n, self._platt[1], dtype=np.float32)
        fast = self.fast
        if fast is None:
            return self.margins_many(texts), a, b
        scores = fast.margins_many(texts)
        sure = np.zeros(n, dtype=bool)
        if n:
            sure = fast.confidences(scores.max(axis=1)) >= self.fast_above
        a[sure], b[sure] = fast._platt
        rest = np.flatnonzero(~sure)
        if len(rest):
            scores[rest] = self.margins_many([texts[i] for i in rest.tolist()])
        return scores, a, b

    def margins(self, text: str) -> FloatArray:
        """The score of each intent (in `self.intents` order): the SVM's margin, plus the
        nearest-neighbour vote with sentence vectors."""
        out = self._sparse_margins(text)
        if self._encoder is not None:
            vector = self._encoder.encode([text])
            out += vector[0] @ self._w_dense
            if self._neighbours is not None:
                self._neighbours.vote(out[None, :], vector, self.settings)
        return out

    def margins_many(self, texts: Sequence[str]) -> FloatArray:
        """`margins` of many texts, one row each; the sentence vectors in one batch."""
        texts = [t if isinstance(t, str) else str(t) for t in texts]
        out = np.zeros((len(texts), len(self.intents)), dtype=np.float32)
        for row, text in enumerate(texts):
            out[row] = self._sparse_margins(text)
        if self._encoder is not None and texts:
            vectors = self._encoder.encode(texts)
            out += vectors @ self._w_dense
            if self._neighbours is not None:
                self._neighbours.vote(out, vectors, self.settings)
        return out

    def _sparse_margins(self, text: str) -> FloatArray:
        indices, values = self.vectorize(text)
        if len(indices) == 0:
            return self._b.copy()
        out: FloatArray = values @ self._w[indices] + self._b
        return out

    def confidences(self, scores: FloatArray) -> FloatArray:
        """Platt's sigmoid of margins: the calibrated confidence of each."""
        return _sigmoid(scores, *self._platt)

    def predict(self, text: str) -> list[tuple[str, float]]:
        """Every intent, best first, with its calibrated confidence in [0, 1]. Never raises on
        text: an empty, huge, emoji-only or foreign message just gets low confidences."""
        if not isinstance(text, str):
            text = str(text)
        scores, model = self._scored(text)
        order = np.argsort(-scores, kind="stable")
        names = self._names
        return list(
            zip([names[i] for i in order.tolist()], model.confidences(scores[order]).tolist(), strict=True)
        )

    def top(self, text: str) -> tuple[str, float]:
        """The best intent and its confidence (cheaper than a full ranking)."""
        scores, model = self._scored(text if isinstance(text, str) else str(text))
        best = int(scores.argmax())
        return self.intents[best], float(model.confidences(scores[best : best + 1])[0])

    def predict_many(self, texts: Iterable[str]) -> list[list[tuple[str, float]]]:
        names = self._names
        found = []
        all_scores, a, b = self._scored_many(list(texts))
        for scores, slope, offset in zip(all_scores, a.tolist(), b.tolist(), strict=True):
            order = np.argsort(-scores, kind="stable")
            confidences = _sigmoid(scores[order], slope, offset).tolist()
            found.append(list(zip([names[i] for i in order.tolist()], confidences, strict=True)))
        return found

    def top_many(self, texts: Sequence[str]) -> list[tuple[str, float]]:
        """`top` of each text (the sentence vectors in one batch)."""
        scores, a, b = self._scored_many(texts)
        if not len(scores):
            return []
        best = scores.argmax(axis=1)
        confidences = _sigmoid(scores[np.arange(len(scores)), best], a, b).tolist()
        return [(self.intents[i], c) for i, c in zip(best.tolist(), confidences, strict=True)]

    # ---------------------------------------------------------------- threshold

    def tune_threshold(
        self,
        texts_in_scope_with_labels: Sequence[tuple[str, str]],
        texts_oos: Sequence[str],
        *,
        oos_share: float = 0.2,
    ) -> float:
        """Pick the confidence threshold on held-out data, keep it in `self.threshold`, return it.

        Objective: the expected share of messages handled right when a fraction `oos_share`
        of the traffic is out of scope, `(1 - oos_share) * A(t) + oos_share * R(t)`, where A(t)
        is the in-scope accuracy counting a top confidence below t as wrong and R(t) the
        out-of-scope recall (top confidence below t). Without out-of-scope examples R(t) is the
        share of the in-scope examples the model gets wrong that fall below t (a misunderstood
        message is the next best thing to an out-of-scope one). Ties go to the middle of the
        best interval of thresholds.
        """
        right: list[float] = []
        wrong: list[float] = []
        tops = self.top_many([text for text, _ in texts_in_scope_with_labels])
        for (intent, confidence), (_, label) in zip(tops, texts_in_scope_with_labels, strict=True):
            (right if intent == label else wrong).append(confidence)
        negatives = [c for _, c in self.top_many(list(texts_oos))] if texts_oos else wrong
        n_in = len(texts_in_scope_with_labels)
        if n_in == 0 and not negatives:
            return self.threshold
        candidates = sorted({0.0, 1.0000001, *right, *negatives})
        right_sorted = np.sort(np.array(right, dtype=np.float64))
        neg_sorted = np.sort(np.array(negatives, dtype=np.float64))
        cand = np.array(candidates, dtype=np.float64)
        # threshold t: an example is accepted when confidence >= t
        accepted_right = len(right_sorted) - np.searchsorted(right_sorted, cand, side="left")
        rejected_neg = np.searchsorted(neg_sorted, cand, side="left")
        share = oos_share if negatives else 0.0
        objective = (1.0 - share) * (accepted_right / max(n_in, 1)) + share * (
            rejected_neg / max(len(negatives), 1)
        )
        best = float(objective.max())
        ties = np.flatnonzero(objective >= best - 1e-12)
        # objective[i] holds for every t in (cand[i-1], cand[i]]: take the middle of the first
        # run of best candidates
        first = int(ties[0])
        breaks = np.flatnonzero(np.diff(ties) > 1)
        last = int(ties[breaks[0]]) if len(breaks) else int(ties[-1])
        high = float(cand[last])
        threshold = min(1.0, (float(cand[first - 1]) + high) / 2.0 if first > 0 else 0.0)
        self.threshold = threshold
        return threshold

    # ---------------------------------------------------------------- save/load

    def save(self, path: str | Path) -> Path:
        """Write the model to one `.npz` file (added to the name if missing); returns its path."""
        target = Path(path)
        if target.suffix != ".npz":
            target = target.with_name(target.name + ".npz")
        arrays = self._arrays("")
        if self.fast is not None:  # the words-only stage in the same file, its arrays prefixed
            arrays.update(self.fast._arrays("fast_"))
        buffer = io.BytesIO()
        np.savez_compressed(buffer, **arrays)
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(target.name + ".tmp")
        tmp.write_bytes(buffer.getvalue())
        tmp.replace(target)
        return target

    def _arrays(self, prefix: str) -> dict[str, Any]:
        meta = {
            "format": FORMAT,
            "intents": self.intents,
            "vocabularies": self._vocab_lists,
            "platt": list(self._platt),
            "threshold": self.threshold,
            "settings": asdict(self.settings),
            "info": self.info,
            "fast_above": self.fast_above,
        }
        arrays = {
            f"{prefix}meta": np.frombuffer(
                json.dumps(meta, ensure_ascii=False).encode("utf-8"), dtype=np.uint8
            ),
            f"{prefix}idf": self._idf,
            f"{prefix}weights": self._w,
            f"{prefix}bias": self._b,
        }
        if self._neighbours is not None:
            arrays[f"{prefix}neighbours"] = self._neighbours.vectors.astype(np.float16)  # as kept
            arrays[f"{prefix}neighbour_starts"] = self._neighbours.starts
        return arrays

    @classmethod
    def load(cls, path: str | Path) -> IntentClassifier:
        source = Path(path)
        if not source.exists() and source.suffix != ".npz":
            source = source.with_name(source.name + ".npz")
        with np.load(source, allow_pickle=False) as data:
            model, above = cls._from_arrays(data, "", source)
            if "fast_meta" in data.files:
                model._set_fast(cls._from_arrays(data, "fast_", source)[0], above)
            return model

    @classmethod
    def _from_arrays(cls, data: Any, prefix: str, source: Path) -> tuple[IntentClassifier, float]:
        meta = json.loads(bytes(data[f"{prefix}meta"]).decode("utf-8"))
        if meta.get("format") != FORMAT:
            raise ValueError(f"{source}: not a {FORMAT} model")
        known = set(Settings.__dataclass_fields__)
        settings = Settings(**{k: v for k, v in meta["settings"].items() if k in known})
        model = cls(
            intents=list(meta["intents"]),
            vocabularies=[list(v) for v in meta["vocabularies"]],
            idf=data[f"{prefix}idf"],
            weights=data[f"{prefix}weights"],
            bias=data[f"{prefix}bias"],
            platt=(float(meta["platt"][0]), float(meta["platt"][1])),
            settings=settings,
            threshold=float(meta["threshold"]),
            info=dict(meta.get("info") or {}),
            neighbours=_Neighbours(data[f"{prefix}neighbours"], data[f"{prefix}neighbour_starts"])
            if f"{prefix}neighbours" in data.files
            else None,
        )
        return model, float(meta.get("fast_above", _NEVER))


def _sigmoid(scores: FloatArray, a: Any, b: Any) -> FloatArray:
    """1 / (1 + exp(-(a·m + b))) of margins m; a and b are numbers or one per margin."""
    z = np.clip(scores * np.float32(a) + np.float32(b), -60.0, 60.0)
    out: FloatArray = 1.0 / (1.0 + np.exp(-z))
    return out


def _compound_index(
    word_features: list[str], word_vocab: dict[str, int], pair_vocab: dict[str, int]
) -> tuple[dict[tuple[int, int], int], dict[tuple[int, int], int]]:
    """Bigram and pair features keyed by their stems' indices (a pair by the smaller first)."""
    bigrams: dict[tuple[int, int], int] = {}
    for feature in word_features:
        if " " in feature:
            a, _, b = feature.partition(" ")
            if a in word_vocab and b in word_vocab:
                bigrams[word_vocab[a], word_vocab[b]] = word_vocab[feature]
    pairs: dict[tuple[int, int], int] = {}
    for feature, j in pair_vocab.items():
        a, _, b = feature.partition("|")
        if a in word_vocab and b in word_vocab:
            i, k = word_vocab[a], word_vocab[b]
            pairs[min(i, k), max(i, k)] = j
    return bigrams, pairs


# -------------------------------------------------------------------- training internals


Analysis = tuple[list[str], list[str], list[str]]


class _View:
    """TF-IDF of one view, as scikit-learn's `TfidfVectorizer(sublinear_tf=True, min_df=...)`
    computes it (tf = 1 + ln(count), idf = ln((1 + n) / (1 + df)) + 1, rows L2-normalised),
    in NumPy from already analysed texts."""

    def __init__(self) -> None:
        self.vocabulary: dict[str, int] = {}
        self.idf: npt.NDArray[np.float64] = np.zeros(0)

    def fit_transform(self, docs: Sequence[list[str]], min_df: int) -> csr_matrix:
        vocabulary: dict[str, int] = {}
        indices: list[int] = []
        counts: list[int] = []
        indptr = [0]
        for doc in docs:
            for feature, count in Counter(doc).items():
                j = vocabulary.get(feature)
                if j is None:
                    j = vocabulary[feature] = len(vocabulary)
                indices.append(j)
                counts.append(count)
            indptr.append(len(indices))
        cols = np.array(indices, dtype=np.int64)
        df = np.bincount(cols, minlength=len(vocabulary))
        keep = df >= min_df
        remap = np.cumsum(keep) - 1
        names = list(vocabulary)
        self.vocabulary = {names[j]: int(remap[j]) for j in np.flatnonzero(keep).tolist()}
        self.idf = np.log((1.0 + len(docs)) / (1.0 + df[keep])) + 1.0
        kept = keep[cols]
        bounds = np.array(indptr, dtype=np.int64)
        lengths: npt.NDArray[np.int64] = bounds[1:] - bounds[:-1]
        rows = np.repeat(np.arange(len(docs), dtype=np.int64), lengths)[kept]
        return self._matrix(rows, remap[cols[kept]], np.array(counts, dtype=np.float64)[kept], len(docs))

    def transform(self, docs: Sequence[list[str]]) -> csr_matrix:
        rows: list[int] = []
        cols: list[int] = []
        counts: list[int] = []
        vocabulary = self.vocabulary
        for row, doc in enumerate(docs):
            for feature, count in Counter(doc).items():
                j = vocabulary.get(feature)
                if j is not None:
                    rows.append(row)
                    cols.append(j)
                    counts.append(count)
        return self._matrix(
            np.array(rows, dtype=np.int64),
            np.array(cols, dtype=np.int64),
            np.array(counts, dtype=np.float64),
            len(docs),
        )

    def _matrix(
        self,
        rows: npt.NDArray[np.int64],
        cols: npt.NDArray[np.int64],
        counts: npt.NDArray[np.float64],
        n_rows: int,
    ) -> csr_matrix:
        from scipy.sparse import csr_matrix

        values = (1.0 + np.log(counts)) * self.idf[cols] if len(cols) else counts
        norms = np.sqrt(np.bincount(rows, weights=values * values, minlength=n_rows))
        values = values / np.where(norms > 0, norms, 1.0)[rows]
        matrix = csr_matrix((values, (rows, cols)), shape=(n_rows, len(self.vocabulary)))
        matrix.sort_indices()
        return matrix


@dataclass
class _Linear:
    intents: list[str]
    vocabularies: list[list[str]]
    idf: npt.NDArray[np.float64]
    weights: FloatArray  # (features, intents)
    bias: FloatArray
    views: list[_View]
    settings: Settings

    def decision(self, words: csr_matrix, dense: FloatArray | None = None) -> FloatArray:
        """Margins of examples given by their words' matrix (under these views) and vectors."""
        x = _Matrix.of(words, dense, self.settings)
        out: FloatArray = np.asarray(x.times(self.weights), dtype=np.float32) + self.bias
        return out


def _stack(views: list[_View], analyses: Sequence[Analysis], settings: Settings, *, fit: bool) -> csr_matrix:
    """The words' matrix: each view's TF-IDF times the view's weight, side by side."""
    from scipy.sparse import csr_matrix, hstack

    min_df = settings.min_df_large if len(analyses) >= settings.large else 1
    weights = (settings.word_weight, settings.pair_weight, settings.char_weight)
    blocks = []
    for index, (view, weight) in enumerate(zip(views, weights, strict=True)):
        docs = [a[index] for a in analyses]
        block = view.fit_transform(docs, min_df) if fit else view.transform(docs)
        blocks.append(block * weight if weight != 1.0 else block)
    return csr_matrix(hstack(blocks, format="csr"))


@dataclass
class _Matrix:
    """A training matrix in its two parts: the words' TF-IDF (sparse) and the sentence vectors
    times their weight (dense, or None), side by side in `joined` for liblinear. Products
    with weights are taken part by part: the dense part by BLAS, not as a sparse matrix."""

    sparse: csr_matrix
    dense: FloatArray | None

    @classmethod
    def of(cls, sparse: csr_matrix, dense: FloatArray | None, settings: Settings) -> _Matrix:
        scaled = None if dense is None else dense * np.float32(encoder_weight(settings))
        return cls(sparse, scaled)

    @property
    def shape(self) -> tuple[int, int]:
        rows, columns = self.sparse.shape
        return rows, columns + (0 if self.dense is None else self.dense.shape[1])

    def joined(self) -> csr_matrix:
        from scipy.sparse import csr_matrix, hstack

        if self.dense is None:
            return self.sparse
        return csr_matrix(hstack([self.sparse, csr_matrix(self.dense)], format="csr"))

    def times(self, weights: npt.NDArray[Any]) -> npt.NDArray[Any]:
        """This matrix @ weights (features, k)."""
        split = self.sparse.shape[1]
        out = np.asarray(self.sparse @ weights[:split])
        if self.dense is not None:
            out += self.dense @ weights[split:].astype(self.dense.dtype, copy=False)
        return out


# The words' matrices of one training, by rows ("all", "fold 0", "fold 0 held out"…), with their
# views: the model with sentence vectors has the same words as the words-only stage before it.
_WordsCache: TypeAlias = "dict[str, tuple[list[_View], csr_matrix]]"


def _words(
    cache: _WordsCache | None,
    key: str,
    analyses: Sequence[Analysis],
    settings: Settings,
    views: list[_View] | None,
) -> tuple[list[_View], csr_matrix]:
    """The views fitted on `analyses` (or, given `views`, their transform of them), computed
    once per key of the cache."""
    if cache is not None and key in cache:
        return cache[key]
    if views is None:
        views = [_View() for _ in _VIEWS]
        found = (views, _stack(views, analyses, settings, fit=True))
    else:
        found = (views, _stack(views, analyses, settings, fit=False))
    if cache is not None:
        cache[key] = found
    return found


def _fit(
    analyses: Sequence[Analysis],
    labels: Sequence[str],
    settings: Settings,
    seed: int,
    *,
    report: Progress | None = None,
    candidates: FloatArray | None = None,
    dense: FloatArray | None = None,
    cache: _WordsCache | None = None,
    key: str = "all",
) -> tuple[_Linear, FloatArray]:
    """The vocabularies, TF-IDF and one-vs-rest SVMs of these examples; with the margins of
    every training example for every intent (rows as given, columns as `intents`). The words'
    TF-IDF comes from `cache[key]` when an earlier model of the same rows computed it."""
    views, words = _words(cache, key, analyses, settings, None)
    x = _Matrix.of(words, dense, settings)
    classes = sorted(set(labels))
    intents = [c for c in classes if c != _BACKGROUND]
    y = _encode(labels, intents)  # the background is -1: a negative for every intent
    weights, bias, scores = _one_vs_rest(x, y, len(intents), settings, seed, report, candidates)
    idf = np.concatenate([view.idf for view in views])
    vocabularies = [sorted(view.vocabulary, key=view.vocabulary.__getitem__) for view in views]
    return _Linear(intents, vocabularies, idf, weights, bias, views, settings), scores


def _one_vs_rest(
    x: _Matrix,
    y: npt.NDArray[np.int64],
    n_intents: int,
    settings: Settings,
    seed: int,
    report: Progress | None,
    candidates: FloatArray | None,
) -> tuple[FloatArray, FloatArray, FloatArray]:
    """One squared-hinge linear SVM per intent, that intent against all other examples:
    weights (features, intents), biases, and the margins of the training examples, as
    liblinear's one-vs-rest would give them.

    On large data each intent's SVM starts on a working set: its examples and the negatives
    most like it (by class centroid, or by `candidates`, margins of an earlier model). Every
    other example is then checked: a negative with a margin above -1 would count in the loss,
    so those are added and that SVM trained again, until none is left. The examples never
    added have a zero dual variable: the solution is the one on all examples (checked to 1e-5
    on CLINC150), at a third of the cost.
    """
    from sklearn.svm import LinearSVC  # type: ignore[import-untyped]

    n, n_features = x.shape
    # one column per intent, each contiguous: an SVM's weights are written as one block
    weights = np.zeros((n_features, n_intents), dtype=np.float64, order="F")
    bias = np.zeros(n_intents, dtype=np.float64)

    def result() -> tuple[FloatArray, FloatArray, FloatArray]:
        w32 = np.ascontiguousarray(weights, dtype=np.float32)
        b32 = bias.astype(np.float32)
        scores: FloatArray = np.asarray(x.times(w32), dtype=np.float32) + b32
        return w32, b32, scores

    if n_features == 0 or n_intents == 0:
        return result()

    def svm() -> Any:
        return LinearSVC(C=settings.c, random_state=seed, max_iter=2000)

    present = np.unique(y)
    joined = x.joined()
    if n < settings.working_set_above or n_intents < 8:
        if len(present) == 1:  # a single intent and no negatives: nothing to tell apart
            return result()
        model = svm().fit(joined, y)
        coef = np.asarray(model.coef_, dtype=np.float64)
        intercept = np.asarray(model.intercept_, dtype=np.float64)
        if len(present) == 2:  # liblinear learns one vector for two classes: one per class here
            coef = np.vstack([-coef[0], coef[0]])
            intercept = np.array([-intercept[0], intercept[0]])
        for row, label in enumerate(present.tolist()):
            if label >= 0:
                weights[:, label] = coef[row]
                bias[label] = intercept[row]
        if report is not None:
            report(1, 1)
        return result()

    if candidates is None:
        onehot = np.zeros((n, n_intents), dtype=np.float64)
        known = y >= 0
        onehot[np.flatnonzero(known), y[known]] = 1.0
        centroids = np.asarray(joined.T @ onehot)
        centroids /= np.maximum(np.sqrt((centroids * centroids).sum(axis=0, keepdims=True)), 1e-12)
        candidates = np.asarray(x.times(centroids), dtype=np.float32)
    working: list[npt.NDArray[np.int64]] = []
    for intent in range(n_intents):
        score = candidates[:, intent].astype(np.float64)
        score[y == intent] = np.inf
        size = min(n, settings.working_set + int((y == intent).sum()))
        chosen = np.arange(n) if size >= n else np.argpartition(-score, size - 1)[:size]
        working.append(np.sort(chosen))
    todo = list(range(n_intents))
    done = 0
    expected = 1.5 * n_intents
    margins = np.zeros((n, n_intents), dtype=np.float64)

    def fit(intent: int) -> tuple[FloatArray, float]:
        rows = working[intent]
        target = (y[rows] == intent).astype(np.int64)
        if target.min() == target.max():
            return np.zeros(n_features, dtype=np.float64), 1.0 if target[0] else -1.0
        model = svm().fit(joined[rows], target)
        return model.coef_[0], float(model.intercept_[0])

    # The intents' SVMs are independent and liblinear lets go of the GIL: one thread per core.
    # Each SVM is the same whichever thread fits it, so the model does not depend on them.
    with ThreadPoolExecutor(max_workers=_threads()) as pool:
        for _ in range(20):
            for intent, (vector, offset) in zip(todo, pool.map(fit, todo), strict=True):
                weights[:, intent] = vector
                bias[intent] = offset
                done += 1
                if report is not None:
                    expected = max(expected, done + 1)
                    report(done, int(expected))
            # Only the SVMs just fitted have new margins, and only they can have new violators
            # (the others' weights and working sets are as they were when they had none).
            margins[:, todo] = x.times(weights[:, todo]) + bias[todo]
            again = []
            for intent in todo:
                outside = np.ones(n, dtype=bool)
                outside[working[intent]] = False
                violators = np.flatnonzero(outside & (y != intent) & (margins[:, intent] > -1.0))
                if len(violators):
                    working[intent] = np.union1d(working[intent], violators)
                    again.append(intent)
            todo = again
            expected = done + len(todo)
            if not todo:
                break
    if report is not None:
        report(1, 1)
    return (
        np.ascontiguousarray(weights, dtype=np.float32),
        bias.astype(np.float32),
        margins.astype(np.float32),
    )


def _threads() -> int:
    return max(1, min(os.cpu_count() or 1, 8))


def _encoder(settings: Settings) -> SentenceEncoder | None:
    if not settings.encoder:
        return None
    from nlu.encoder import shared

    return shared(settings.encoder)


def _embed(
    settings: Settings, texts: Sequence[str], report: _Reporter, threads: int | None = None
) -> FloatArray | None:
    """The sentence vectors of the training texts (None without an encoder), in batches so
    the progress bar moves."""
    encoder = _encoder(settings)
    if encoder is None:
        return None
    out = np.zeros((len(texts), encoder.dim), dtype=np.float32)
    step = 1000
    for start in range(0, len(texts), step):
        out[start : start + step] = encoder.encode(
            [str(t) for t in texts[start : start + step]], threads=threads
        )
        report.embedded(min(start + step, len(texts)), len(texts))
    return out


def _encode(labels: Sequence[str], intents: list[str]) -> npt.NDArray[np.int64]:
    index = {c: i for i, c in enumerate(intents)}
    return np.array([index.get(label, -1) for label in labels], dtype=np.int64)


@dataclass
class _HeldOut:
    """Held-out examples of a training: their rows, top intent, top margin, and whether that
    intent was right (out-of-scope examples: never)."""

    rows: list[int] = dataclasses.field(default_factory=list)
    predicted: list[str] = dataclasses.field(default_factory=list)
    margins: list[float] = dataclasses.field(default_factory=list)
    outcomes: list[float] = dataclasses.field(default_factory=list)


def _held_out_margins(
    into: _HeldOut,
    analyses: Sequence[Analysis],
    labels: Sequence[str],
    folds: Sequence[int],
    fold: int,
    settings: Settings,
    seed: int,
    report: Progress | None = None,
    *,
    candidates: FloatArray | None = None,
    dense: FloatArray | None = None,
    cache: _WordsCache | None = None,
) -> None:
    """Top margins of the examples of one fold under a model trained on the others (its own
    vocabulary, as unseen text would meet it), and whether each top intent was right."""
    train_rows = [i for i, f in enumerate(folds) if f != fold]
    test_rows = [i for i, f in enumerate(folds) if f == fold]
    if not test_rows:
        return
    model, _ = _fit(
        [analyses[i] for i in train_rows],
        [labels[i] for i in train_rows],
        settings,
        seed,
        report=report,
        candidates=None if candidates is None else candidates[train_rows],
        dense=None if dense is None else dense[train_rows],
        cache=cache,
        key=f"fold {fold}",
    )
    if not model.intents:
        return
    _, words = _words(cache, f"fold {fold} held out", [analyses[i] for i in test_rows], settings, model.views)
    scores = model.decision(words, None if dense is None else dense[test_rows])
    if dense is not None:  # the same nearest-neighbour vote as at inference
        taught = [labels[i] for i in train_rows]
        neighbours = _Neighbours.of(dense[train_rows], taught, model.intents, settings)
        if neighbours is not None:
            neighbours.vote(scores, dense[test_rows], settings)
    best = scores.argmax(axis=1)
    for row, i in enumerate(test_rows):
        predicted = model.intents[best[row]]
        into.rows.append(i)
        into.predicted.append(predicted)
        into.margins.append(float(scores[row, best[row]]))
        into.outcomes.append(1.0 if predicted == labels[i] else 0.0)


_VOTERS = 10  # the intents, best margins first, that the nearest-neighbour vote may raise


class _Neighbours:
    """A model's training sentence vectors grouped by intent (rows starts[i]:starts[i+1] are
    intent i's examples): the cosine of a text's vector to each intent's nearest example, and
    to the unit mean of its examples. Kept as float16 values (half the file; a cosine moves by
    about 1e-3); the means are computed from them when loaded."""

    def __init__(self, vectors: Any, starts: Any) -> None:
        self.vectors: FloatArray = np.ascontiguousarray(
            np.asarray(vectors, dtype=np.float16), dtype=np.float32
        )
        self.starts: IndexArray = np.asarray(starts, dtype=np.int64)
        self._ends = np.append(self.starts[1:], len(self.vectors))
        if self.vectors.ndim != 2 or np.any(self._ends <= self.starts):
            raise ValueError("inconsistent model: every intent needs its nearest examples")
        sums = np.add.reduceat(self.vectors, self.starts, axis=0)
        lengths = np.linalg.norm(sums, axis=1, keepdims=True)
        self.centroids: FloatArray = np.ascontiguousarray(sums / np.maximum(lengths, 1e-9), dtype=np.float32)

    @classmethod
    def of(
        cls, dense: FloatArray | None, labels: Sequence[str], intents: list[str], settings: Settings
    ) -> _Neighbours | None:
        """The in-scope examples' vectors, grouped by intent (None without vectors or vote)."""
        if dense is None or not intents or (settings.neighbour_weight <= 0 and not settings.centroid_weight):
            return None
        index = {intent: i for i, intent in enumerate(intents)}
        rows = [r for r, label in enumerate(labels) if label in index]
        rows.sort(key=lambda r: index[labels[r]])
        counts = np.bincount([index[labels[r]] for r in rows], minlength=len(intents))
        starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
        return cls(dense[rows], starts)

    def vote(self, scores: FloatArray, vectors: FloatArray, settings: Settings) -> None:
        """Add neighbour_weight × the nearest example's cosine, and centroid_weight × the
        cosine to the intent's mean vector, to each row's best `_VOTERS` intents, in place. A
        text without a vector (zero) gets no vote."""
        k = min(_VOTERS, scores.shape[1])
        best = np.argpartition(-scores, k - 1, axis=1)[:, :k]
        w = np.float32(settings.neighbour_weight)
        # None in a model trained before the mean's vote: it was trained without it
        c = np.float32(settings.centroid_weight or 0.0)
        for row in np.flatnonzero(np.abs(vectors).sum(axis=1) > 0).tolist():
            vector = vectors[row]
            if c:  # the voters' means in one product
                scores[row, best[row]] += c * (self.centroids[best[row]] @ vector)
            if w:
                for j in best[row].tolist():
                    near = self.vectors[self.starts[j] : self._ends[j]] @ vector
                    scores[row, j] += w * near.max()


def _fast_above(fast: IntentClassifier, full: IntentClassifier, labels: Sequence[str], cost: float) -> float:
    """The words-only confidence from which the words-only stage answers alone: the lowest at
    which, on the examples both stages saw held out, answering so costs at most `cost` of the
    full model's accuracy. Right means the right intent; for an out-of-scope example, a full
    model's confidence below one half (the words-only stage answers only when sure, so it is
    never right there)."""
    a, b = fast._held_out, full._held_out
    if a is None or b is None:
        return _NEVER
    theirs = {
        row: (intent, margin) for row, intent, margin in zip(b.rows, b.predicted, b.margins, strict=True)
    }
    common = [
        (row, intent, margin)
        for row, intent, margin in zip(a.rows, a.predicted, a.margins, strict=True)
        if row in theirs
    ]
    if len(common) < 50:  # too few to tell: always the full model
        return _NEVER
    words_confidence = fast.confidences(np.array([m for _, _, m in common], dtype=np.float32)).astype(
        np.float64
    )
    full_confidence = full.confidences(np.array([theirs[r][1] for r, _, _ in common], dtype=np.float32))
    words_right = np.array([intent == labels[row] for row, intent, _ in common], dtype=np.float64)
    full_right = np.array(
        [
            theirs[row][0] == labels[row] if labels[row] != _BACKGROUND else c < 0.5
            for (row, _, _), c in zip(common, full_confidence.tolist(), strict=True)
        ],
        dtype=np.float64,
    )
    order = np.argsort(-words_confidence, kind="stable")
    ranked = words_confidence[order]
    # k shortcuts: the k surest go to the words-only stage, the rest to the full model.
    gained = np.concatenate([[0.0], np.cumsum(words_right[order] - full_right[order])])
    allowed = gained >= -cost * len(common) - 1e-9
    k = int(np.argmin(allowed)) - 1 if not allowed.all() else len(common)
    while k > 0 and k < len(common) and ranked[k - 1] == ranked[k]:  # a tie cannot be split
        k -= 1
    if k <= 0:
        return _NEVER
    return float(ranked[k - 1])


def _folds(labels: Sequence[str], k: int, seed: int) -> list[int]:
    """A stratified fold number for each example; -1 (always trained on) for a label with a
    single example."""
    rng = random.Random(seed)
    by_label: dict[str, list[int]] = {}
    for i, label in enumerate(labels):
        by_label.setdefault(label, []).append(i)
    folds = [-1] * len(labels)
    start = 0
    for label in sorted(by_label):
        rows = by_label[label]
        if len(rows) < 2:
            continue
        rows = rows[:]
        rng.shuffle(rows)
        for j, i in enumerate(rows):
            folds[i] = (start + j) % k
        start += len(rows)
    return folds


def _platt(margins: npt.NDArray[np.float64], outcomes: npt.NDArray[np.float64]) -> tuple[float, float]:
    """Platt scaling P(right | m) = 1 / (1 + exp(-(a·m + b))) by Newton's method, with Platt's
    smoothed targets and a weak prior (a = 4, b = 2, near what large data sets give) so that a
    few held-out examples, or all of them right, still give a sensible increasing curve."""
    prior = np.array([4.0, 2.0])
    strength = 2.0
    if len(margins) == 0:
        return float(prior[0]), float(prior[1])
    positives = float(outcomes.sum())
    negatives = float(len(outcomes) - positives)
    hi = (positives + 1.0) / (positives + 2.0)
    lo = 1.0 / (negatives + 2.0)
    target = np.where(outcomes > 0.5, hi, lo)
    params = prior.copy()
    design = np.column_stack([margins, np.ones_like(margins)])

    def loss(theta: npt.NDArray[np.float64]) -> float:
        z = design @ theta  # cross-entropy with the smoothed targets, plus the prior's pull
        return float(np.sum(np.logaddexp(0.0, z) - target * z) + strength / 2 * np.sum((theta - prior) ** 2))

    current = loss(params)
    for _ in range(100):
        z = np.clip(design @ params, -60.0, 60.0)
        p = 1.0 / (1.0 + np.exp(-z))
        gradient = design.T @ (p - target) + strength * (params - prior)
        hessian = (design * (p * (1.0 - p))[:, None]).T @ design + strength * np.eye(2)
        step = np.linalg.solve(hessian, gradient)
        # Newton's step, halved while it does not lower the loss: from the prior, margins far
        # from zero (the nearest-neighbour vote adds up to one) saturate the sigmoid and a
        # full step overshoots.
        for _ in range(40):
            trial = loss(params - step)
            if trial <= current:
                break
            step = step / 2.0
        params -= step
        current = min(current, trial)
        if float(np.abs(step).max()) < 1e-9:
            break
    a = max(float(params[0]), 0.5)  # confidence must grow with the margin
    return a, float(params[1])


def _part(progress: Progress | None, start: float, end: float) -> Progress | None:
    """A progress callback that covers [start, end] of another's scale."""
    if progress is None:
        return None
    outer = progress

    def update(done: int, total: int) -> None:
        share = start + (end - start) * min(1.0, done / max(total, 1))
        outer(int(1000 * share), 1000)

    return update


class _Reporter:
    """Turns the steps of training into (done, total) calls on a scale of 1000: analysing the
    texts counts for a tenth, the sentence vectors (with an encoder) for three more, the SVM
    fits for the rest."""

    TOTAL = 1000

    def __init__(self, progress: Progress | None, embedding: bool = False) -> None:
        self.progress = progress
        self.last = -1
        self.fit_from = 400 if embedding else 100

    def _emit(self, value: float) -> None:
        value = int(min(self.TOTAL, max(value, self.last)))
        if self.progress is not None and value != self.last:
            self.last = value
            self.progress(value, self.TOTAL)

    def analysed(self, n: int, total: int) -> None:
        self._emit(100 * n / max(total, 1))

    def embedded(self, n: int, total: int) -> None:
        self._emit(100 + 300 * n / max(total, 1))

    def fit(self, start: float, end: float) -> Progress:
        """The progress callback of a fit that covers [start, end] of the fitting part."""

        def update(done: int, total: int) -> None:
            share = start + (end - start) * min(1.0, done / max(total, 1))
            self._emit(self.fit_from + (995 - self.fit_from) * share)

        return update

    def done(self) -> None:
        self._emit(self.TOTAL)

"""The built-in intent classifier: a linear SVM over word, word-pair and character n-gram TF-IDF
features, with confidences calibrated so that one threshold tells in-scope from out-of-scope.

Training (scikit-learn, single core, CLINC150's 15,000 examples in about 15 s):

* every text is folded (lower case, no accents, French elisions removed, `nlu.text.words`) and
  cut into three views: light word stems with stem bigrams, unordered pairs of stems anywhere
  in the message (a cheap quadratic kernel: "change … name" vs "what … name"), and character
  n-grams of each word (typos, conjugations, compounds);
* each view is TF-IDF weighted (sublinear tf, smoothed idf, L2 norm, rare features pruned on
  large data sets) and the views are concatenated with fixed weights;
* a one-vs-rest linear SVM (liblinear, squared hinge) learns one weight vector per intent.
  Out-of-scope examples, when the data has them, are one more class whose row is dropped
  after training: they serve as negatives for every intent and never appear in a ranking;
* the confidence of an intent is Platt's sigmoid of its margin, `1 / (1 + exp(-(a·m + b)))`,
  with (a, b) fitted on held-out margins (5-fold cross-validation on small data, one fifth
  held out on large data) to the probability that the top intent is right — out-of-scope
  examples held out count as wrong. The highest margin was the best out-of-scope signal we
  measured (better than margin gaps, softmax temperatures or nearest-neighbour similarity),
  and the sigmoid keeps its order, so a single threshold on the top confidence separates
  in-scope from out-of-scope; `tune_threshold` picks it on held-out data.

Inference needs NumPy only: the same analyser, a dictionary lookup in each view's vocabulary,
the same TF-IDF arithmetic, then a gather of the dense float32 weight rows of the features
present (`values @ W[indices]`). A short message takes a few tens of microseconds.
Models are saved as one `.npz` file (arrays and a JSON header; nothing is pickled).
"""

from __future__ import annotations

import io
import itertools
import json
import math
import os
import random
import subprocess
import sys
import tempfile
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from nlu.text import stem, words

if TYPE_CHECKING:  # scikit-learn and SciPy are needed to train only
    from scipy.sparse import csr_matrix  # type: ignore[import-untyped]

FloatArray = npt.NDArray[np.float32]
IndexArray = npt.NDArray[np.int64]
Progress = Callable[[int, int], None]

FORMAT = "guichet-intent-classifier/1"
_BACKGROUND = "\x00background"  # the internal class of out-of-scope examples (no text label clashes)
_VIEWS = ("words", "pairs", "chars")


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
    class_weight: str | None = None  # "balanced" or None
    calibration_folds: int = 5  # below 2: no calibration (a fixed curve), for quick experiments
    cross_validate_below: int = 4000  # all folds below this many examples, one held-out fifth above
    parallel: bool = True  # on large data, fit the held-out fold's model in a second process


DEFAULT = Settings()


@lru_cache(maxsize=200_000)
def _stem(token: str) -> str:
    return stem(token)


@lru_cache(maxsize=200_000)
def _char_grams(token: str, lo: int, hi: int) -> tuple[str, ...]:
    padded = f" {token} "
    size = len(padded)
    grams: list[str] = []
    for n in range(lo, hi + 1):
        if size <= n:
            grams.append(padded)
            break
        grams.extend(padded[i : i + n] for i in range(size - n + 1))
    return tuple(grams)


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
    ) -> None:
        self.intents = intents
        self.settings = settings
        self.threshold = threshold
        self.info: dict[str, Any] = dict(info or {})
        self._vocab_lists = vocabularies
        self._idf = np.ascontiguousarray(idf, dtype=np.float64)
        idf_list: list[float] = self._idf.tolist()
        self._vocab: list[dict[str, tuple[int, float]]] = []
        offset = 0
        for vocabulary in vocabularies:
            self._vocab.append({f: (offset + i, idf_list[offset + i]) for i, f in enumerate(vocabulary)})
            offset += len(vocabulary)
        self._names = list(intents)
        self._w = np.ascontiguousarray(weights, dtype=np.float32)  # (features, intents)
        self._b = np.ascontiguousarray(bias, dtype=np.float32)
        self._platt = (float(platt[0]), float(platt[1]))
        self._view_weights = (settings.word_weight, settings.pair_weight, settings.char_weight)
        if self._w.shape != (offset, len(intents)) or self._b.shape != (len(intents),):
            raise ValueError("inconsistent model: weight shapes do not match the vocabularies")

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
        labels = [_BACKGROUND if label == oos_label else label for _, label in examples]
        intents = sorted({label for label in labels if label != _BACKGROUND})
        if len(intents) < 1 or (len(intents) < 2 and _BACKGROUND not in labels):
            raise ValueError("training needs at least two intents (or one intent and out-of-scope examples)")
        report = _Reporter(progress, len(examples), _fit_count(len(examples), settings))
        analyses = []
        for n, (text, _) in enumerate(examples):
            analyses.append(analyze(text, settings))
            if n % 500 == 499:
                report.analysed(n + 1)
        report.analysed(len(examples))

        folds = _folds(labels, max(settings.calibration_folds, 2), seed)
        margins: list[float] = []
        outcomes: list[float] = []
        if settings.calibration_folds < 2:  # no calibration asked for: the prior curve
            full = _fit(analyses, labels, settings, seed)
        elif len(examples) < settings.cross_validate_below:
            for fold in range(settings.calibration_folds):
                found = _held_out_margins(analyses, labels, folds, fold, settings, seed)
                margins.extend(found[0])
                outcomes.extend(found[1])
                report.fitted()
            full = _fit(analyses, labels, settings, seed)
        else:
            # One fifth held out. Its model trains in a second process, beside the full model
            # in this one (liblinear holds the GIL): training takes the time of one fit.
            texts = [text for text, _ in examples]
            pending = (
                _start_in_background(texts, labels, folds, settings, seed) if settings.parallel else None
            )
            try:
                full = _fit(analyses, labels, settings, seed)
            except BaseException:
                if pending is not None:
                    pending.close()
                raise
            report.fitted()
            found = pending.result() if pending is not None else None
            if found is None:  # no second process here, or it failed: do it in this one
                found = _held_out_margins(analyses, labels, folds, 0, settings, seed)
            margins, outcomes = found
        report.fitted()
        platt = _platt(np.array(margins, dtype=np.float64), np.array(outcomes, dtype=np.float64))
        report.done()
        return cls(
            intents=full.intents,
            vocabularies=full.vocabularies,
            idf=full.idf,
            weights=full.weights,
            bias=full.bias,
            platt=platt,
            settings=settings,
            info={"examples": len(examples), "calibration_examples": len(margins), "seed": seed},
        )

    # ---------------------------------------------------------------- inference

    def vectorize(self, text: str) -> tuple[IndexArray, FloatArray]:
        """The TF-IDF vector of a text as (feature indices, values): what scikit-learn's
        vectorizers of training give, views weighted and concatenated."""
        indices: list[int] = []
        values: list[float] = []
        for view, features in enumerate(analyze(text, self.settings)):
            if not features:
                continue
            vocab = self._vocab[view]
            found: list[float] = []
            squares = 0.0
            for feature, count in Counter(features).items():
                hit = vocab.get(feature)
                if hit is not None:
                    weight = hit[1] if count == 1 else hit[1] * (1.0 + math.log(count))
                    indices.append(hit[0])
                    found.append(weight)
                    squares += weight * weight
            if found:
                scale = self._view_weights[view] / math.sqrt(squares)
                values.extend([weight * scale for weight in found])
        return np.array(indices, dtype=np.int64), np.array(values, dtype=np.float32)

    def margins(self, text: str) -> FloatArray:
        """The SVM's raw score of each intent (in `self.intents` order)."""
        indices, values = self.vectorize(text)
        if len(indices) == 0:
            return self._b.copy()
        out: FloatArray = values @ self._w[indices] + self._b
        return out

    def confidences(self, scores: FloatArray) -> FloatArray:
        """Platt's sigmoid of margins: the calibrated confidence of each."""
        a, b = self._platt
        z = np.clip(scores * np.float32(a) + np.float32(b), -60.0, 60.0)
        out: FloatArray = 1.0 / (1.0 + np.exp(-z))
        return out

    def predict(self, text: str) -> list[tuple[str, float]]:
        """Every intent, best first, with its calibrated confidence in [0, 1]. Never raises on
        text: an empty, huge, emoji-only or foreign message just gets low confidences."""
        if not isinstance(text, str):
            text = str(text)
        scores = self.margins(text)
        order = np.argsort(-scores, kind="stable")
        names = self._names
        return list(
            zip([names[i] for i in order.tolist()], self.confidences(scores[order]).tolist(), strict=True)
        )

    def top(self, text: str) -> tuple[str, float]:
        """The best intent and its confidence (cheaper than a full ranking)."""
        scores = self.margins(text)
        best = int(scores.argmax())
        return self.intents[best], float(self.confidences(scores[best : best + 1])[0])

    def predict_many(self, texts: Iterable[str]) -> list[list[tuple[str, float]]]:
        return [self.predict(text) for text in texts]

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
        for text, label in texts_in_scope_with_labels:
            intent, confidence = self.top(text)
            (right if intent == label else wrong).append(confidence)
        negatives = [self.top(text)[1] for text in texts_oos] if texts_oos else wrong
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
        meta = {
            "format": FORMAT,
            "intents": self.intents,
            "vocabularies": self._vocab_lists,
            "platt": list(self._platt),
            "threshold": self.threshold,
            "settings": asdict(self.settings),
            "info": self.info,
        }
        buffer = io.BytesIO()
        np.savez_compressed(
            buffer,
            meta=np.frombuffer(json.dumps(meta, ensure_ascii=False).encode("utf-8"), dtype=np.uint8),
            idf=self._idf,
            weights=self._w,
            bias=self._b,
        )
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(target.name + ".tmp")
        tmp.write_bytes(buffer.getvalue())
        tmp.replace(target)
        return target

    @classmethod
    def load(cls, path: str | Path) -> IntentClassifier:
        source = Path(path)
        if not source.exists() and source.suffix != ".npz":
            source = source.with_name(source.name + ".npz")
        with np.load(source, allow_pickle=False) as data:
            meta = json.loads(bytes(data["meta"]).decode("utf-8"))
            if meta.get("format") != FORMAT:
                raise ValueError(f"{source}: not a {FORMAT} model")
            known = set(Settings.__dataclass_fields__)
            settings = Settings(**{k: v for k, v in meta["settings"].items() if k in known})
            return cls(
                intents=list(meta["intents"]),
                vocabularies=[list(v) for v in meta["vocabularies"]],
                idf=data["idf"],
                weights=data["weights"],
                bias=data["bias"],
                platt=(float(meta["platt"][0]), float(meta["platt"][1])),
                settings=settings,
                threshold=float(meta["threshold"]),
                info=dict(meta.get("info") or {}),
            )


# -------------------------------------------------------------------- training internals


Analysis = tuple[list[str], list[str], list[str]]


class _View:
    """TF-IDF of one view, as scikit-learn's `TfidfVectorizer(sublinear_tf=True, min_df=...)`
    computes it (tf = 1 + ln(count), idf = ln((1 + n) / (1 + df)) + 1, rows L2-normalised),
    in NumPy: fitting on 15,000 texts takes a third of scikit-learn's time."""

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
        rows = np.repeat(np.arange(len(docs)), np.diff(np.array(indptr, dtype=np.int64)))[kept]
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

    def matrix(self, analyses: Sequence[Analysis]) -> csr_matrix:
        return _stack(self.views, analyses, self.settings, fit=False)

    def decision(self, analyses: Sequence[Analysis]) -> FloatArray:
        out: FloatArray = np.asarray(self.matrix(analyses) @ self.weights, dtype=np.float32) + self.bias
        return out


def _stack(views: list[_View], analyses: Sequence[Analysis], settings: Settings, *, fit: bool) -> csr_matrix:
    """The training matrix: each view's TF-IDF times the view's weight, side by side."""
    from scipy.sparse import csr_matrix, hstack

    min_df = settings.min_df_large if len(analyses) >= settings.large else 1
    weights = (settings.word_weight, settings.pair_weight, settings.char_weight)
    blocks = []
    for index, (view, weight) in enumerate(zip(views, weights, strict=True)):
        docs = [a[index] for a in analyses]
        block = view.fit_transform(docs, min_df) if fit else view.transform(docs)
        blocks.append(block * weight if weight != 1.0 else block)
    return csr_matrix(hstack(blocks, format="csr"))


def _fit(
    analyses: Sequence[tuple[list[str], list[str], list[str]]],
    labels: Sequence[str],
    settings: Settings,
    seed: int,
) -> _Linear:
    from sklearn.svm import LinearSVC  # type: ignore[import-untyped]

    views = [_View() for _ in _VIEWS]
    x = _stack(views, analyses, settings, fit=True)
    vocabularies = [sorted(view.vocabulary, key=view.vocabulary.__getitem__) for view in views]
    idf_parts = [view.idf for view in views]
    classes = sorted(set(labels))
    y = _encode(labels, classes)
    intents = [c for c in classes if c != _BACKGROUND]
    n_features = x.shape[1]
    if len(classes) == 1 or n_features == 0:
        weights = np.zeros((n_features, len(intents)), dtype=np.float32)
        bias = np.zeros(len(intents), dtype=np.float32)
    else:
        svm = LinearSVC(C=settings.c, class_weight=settings.class_weight, random_state=seed, max_iter=2000)
        svm.fit(x, y)
        coef = np.asarray(svm.coef_, dtype=np.float64)
        intercept = np.asarray(svm.intercept_, dtype=np.float64)
        if len(classes) == 2:  # liblinear learns one vector for two classes: make it one per class
            coef = np.vstack([-coef[0], coef[0]])
            intercept = np.array([-intercept[0], intercept[0]])
        keep = [i for i, c in enumerate(classes) if c != _BACKGROUND]
        weights = np.ascontiguousarray(coef[keep].T, dtype=np.float32)
        bias = intercept[keep].astype(np.float32)
    idf = np.concatenate(idf_parts) if idf_parts else np.zeros(0, dtype=np.float64)
    return _Linear(intents, vocabularies, idf, weights, bias, views, settings)


def _held_out_margins(
    analyses: Sequence[tuple[list[str], list[str], list[str]]] | None,
    labels: Sequence[str],
    folds: Sequence[int],
    fold: int,
    settings: Settings,
    seed: int,
    texts: Sequence[str] | None = None,
) -> tuple[list[float], list[float]]:
    """Top margins of the examples of one fold under a model trained on the others (its own
    vocabulary, as unseen text would meet it), and whether each top intent was right."""
    train_rows = [i for i, f in enumerate(folds) if f != fold]
    test_rows = [i for i, f in enumerate(folds) if f == fold]
    if not test_rows:
        return [], []
    if analyses is None:
        analyses = [analyze(text, settings) for text in texts or ()]
    model = _fit([analyses[i] for i in train_rows], [labels[i] for i in train_rows], settings, seed)
    if not model.intents:
        return [], []
    scores = model.decision([analyses[i] for i in test_rows])
    best = scores.argmax(axis=1)
    margins = [float(scores[row, best[row]]) for row in range(len(test_rows))]
    outcomes = [1.0 if model.intents[best[row]] == labels[i] else 0.0 for row, i in enumerate(test_rows)]
    return margins, outcomes


class _Background:
    """The held-out fold's model, trained by a second Python process (`python -c`, nothing
    inherited: no fork of a threaded server, no re-import of the caller's script)."""

    def __init__(self, texts: list[str], labels: list[str], folds: list[int], settings: Settings, seed: int):
        self._dir = tempfile.TemporaryDirectory(prefix="guichet-nlu-")
        folder = Path(self._dir.name)
        self._out = folder / "out.json"
        job = folder / "job.json"
        job.write_text(
            json.dumps({"texts": texts, "labels": labels, "folds": folds, "settings": asdict(settings), "seed": seed}),
            encoding="utf-8",
        )
        root = str(Path(__file__).resolve().parent.parent)
        env = dict(os.environ)
        env["PYTHONPATH"] = root + os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else root
        env.setdefault("OMP_NUM_THREADS", "1")
        self._process = subprocess.Popen(
            [sys.executable, "-c", "from nlu.classifier import _worker; _worker()", str(job), str(self._out)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            env=env,
        )

    def result(self, timeout: float = 3600.0) -> tuple[list[float], list[float]] | None:
        try:
            if self._process.wait(timeout=timeout) != 0:
                return None
            found = json.loads(self._out.read_text(encoding="utf-8"))
            return [float(x) for x in found["margins"]], [float(x) for x in found["outcomes"]]
        except (OSError, ValueError, KeyError, subprocess.TimeoutExpired):
            return None
        finally:
            self.close()

    def close(self) -> None:
        if self._process.poll() is None:
            self._process.kill()
            self._process.wait()
        self._dir.cleanup()


def _worker() -> None:
    """Entry point of the second process: `job.json` in, `out.json` out."""
    job = json.loads(Path(sys.argv[1]).read_text(encoding="utf-8"))
    known = set(Settings.__dataclass_fields__)
    settings = Settings(**{k: v for k, v in job["settings"].items() if k in known})
    margins, outcomes = _held_out_margins(
        None, job["labels"], job["folds"], 0, settings, int(job["seed"]), job["texts"]
    )
    Path(sys.argv[2]).write_text(json.dumps({"margins": margins, "outcomes": outcomes}), encoding="utf-8")


def _start_in_background(
    texts: list[str], labels: list[str], folds: list[int], settings: Settings, seed: int
) -> _Background | None:
    if (os.cpu_count() or 1) < 2 or not sys.executable:
        return None
    try:
        return _Background(texts, labels, folds, settings, seed)
    except (OSError, ValueError, subprocess.SubprocessError):  # no second process here
        return None


def _encode(labels: Sequence[str], classes: list[str]) -> npt.NDArray[np.int64]:
    index = {c: i for i, c in enumerate(classes)}
    return np.array([index[label] for label in labels], dtype=np.int64)


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
    smoothed targets and a weak prior (a = 4, b = -1, what large data sets give) so that a few
    held-out examples, or all of them right, still give a sensible increasing curve."""
    prior = np.array([4.0, -1.0])
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
    for _ in range(100):
        z = np.clip(design @ params, -60.0, 60.0)
        p = 1.0 / (1.0 + np.exp(-z))
        gradient = design.T @ (p - target) + strength * (params - prior)
        hessian = (design * (p * (1.0 - p))[:, None]).T @ design + strength * np.eye(2)
        step = np.linalg.solve(hessian, gradient)
        params -= step
        if float(np.abs(step).max()) < 1e-9:
            break
    a = max(float(params[0]), 0.5)  # confidence must grow with the margin
    return a, float(params[1])


def _fit_count(n_examples: int, settings: Settings) -> int:
    if settings.calibration_folds < 2:
        return 1
    folds = settings.calibration_folds if n_examples < settings.cross_validate_below else 1
    return folds + 1


class _Reporter:
    """Turns the steps of training into (done, total) calls: analysing the texts counts for a
    fifth, the fits for the rest."""

    def __init__(self, progress: Progress | None, n_examples: int, fits: int) -> None:
        self.progress = progress
        self.n = max(n_examples, 1)
        self.fits = fits
        self.done_fits = 0
        self.total = 1000

    def _emit(self, value: float) -> None:
        if self.progress is not None:
            self.progress(min(self.total, int(value)), self.total)

    def analysed(self, n: int) -> None:
        self._emit(200 * n / self.n)

    def fitted(self) -> None:
        self.done_fits += 1
        self._emit(200 + 790 * self.done_fits / self.fits)

    def done(self) -> None:
        self._emit(self.total)

"""Similarity search over short texts: the knowledge base's titles and questions, and the
intents' examples when no classifier is trained.

TF-IDF vectors of word stems, stem bigrams and character 4-grams (typos and missing accents
still meet), compared by cosine over an inverted index: building takes milliseconds, so an
edited or added article is picked up by rebuilding, with no training.

With a sentence encoder (`nlu.encoder`), the knowledge base also compares sentence vectors:
"outlook stopped downloading my emails" is nearest, by its words, to the questions of the
software installation article, but its vector is nearest to the Outlook article's. An
article's score is then the better of its words' cosine and a blend that leans on the
vectors' cosine (see `_blend`).
"""

from __future__ import annotations

import itertools
import math
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from nlu.kb import Article
from nlu.text import STOPWORDS, stem, words

if TYPE_CHECKING:  # NumPy and the encoder: only for a desk that turns the encoder on
    import numpy as np
    from numpy.typing import NDArray

    from nlu.encoder import FloatArray, SentenceEncoder

# The vectors' cosine read as an article score: at or below _FLOOR nothing, from _SURE fully
# sure; the blend weighs it _WEIGHT against the words. Chosen on the sample desk's NLU
# examples (which the knowledge base never reads), over lo 0.25-0.35, hi 0.7-0.9, weight
# 0.5-1: right at once minus twice the wrong ones minus the out-of-scope ones answered.
_FLOOR, _SURE, _WEIGHT = 0.3, 0.8, 0.7


def _blend(words_score: float, cosine: float) -> float:
    """An article's score from its words' cosine and its vectors' cosine: never below the
    words' own (a vector that knows nothing must not hide a good match of words)."""
    vector = min(1.0, max(0.0, (cosine - _FLOOR) / (_SURE - _FLOOR)))
    return max(words_score, _WEIGHT * vector + (1.0 - _WEIGHT) * words_score)


@dataclass(frozen=True, slots=True)
class KbMatch:
    article_id: str
    language: str
    title: str
    score: float


def features(text: str, *, content_only: bool = False) -> dict[str, float]:
    """Word stems, stem bigrams and character 4-grams of each word, as raw counts.

    `content_only` leaves out stop words: right for knowledge-base retrieval, where "my" and
    "how" say nothing; wrong for small talk, where "où en est" or "thank you" is the message.
    """
    counts: dict[str, float] = defaultdict(float)
    tokens = words(text)
    stems = [stem(w) for w in tokens if not content_only or w not in STOPWORDS] or [stem(w) for w in tokens]
    for s in stems:
        counts["w:" + s] += 1.0
        padded = f" {s} "
        for i in range(len(padded) - 3):
            counts["c:" + padded[i : i + 4]] += 0.25
    for a, b in itertools.pairwise(stems):
        counts[f"b:{a} {b}"] += 1.0
    return counts


@dataclass
class Index:
    """A small inverted index: cosine similarity of TF-IDF vectors, computed over postings only."""

    content_only: bool = False
    labels: list[str] = field(default_factory=list)
    postings: dict[str, list[tuple[int, float]]] = field(default_factory=dict)
    idf: dict[str, float] = field(default_factory=dict)

    @classmethod
    def build(cls, documents: Sequence[tuple[str, str]], *, content_only: bool = False) -> Index:
        index = cls(content_only=content_only)
        raw = [features(text, content_only=content_only) for _, text in documents]
        df: dict[str, int] = defaultdict(int)
        for vec in raw:
            for key in vec:
                df[key] += 1
        n = len(documents) or 1
        index.idf = {key: math.log((1 + n) / (1 + count)) + 1.0 for key, count in df.items()}
        postings: dict[str, list[tuple[int, float]]] = defaultdict(list)
        for doc_id, ((label, _), vec) in enumerate(zip(documents, raw, strict=True)):
            index.labels.append(label)
            weighted = {
                k: (1 + math.log(v)) * index.idf[k] if v >= 1 else v * index.idf[k] for k, v in vec.items()
            }
            norm = math.sqrt(sum(w * w for w in weighted.values())) or 1.0
            for key, weight in weighted.items():
                postings[key].append((doc_id, weight / norm))
        index.postings = dict(postings)
        return index

    def best_by_label(self, vec: dict[str, float]) -> dict[str, float]:
        """The best cosine per label (a label has several documents: examples, questions)."""
        weighted = {
            k: ((1 + math.log(v)) if v >= 1 else v) * self.idf[k] for k, v in vec.items() if k in self.idf
        }
        # Unknown features still count in the query's norm: a message full of words the
        # desk never saw must not look like a perfect match on its one known word.
        unknown = sum(((1 + math.log(v)) if v >= 1 else v) ** 2 for k, v in vec.items() if k not in self.idf)
        norm = math.sqrt(sum(w * w for w in weighted.values()) + unknown * 4.0)
        if not weighted or norm == 0:
            return {}
        scores: dict[int, float] = defaultdict(float)
        for key, weight in weighted.items():
            for doc_id, doc_weight in self.postings[key]:
                scores[doc_id] += weight * doc_weight
        best: dict[str, float] = {}
        for doc_id, score in scores.items():
            label = self.labels[doc_id]
            value = score / norm
            if value > best.get(label, 0.0):
                best[label] = value
        return best


class KnowledgeBase:
    """The articles of every language, searchable; rebuilt whole when an article changes."""

    def __init__(self, articles: Iterable[Article], encoder: SentenceEncoder | None = None) -> None:
        self.encoder = encoder
        self.articles: dict[str, Article] = {}
        by_language: dict[str, list[tuple[str, str]]] = defaultdict(list)
        self._answering: dict[tuple[str, str], list[Article]] = defaultdict(list)
        for article in articles:
            key = f"{article.language}/{article.id}"
            self.articles[key] = article
            for intent in article.answers:
                self._answering[article.language, intent].append(article)
            for question in (article.title, *article.questions):
                by_language[article.language].append((key, question))
        self._indexes = {lang: Index.build(docs, content_only=True) for lang, docs in by_language.items()}
        # Each title and question as a sentence vector, by language: one batch per rebuild. An
        # article's rows are consecutive (listed article by article above): its keys once, and
        # where each article's rows start, give its best cosine in one reduction.
        self._vectors: dict[str, tuple[list[str], NDArray[np.int64], FloatArray]] = {}
        if encoder is not None:
            import numpy as np

            for lang, docs in by_language.items():
                keys = [key for key, _ in docs]
                starts = [i for i, key in enumerate(keys) if i == 0 or key != keys[i - 1]]
                self._vectors[lang] = (
                    [keys[i] for i in starts],
                    np.array(starts, dtype=np.int64),
                    encoder.encode([q for _, q in docs]),
                )

    @property
    def languages(self) -> list[str]:
        return sorted(self._indexes)

    def article(self, language: str, article_id: str) -> Article | None:
        return self.articles.get(f"{language}/{article_id}")

    def answering(self, language: str, intent: str) -> list[Article]:
        """The articles of a language that answer this intent (`Article.answers`)."""
        return self._answering.get((language, intent), [])

    def search(self, text: str, language: str, limit: int = 5, *, vectors: bool = True) -> list[KbMatch]:
        """The best articles in the language (or, if it has none, in the first language there
        is); by their words, and by their sentence vectors too when the knowledge base has an
        encoder and `vectors` is true."""
        lang = language if language in self._indexes else next(iter(self._indexes), None)
        if lang is None:
            return []
        scores = self._indexes[lang].best_by_label(features(text, content_only=True))
        if vectors and self.encoder is not None and lang in self._vectors:
            import numpy as np

            keys, starts, matrix = self._vectors[lang]
            best = np.maximum.reduceat(matrix @ self.encoder.encode([text])[0], starts)
            for key, cosine in zip(keys, best.tolist(), strict=True):
                scores[key] = _blend(scores.get(key, 0.0), cosine)
        matches = []
        for key, score in sorted(scores.items(), key=lambda kv: -kv[1])[:limit]:
            article = self.articles[key]
            matches.append(KbMatch(article.id, article.language, article.title, round(score, 4)))
        return matches

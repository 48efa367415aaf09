"""The NLU interface and the built-in engine.

`parse(text)` answers with the language, the intent with its confidence and ranking, the
entities and the knowledge-base matches. The built-in engine here is a TF-IDF retrieval over
the intents' examples and the articles' titles and questions, with word stems and character
n-grams so that typos and missing accents still meet; a trained classifier replaces the
intent part later behind the same interface.
"""

from __future__ import annotations

import itertools
import math
import re
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from nlu.kb import Article
from nlu.text import STOPWORDS, guess_language, stem, words
from nlu.training_data import TrainingData

_ANNOTATION = re.compile(r"\[([^\]]+)\](?:\([^)]*\)|\{[^}]*\})")


@dataclass(frozen=True, slots=True)
class IntentScore:
    name: str
    confidence: float


@dataclass(frozen=True, slots=True)
class KbMatch:
    article_id: str
    language: str
    title: str
    score: float


@dataclass(frozen=True, slots=True)
class Entity:
    entity: str
    value: str
    start: int
    end: int


@dataclass(frozen=True, slots=True)
class Parse:
    text: str
    language: str
    intent: IntentScore | None
    ranking: tuple[IntentScore, ...] = ()
    entities: tuple[Entity, ...] = ()
    kb_matches: tuple[KbMatch, ...] = ()


class NluEngine(Protocol):
    def parse(self, text: str, language_hint: str | None = None) -> Parse: ...


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
class _Index:
    """A small inverted index: cosine similarity of TF-IDF vectors, computed over postings only."""

    content_only: bool = False
    labels: list[str] = field(default_factory=list)
    postings: dict[str, list[tuple[int, float]]] = field(default_factory=dict)
    idf: dict[str, float] = field(default_factory=dict)

    @classmethod
    def build(cls, documents: Sequence[tuple[str, str]], *, content_only: bool = False) -> _Index:
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


class BuiltinEngine:
    """In-process engine: builds in milliseconds from the configuration's own data."""

    def __init__(
        self, training: TrainingData, articles: Iterable[Article], default_language: str = "fr"
    ) -> None:
        self.default_language = default_language
        self.intent_names = sorted(training.intents)
        self._intents = _Index.build(
            [
                (name, _ANNOTATION.sub(r"\1", ex))
                for name, examples in training.intents.items()
                for ex in examples
            ]
        )
        self._articles: dict[str, Article] = {}
        self._kb: dict[str, _Index] = {}
        by_language: dict[str, list[tuple[str, str]]] = defaultdict(list)
        for article in articles:
            key = f"{article.language}/{article.id}"
            self._articles[key] = article
            for question in (article.title, *article.questions):
                by_language[article.language].append((key, question))
        self._kb = {lang: _Index.build(docs, content_only=True) for lang, docs in by_language.items()}

    def article(self, language: str, article_id: str) -> Article | None:
        return self._articles.get(f"{language}/{article_id}")

    def parse(self, text: str, language_hint: str | None = None) -> Parse:
        language = guess_language(text, language_hint, self.default_language)
        ranking = tuple(
            IntentScore(name, round(score, 4))
            for name, score in sorted(
                self._intents.best_by_label(features(text)).items(), key=lambda kv: -kv[1]
            )[:10]
        )
        kb_index = self._kb.get(language) or next(iter(self._kb.values()), None)
        matches: list[KbMatch] = []
        if kb_index is not None:
            for key, score in sorted(
                kb_index.best_by_label(features(text, content_only=True)).items(), key=lambda kv: -kv[1]
            )[:5]:
                article = self._articles[key]
                matches.append(KbMatch(article.id, article.language, article.title, round(score, 4)))
        return Parse(
            text=text,
            language=language,
            intent=ranking[0] if ranking else None,
            ranking=ranking,
            kb_matches=tuple(matches),
        )

"""Similarity search over short texts: the knowledge base's titles, questions and body lines,
and the intents' examples when no classifier is trained.

TF-IDF vectors of word stems, stem bigrams and character 4-grams (typos and missing accents
still meet), compared by cosine over an inverted index: building takes milliseconds.

The knowledge base compares a message with every article in every language, by these words and,
with a sentence encoder (`nlu.encoder`), by sentence vectors, and gives each article the
probability that it is the right one (nlu/kb_ranking.py): one scale on every desk.
"""

from __future__ import annotations

import itertools
import math
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from nlu.kb import Article
from nlu.kb_ranking import FEATURE_SETS, ArticleModel, article_model, passages, rankings
from nlu.text import STOPWORDS, stem, words

if TYPE_CHECKING:  # NumPy and the encoder: only for a desk that turns the encoder on
    import numpy as np
    from numpy.typing import NDArray

    from nlu.encoder import FloatArray, PassageEncoder, SentenceEncoder


def _one_less(word: str) -> list[str]:
    """The word with each of its letters left out in turn."""
    return [word[:i] + word[i + 1 :] for i in range(len(word))]


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
    """The articles of every language, searchable; rebuilt whole when an article changes.

    An article is its id: its versions in several languages are one article, found by the words
    and vectors of each, and given in the person's language when it has that version."""

    def __init__(
        self,
        articles: Iterable[Article],
        encoder: SentenceEncoder | None = None,
        *,
        cache_dir: Path | None = None,
        outside: Sequence[str] = (),
        passage_encoder: PassageEncoder | None = None,
    ) -> None:
        """`outside`: the desk's own examples of requests it does not handle (see
        nlu.kb_ranking.article_model); `cache_dir`: where article models are kept;
        `passage_encoder`: a second encoder, for retrieval (`nlu.kb_encoder`), beside `encoder`."""
        self.encoder = encoder
        self.passage_encoder = passage_encoder if encoder is not None else None
        self.outside = tuple(outside)
        self.articles: dict[str, Article] = {}
        self.versions: dict[str, dict[str, Article]] = defaultdict(dict)
        self._answering: dict[tuple[str, str], list[Article]] = defaultdict(list)
        listed = list(articles)
        for article in listed:
            self.articles[f"{article.language}/{article.id}"] = article
            self.versions[article.id][article.language] = article
            for intent in article.answers:
                self._answering[article.language, intent].append(article)
        self.ids = sorted(self.versions)
        self._position = {article_id: n for n, article_id in enumerate(self.ids)}
        # Each article's rows, article after article (in `ids` order): its titles and questions,
        # and its body's lines, in every language it has.
        asked: list[tuple[str, str]] = []
        body: list[tuple[str, str]] = []
        for article_id in self.ids:
            for version in self.versions[article_id].values():
                asked.extend((article_id, text) for text in (version.title, *version.questions))
                body.extend((article_id, text) for text in passages(version.body))
        self._asked_words = Index.build(asked, content_only=True)
        self._body_words = Index.build(body, content_only=True)
        # Each word stem the articles use, and each with one letter left out: a message's word
        # is known when it or one of its own one-letter-less forms is there (a typo, not a stranger).
        stems = {key[2:] for key in (*self._asked_words.idf, *self._body_words.idf) if key.startswith("w:")}
        self._known = frozenset(itertools.chain(stems, *(_one_less(s) for s in stems if len(s) > 3)))
        self._asked_vectors: tuple[NDArray[np.int64], FloatArray] | None = None
        self._body_vectors: tuple[NDArray[np.int64], FloatArray] | None = None
        self._asked_e5: tuple[NDArray[np.int64], FloatArray] | None = None
        self._body_e5: tuple[NDArray[np.int64], FloatArray] | None = None
        if encoder is not None and self.ids:
            self._asked_vectors = self._embedded(asked)
            self._body_vectors = self._embedded(body)
            if self.passage_encoder is not None:
                self._asked_e5 = self._embedded(asked, self.passage_encoder.encode)
                encode = self.passage_encoder.encode
                self._body_e5 = self._embedded(body, lambda texts: encode(texts, passage=True))
        self.model: ArticleModel | None = article_model(
            listed, encoder.name if encoder is not None else "", cache_dir, self.outside
        )

    def _embedded(
        self, rows: list[tuple[str, str]], encode: Callable[[list[str]], FloatArray] | None = None
    ) -> tuple[NDArray[np.int64], FloatArray]:
        """Where each article's rows start, and the rows' vectors (one batch; by default the
        sentence encoder's)."""
        import numpy as np

        assert self.encoder is not None
        keys = [key for key, _ in rows]
        starts = [i for i, key in enumerate(keys) if i == 0 or key != keys[i - 1]]
        vectors = (encode or self.encoder.encode)([text for _, text in rows])
        return np.array(starts, dtype=np.int64), vectors

    @property
    def languages(self) -> list[str]:
        return sorted({a.language for a in self.articles.values()})

    def article(self, language: str, article_id: str) -> Article | None:
        return self.articles.get(f"{language}/{article_id}")

    def answering(self, language: str, intent: str) -> list[Article]:
        """The articles of a language that answer this intent (`Article.answers`)."""
        return self._answering.get((language, intent), [])

    def uses_vectors(self, vectors: bool = True) -> bool:
        """Whether a search with `vectors` compares sentence vectors (else the words set)."""
        return vectors and self._asked_vectors is not None

    def feature_set(self, vectors: bool = True) -> str:
        """The feature set (nlu.kb_ranking.FEATURE_SETS) a search with `vectors` reads."""
        if not self.uses_vectors(vectors):
            return "words"
        return "vectors_e5" if self._asked_e5 is not None else "vectors"

    def features(self, text: str, *, vectors: bool = True) -> FloatArray:
        """(articles in `ids` order, features of the feature set) for this message: see
        nlu/kb_ranking.py."""
        import numpy as np

        with_vectors = self.uses_vectors(vectors)
        names = FEATURE_SETS[self.feature_set(vectors)]
        out = np.zeros((len(self.ids), len(names)), dtype=np.float32)
        if not self.ids:
            return out
        column = {name: n for n, name in enumerate(names)}
        query = features(text, content_only=True)
        out[:, column["unknown"]] = self._unknown(text)
        for name, index in (("asked_words", self._asked_words), ("body_words", self._body_words)):
            for article_id, value in index.best_by_label(query).items():
                out[self._position[article_id], column[name]] = value
        if with_vectors:
            assert self.encoder is not None and self._asked_vectors is not None
            assert self._body_vectors is not None
            vector = self.encoder.encode([text])[0]
            for name, (starts, matrix) in (("asked", self._asked_vectors), ("body", self._body_vectors)):
                out[:, column[name]] = np.maximum.reduceat(matrix @ vector, starts)
            if self.passage_encoder is not None and self._asked_e5 is not None and self._body_e5 is not None:
                question = self.passage_encoder.encode([text])[0]
                for name, (starts, matrix) in (("asked_e5", self._asked_e5), ("body_e5", self._body_e5)):
                    out[:, column[name]] = np.maximum.reduceat(matrix @ question, starts)
        if self.model is not None:
            for article_id, p in self.model.probabilities(text, vectors=with_vectors).items():
                out[self._position[article_id], column["model"]] = p
        return out

    def _unknown(self, text: str) -> float:
        """The share of the message's content words this knowledge base never uses, in any
        article, not even with a letter more or less: "what time does the canteen close" is no
        question about the help desk's own hours."""
        tokens = [w for w in words(text) if w not in STOPWORDS and not w.isdigit()]
        if not tokens:
            return 0.0
        known = self._known
        unknown = 0
        for token in tokens:
            stemmed = stem(token)
            if stemmed in known or (len(stemmed) > 3 and not known.isdisjoint(_one_less(stemmed))):
                continue
            unknown += 1
        return unknown / len(tokens)

    def probabilities(self, text: str, *, vectors: bool = True) -> FloatArray:
        """Each article's chance (in `ids` order) of being the one this message needs."""
        ranking = rankings()[self.feature_set(vectors)]
        return ranking.probabilities(self.features(text, vectors=vectors))

    def search(self, text: str, language: str, limit: int = 5, *, vectors: bool = True) -> list[KbMatch]:
        """The likeliest articles, each with its probability; each in the person's language when
        the article has that version (else in the one it has)."""
        if not self.ids:
            return []
        chances = self.probabilities(text, vectors=vectors)
        matches = []
        for position in chances.argsort()[::-1][:limit].tolist():
            article_id = self.ids[position]
            versions = self.versions[article_id]
            version = versions.get(language) or versions[sorted(versions)[0]]
            matches.append(
                KbMatch(article_id, version.language, version.title, round(float(chances[position]), 4))
            )
        return matches

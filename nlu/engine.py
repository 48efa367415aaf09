"""The NLU interface and its two engines.

`parse(text)` answers with the language, the intent with its confidence and ranking, the
entities and the knowledge-base matches:

- `BuiltinEngine`, the default: in-process, built in seconds from the configuration's own
  data (Rasa-format NLU files and the knowledge base), no server;
- `RasaEngine`: a real Rasa server's `/model/parse`, trained on the same NLU files; when Rasa
  is slow or down it answers with the built-in engine rather than leaving a person unanswered.

Language and knowledge-base matches are Guichet's own in both: the knowledge base is searched
by similarity, so an article edited or added is picked up without retraining.
"""

from __future__ import annotations

import asyncio
import logging
import re
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import aiohttp

from nlu.entities import Entity, EntityExtractor
from nlu.evaluation import OUT_OF_SCOPE_LABELS
from nlu.kb import Article
from nlu.language import LanguageGuesser
from nlu.retrieval import Index, KbMatch, KnowledgeBase, features
from nlu.text import words
from nlu.training_data import TrainingData

if TYPE_CHECKING:  # the classifier and the encoder pull in NumPy: only when a model is used
    from nlu.classifier import IntentClassifier
    from nlu.encoder import PassageEncoder, SentenceEncoder

log = logging.getLogger("guichet.nlu")

_ANNOTATION = re.compile(r"\[([^\]]+)\](?:\([^)]*\)|\{[^}]*\})")
FALLBACK_INTENT = "nlu_fallback"  # Rasa's name for "not one of the intents"
MAX_TEXT = 2000  # what is parsed of a longer text: a help-desk request is said well before this


@dataclass(frozen=True, slots=True)
class IntentScore:
    name: str
    confidence: float


@dataclass(frozen=True, slots=True)
class Parse:
    text: str
    language: str
    intent: IntentScore | None
    ranking: tuple[IntentScore, ...] = ()
    entities: tuple[Entity, ...] = ()
    kb_matches: tuple[KbMatch, ...] = ()
    engine: str = "builtin"


class NluEngine(Protocol):
    async def parse(self, text: str, language_hint: str | None = None) -> Parse: ...


def strip_annotations(example: str) -> str:
    """`my [outlook](application) crashes` → `my outlook crashes`."""
    return _ANNOTATION.sub(r"\1", example)


class BuiltinEngine:
    """In-process engine: builds in well under a second from the configuration's own data."""

    def __init__(
        self,
        training: TrainingData,
        articles: Iterable[Article],
        default_language: str = "fr",
        *,
        cache_dir: Path | None = None,
    ) -> None:
        """`cache_dir`: where the knowledge base keeps its article models (nlu/kb_ranking.py),
        so that a restart with the same articles loads them instead of training them again."""
        self.default_language = default_language
        self.cache_dir = cache_dir
        self.training = training
        self.intent_names = sorted(training.intents)
        self._intents = Index.build(
            [(name, strip_annotations(ex)) for name, examples in training.intents.items() for ex in examples]
        )
        self.entities = EntityExtractor(training.regexes, training.lookups, training.synonyms)
        self.classifier: IntentClassifier | None = None
        self.intent_threshold: float | None = None
        self.encoder: SentenceEncoder | None = None
        self.passage_encoder: PassageEncoder | None = None
        self.kb: KnowledgeBase
        self.language: LanguageGuesser
        self._reloading = threading.Lock()
        self.reload_articles(articles)

    def use_classifier(self, classifier: IntentClassifier, threshold: float) -> None:
        """Rank intents with a trained classifier instead of example similarity; a classifier
        that reads sentence vectors lends its encoder to the knowledge base."""
        if classifier.encoder is not None and classifier.encoder is not self.encoder:
            self.use_encoder(classifier.encoder)
        self.classifier = classifier
        self.intent_threshold = threshold

    def use_passage_encoder(self, encoder: PassageEncoder) -> None:
        """Compare the articles by a second encoder too (`nlu.kb_encoder`); it takes effect with
        the sentence encoder (use_encoder or use_classifier), now or later."""
        with self._reloading:
            self.passage_encoder = encoder
            if self.encoder is not None:
                self.kb = self._knowledge_base(list(self.kb.articles.values()))

    def _knowledge_base(self, articles: list[Article]) -> KnowledgeBase:
        return KnowledgeBase(
            articles,
            self.encoder,
            cache_dir=self.cache_dir,
            outside=self._outside(),
            passage_encoder=self.passage_encoder,
        )

    def use_encoder(self, encoder: SentenceEncoder) -> None:
        """Search the knowledge base by sentence vectors too (the articles are embedded now,
        and again at each reload: a batch of their titles and questions)."""
        with self._reloading:
            self.encoder = encoder
            self.kb = self._knowledge_base(list(self.kb.articles.values()))

    def reload_articles(self, articles: Iterable[Article]) -> None:
        """Swap in a new knowledge base (and the language model that learns from it)."""
        # One rebuild at a time (the watcher's and the encoder's arrival, both in threads):
        # the last one built holds the newest articles and the encoder.
        with self._reloading:
            self._reload(list(articles))

    def _reload(self, articles: list[Article]) -> None:
        self.kb = self._knowledge_base(articles)
        texts: dict[str, list[str]] = {}
        for article in articles:
            texts.setdefault(article.language, []).extend((article.title, article.body, *article.questions))
        first = LanguageGuesser.train(texts)
        # The NLU examples are the desk's own phrasing ("mdp ko", "notifs slack") but carry no
        # language: the articles' model labels those it is sure of, and learns them too.
        for example in (strip_annotations(e) for group in self.training.intents.values() for e in group):
            evidence = first.evidence(example)
            if abs(evidence) >= 6.0 and len(example.split()) >= 3:
                texts.setdefault("fr" if evidence > 0 else "en", []).append(example)
        self.language = LanguageGuesser.train(texts)

    def _outside(self) -> list[str]:
        """The desk's own out-of-scope examples (nlu/: out_of_scope, nlu_fallback...): the
        knowledge base learns from them too what it does not answer."""
        return [
            strip_annotations(example)
            for intent, examples in self.training.intents.items()
            if intent in OUT_OF_SCOPE_LABELS
            for example in examples
        ]

    def article(self, language: str, article_id: str) -> Article | None:
        return self.kb.article(language, article_id)

    def answering(self, language: str, intent: str) -> list[Article]:
        """The articles of a language that answer an intent."""
        return self.kb.answering(language, intent)

    def parse_now(
        self, text: str, language_hint: str | None = None, *, reads_vector: bool | None = None
    ) -> Parse:
        """`reads_vector`: what `reads_vector(text)` gives, when the caller already asked."""
        text = text[:MAX_TEXT]
        entities = tuple(self.entities.extract(text))
        if contact_only(text, entities):
            # "jean.dupont@example.com" alone asks nothing and is in no language: no intent
            # (not "shared mailbox" for the @), no article, the conversation's language.
            return Parse(text, language_hint or self.default_language, None, (), entities)
        language = self.language.guess(text, language_hint, self.default_language)
        if self.classifier is not None:
            scored = self.classifier.predict(text)[:10]
        else:
            scored = sorted(self._intents.best_by_label(features(text)).items(), key=lambda kv: -kv[1])[:10]
        ranking = tuple(IntentScore(name, round(float(score), 4)) for name, score in scored)
        vectors = self.reads_vector(text) if reads_vector is None else reads_vector
        return Parse(
            text=text,
            language=language,
            intent=ranking[0] if ranking else None,
            ranking=ranking,
            entities=entities,
            kb_matches=tuple(self.kb.search(text, language, vectors=vectors)),
        )

    def reads_vector(self, text: str) -> bool:
        """Whether this message's sentence vector is computed: not when the intent model is
        sure from the words alone (its intent then says which articles answer, and caps the
        others: bot.policy.desk_articles)."""
        classifier = self.classifier
        if classifier is not None and classifier.encoder is not None:
            return classifier.uses_vectors(text[:MAX_TEXT])
        return self.kb.encoder is not None

    async def parse(self, text: str, language_hint: str | None = None) -> Parse:
        reads = self.reads_vector(text)
        if reads:
            # The sentence vector takes milliseconds of arithmetic: off the event loop, which
            # meanwhile serves every other conversation on every channel.
            return await asyncio.to_thread(self.parse_now, text, language_hint, reads_vector=True)
        return self.parse_now(text, language_hint, reads_vector=False)


CONTACT_ENTITIES = frozenset({"email", "phone"})


def contact_only(text: str, entities: Iterable[Entity]) -> bool:
    """Whether the text is nothing but email addresses and phone numbers (and punctuation)."""
    spans = sorted((e.start, e.end) for e in entities if e.entity in CONTACT_ENTITIES)
    if not spans:
        return False
    rest, last = [], 0
    for start, end in spans:
        rest.append(text[last:start])
        last = max(last, end)
    rest.append(text[last:])
    return not words(" ".join(rest))


class RasaEngine:
    """A Rasa 3.x server's `/model/parse`, with the built-in engine as the fallback."""

    def __init__(self, url: str, fallback: BuiltinEngine, *, timeout: float = 2.0) -> None:
        self.url = url.rstrip("/")
        self.fallback = fallback
        self.timeout = timeout
        self._session: aiohttp.ClientSession | None = None
        self._last_warning = 0.0

    async def start(self) -> None:
        self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=self.timeout))

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def parse(self, text: str, language_hint: str | None = None) -> Parse:
        local = await self.fallback.parse(text, language_hint)
        if contact_only(local.text, local.entities):
            return local  # nothing for Rasa to understand (see BuiltinEngine.parse_now)
        try:
            answer = await self._ask(local.text)
        except (aiohttp.ClientError, TimeoutError, ValueError, KeyError, TypeError) as exc:
            now = time.monotonic()
            if now - self._last_warning > 60:  # once a minute, not once a message
                log.warning(
                    "Rasa at %s did not answer (%s: %s); using the built-in engine",
                    self.url,
                    type(exc).__name__,
                    exc,
                )
                self._last_warning = now
            return local
        return replace(local, **answer, engine="rasa")

    async def _ask(self, text: str) -> dict[str, Any]:
        if self._session is None:
            raise aiohttp.ClientError("the Rasa engine is not started")
        async with self._session.post(f"{self.url}/model/parse", json={"text": text}) as response:
            if response.status != 200:
                raise aiohttp.ClientError(f"HTTP {response.status}")
            data = await response.json()
        return rasa_to_parse_fields(data)


def rasa_to_parse_fields(data: Mapping[str, Any]) -> dict[str, Any]:
    """The intent, ranking and entities of a Rasa /model/parse answer."""
    intent = data.get("intent") or {}
    ranking = tuple(
        IntentScore(str(r["name"]), float(r["confidence"])) for r in data.get("intent_ranking") or ()
    )
    entities = tuple(
        Entity(
            str(e["entity"]),
            str(e.get("value", "")),
            int(e["start"]),
            int(e["end"]),
            str(data.get("text", ""))[int(e["start"]) : int(e["end"])],
        )
        for e in data.get("entities") or ()
        if "start" in e and "end" in e
    )
    top = (
        IntentScore(str(intent["name"]), float(intent.get("confidence") or 0.0))
        if intent.get("name")
        else None
    )
    return {"intent": top, "ranking": ranking, "entities": entities}


def understood_articles(
    parse: Parse,
    answering: Callable[[str, str], list[Article]],
    *,
    threshold: float,
    margin: float,
    intents_of: Callable[[KbMatch], Iterable[str]] | None = None,
) -> tuple[KbMatch, ...]:
    """The knowledge base's matches for what was understood. When the top intent reaches
    `threshold` and leads the next by `margin` (not torn between two, as Rasa's
    FallbackClassifier's ambiguity threshold), the articles that `answering(language, intent)`
    gives are as sure as that intent, whatever words they share with the message: "my login
    credentials stopped working" shares none with the password article's questions. The
    words' similarity (`parse.kb_matches`) decides the others. Torn between intents that
    each reach `threshold` (within `margin` of the top one), each one's articles get its
    confidence: close scores, so the person is offered the choice. With `intents_of` (the
    intents of the model a match's article answers), an article that answers only intents the
    model finds unlikely (below `threshold` - `margin`), when it is sure of one, is no answer
    whatever its words: "excel plante" is a crash, which no article answers, not a file to
    restore."""
    ranking = parse.ranking
    if not ranking:
        return parse.kb_matches
    top = ranking[0]
    if top.confidence < threshold:
        return parse.kb_matches
    # Torn between intents each understood surely ("printer": adding one, or one that does not
    # print): their articles are as close as the intents, so the person picks among them.
    understood = [
        r for r in ranking[:3] if r.confidence >= threshold and top.confidence - r.confidence < margin
    ]
    plausible = {r.name for r in ranking if r.confidence >= threshold - margin}
    found = {
        m.article_id: m
        for m in parse.kb_matches
        if intents_of is None or not (answers := set(intents_of(m))) or answers & plausible
    }
    for intent in understood:
        for article in answering(parse.language, intent.name):
            known = found.get(article.id)
            if known is None or known.score < intent.confidence:
                found[article.id] = KbMatch(article.id, article.language, article.title, intent.confidence)
    return tuple(sorted(found.values(), key=lambda m: -m.score))


def parse_to_rasa(parse: Parse, threshold: float = 0.0) -> dict[str, Any]:
    """A Parse in the shape of Rasa's /model/parse answer, out of scope as `nlu_fallback`."""
    ranking = [{"name": r.name, "confidence": r.confidence} for r in parse.ranking]
    intent: dict[str, Any] = {"name": None, "confidence": 0.0}
    if parse.intent is not None:
        intent = {"name": parse.intent.name, "confidence": parse.intent.confidence}
        if parse.intent.confidence < threshold:
            intent = {"name": FALLBACK_INTENT, "confidence": threshold}
            ranking.insert(0, dict(intent))
    elif contact_only(parse.text, parse.entities):  # an address alone asks for none of the intents
        intent = {"name": FALLBACK_INTENT, "confidence": 1.0}
        ranking.insert(0, dict(intent))
    answer: dict[str, Any] = {
        "text": parse.text,
        "intent": intent,
        "entities": [
            {"entity": e.entity, "start": e.start, "end": e.end, "value": e.value, "extractor": "guichet"}
            for e in parse.entities
        ],
        "intent_ranking": ranking,
        "language": parse.language,
        "engine": parse.engine,
        "knowledge_base": [
            {"id": m.article_id, "language": m.language, "title": m.title, "score": m.score}
            for m in parse.kb_matches
        ],
    }
    name = intent["name"] or ""
    if "/" in name:  # a retrieval intent, e.g. faq/reset_password: Rasa reports it this way
        base = name.split("/", 1)[0]
        answer["intent"] = {"name": base, "confidence": intent["confidence"]}
        answer["response_selector"] = {
            base: {
                "response": {"intent_response_key": name, "confidence": intent["confidence"]},
                "ranking": [],
            }
        }
    return answer

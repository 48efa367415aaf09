"""French or English, from a short help-desk message.

A naive Bayes model over words and character n-grams, trained on the help desk's own texts
(the knowledge base is written per language, so it comes labelled) on top of a small built-in
seed of each language's function words. In-domain text beats a general detector here: "pc",
"vpn", "outlook" and "reset" are in both languages, and what decides is "depuis ce matin" or
"mdp". When the evidence is thin (one ambiguous word), the channel's hint decides.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Iterable, Mapping

from nlu.text import fold

LANGUAGES = ("fr", "en")

_SEED = {
    "fr": """le la les un une des du de au aux et ou mais donc car je tu il elle on nous vous ils elles me te se
    mon ma mes ton ta tes son sa ses notre votre leur ce cet cette ces qui que quoi dont est sont suis etes etait
    ai as avons avez ont ne pas plus rien pour par avec sans sur sous dans chez comment pourquoi quand quel quelle
    bonjour salut merci oui non svp stp aide marche fonctionne impossible depuis hier matin ce soir besoin veux
    voudrais peux pouvez puis faire faut ca cela ici aussi tres deja encore toujours jamais mot passe oublie
    imprimante ordinateur portable ecran souris clavier reseau compte acces courriel messagerie bloque probleme
    demande logiciel installer connecter arrive marche plus rame lent mdp hs ko bug plante je n'arrive pas""",
    "en": """the a an and or but so i you he she it we they me my your his her our their this that these those
    who what which where when why how is are was were be been am do does did not no yes to of in on at for with
    without from by into can cant could would should will wont please thanks thank hello hi hey help password
    printer computer laptop screen mouse keyboard network account access email mailbox locked problem issue
    request software install connect since yesterday morning today tonight need want doesnt dont isnt working
    work broken forgot stuck slow get got have has keeps any anyone there just still again""",
}

# Chat words that belong to one language only, however short the message: "wifi ko", "reset
# password svp", "nope", "printer jammed". They decide a message of one or two words that the
# statistics leave open, before the channel's hint does.
_MARKERS = {
    "fr": frozenset(
        """ko svp stp bjr slt mrc dsl pb pbm mdp hs statut synchro expiree expire nickel ordi appli
        bcp jsp marche cassee bloque bloquee plante rame oui non merci bonjour salut aide""".split()
    ),
    "en": frozenset(
        """please pls plz thx ty cheers sure nope yep yeah broken jammed suspicious stuck thanks hello hi hey
        yes help problem connection password printer screen keyboard mouse""".split()
    ),
}

_TOKEN = re.compile(r"[^\W\d_]+", re.UNICODE)


def _words(text: str) -> list[str]:
    return _TOKEN.findall(text.lower().replace("’", "'"))


def _word_features(word: str) -> list[str]:
    padded = f"<{word}>"
    feats = ["w:" + fold(word)]
    for n in (1, 2, 3):
        feats.extend("c:" + padded[i : i + n] for i in range(len(padded) - n + 1))
    return feats


def _features(text: str) -> list[str]:
    return [feature for word in _words(text) for feature in _word_features(word)]


class LanguageGuesser:
    def __init__(self, log_probs: Mapping[str, Mapping[str, float]], unseen: Mapping[str, float]) -> None:
        # One number per feature, log P(f|fr) - log P(f|en): a guess is one sum over the text.
        self._evidence = {
            f: log_probs["fr"].get(f, unseen["fr"]) - log_probs["en"].get(f, unseen["en"])
            for f in set(log_probs["fr"]) | set(log_probs["en"])
        }
        self._word_evidence: dict[str, float] = {}

    @classmethod
    def train(cls, texts: Mapping[str, Iterable[str]] | None = None) -> LanguageGuesser:
        """Train on labelled texts (language → texts) plus the built-in seed of each language."""
        counts: dict[str, Counter[str]] = {lang: Counter() for lang in LANGUAGES}
        for lang in LANGUAGES:
            # The seed weighs like a few dozen sentences: enough to start, little against real data.
            for _ in range(3):
                counts[lang].update(_features(_SEED[lang]))
            for text in (texts or {}).get(lang, ()):
                counts[lang].update(_features(text))
        vocabulary = set().union(*counts.values())
        log_probs: dict[str, dict[str, float]] = {}
        unseen: dict[str, float] = {}
        for lang, counter in counts.items():
            total = sum(counter.values()) + len(vocabulary)
            log_probs[lang] = {f: math.log((counter[f] + 1) / total) for f in counter}
            unseen[lang] = math.log(1 / total)
        return cls(log_probs, unseen)

    def evidence(self, text: str) -> float:
        """log P(text|fr) - log P(text|en): positive says French, negative English, 0 nothing."""
        cache = self._word_evidence
        total = 0.0
        for word in _words(text[:2000]):
            value = cache.get(word)
            if value is None:
                value = sum(self._evidence.get(f, 0.0) for f in _word_features(word))
                if len(cache) < 50_000:  # a word's evidence never changes: remember the common ones
                    cache[word] = value
            total += value
        return total

    def guess(self, text: str, hint: str | None = None, default: str = "fr") -> str:
        """The language of the text; the hint (then the default) when the text does not tell.

        One or two words ("wifi", "Teams bug") are weak evidence whatever their score: names
        of products lean to English in any company, so the channel's hint decides those.
        """
        words = _TOKEN.findall(text[:200])
        word_count = len(words)
        if word_count <= 3:  # a chat word says more than a product name around it
            marked = {lang for lang in LANGUAGES for w in words if fold(w.lower()) in _MARKERS[lang]}
            if len(marked) == 1:
                return marked.pop()
        evidence = self.evidence(text)
        margin = 8.0 if word_count <= 1 else 3.0 if word_count == 2 else 1.5
        if abs(evidence) >= margin:
            return "fr" if evidence > 0 else "en"
        if hint and hint[:2].lower() in LANGUAGES:
            return hint[:2].lower()
        # Thin evidence is no evidence: "ok", "bug", "mfa ko" are the desk's language.
        if word_count >= 3 and evidence:
            return "fr" if evidence > 0 else "en"
        return default

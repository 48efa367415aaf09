"""Text normalisation and tokens shared by the NLU engine (French and English)."""

from __future__ import annotations

import re
import unicodedata
from functools import lru_cache

_WORD = re.compile(r"[a-z0-9]+(?:-[a-z0-9]+)*")
_ELISION = re.compile(r"\b(?:[ldjmntsc]|qu|jusqu|lorsqu|puisqu)'")


@lru_cache(maxsize=8192)  # bounded: long texts are rare, and each costs its length
def fold(text: str) -> str:
    """Lower case without accents: people type "mot de passe oublie" as often as "oublié"."""
    decomposed = unicodedata.normalize("NFKD", text.lower().replace("’", "'"))
    return "".join(ch for ch in decomposed if not unicodedata.combining(ch))


def words(text: str) -> list[str]:
    """Folded word tokens: French elisions removed (l'imprimante → imprimante), English
    contractions closed up (won't → wont), as people type them either way."""
    return _WORD.findall(_ELISION.sub(" ", fold(text)).replace("'", ""))


def stem(word: str) -> str:
    """A deliberately light stem shared by both languages: plurals and the commonest endings.

    It only has to make "imprimantes"/"imprimante" and "printers"/"printer" meet; the
    character n-grams of the retrieval absorb the rest (typos, conjugations).
    """
    if len(word) <= 4 or word.isdigit():
        return word
    for suffix in ("ements", "ement", "ations", "ation", "ings", "ing", "ees", "es", "ee", "ed", "s", "e"):
        if word.endswith(suffix) and len(word) - len(suffix) >= 4:
            return word[: -len(suffix)]
    return word


# Words that say nothing of the request; left out of retrieval features (not of language guessing).
STOPWORDS = frozenset(
    """le la les un une des du de d l au aux et ou mais donc car je tu il elle on nous vous ils elles me
    te se mon ma mes ton ta tes son sa ses notre votre leur leurs ce cet cette ces qui que quoi dont
    est sont suis es etes etait ai as avons avez ont ne pas plus en y a pour par avec sur sous dans
    chez tres bien tout toute tous svp stp merci peux pouvez puis comment faire faut quel quelle
    the a an and or but so i you he she it we they me my your his her our their this that these those
    is are was were be been am do does did to of in on at for with from by into can could would
    should will please how what which who im ive its dont doesnt cant get got have has any some there just""".split()
)

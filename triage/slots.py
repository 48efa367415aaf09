"""The qualification dialogue's pure parts: what is still missing, how to ask for it, and
what an answer means — a value (typed freely or picked), "skip", "cancel", or a correction
of another slot ("en fait c'est toute l'équipe", "actually my email is …")."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from nlu.text import fold
from triage.assess import IMPACT_PHRASES, UNITS, URGENCY_PHRASES, first_level
from triage.config import TriageSettings
from triage.texts import AGAIN, CHOICES, HINT, LABELS, QUESTIONS, label

_SINCE_WORD = re.compile(r"^(?:depuis|since|from)\s+", re.IGNORECASE)  # "depuis ce matin": "ce matin"
_EMAIL = re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+")
_PHONE = re.compile(r"(?:\+\d{1,3}[ .-]?)?(?:\(\d{1,4}\)[ .-]?)?\d{1,4}(?:[ .-]?\d{2,4}){2,5}")

_SKIP = frozenset(
    {
        "passer", "passe", "je passe", "je ne sais pas", "je sais pas", "sais pas", "aucune idee", "ne sais pas",
        "skip", "pass", "i don't know", "i dont know", "dont know", "don't know", "no idea", "not sure",
        "je ne suis pas sur", "-", "?", "nsp", "idk",
    }
)  # fmt: skip
_CANCEL = frozenset(
    {
        "annuler", "annule", "annulez", "laisse tomber", "laissez tomber", "stop", "abandonner", "oublie",
        "oubliez", "cancel", "never mind", "nevermind", "forget it", "abort", "quit",
    }
)  # fmt: skip
_CORRECTION = re.compile(
    r"^(?:en fait|correction|pardon|je corrige|non[ ,]|actually|sorry|correction:|i meant|wait)",
    re.IGNORECASE,
)

# Short answers to the choice questions, typed rather than clicked.
_WORDS: dict[str, dict[str, str]] = {
    "impact": {
        "moi": "individual", "me": "individual", "juste moi": "individual", "just me": "individual",
        "seulement moi": "individual", "only me": "individual", "moi uniquement": "individual",
        "equipe": "team", "mon equipe": "team", "team": "team", "my team": "team", "le service": "team",
        "tous": "organisation", "tout le monde": "organisation", "everyone": "organisation",
        "all": "organisation", "everybody": "organisation", "toute l'entreprise": "organisation",
    },
    "urgency": {
        "bloque": "high", "je suis bloque": "high", "blocked": "high", "i am blocked": "high",
        "completement": "high", "totalement": "high", "oui": "high", "yes": "high",
        "ralenti": "medium", "je suis ralenti": "medium", "slowed down": "medium", "slowed": "medium",
        "un peu": "medium", "a bit": "medium", "somewhat": "medium",
        "peut attendre": "low", "ca peut attendre": "low", "it can wait": "low", "can wait": "low",
        "pas du tout": "low", "not at all": "low", "non": "low", "no": "low",
    },
    "since": {
        "aujourd'hui": "today", "aujourdhui": "today", "today": "today", "ce matin": "today",
        "this morning": "today", "cet apres-midi": "today", "this afternoon": "today",
        "tout a l'heure": "today", "ce midi": "today", "cette semaine": "this_week", "this week": "this_week",
        "plus longtemps": "longer", "longer": "longer", "longtemps": "longer", "a long time": "longer",
    },
}  # fmt: skip


@dataclass(frozen=True, slots=True)
class Answer:
    kind: Literal["value", "skip", "cancel", "correct", "unclear"]
    value: Any = None
    slot: str | None = None  # the slot a correction is about


def known_slot(slot: str, known: Mapping[str, Any]) -> bool:
    if slot == "contact":
        return bool(known.get("email") or known.get("phone"))
    return bool(known.get(slot))


def missing(known: Mapping[str, Any], settings: TriageSettings) -> list[str]:
    return [slot for slot in settings.slots if not known_slot(slot, known)]


def question(
    slot: str, language: str, known: Mapping[str, Any], *, again: bool = False
) -> tuple[str, list[tuple[str, str]]]:
    """The question for a slot and its offered choices as (title, value); `again` when the
    last answer to it was not understood (said so, with what would be understood)."""
    lang = language if language in ("fr", "en") else "en"
    text = QUESTIONS[slot][lang]
    if again:
        why = AGAIN.get(slot, AGAIN["choice" if slot in CHOICES else "default"])
        text = f"{why[lang]} {text}"
    if not known.get("_hinted"):
        text = f"{text} {HINT[lang]}"
    options = [(titles[lang], value) for value, titles in CHOICES.get(slot, [])]
    return text, options


def _contact(text: str) -> dict[str, str] | None:
    if match := _EMAIL.search(text):
        return {"email": match.group(0)}
    if match := _PHONE.search(text):
        digits = re.sub(r"\D", "", match.group(0))
        if 8 <= len(digits) <= 15:
            return {"phone": match.group(0).strip()}
    return None


_COURTESY = frozenset(
    {
        "merci",
        "merci beaucoup",
        "ok",
        "okay",
        "d'accord",
        "super",
        "thanks",
        "thank you",
        "thx",
        "great",
        "cool",
    }
)


def _volunteered_contact(text: str) -> dict[str, str] | None:
    """An email address anywhere in the text, or a phone number with little else around it
    (not the digits of a date or of an asset tag)."""
    if match := _EMAIL.search(text):
        return {"email": match.group(0)}
    found = _contact(text)
    if found and "phone" in found and len(text.replace(found["phone"], " ").split()) <= 3:
        return found
    return None


_GROUP = re.compile(
    rf"^(?:(?:la|le|les|l'|mon|ma|mes|notre|nos|the|my|our|all|tout|toute|tous) ?)?(?:{UNITS})(?: \w+){{0,3}}$"
    r"|(?:\d+|deux|trois|quatre|cinq|six|sept|huit|neuf|dix|dizaine|quelques|plusieurs|a few|several|"
    r"two|three|four|five|ten) (?:de )?(?:personnes|collegues|utilisateurs|postes|people|persons|"
    r"colleagues|users|of us|computers)"
    r"|(?:mon|ma|mes) collegues?|collegues? et moi|colleagues? and (?:me|i)|my colleagues?|et moi$|and me$"
)


def _group(folded: str) -> str | None:
    """An answer to "who is affected?" naming a group: "la compta", "5 personnes", "sales"."""
    return "team" if _GROUP.search(folded) else None


# In answer to "how blocked are you?" (not in a request, where "je ne peux plus imprimer" says
# what fails, not how much it stops the person): what can no longer be done blocks. The
# phrases of a request (URGENCY_PHRASES: "pas urgent", "no rush") are read first.
_BLOCKED = (
    (
        "high",
        re.compile(
            r"(?:\bn'?\s?(?:e )?(?:peu[xt]|pouvons|pouvez|peuvent|arrive|arrivons|arrivent|"
            r"arrivez) (?:plus|pas)\b|\bimpossible\b|\bcan'?t\b|\bcannot\b|\bunable\b|"
            r"\brien ne (?:marche|fonctionne)\b|\bnothing works\b|\btout est (?:bloque|arrete)\b)"
        ),
    ),
    (
        "medium",
        re.compile(
            r"\b(?:galere|difficile|penible|en partie|partiellement|partly|partially|"
            r"hard to|tant bien que mal|je me debrouille|i can manage|manage for now)\b"
        ),
    ),
)


def _blocked(folded: str) -> str | None:
    """How blocked, from an answer in the person's words: "on ne peut plus envoyer les factures"."""
    for level, pattern in _BLOCKED:
        if pattern.search(folded):
            return level
    return None


def _level(slot: str, text: str) -> str | None:
    """A choice slot's value from a typed answer: the value, its number, its title, a word."""
    folded = fold(text).strip(" .!")
    choices = CHOICES.get(slot, [])
    values = [v for v, _ in choices]
    if folded in values:
        return folded
    if folded.isdigit() and 1 <= int(folded) <= len(values):
        return values[int(folded) - 1]
    for value, titles in choices:
        if folded in (fold(t) for t in titles.values()):
            return value
    if slot == "since":
        folded = _SINCE_WORD.sub("", folded)
    if folded in _WORDS.get(slot, {}):
        return _WORDS[slot][folded]
    if slot == "impact":
        return first_level(folded, IMPACT_PHRASES) or _group(folded)
    if slot == "urgency":
        return first_level(folded, URGENCY_PHRASES) or _blocked(folded)
    return None


def parse_answer(slot: str, text: str, language: str) -> Answer:
    folded = fold(text).strip(" .!")
    if folded in _SKIP:
        return Answer("skip")
    if folded in _CANCEL or folded.startswith(("annuler ", "cancel ")):
        return Answer("cancel")
    if slot != "contact" and (volunteered := _volunteered_contact(text)):
        # "bob@example.com" in answer to another question: kept, said back, the question again
        return Answer("correct", volunteered, "contact")
    if _CORRECTION.match(folded):
        # A correction names its slot by what it gives: a contact, or who is affected / how blocked.
        for other, found in (
            ("contact", _contact(text)),
            ("impact", first_level(folded, IMPACT_PHRASES)),
            ("urgency", first_level(folded, URGENCY_PHRASES)),
        ):
            if found and other != slot:
                return Answer("correct", found, other)
    if slot == "contact":
        contact = _contact(text)
        return Answer("value", contact) if contact else Answer("unclear")
    if slot in CHOICES:
        level = _level(slot, text)
        if level is not None:
            return Answer("value", level)
        if slot == "since" and len(folded) >= 2:
            return Answer("value", text.strip())  # "depuis la mise à jour de lundi" is an answer too
        return Answer("unclear")
    if len(folded) < 2 or folded.strip(" !?") in _COURTESY:  # "merci !" names no device
        return Answer("unclear")
    return Answer("value", text.strip())


def corrected(slot: str, value: Any, language: str) -> str:
    """What a correction changed, said back: "C'est noté : Personnes touchées → Mon équipe."."""
    lang = language if language in ("fr", "en") else "en"
    if isinstance(value, Mapping):  # a contact: an email or a phone number
        changes = [f"{LABELS[k][lang]} → {v}" for k, v in value.items() if v and k in LABELS]
    else:
        changes = [f"{LABELS[slot][lang]} → {label(str(value), slot, lang)}"]
    return ("C'est noté : " if lang == "fr" else "Noted: ") + ", ".join(changes) + "."


def summary(known: Mapping[str, Any], language: str) -> str:
    """One paragraph for level 2 and for the person's confirmation."""
    lang = language if language in ("fr", "en") else "en"
    parts = []
    for key in ("description", "since", "impact", "urgency", "device", "email", "phone"):
        value = known.get(key)
        if key == "since" and isinstance(value, str):  # "Depuis : ce matin", not "depuis ce matin"
            value = _SINCE_WORD.sub("", value.strip())
        if value:
            parts.append(
                f"{LABELS[key][lang]} : {label(str(value), key, lang)}"
                if lang == "fr"
                else f"{LABELS[key][lang]}: {label(str(value), key, lang)}"
            )
    return " · ".join(parts)

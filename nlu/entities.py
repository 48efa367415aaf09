"""Entities a help desk needs: ticket numbers, email addresses, phone numbers, asset tags and host
names, application names from lookup tables, and times ("since this morning", "depuis hier").

Patterns come built in and from the training data's `regex:` entries (named after the entity);
applications from its `lookup: application` table, normalised through its `synonym:` entries.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from nlu.text import fold

BUILTIN_PATTERNS: dict[str, str] = {
    "ticket_number": r"\b[A-Z]{2,5}-\d{4}-\d{4,8}\b",
    "email": r"\b[\w.+-]+@[\w-]+(?:\.[\w-]+)+\b",
    "phone": r"(?<![\w+])(?:\+\d{1,3}[ .-]?)?(?:\(\d{1,4}\)[ .-]?)?\d{1,4}(?:[ .-]?\d{2,4}){2,5}(?!\w)",
    "asset_tag": r"\b(?:PC|LT|PRN|MON|SRV|TEL|TAB|DSK)-\d{3,6}\b",
    "hostname": r"\b(?=[a-z0-9-]*[a-z])(?=[a-z0-9-]*-)[a-z0-9]+(?:-[a-z0-9]+)+(?:\.[a-z0-9-]+)*\b"
    r"|\b[a-z0-9-]+(?:\.[a-z0-9-]+)*\.(?:local|lan|corp|intra|internal)\b",
}

# Relative times, French and English: pattern → how far back it points (None: a moment today).
_TIMES: Sequence[tuple[str, timedelta | None]] = (
    (r"(?:depuis |since |from )?(?:ce matin|this morning)", None),
    (r"(?:depuis |since )?(?:cet apr[eè]s[- ]midi|this afternoon)", None),
    (r"(?:depuis |since )?(?:hier soir|last night)", timedelta(days=1)),
    (r"(?:depuis |since )?(?:avant[- ]hier|the day before yesterday)", timedelta(days=2)),
    (r"(?:depuis |since )?(?:hier|yesterday)", timedelta(days=1)),
    (r"(?:depuis |since )?(?:la semaine derni[eè]re|last week)", timedelta(days=7)),
    (r"(?:depuis |since )?(?:tout [àa] l'heure|a moment ago|just now)", timedelta(minutes=15)),
    (
        r"(?:depuis|for|since) (\d{1,3}|une?|two|three|deux|trois) ?(minutes?|min|heures?|h|hours?|jours?|days?"
        r"|semaines?|weeks?)",
        timedelta(0),
    ),
    (r"(?:il y a) (\d{1,3}|une?|deux|trois) ?(minutes?|min|heures?|h|jours?|semaines?)", timedelta(0)),
    (r"(\d{1,3}|an?|one|two|three) (minutes?|hours?|days?|weeks?) ago", timedelta(0)),
    (
        r"(?:depuis |since )?(?:lundi|mardi|mercredi|jeudi|vendredi|samedi|dimanche|monday|tuesday|wednesday"
        r"|thursday|friday|saturday|sunday)",
        timedelta(0),
    ),
)
_NUMBERS = {"un": 1, "une": 1, "a": 1, "an": 1, "one": 1, "deux": 2, "two": 2, "trois": 3, "three": 3}
_UNITS = {
    "m": timedelta(minutes=1),
    "h": timedelta(hours=1),
    "j": timedelta(days=1),
    "d": timedelta(days=1),
    "s": timedelta(weeks=1),
    "w": timedelta(weeks=1),
}
_WEEKDAYS = ["lundi", "mardi", "mercredi", "jeudi", "vendredi", "samedi", "dimanche"]
_WEEKDAYS_EN = ["monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday"]


@dataclass(frozen=True, slots=True)
class Entity:
    entity: str
    value: str
    start: int
    end: int
    text: str


class EntityExtractor:
    def __init__(
        self,
        patterns: Mapping[str, Sequence[str]] | None = None,
        lookups: Mapping[str, Sequence[str]] | None = None,
        synonyms: Mapping[str, Sequence[str]] | None = None,
    ) -> None:
        compiled: list[tuple[str, re.Pattern[str]]] = []
        for name, pattern in BUILTIN_PATTERNS.items():
            flags = 0 if name in ("ticket_number", "asset_tag") else re.IGNORECASE
            compiled.append((name, re.compile(pattern, flags)))
        for name, extra in (patterns or {}).items():
            for pattern in extra:
                try:
                    compiled.append((name, re.compile(pattern)))
                except re.error:
                    continue  # reported by `guichet check`; never fatal at run time
        self._patterns = compiled
        canonical: dict[str, str] = {}
        for value, variants in (synonyms or {}).items():
            for variant in variants:
                canonical[fold(variant)] = value
        self._lookups: list[tuple[str, re.Pattern[str], dict[str, str]]] = []
        for name, names in (lookups or {}).items():
            terms = sorted({fold(n) for n in names if n.strip()} | set(canonical), key=len, reverse=True)
            if not terms:
                continue
            values = {t: canonical.get(t, _display(names, t)) for t in terms}
            alternatives = re.compile(r"(?<![\w])(?:" + "|".join(re.escape(t) for t in terms) + r")(?![\w])")
            self._lookups.append((name, alternatives, values))
        self._times = [(re.compile(p, re.IGNORECASE), back) for p, back in _TIMES]

    def extract(self, text: str, now: datetime | None = None) -> list[Entity]:
        text = text[:5000]  # entities of a novel are not a help desk's business
        found: list[Entity] = []
        for name, pattern in self._patterns:
            for match in pattern.finditer(text):
                value = match.group(0)
                if name == "phone" and sum(c.isdigit() for c in value) < 8:
                    continue
                found.append(Entity(name, value.lower() if name == "email" else value, *match.span(), value))
        folded = fold(text)
        if len(folded) == len(text):  # positions only line up when folding kept the length
            for name, pattern, values in self._lookups:
                for match in pattern.finditer(folded):
                    found.append(
                        Entity(name, values[match.group(0)], *match.span(), text[match.start() : match.end()])
                    )
            for pattern, back in self._times:
                for match in pattern.finditer(folded):
                    value = _time_value(match, back, now)
                    found.append(Entity("time", value, *match.span(), text[match.start() : match.end()]))
        return _without_overlaps(found)


def _display(names: Sequence[str], folded: str) -> str:
    return next((n for n in names if fold(n) == folded), folded)


def _time_value(match: re.Match[str], back: timedelta | None, now: datetime | None) -> str:
    """An ISO date-time when the expression can be placed, else the expression itself."""
    if now is None:
        return match.group(0)
    if back is None:
        return now.replace(
            hour=8 if "matin" in match.group(0) or "morning" in match.group(0) else 14,
            minute=0,
            second=0,
            microsecond=0,
        ).isoformat()
    if back:
        return (now - back).replace(microsecond=0).isoformat()
    if match.groups() and match.group(1):
        raw = match.group(1)
        count = int(raw) if raw.isdigit() else _NUMBERS.get(raw, 1)
        return (now - _UNITS[match.group(2)[0]] * count).replace(microsecond=0).isoformat()
    words = match.group(0).split()
    day = words[-1]
    index = (
        _WEEKDAYS.index(day) if day in _WEEKDAYS else _WEEKDAYS_EN.index(day) if day in _WEEKDAYS_EN else -1
    )
    if index < 0:
        return match.group(0)
    days_back = (now.weekday() - index) % 7 or 7
    return (now - timedelta(days=days_back)).date().isoformat()


def _without_overlaps(entities: list[Entity]) -> list[Entity]:
    """Longest match first wins a span; then in text order."""
    kept: list[Entity] = []
    for entity in sorted(entities, key=lambda e: (-(e.end - e.start), e.start)):
        if all(entity.end <= k.start or entity.start >= k.end for k in kept):
            kept.append(entity)
    return sorted(kept, key=lambda e: e.start)

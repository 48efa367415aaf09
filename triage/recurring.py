"""Recurring problems and duplicates, from the requester's ticket history.

A request that repeats an OPEN ticket of the same person (same category and a close
description) is a duplicate: it is attached to that ticket instead of opening another. A
request like earlier tickets of the same person (or about the same asset or site) within
the window — same category, or a close description — is a recurring problem: a new ticket,
marked as such and linked to the earlier ones, so level 2 looks for the root cause.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from nlu.text import fold
from triage.config import TriageSettings
from triage.tickets import ACTIVE

# Words that say nothing about the problem itself, in both languages.
_STOP = frozenset(
    """le la les un une des de du d l au aux et ou a à en dans sur pour par avec sans ne pas plus que qui
    quoi je j tu il elle on nous vous ils elles me m mon ma mes ton ta tes son sa ses notre nos votre vos
    leur ce cet cette ces est sont suis ai as avons avez ont fait faire bonjour merci svp stp depuis encore
    the a an of to in on for with without is are am was were be been my your our their it this that i you we
    they he she not no do does did can cant cannot could please hello hi thanks since again still""".split()
)
_WORD = re.compile(r"[a-z0-9]+")


@dataclass(frozen=True, slots=True)
class PastTicket:
    number: str
    requester: str
    category: str
    description: str
    opened_at: datetime
    status: str
    asset: str | None = None
    site: str | None = None


@dataclass(frozen=True, slots=True)
class Relation:
    recurring: bool
    linked: tuple[str, ...]
    duplicate_of: str | None
    reason: str


def _terms(text: str) -> Counter[str]:
    words = [w for w in _WORD.findall(fold(text)) if w not in _STOP and len(w) > 1]
    # A crude stem (plural and common endings), so "imprimantes" meets "imprimante".
    return Counter(w[:-1] if len(w) > 4 and w.endswith(("s", "x")) else w for w in words)


def similarity(a: str, b: str) -> float:
    """Cosine of the two descriptions' word counts, accent-folded, without stop words."""
    ta, tb = _terms(a), _terms(b)
    if not ta or not tb:
        return 0.0
    dot = sum(ta[w] * tb[w] for w in ta.keys() & tb.keys())
    return dot / (math.sqrt(sum(v * v for v in ta.values())) * math.sqrt(sum(v * v for v in tb.values())))


def relate(
    requester: str,
    category: str,
    description: str,
    asset: str | None,
    site: str | None,
    now: datetime,
    history: Sequence[PastTicket],
    settings: TriageSettings,
) -> Relation:
    window = timedelta(days=settings.recurring_window_days)
    close = settings.similar_description
    related: list[PastTicket] = []
    duplicate: PastTicket | None = None
    for past in sorted(history, key=lambda t: t.opened_at, reverse=True):
        same_person = past.requester == requester
        same_thing = (asset is not None and past.asset == asset) or (site is not None and past.site == site)
        if not (same_person or same_thing):
            continue
        alike = similarity(description, past.description) >= close
        if (
            duplicate is None
            and same_person
            and past.status in ACTIVE
            and past.category == category
            and alike
        ):
            duplicate = past
            continue
        if now - past.opened_at <= window and (past.category == category or alike):
            related.append(past)
    if duplicate is not None:
        return Relation(
            False, (duplicate.number,), duplicate.number, f"repeats open ticket {duplicate.number}"
        )
    if related:
        numbers = tuple(p.number for p in related)
        return Relation(
            True,
            numbers,
            None,
            f"{len(numbers)} earlier ticket(s) within {settings.recurring_window_days} days",
        )
    return Relation(False, (), None, "")

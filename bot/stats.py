"""The help-desk manager's figures, per day, kept in the store so that every process adds to the
same ones (the Prometheus metrics of bot/metrics.py are per process, for the operator).

Each handled message adds to a few counters named by the local day (the desk's timezone):
messages per channel and per hour, solved at level 1, handoffs per queue and priority,
abandoned conversations, unanswered questions, and first-response times in buckets. The
questions nobody could answer are kept as text, for the retention period, for the page's
top list and for `guichet report unanswered`. `GET /stats` (the operator token) draws them.
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from bot.messages import utcnow
from bot.store.base import Question, Store
from nlu.text import fold

CHANNELS = ("webchat", "rest", "email", "telegram", "slack")
PRIORITIES = ("P1", "P2", "P3", "P4")
# First-response buckets, in seconds (upper bounds); the last one holds everything slower.
FRT_BUCKETS = (1, 2, 5, 10, 30, 60, 300, 900, 3600, 86400)
KEEP_DAYS = 400  # counters hold no personal data: a year of history, and the same day last year


@dataclass
class Day:
    day: str
    messages: dict[str, int] = field(default_factory=dict)  # channel → messages
    hours: list[int] = field(default_factory=lambda: [0] * 24)
    solved: int = 0
    handoffs: dict[tuple[str, str], int] = field(default_factory=dict)  # (queue, priority) → tickets
    abandoned: int = 0
    unanswered: int = 0
    frt: list[int] = field(default_factory=lambda: [0] * len(FRT_BUCKETS))

    @property
    def total(self) -> int:
        return sum(self.messages.values())

    @property
    def handed_off(self) -> int:
        return sum(self.handoffs.values())


class DeskStats:
    def __init__(self, store: Store, timezone: str, queues: Sequence[str], retention_days: int = 90) -> None:
        self.store = store
        self.zone = ZoneInfo(timezone)
        self.queues = tuple(queues)
        self.retention_days = retention_days

    def _day(self, moment: datetime) -> tuple[str, int]:
        local = moment.astimezone(self.zone)
        return local.date().isoformat(), local.hour

    async def record(
        self,
        *,
        channel: str,
        at: datetime,
        first_response: float | None = None,
        solved: bool = False,
        handoffs: Sequence[tuple[str, str]] = (),
        abandoned: bool = False,
        unanswered: Question | None = None,
    ) -> None:
        day, hour = self._day(at)
        names = [f"d:{day}:in:{channel}", f"d:{day}:h:{hour:02d}"]
        if first_response is not None:
            bucket = next(
                (i for i, top in enumerate(FRT_BUCKETS) if first_response <= top), len(FRT_BUCKETS) - 1
            )
            names.append(f"d:{day}:frt:{bucket}")
        if solved:
            names.append(f"d:{day}:solved")
        names += [f"d:{day}:handoff:{queue}:{priority}" for queue, priority in handoffs]
        if abandoned:
            names.append(f"d:{day}:abandoned")
        if unanswered is not None:
            names.append(f"d:{day}:unanswered")
        await self.store.add_counts(names, KEEP_DAYS * 86400)
        if unanswered is not None:
            await self.store.note_unanswered(unanswered, self.retention_days * 86400)

    async def days(self, count: int = 30, today: datetime | None = None) -> list[Day]:
        """The last `count` days, oldest first (days without any message included)."""
        last = (today or utcnow()).astimezone(self.zone).date()
        labels = [(last - timedelta(days=n)).isoformat() for n in range(count - 1, -1, -1)]
        names: list[str] = []
        for day in labels:
            names += [f"d:{day}:in:{c}" for c in CHANNELS]
            names += [f"d:{day}:h:{h:02d}" for h in range(24)]
            names += [f"d:{day}:frt:{i}" for i in range(len(FRT_BUCKETS))]
            names += [f"d:{day}:{k}" for k in ("solved", "abandoned", "unanswered")]
            names += [f"d:{day}:handoff:{q}:{p}" for q in self.queues for p in PRIORITIES]
        found = await self.store.counts(names)
        result = []
        for day in labels:
            figures = Day(day)
            figures.messages = {c: found.get(f"d:{day}:in:{c}", 0) for c in CHANNELS}
            figures.hours = [found.get(f"d:{day}:h:{h:02d}", 0) for h in range(24)]
            figures.frt = [found.get(f"d:{day}:frt:{i}", 0) for i in range(len(FRT_BUCKETS))]
            figures.solved = found.get(f"d:{day}:solved", 0)
            figures.abandoned = found.get(f"d:{day}:abandoned", 0)
            figures.unanswered = found.get(f"d:{day}:unanswered", 0)
            figures.handoffs = {
                (q, p): found[f"d:{day}:handoff:{q}:{p}"]
                for q in self.queues
                for p in PRIORITIES
                if f"d:{day}:handoff:{q}:{p}" in found
            }
            result.append(figures)
        return result


def percentile_bucket(frt: Sequence[int], share: float) -> str:
    """ "≤ 5 s": the bucket holding that share of first responses (buckets keep no exact time)."""
    total = sum(frt)
    if not total:
        return "—"
    running = 0
    for count, top in zip(frt, FRT_BUCKETS, strict=True):
        running += count
        if running >= share * total:
            return f"≤ {_duration(top)}"
    return f"> {_duration(FRT_BUCKETS[-2])}"


def _duration(seconds: int) -> str:
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min"
    return f"{seconds // 3600} h"


# Two questions closer than this (cosine distance of their character n-grams) are one group.
GROUP_DISTANCE = 0.55


@dataclass(frozen=True)
class Group:
    language: str
    questions: tuple[str, ...]  # every time it was asked, the most typical phrasing first

    @property
    def size(self) -> int:
        return len(self.questions)


def group_questions(questions: Sequence[Question]) -> list[Group]:
    """Close paraphrases together, per language; the biggest groups first."""
    import numpy as np
    from sklearn.cluster import AgglomerativeClustering  # type: ignore[import-untyped]
    from sklearn.feature_extraction.text import TfidfVectorizer  # type: ignore[import-untyped]

    groups: list[Group] = []
    for language in sorted({q.language for q in questions}):
        texts = [" ".join(q.text.split()) for q in questions if q.language == language][-2000:]
        if len(texts) == 1:
            groups.append(Group(language, (texts[0],)))
            continue
        if not texts:
            continue
        vectors = TfidfVectorizer(
            analyzer="char_wb", ngram_range=(2, 4), preprocessor=fold, sublinear_tf=True
        )
        # The rows are unit length: their cosine distances from one sparse product, which the
        # clustering reads as given (2,000 questions: about a second, instead of 13 s and
        # 360 MB from the dense rows).
        matrix = vectors.fit_transform(texts)
        similarity = (matrix @ matrix.T).toarray()
        distances = np.clip(1.0 - similarity, 0.0, 2.0)
        np.fill_diagonal(distances, 0.0)
        labels = AgglomerativeClustering(
            n_clusters=None, metric="precomputed", linkage="average", distance_threshold=GROUP_DISTANCE
        ).fit_predict(distances)
        for label in set(labels):
            members = [i for i, value in enumerate(labels) if value == label]
            # The most typical phrasing first (the closest to the others): the draft's title.
            together = similarity[np.ix_(members, members)].sum(axis=1)
            members = [members[k] for k in np.argsort(-together, kind="stable")]
            # Every time it was asked counts (the group's size); the draft lists each phrasing once.
            groups.append(Group(language, tuple(texts[i] for i in members)))
    return sorted(groups, key=lambda g: (-g.size, g.language, g.questions[0]))


def top_questions(questions: Sequence[Question], limit: int = 10) -> list[tuple[str, int]]:
    """The most asked of the unanswered questions, close paraphrases together as `guichet
    report unanswered` groups them: (the most typical phrasing, how many times)."""
    return [(group.questions[0], group.size) for group in group_questions(questions)[:limit]]


# The page ------------------------------------------------------------------------------------
COLOURS = {
    "webchat": "#2b6cb0",
    "rest": "#718096",
    "email": "#dd6b20",
    "telegram": "#3182ce",
    "slack": "#805ad5",
}


def _bars(values: Sequence[tuple[str, dict[str, int]]], keys: Sequence[str], height: int = 160) -> str:
    """A stacked bar chart as inline SVG: one bar per label, one colour per key."""
    width = max(12, min(28, 720 // max(1, len(values))))
    top = max([sum(v.values()) for _, v in values] + [1])
    parts = [
        f'<svg role="img" width="{width * len(values) + 40}" height="{height + 40}" '
        f'viewBox="0 0 {width * len(values) + 40} {height + 40}">'
    ]
    parts.append(f'<text x="0" y="12" font-size="11">{top}</text>')
    for n, (label, counts) in enumerate(values):
        y = float(height + 16)
        for key in keys:
            value = counts.get(key, 0)
            if not value:
                continue
            h = value / top * height
            y -= h
            parts.append(
                f'<rect x="{36 + n * width}" y="{y:.1f}" width="{width - 3}" height="{h:.1f}" '
                f'fill="{COLOURS.get(key, "#4a5568")}"><title>{html.escape(label)} {html.escape(key)}: {value}</title></rect>'
            )
        if len(values) <= 31 and (n % max(1, len(values) // 10) == 0):
            parts.append(
                f'<text x="{36 + n * width}" y="{height + 32}" font-size="10">{html.escape(label[-5:])}</text>'
            )
    parts.append("</svg>")
    return "".join(parts)


def page(days: Sequence[Day], questions: Sequence[Question], organisation: str) -> str:
    total = sum(d.total for d in days)
    solved = sum(d.solved for d in days)
    handed = sum(d.handed_off for d in days)
    abandoned = sum(d.abandoned for d in days)
    frt = [sum(d.frt[i] for d in days) for i in range(len(FRT_BUCKETS))]
    rate = f"{solved / (solved + handed):.0%}" if solved + handed else "—"
    per_day = [(d.day, d.messages) for d in days]
    per_hour = [(f"{h:02d}h", {"all": sum(d.hours[h] for d in days)}) for h in range(24)]
    queues: dict[str, dict[str, int]] = {}
    for d in days:
        for (queue, priority), n in d.handoffs.items():
            queues.setdefault(queue, {}).setdefault(priority, 0)
            queues[queue][priority] += n
    queue_rows = "".join(
        f"<tr><td>{html.escape(q)}</td>" + "".join(f"<td>{by.get(p, 0)}</td>" for p in PRIORITIES) + "</tr>"
        for q, by in sorted(queues.items())
    )
    question_rows = "".join(
        f"<tr><td>{html.escape(text)}</td><td>{n}</td></tr>" for text, n in top_questions(questions)
    )
    legend = " ".join(
        f'<span style="color:{COLOURS[c]}">■</span> {c}'
        for c in CHANNELS
        if any(d.messages.get(c) for d in days)
    )
    first, last = (days[0].day, days[-1].day) if days else ("", "")
    return f"""<!doctype html>
<html lang="fr"><head><meta charset="utf-8"><title>Guichet — statistiques / statistics</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>
body {{ font-family: system-ui, sans-serif; margin: 2rem; color: #1a202c; max-width: 1100px; }}
.cards {{ display: flex; gap: 1rem; flex-wrap: wrap; }}
.card {{ border: 1px solid #e2e8f0; border-radius: 8px; padding: 0.8rem 1.2rem; min-width: 9rem; }}
.card b {{ display: block; font-size: 1.6rem; }}
table {{ border-collapse: collapse; }} td, th {{ border-bottom: 1px solid #e2e8f0; padding: 0.3rem 0.8rem; text-align: left; }}
h2 {{ margin-top: 2rem; font-size: 1.1rem; }}
</style></head><body>
<h1>{html.escape(organisation)} — {first} → {last}</h1>
<div class="cards">
<div class="card"><b>{total}</b>messages / messages</div>
<div class="card"><b>{rate}</b>résolu au niveau 1 / solved at level 1</div>
<div class="card"><b>{handed}</b>tickets niveau 2 / handed to level 2</div>
<div class="card"><b>{percentile_bucket(frt, 0.5)}</b>1re réponse, médiane / first response, median</div>
<div class="card"><b>{percentile_bucket(frt, 0.9)}</b>1re réponse, p90 / first response, p90</div>
<div class="card"><b>{abandoned}</b>conversations abandonnées / abandoned</div>
</div>
<h2>Messages par jour et par canal / messages per day and channel</h2>
<p>{legend}</p>
{_bars(per_day, CHANNELS)}
<h2>Messages par heure / messages per hour of the day</h2>
{_bars(per_hour, ["all"])}
<h2>Tickets par file et priorité / tickets per queue and priority</h2>
<table><tr><th>file / queue</th>{"".join(f"<th>{p}</th>" for p in PRIORITIES)}</tr>{queue_rows}</table>
<h2>Questions sans réponse les plus fréquentes / top unanswered questions</h2>
<table><tr><th>question</th><th>×</th></tr>{question_rows}</table>
<p><small>guichet report unanswered: des brouillons d'articles pour ces questions / draft articles for them</small></p>
</body></html>"""

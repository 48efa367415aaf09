"""What a desk's own knowledge base says of how well it will be answered, before anyone asks.

Each article's questions are put aside in turn, a third at a time (the first question of every
article, then the second, then the rest), the knowledge base is built from what is left (its
article model trained again), and the questions put aside are asked as people would ask them.
What comes back estimates, for this desk:

* the share of questions answered at once, right, and answered at once with another article;
* the articles whose questions are taken for another's (collisions: the two overlap, or one
  of them needs questions of its own);
* the articles with too few questions to learn from (fewer than two besides the title), or
  none of whose questions find it again.

`guichet check` prints it. An estimate only: an article's own questions are written by the same
hand as the others, people's messages are looser. On the development desks (bench/dev-desks),
people's questions were answered at once, right, 14 and 18 points less often than estimated
here (67% and 46% against 81% and 64%), and wrong less often too (an article asked here has a
question fewer than it really has); bench/kb.py measures the real figures on desks with
written-down questions.
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from nlu.kb import Article
from nlu.retrieval import KnowledgeBase

if TYPE_CHECKING:
    from nlu.encoder import SentenceEncoder

FOLDS = 3
MIN_QUESTIONS = 2
Progress = Callable[[int, int], None]


@dataclass(frozen=True)
class KbEstimate:
    articles: int
    asked: int  # questions put aside and asked
    answered_right: int
    answered_wrong: int
    offered_right: int  # not answered at once, but offered among the choices
    collisions: tuple[tuple[str, str, int], ...] = ()  # (article, taken for, how many questions)
    too_few: tuple[str, ...] = ()  # articles with fewer than MIN_QUESTIONS questions
    never_found: tuple[str, ...] = ()  # articles none of whose questions found them again
    notes: tuple[str, ...] = field(default=())

    @property
    def share_right(self) -> float:
        return self.answered_right / self.asked if self.asked else 0.0

    @property
    def share_wrong(self) -> float:
        return self.answered_wrong / self.asked if self.asked else 0.0

    @property
    def share_reached(self) -> float:
        return (self.answered_right + self.offered_right) / self.asked if self.asked else 0.0


def estimate(
    articles: Sequence[Article],
    encoder: SentenceEncoder | None,
    *,
    answer_threshold: float,
    suggest_threshold: float,
    close_margin: float,
    max_suggestions: int = 3,
    progress: Progress | None = None,
) -> KbEstimate:
    """Ask each article's questions of a knowledge base built without them (see the module)."""
    ids = sorted({a.id for a in articles})
    too_few = tuple(
        sorted({a.id for a in articles if len(a.questions) < MIN_QUESTIONS} if len(ids) > 1 else set())
    )
    if len(ids) < 2:
        return KbEstimate(len(ids), 0, 0, 0, 0, too_few=too_few)
    right = wrong = offered = asked = 0
    taken_for: Counter[tuple[str, str]] = Counter()
    found_again: Counter[str] = Counter()
    tried: Counter[str] = Counter()
    for fold in range(FOLDS):
        kept: list[Article] = []
        aside: list[tuple[str, str, str]] = []  # (question, its language, its article)
        for article in articles:
            if len(article.questions) < MIN_QUESTIONS:
                kept.append(article)
                continue
            chosen = [q for n, q in enumerate(article.questions) if min(n, FOLDS - 1) == fold]
            aside += [(q, article.language, article.id) for q in chosen]
            kept.append(
                dataclasses.replace(article, questions=tuple(q for q in article.questions if q not in chosen))
            )
        if not aside:
            continue
        kb = KnowledgeBase(kept, encoder)
        for question, language, article_id in aside:
            matches = kb.search(question, language)
            asked += 1
            tried[article_id] += 1
            first = matches[0] if matches else None
            sure = (
                first is not None
                and first.score >= answer_threshold
                and (len(matches) == 1 or first.score - matches[1].score >= close_margin)
            )
            choices = [] if sure else [m.article_id for m in matches if m.score >= suggest_threshold]
            if first is not None and first.article_id == article_id:
                found_again[article_id] += 1
            elif first is not None:
                taken_for[article_id, first.article_id] += 1
            if sure and first is not None:
                right += first.article_id == article_id
                wrong += first.article_id != article_id
            elif article_id in choices[:max_suggestions]:
                offered += 1
        if progress is not None:
            progress(fold + 1, FOLDS)
    collisions = tuple(
        (article, other, count)
        for (article, other), count in sorted(taken_for.items(), key=lambda kv: (-kv[1], kv[0]))
    )
    never = tuple(sorted(a for a in tried if not found_again[a]))
    return KbEstimate(len(ids), asked, right, wrong, offered, collisions, too_few, never)

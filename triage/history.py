"""Categories learnt from the desk's own ticket history (`triage.category_model`).

A desk that has closed thousands of tickets knows its categories better than any keyword list:
`guichet triage train history.csv --out models/categories` learns them from a CSV of past
tickets (header `text,category`, categories among `triage.categories`). With
`triage.category_model: models/categories` in guichet.yml, a new request's category is that
model's when it is sure enough (`category_model_above`), before the understood intent and the
keywords are asked.

Two kinds of model, both answered in NumPy:

* the classifier alone (nlu/classifier.py): trained in a minute, under half a millisecond a
  request; 86.3% of the 38,225 IT tickets of bench/triage.py in the right category;
* `--fine-tune`: the classifier voting with all-MiniLM-L6-v2 fine-tuned on the tickets
  (nlu/tuned.py; PyTorch for the training only): 22 minutes to train on 30,000 tickets
  here, about 23 ms a request, and 88.4% of bench/triage.py's tickets right.
"""

from __future__ import annotations

import shutil
from collections import Counter
from collections.abc import Callable, Sequence
from functools import lru_cache
from pathlib import Path
from typing import Protocol

from nlu.classifier import IntentClassifier
from nlu.datasets import load_csv
from nlu.tuned import TunedClassifier

CLASSIFIER = "classifier.npz"
_MIN_PER_CATEGORY = 5


class HistoryError(ValueError):
    """A ticket history or a category model that cannot be used, with what to do."""


class CategoryModel(Protocol):
    def top(self, text: str) -> tuple[str, float]: ...


def read_history(path: Path, categories: Sequence[str]) -> list[tuple[str, str]]:
    """(text, category) of each past ticket of a CSV with the header `text,category`; every
    category must be one of `categories` and have a few tickets."""
    try:
        rows = load_csv(path, label_column="category")
    except ValueError as error:
        raise HistoryError(str(error)) from error
    tickets = [(text.strip(), category.strip()) for text, category in rows if text.strip()]
    if not tickets:
        raise HistoryError(f"{path}: no ticket with both a text and a category")
    counts = Counter(category for _, category in tickets)
    unknown = sorted(set(counts) - set(categories))
    if unknown:
        raise HistoryError(
            f"{path}: categories {', '.join(map(repr, unknown))} are not in triage.categories "
            f"({', '.join(categories)}): rename them in the file, or add them to guichet.yml"
        )
    few = sorted(c for c, n in counts.items() if n < _MIN_PER_CATEGORY)
    if few or len(counts) < 2:
        raise HistoryError(
            f"{path}: a model needs at least two categories with {_MIN_PER_CATEGORY} tickets each "
            f"(found {dict(sorted(counts.items()))})"
        )
    return tickets


def train(
    tickets: Sequence[tuple[str, str]],
    out: Path,
    *,
    fine_tune: bool = False,
    epochs: int = 2,
    progress: Callable[[int, int], None] | None = None,
) -> CategoryModel:
    """Train into a fresh directory beside `out`, then put it in `out`'s place: a training that
    fails (no PyTorch, an interruption) leaves the model trained before as it was."""
    fresh = out.with_name(out.name + ".training")
    shutil.rmtree(fresh, ignore_errors=True)
    fresh.mkdir(parents=True)
    try:
        model: CategoryModel
        if fine_tune:
            model = TunedClassifier.train(tickets, fresh, epochs=epochs, progress=progress)
        else:
            model = IntentClassifier.train(tickets, progress=progress)
            model.save(fresh / CLASSIFIER)
    except BaseException:
        shutil.rmtree(fresh, ignore_errors=True)
        raise
    old = out.with_name(out.name + ".old")
    shutil.rmtree(old, ignore_errors=True)
    if out.exists():
        out.rename(old)
    fresh.rename(out)
    shutil.rmtree(old, ignore_errors=True)
    return model  # its weights are mapped from files that moved with their directory


@lru_cache(maxsize=4)
def load(directory: str) -> tuple[CategoryModel, tuple[str, ...]]:
    """The model a directory holds and its categories; once per process."""
    path = Path(directory)
    try:
        if (path / "vote.json").is_file():
            tuned = TunedClassifier.load(path)
            return tuned, tuple(tuned.labels)
        model = IntentClassifier.load(path / CLASSIFIER)
        return model, tuple(model.intents)
    except (OSError, ValueError, KeyError) as error:
        raise HistoryError(
            f"{path}: no category model can be read there ({error}); train one with `guichet triage train`"
        ) from error

"""Triage accuracy on a table of realistic requests (tests/data/triage_requests.csv, French
and English), through the real built-in NLU engine with its trained intent model: the
category and the priority a good level-1 agent would give from the text alone."""

from __future__ import annotations

import asyncio
import csv
from pathlib import Path

import pytest

from bot.config import load_configuration
from bot.nlu_model import load_or_train
from nlu.engine import BuiltinEngine
from tests.conftest import MODEL_DIR, SAMPLE_CONFIG
from triage.assess import assess
from triage.config import TriageSettings
from triage.priority import priority

TABLE = Path(__file__).parent / "data" / "triage_requests.csv"


@pytest.fixture(scope="module")
def engine() -> BuiltinEngine:
    configuration = load_configuration(SAMPLE_CONFIG, environ={})
    engine = BuiltinEngine(configuration.training, configuration.articles)
    model = load_or_train(configuration.training, MODEL_DIR)
    assert model is not None
    engine.use_classifier(model.classifier, model.threshold)
    return engine


def test_triage_table_category_and_priority_are_at_least_90_percent_right(engine: BuiltinEngine) -> None:
    settings = TriageSettings()
    with TABLE.open(encoding="utf-8") as file:
        rows = list(csv.DictReader(file))
    assert len(rows) >= 60 and {r["language"] for r in rows} == {"fr", "en"}
    categories = {c.name for c in settings.categories}
    category_right = priority_right = 0
    misses = []
    for row in rows:
        assert row["expected_category"] in categories, row
        parse = asyncio.run(engine.parse(row["text"], row["language"]))
        found = assess(row["text"], parse, settings, row["language"])
        level, _ = priority(
            found.impact,
            found.urgency,
            settings,
            category=found.category,
            requester_email=None,
            text=row["text"],
            security=found.security,
        )
        category_right += found.category == row["expected_category"]
        priority_right += level == row["expected_priority"]
        if (found.category, level) != (row["expected_category"], row["expected_priority"]):
            misses.append(
                f"  {row['text'][:70]!r}: {found.category}/{level} "
                f"(expected {row['expected_category']}/{row['expected_priority']})"
            )
    n = len(rows)
    print(f"\ntriage table: category {category_right / n:.1%}, priority {priority_right / n:.1%} (n={n})")
    print("\n".join(misses))
    assert category_right / n >= 0.9, "\n".join(misses)
    assert priority_right / n >= 0.9, "\n".join(misses)

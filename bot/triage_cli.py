"""`guichet triage train`: learn the desk's categories from its ticket history (triage/history.py)."""

from __future__ import annotations

import time
from pathlib import Path

from bot.progress import Progress
from bot.settings import load_settings
from nlu.tuned import TunedClassifier
from triage import history
from triage.history import HistoryError


def train(config_dir: Path, data: Path, out: Path | None, fine_tune: bool, epochs: int) -> int:
    settings, problems = load_settings(config_dir)
    if settings is None:
        raise HistoryError("\n".join(str(p) for p in problems))
    triage = settings.triage
    target = out or config_dir / "models" / "categories"
    tickets = history.read_history(data, [c.name for c in triage.categories])
    categories = sorted({c for _, c in tickets})
    print(f"{len(tickets)} tickets, {len(categories)} categories: {', '.join(categories)}")
    label = "fine-tuning and voting" if fine_tune else "training the classifier"
    progress = Progress(label, 1000)
    start = time.perf_counter()
    model = history.train(tickets, target, fine_tune=fine_tune, epochs=epochs, progress=progress.update)
    progress.close()
    print(f"trained in {time.perf_counter() - start:.0f} s: {target}")
    if isinstance(model, TunedClassifier):
        print(model.vote_summary())
    try:
        relative = target.resolve().relative_to(config_dir.resolve())
    except ValueError:
        relative = target.resolve()
    print(f"to use it, add to {config_dir / 'guichet.yml'}:\n  triage:\n    category_model: {relative}")
    return 0

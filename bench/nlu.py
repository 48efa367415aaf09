"""Intent understanding, built-in engine and Rasa 3.6 side by side, on public data sets.

    .venv/bin/python bench/nlu.py [--data ../shared/data] [--no-rasa]

For each data set: accuracy (CLINC150: in-scope accuracy and out-of-scope recall at one
threshold, tuned on the validation split), training time, and parse latency in-process.
Rasa runs with Guichet's Rasa pipeline (nlu/rasa/config.yml) on models trained once by
bench/rasa_models.py and kept in ~/.cache (DIET takes most of an hour on CLINC150 here);
a data set whose Rasa model is not trained yet is reported as such, never guessed.
Language detection is measured on tests/data/language.csv when present.
"""

from __future__ import annotations

import argparse
import csv
import statistics
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.rasa_models import RASA_HOME, model_path  # noqa: E402
from bot.progress import Progress  # noqa: E402
from nlu.classifier import IntentClassifier  # noqa: E402
from nlu.datasets import first_per_label, load_banking77, load_clinc150, load_hwu64  # noqa: E402

GOALS = {"clinc150": "≥ 93.5% / ≥ 60%", "banking77": "≥ 92%", "banking77_10shot": "≥ 85%", "hwu64": "≥ 90%"}


@dataclass
class Row:
    dataset: str
    engine: str
    accuracy: float | None = None
    oos_recall: float | None = None
    train_seconds: float | None = None
    median_ms: float | None = None
    p99_ms: float | None = None
    note: str = ""


def splits(
    name: str, data: Path
) -> tuple[list[tuple[str, str]], list[tuple[str, str]], list[tuple[str, str]]]:
    """(train, validation, test); CLINC150's out-of-scope lines are labelled "oos"."""
    if name == "clinc150":
        s = load_clinc150(data / "clinc150" / "data_full.json")
        return [*s["train"], *s["oos_train"]], [*s["val"], *s["oos_val"]], [*s["test"], *s["oos_test"]]
    if name.startswith("banking77"):
        s = load_banking77(data / "banking77")
        train = first_per_label(s["train"], 10) if name.endswith("10shot") else s["train"]
        return train, [], s["test"]
    s = load_hwu64(data / "hwu64")
    return s["train"], s.get("valid", []), s["test"]


def scores(
    gold: Sequence[str], predicted: Sequence[tuple[str, float]], threshold: float
) -> tuple[float, float | None]:
    in_scope = [(g, p) for g, p in zip(gold, predicted, strict=True) if g != "oos"]
    oos = [p for g, p in zip(gold, predicted, strict=True) if g == "oos"]
    accuracy = sum(p[0] == g and p[1] >= threshold for g, p in in_scope) / len(in_scope)
    recall = sum(p[1] < threshold or p[0] in ("oos", "nlu_fallback") for p in oos) / len(oos) if oos else None
    return accuracy, recall


def best_threshold(gold: Sequence[str], predicted: Sequence[tuple[str, float]]) -> float:
    """For an engine without its own tuning (Rasa): the threshold maximising accuracy + recall on validation."""
    candidates = sorted({round(c, 3) for _, c in predicted})
    return max(candidates or [0.0], key=lambda t: sum(x or 0.0 for x in scores(gold, predicted, t)))


def latency(predict: object, texts: Sequence[str]) -> tuple[float, float]:
    times = []
    for text in texts:
        started = time.perf_counter()
        predict(text)  # type: ignore[operator]
        times.append(time.perf_counter() - started)
    times.sort()
    return statistics.median(times) * 1000, times[int(0.99 * len(times))] * 1000


def builtin(name: str, data: Path) -> Row:
    train, val, test = splits(name, data)
    progress = Progress(f"built-in: training {name}", 1)
    started = time.perf_counter()
    classifier = IntentClassifier.train(train, progress=progress.update, oos_label="oos")
    seconds = time.perf_counter() - started
    progress.close()
    threshold = 0.0
    if name == "clinc150":
        threshold = classifier.tune_threshold(
            [p for p in val if p[1] != "oos"], [t for t, g in val if g == "oos"]
        )
    predicted = [r[0] if r else ("", 0.0) for r in classifier.predict_many([t for t, _ in test])]
    accuracy, recall = scores([g for _, g in test], predicted, threshold)
    median, p99 = latency(classifier.predict, [t for t, _ in test[:2000]])
    return Row(name, "built-in", accuracy, recall, seconds, median, p99)


def rasa(name: str, data: Path) -> Row:
    from bench.rasa_runner import RasaServer, in_process_latency

    model, _ = model_path(name, data)
    if not model.exists():
        return Row(name, "Rasa 3.6", note=f"no trained model: python bench/rasa_models.py {name}")
    train, val, test = splits(name, data)
    del train
    with RasaServer(model) as server:
        threshold = 0.0
        if name == "clinc150":
            val_predicted = server.predict([t for t, _ in val], f"Rasa: validation {name}")
            threshold = best_threshold([g for _, g in val], val_predicted)
        predicted = server.predict([t for t, _ in test], f"Rasa: test {name}")
    accuracy, recall = scores([g for _, g in test], predicted, threshold)
    timing = in_process_latency(model, [t for t, _ in test[:300]])
    return Row(
        name,
        "Rasa 3.6",
        accuracy,
        recall,
        None,
        timing["median_ms"],
        timing["p99_ms"],
        note="trained once, cached",
    )


def language(path: Path) -> str:
    from bot.config import load_configuration
    from nlu.engine import BuiltinEngine

    configuration = load_configuration(ROOT / "config", environ={})
    engine = BuiltinEngine(configuration.training, configuration.articles)
    lines = []
    # language.csv guided the chat-word markers of nlu/language.py; language_heldout.csv was
    # written before they were and never used to tune: it is the figure to trust.
    for file, what in ((path, "development set"), (path.with_name("language_heldout.csv"), "held-out set")):
        if not file.exists():
            continue
        with file.open(encoding="utf-8") as source:
            rows = list(csv.DictReader(source))
        right = sum(engine.language.guess(r["text"]) == r["language"] for r in rows)
        lines.append(
            f"Language detection (built-in, no hint), {what}, {len(rows)} short help-desk messages: "
            f"{right / len(rows):.1%} (goal ≥ 98%)"
        )
    return "\n".join(lines)


def pct(value: float | None) -> str:
    return "—" if value is None else f"{value:.1%}"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    parser.add_argument("--no-rasa", action="store_true", help="the built-in engine only")
    parser.add_argument(
        "--datasets", nargs="+", default=["clinc150", "banking77", "banking77_10shot", "hwu64"]
    )
    args = parser.parse_args()
    if not (args.data / "clinc150").is_dir():
        raise SystemExit(f"no public data in {args.data} (see ../shared/data/README.md)")
    rows: list[Row] = []
    for name in args.datasets:
        rows.append(builtin(name, args.data))
        if not args.no_rasa and (RASA_HOME / "bin" / "rasa").exists():
            rows.append(rasa(name, args.data))
    print()
    print(
        f"{'data set':<17} {'engine':<9} {'accuracy':>9} {'oos rec.':>9} {'train s':>8} {'median ms':>10} "
        f"{'p99 ms':>8}  goal / note"
    )
    for r in rows:
        train = f"{r.train_seconds:.1f}" if r.train_seconds is not None else "—"
        median = f"{r.median_ms:.3f}" if r.median_ms is not None else "—"
        p99 = f"{r.p99_ms:.3f}" if r.p99_ms is not None else "—"
        note = r.note or (GOALS.get(r.dataset, "") if r.engine == "built-in" else "")
        print(
            f"{r.dataset:<17} {r.engine:<9} {pct(r.accuracy):>9} {pct(r.oos_recall):>9} {train:>8} {median:>10} "
            f"{p99:>8}  {note}"
        )
    for name in args.datasets:
        ours = next(r for r in rows if r.dataset == name and r.engine == "built-in")
        theirs = next((r for r in rows if r.dataset == name and r.engine != "built-in" and r.accuracy), None)
        if theirs and ours.median_ms and theirs.median_ms and ours.accuracy and theirs.accuracy:
            print(
                f"{name}: built-in/Rasa accuracy {ours.accuracy / theirs.accuracy:.3f}×, "
                f"parse {theirs.median_ms / ours.median_ms:.0f}× faster in-process"
            )
    print(
        "Published (CLINC150 in-scope / oos recall): BERT 96.2/52.3, MLP on USE 93.4/49.1, Rasa NLU 90.9/31.2; "
        "BANKING77: BERT-Large 93.7, USE+ConveRT 93.4 (10-shot 85.2)"
    )
    sample = ROOT / "tests" / "data" / "language.csv"
    if sample.exists():
        print(language(sample))


if __name__ == "__main__":
    main()

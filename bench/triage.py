"""Ticket category accuracy on 38,225 real IT tickets (../shared/data/it_tickets, 8 categories).

    python bench/triage.py [--data ../shared/data/it_tickets]
                           [--encoder all-minilm-l6-v2 | --fine-tune [--epochs 2]]
                           [--plot confusion.png] [--json out.json]

Protocol: one stratified 80/20 split with a fixed seed (42); nothing is tuned on the test
fifth. The texts are the dataset's own (lower-cased, stop words removed upstream); there are
no duplicate texts across the split (checked and printed). Two models are trained and
measured in the same run, on the same split:

* the peer the issue names: scikit-learn's TfidfVectorizer + LogisticRegression (defaults);
* Guichet's classifier (nlu/classifier.py: word, word-pair and character views, one-vs-rest
  linear SVMs with calibrated confidences), as a desk would train it on its ticket history;
  with `--encoder`, a sentence encoder's vector of each ticket is a fourth view, as
  `Settings.encoder` gives it (all-MiniLM-L6-v2: the tickets are English). Every ticket gets
  its vector (no words-only shortcut), so the figure is the encoder's own; training then takes
  15 to 30 minutes here instead of one, most of it computing 38,225 vectors in NumPy;
* with `--fine-tune` (PyTorch needed: `make .venv/.finetune`), Guichet's classifier and
  all-MiniLM-L6-v2 fine-tuned on the training tickets vote together (nlu/tuned.py: the vote's
  weight is chosen on a tenth of the training tickets set aside, never on the test fifth);
  training takes 22 minutes here (two epochs), answering uses NumPy only (23 ms a ticket).

Goal (issue 4): at least 88% accuracy for Guichet's; the peer reaches about 86%. The script
exits non-zero when the goal is missed, after printing every figure.
"""

from __future__ import annotations

import argparse
import csv
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bot.progress import Progress  # noqa: E402
from nlu.classifier import IntentClassifier, Settings  # noqa: E402
from nlu.encoder import NAMES  # noqa: E402
from nlu.tuned import TunedClassifier  # noqa: E402


def load(path: Path) -> tuple[list[str], list[str]]:
    csv_path = path / "tickets.csv"
    if not csv_path.exists():
        sys.exit(f"{csv_path} not found: pass --data with the it_tickets folder of the public data")
    with csv_path.open(encoding="utf-8") as file:
        rows = list(csv.DictReader(file))
    return [r["Document"] for r in rows], [r["Topic_group"] for r in rows]


def scores(truth: Sequence[str], predicted: Sequence[str]) -> tuple[float, float, dict[str, float]]:
    labels = sorted(set(truth))
    accuracy = sum(t == p for t, p in zip(truth, predicted, strict=True)) / len(truth)
    recall, f1 = {}, []
    for label in labels:
        tp = sum(t == p == label for t, p in zip(truth, predicted, strict=True))
        fn = sum(t == label != p for t, p in zip(truth, predicted, strict=True))
        fp = sum(p == label != t for t, p in zip(truth, predicted, strict=True))
        recall[label] = tp / (tp + fn) if tp + fn else 0.0
        precision = tp / (tp + fp) if tp + fp else 0.0
        f1.append(
            2 * precision * recall[label] / (precision + recall[label]) if precision + recall[label] else 0.0
        )
    return accuracy, statistics.mean(f1), recall


def timed_predict(predict: Callable[[str], str], texts: Sequence[str], label: str) -> tuple[list[str], float]:
    progress = Progress(f"{label}: predicting", len(texts))
    out = []
    start = time.perf_counter()
    for n, text in enumerate(texts):
        out.append(predict(text))
        if n % 500 == 0:
            progress.update(n)
    elapsed = time.perf_counter() - start
    progress.update(len(texts))
    progress.close()
    return out, 1e6 * elapsed / len(texts)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data" / "it_tickets")
    parser.add_argument("--goal", type=float, default=0.88)
    parser.add_argument(
        "--encoder", default="", choices=("", *NAMES), help="a sentence encoder for Guichet's classifier"
    )
    parser.add_argument(
        "--fine-tune",
        action="store_true",
        help="Guichet's classifier with fine-tuned all-MiniLM-L6-v2 (PyTorch)",
    )
    parser.add_argument("--epochs", type=int, default=2, help="fine-tuning epochs (with --fine-tune)")
    parser.add_argument("--plot", type=Path, default=None, help="write Guichet's confusion matrix as a PNG")
    parser.add_argument("--json", type=Path, default=None, help="write the figures as JSON")
    args = parser.parse_args()
    if args.fine_tune and args.encoder:
        parser.error("--fine-tune and --encoder are two different models: pass one")

    from sklearn.feature_extraction.text import TfidfVectorizer  # type: ignore[import-untyped]
    from sklearn.linear_model import LogisticRegression  # type: ignore[import-untyped]
    from sklearn.model_selection import train_test_split  # type: ignore[import-untyped]

    texts, labels = load(args.data)
    train_x, test_x, train_y, test_y = train_test_split(
        texts, labels, test_size=0.2, random_state=42, stratify=labels
    )
    shared = len(set(train_x) & set(test_x))
    print(f"{len(texts)} tickets, {len(set(labels))} categories; train {len(train_x)}, test {len(test_x)}; "
          f"test texts also in train: {shared}")  # fmt: skip

    results: dict[str, dict[str, object]] = {}

    print("peer: TF-IDF + logistic regression…", file=sys.stderr)
    start = time.perf_counter()
    vectorizer = TfidfVectorizer()
    peer = LogisticRegression(max_iter=1000).fit(vectorizer.fit_transform(train_x), train_y)
    peer_train = time.perf_counter() - start
    peer_pred, peer_us = timed_predict(
        lambda t: str(peer.predict(vectorizer.transform([t]))[0]), test_x, "peer"
    )
    accuracy, f1, recall = scores(test_y, peer_pred)
    results["peer"] = {
        "accuracy": accuracy,
        "macro_f1": f1,
        "train_s": peer_train,
        "predict_us": peer_us,
        "recall": recall,
    }

    progress = Progress("guichet: training", 100)
    start = time.perf_counter()
    examples = list(zip(train_x, train_y, strict=True))
    model: IntentClassifier | TunedClassifier
    with tempfile.TemporaryDirectory(prefix="guichet-tuned-") as scratch:
        if args.fine_tune:
            model = TunedClassifier.train(
                examples, Path(scratch), epochs=args.epochs, progress=progress.update
            )
        else:
            settings = Settings(encoder=args.encoder, cascade=False)
            model = IntentClassifier.train(examples, progress=progress.update, settings=settings)
        ours_train = time.perf_counter() - start
        progress.close()
        if isinstance(model, TunedClassifier):
            print(model.vote_summary())
        ours_pred, ours_us = timed_predict(lambda t: model.top(t)[0], test_x, "guichet")
    accuracy, f1, recall = scores(test_y, ours_pred)
    results["guichet"] = {
        "accuracy": accuracy,
        "macro_f1": f1,
        "train_s": ours_train,
        "predict_us": ours_us,
        "recall": recall,
    }

    titles = (
        ("peer", "peer: TF-IDF + LogisticRegression"),
        (
            "guichet",
            f"Guichet (classifier{', ' + args.encoder if args.encoder else ''}"
            f"{' + fine-tuned all-MiniLM-L6-v2' if args.fine_tune else ''})",
        ),
    )
    width = 2 + max(len(title) for _, title in titles)
    print(f"\n{'':<{width}}{'accuracy':>9}{'macro F1':>10}{'train s':>9}{'µs/ticket':>11}")
    for name, title in titles:
        r = results[name]
        print(
            f"{title:<{width}}{r['accuracy']:>9.1%}{r['macro_f1']:>10.1%}{r['train_s']:>9.1f}{r['predict_us']:>11.0f}"
        )
    ratio = float(results["guichet"]["accuracy"]) / float(results["peer"]["accuracy"])  # type: ignore[arg-type]
    print(f"accuracy ratio Guichet / peer: {ratio:.3f}")
    print("Guichet's recall per category:")
    for label, value in sorted(recall.items(), key=lambda kv: kv[1]):
        print(f"  {label:<24}{value:>7.1%}")
    if args.plot:
        plot(test_y, ours_pred, args.plot)
        print(f"confusion matrix: {args.plot}")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    if accuracy < args.goal:
        print(f"GOAL MISSED: Guichet's accuracy {accuracy:.1%} is below {args.goal:.0%}", file=sys.stderr)
        return 1
    return 0


def plot(truth: Sequence[str], predicted: Sequence[str], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = sorted(set(truth))
    index = {label: n for n, label in enumerate(labels)}
    counts = [[0] * len(labels) for _ in labels]
    for t, p in zip(truth, predicted, strict=True):
        counts[index[t]][index[p]] += 1
    share = [[c / max(1, sum(row)) for c in row] for row in counts]
    figure, axes = plt.subplots(figsize=(8, 7))
    axes.imshow(share, cmap="Blues", vmin=0, vmax=1)
    axes.set_xticks(range(len(labels)), labels, rotation=45, ha="right")
    axes.set_yticks(range(len(labels)), labels)
    axes.set_xlabel("predicted category")
    axes.set_ylabel("true category")
    for i, row in enumerate(share):
        for j, value in enumerate(row):
            axes.text(
                j, i, f"{value:.0%}", ha="center", va="center", color="white" if value > 0.5 else "black"
            )
    axes.set_title("Ticket categories: share of each true category (Guichet)")
    figure.tight_layout()
    figure.savefig(path, dpi=120)


if __name__ == "__main__":
    sys.exit(main())

"""Scoring an intent engine against labelled examples: accuracy, macro F1, out-of-scope recall
and precision, the intents most confused with each other, a confusion-matrix picture."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

# The labels that mean "not one of the intents", whatever the data set calls it.
OUT_OF_SCOPE_LABELS = frozenset({"oos", "out_of_scope", "nlu_fallback", "out-of-scope"})
OUT_OF_SCOPE = "out_of_scope"


def normalise_label(label: str) -> str:
    return OUT_OF_SCOPE if label in OUT_OF_SCOPE_LABELS else label


@dataclass
class Report:
    examples: int
    accuracy: float  # over every example, out-of-scope ones included
    in_scope_accuracy: float | None
    macro_f1: float
    oos_recall: float | None
    oos_precision: float | None
    threshold: float | None
    confused: list[tuple[str, str, int]] = field(default_factory=list)
    per_intent_f1: dict[str, float] = field(default_factory=dict)

    def lines(self) -> list[str]:
        def pct(value: float | None) -> str:
            return "—" if value is None else f"{value:.1%}"

        out = [
            f"examples            {self.examples}",
            f"accuracy            {pct(self.accuracy)}",
            f"in-scope accuracy   {pct(self.in_scope_accuracy)}",
            f"macro F1            {pct(self.macro_f1)}",
            f"out-of-scope recall {pct(self.oos_recall)}",
            f"out-of-scope prec.  {pct(self.oos_precision)}",
        ]
        if self.threshold is not None:
            out.append(f"threshold           {self.threshold:.3f}")
        if self.confused:
            out.append("most confused (expected → predicted, count):")
            out.extend(f"  {gold} → {predicted}: {count}" for gold, predicted, count in self.confused)
        return out


def score(
    gold: Sequence[str], predicted: Sequence[str], threshold: float | None = None, top: int = 10
) -> Report:
    gold = [normalise_label(g) for g in gold]
    predicted = [normalise_label(p) for p in predicted]
    labels = sorted(set(gold) | set(predicted))
    pairs = Counter(zip(gold, predicted, strict=True))
    f1s: dict[str, float] = {}
    for label in labels:
        if label == OUT_OF_SCOPE:
            continue
        tp = pairs[(label, label)]
        fp = sum(c for (g, p), c in pairs.items() if p == label and g != label)
        fn = sum(c for (g, p), c in pairs.items() if g == label and p != label)
        f1s[label] = 2 * tp / (2 * tp + fp + fn) if tp else 0.0
    in_scope = [(g, p) for g, p in zip(gold, predicted, strict=True) if g != OUT_OF_SCOPE]
    oos_gold = sum(1 for g in gold if g == OUT_OF_SCOPE)
    oos_predicted = sum(1 for p in predicted if p == OUT_OF_SCOPE)
    oos_hits = pairs[(OUT_OF_SCOPE, OUT_OF_SCOPE)]
    confused = sorted(((g, p, c) for (g, p), c in pairs.items() if g != p), key=lambda t: -t[2])[:top]
    return Report(
        examples=len(gold),
        accuracy=sum(c for (g, p), c in pairs.items() if g == p) / max(len(gold), 1),
        in_scope_accuracy=sum(g == p for g, p in in_scope) / len(in_scope) if in_scope else None,
        macro_f1=sum(f1s.values()) / max(len(f1s), 1),
        oos_recall=oos_hits / oos_gold if oos_gold else None,
        oos_precision=oos_hits / oos_predicted if oos_predicted else None,
        threshold=threshold,
        confused=confused,
        per_intent_f1=dict(sorted(f1s.items())),
    )


def write_report(
    report: Report, gold: Sequence[str], predicted: Sequence[str], out_dir: Path
) -> tuple[Path, Path]:
    """The JSON report and a confusion-matrix PNG, in out_dir."""
    out_dir.mkdir(parents=True, exist_ok=True)
    json_path = out_dir / "nlu-report.json"
    json_path.write_text(json.dumps(asdict(report), indent=2, ensure_ascii=False), encoding="utf-8")
    png_path = out_dir / "confusion-matrix.png"
    _confusion_png([normalise_label(g) for g in gold], [normalise_label(p) for p in predicted], png_path)
    return json_path, png_path


def _confusion_png(gold: Sequence[str], predicted: Sequence[str], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")  # no screen: draw to a file
    import matplotlib.pyplot as plt
    import numpy as np

    labels = sorted(set(gold) | set(predicted))
    index = {label: i for i, label in enumerate(labels)}
    matrix = np.zeros((len(labels), len(labels)))
    for g, p in zip(gold, predicted, strict=True):
        matrix[index[g], index[p]] += 1
    rows = matrix.sum(axis=1, keepdims=True)
    shares = np.divide(matrix, rows, out=np.zeros_like(matrix), where=rows > 0)
    size = min(4 + len(labels) * 0.22, 40)
    figure, axes = plt.subplots(figsize=(size, size))
    image = axes.imshow(shares, cmap="Blues", vmin=0, vmax=1)
    axes.set_xticks(range(len(labels)), labels, rotation=90, fontsize=7 if len(labels) < 60 else 4)
    axes.set_yticks(range(len(labels)), labels, fontsize=7 if len(labels) < 60 else 4)
    axes.set_xlabel("predicted")
    axes.set_ylabel("expected")
    axes.set_title("Confusion matrix (share of each expected intent)")
    figure.colorbar(image, fraction=0.03)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)

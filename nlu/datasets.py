"""Loaders for public intent-classification corpora and for the project's own formats.

Every loader answers with `(text, intent)` pairs, split by split, ready for
`IntentClassifier.train`. Nothing here downloads anything: the corpora are read where they
lie (benchmarks use ``../shared/data``); none of them is ever copied into the project.
"""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path

from nlu.training_data import parse_file

Examples = list[tuple[str, str]]

OOS_LABEL = "oos"
"""The out-of-scope label of CLINC150 (and the name the benchmark gives to background data)."""

_ANNOTATION = re.compile(r"\[([^\]]+)\](?:\([^)]*\)|\{[^}]*\})")


class DatasetError(ValueError):
    """A corpus file is missing or not in the expected shape."""


def load_clinc150(path: str | Path) -> dict[str, Examples]:
    """CLINC150's ``data_full.json`` (or another of its variants): the six splits train, val,
    test, oos_train, oos_val, oos_test; out-of-scope lines carry the label ``"oos"``."""
    file = Path(path)
    if file.is_dir():
        file = file / "data_full.json"
    try:
        raw = json.loads(file.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise DatasetError(f"cannot read CLINC150 from {file}: {exc}") from exc
    if not isinstance(raw, dict):
        raise DatasetError(f"{file}: expected a JSON object of splits")
    splits: dict[str, Examples] = {}
    for name, rows in raw.items():
        if not isinstance(rows, list):
            raise DatasetError(f"{file}: split {name!r} is not a list")
        split: Examples = []
        for row in rows:
            if not (isinstance(row, list) and len(row) == 2 and all(isinstance(x, str) for x in row)):
                raise DatasetError(f"{file}: split {name!r} has a row that is not [text, intent]: {row!r}")
            split.append((row[0], row[1]))
        splits[name] = split
    return splits


def load_csv(path: str | Path, *, text_column: str = "text", label_column: str = "intent") -> Examples:
    """A CSV file with a header naming the text and label columns (``text,intent`` by default)."""
    file = Path(path)
    try:
        with file.open(encoding="utf-8", newline="") as handle:
            reader = csv.DictReader(handle)
            fields = reader.fieldnames or []
            if text_column not in fields or label_column not in fields:
                raise DatasetError(
                    f"{file}: the header must name {text_column!r} and {label_column!r}, it has {fields}"
                )
            return [
                (row[text_column], row[label_column])
                for row in reader
                if row.get(text_column) is not None and row.get(label_column)
            ]
    except OSError as exc:
        raise DatasetError(f"cannot read {file}: {exc}") from exc


def load_banking77(directory: str | Path) -> dict[str, Examples]:
    """BANKING77: ``train.csv`` and ``test.csv`` with the header ``text,category``."""
    folder = Path(directory)
    return {split: load_csv(folder / f"{split}.csv", label_column="category") for split in ("train", "test")}


def load_hwu64(directory: str | Path) -> dict[str, Examples]:
    """HWU64 as line-aligned ``seq.in`` / ``label`` files in one folder per split (train, valid,
    test and the few-shot train_10, train_5: whichever are present)."""
    folder = Path(directory)
    splits: dict[str, Examples] = {}
    for split in ("train", "valid", "test", "train_10", "train_5"):
        sub = folder / split
        if not sub.is_dir():
            continue
        try:
            texts = (sub / "seq.in").read_text(encoding="utf-8").splitlines()
            labels = (sub / "label").read_text(encoding="utf-8").splitlines()
        except OSError as exc:
            raise DatasetError(f"cannot read HWU64 split {sub}: {exc}") from exc
        if len(texts) != len(labels):
            raise DatasetError(f"{sub}: seq.in has {len(texts)} lines but label has {len(labels)}")
        splits[split] = [
            (t.strip(), lab.strip()) for t, lab in zip(texts, labels, strict=True) if lab.strip()
        ]
    if "train" not in splits:
        raise DatasetError(f"{folder}: no train/seq.in + train/label")
    return splits


def load_rasa_yaml(path: str | Path) -> Examples:
    """The intents of a Rasa 3.x NLU YAML file, entity annotations reduced to their text
    (``[outlook](application)`` → ``outlook``)."""
    data, problems = parse_file(Path(path))
    if problems and not data.intents:
        raise DatasetError("; ".join(f"{p}" for p in problems))
    return [
        (_ANNOTATION.sub(r"\1", example), intent)
        for intent, examples in data.intents.items()
        for example in examples
    ]


def first_per_label(examples: Examples, per_label: int) -> Examples:
    """The first `per_label` examples of each label, in the corpus's order (a few-shot split
    that is the same on every run)."""
    seen: dict[str, int] = {}
    chosen: Examples = []
    for text, label in examples:
        if seen.get(label, 0) < per_label:
            seen[label] = seen.get(label, 0) + 1
            chosen.append((text, label))
    return chosen

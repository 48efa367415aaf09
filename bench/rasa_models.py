"""Rasa models for the public intent data sets, trained once and kept in a cache.

    python bench/rasa_models.py clinc150|banking77|banking77_10shot|hwu64 [--data DIR]

Writes the data set's training split as Rasa NLU YAML and trains Rasa 3.6 on it with
Guichet's own Rasa pipeline (nlu/rasa/config.yml), through nlu/rasa/rasa.sh's environment.
A model is named after a hash of its data and pipeline, so bench/nlu.py reuses it: DIET
takes most of an hour on CLINC150 on a 2-core machine, which no benchmark run should repeat.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import time
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from nlu.datasets import load_banking77, load_clinc150, load_hwu64  # noqa: E402

RASA_HOME = Path(os.environ.get("GUICHET_RASA_HOME", Path.home() / ".cache/guichet/rasa-3.6"))
CACHE = Path(os.environ.get("GUICHET_RASA_BENCH", Path.home() / ".cache/guichet/rasa-bench"))
PIPELINE = ROOT / "nlu" / "rasa" / "config.yml"


def training_examples(name: str, data: Path) -> list[tuple[str, str]]:
    if name == "clinc150":
        return [(t, i) for t, i in load_clinc150(data / "clinc150" / "data_full.json")["train"]]
    if name == "banking77":
        return load_banking77(data / "banking77")["train"]
    if name == "banking77_10shot":
        per_intent: dict[str, list[tuple[str, str]]] = defaultdict(list)
        for text, intent in load_banking77(data / "banking77")["train"]:
            if len(per_intent[intent]) < 10:
                per_intent[intent].append((text, intent))
        return [pair for pairs in per_intent.values() for pair in pairs]
    if name == "hwu64":
        return load_hwu64(data / "hwu64")["train"]
    raise SystemExit(f"unknown data set {name!r}")


def rasa_yaml(examples: Sequence[tuple[str, str]]) -> str:
    by_intent: dict[str, list[str]] = defaultdict(list)
    for text, intent in examples:
        clean = " ".join(text.split()).replace("[", "(").replace("]", ")")
        if clean:
            by_intent[intent].append(clean)
    lines = ['version: "3.1"', "nlu:"]
    for intent, texts in sorted(by_intent.items()):
        lines.append(f"- intent: {intent}")
        lines.append("  examples: |")
        lines.extend(f"    - {t}" for t in dict.fromkeys(texts))
    return "\n".join(lines) + "\n"


def model_path(name: str, data: Path) -> tuple[Path, str]:
    content = rasa_yaml(training_examples(name, data))
    digest = hashlib.sha256((content + PIPELINE.read_text()).encode()).hexdigest()[:16]
    return CACHE / f"{name}-{digest}.tar.gz", content


def training_record(model: Path) -> dict[str, float]:
    """How the cached model was trained: wall-clock seconds and the load average then ({} if
    it was trained before this was recorded)."""
    record = model.with_suffix("").with_suffix(".json")
    try:
        found = json.loads(record.read_text())
    except (OSError, ValueError):
        return {}
    return found if isinstance(found, dict) else {}


def training_marker(name: str) -> Path:
    """Present (holding the trainer's process id) while `name`'s model is being trained."""
    return CACHE / f"{name}.training"


def train(name: str, data: Path) -> Path:
    model, content = model_path(name, data)
    if model.exists():
        print(f"{name}: already trained: {model}")
        return model
    work = CACHE / f"{name}-work"
    (work / "data").mkdir(parents=True, exist_ok=True)
    (work / "data" / "nlu.yml").write_text(content, encoding="utf-8")
    print(
        f"{name}: training Rasa on {content.count(chr(10) + '    - ')} examples (this can take an hour)…",
        flush=True,
    )
    # While the marker exists, `bench/nlu.py --wait-for-rasa` waits for this model instead of
    # reporting it untrained: a benchmark can start while the longest training finishes.
    marker = training_marker(name)
    marker.write_text(str(os.getpid()))
    started = time.perf_counter()
    try:
        subprocess.run(
            [
                str(RASA_HOME / "bin" / "rasa"),
                "train",
                "nlu",
                "--nlu",
                str(work / "data"),
                "--config",
                str(PIPELINE),
                "--out",
                str(CACHE),
                "--fixed-model-name",
                model.name.removesuffix(".tar.gz"),
            ],
            cwd=work,
            check=True,
        )
    finally:
        marker.unlink(missing_ok=True)
    seconds = time.perf_counter() - started
    # Kept beside the model: the benchmark prints Rasa's training time without training again.
    record = {
        "seconds": round(seconds, 1),
        "load_average": round(os.getloadavg()[0], 2),
        "cores": os.cpu_count(),
    }
    model.with_suffix("").with_suffix(".json").write_text(json.dumps(record))
    print(f"{name}: trained in {seconds / 60:.1f} min: {model}", flush=True)
    return model


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("datasets", nargs="+")
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    args = parser.parse_args()
    for name in args.datasets:
        train(name, args.data)


if __name__ == "__main__":
    main()

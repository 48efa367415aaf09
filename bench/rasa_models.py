"""Rasa models for the public intent data sets, trained once and kept in a cache.

    python bench/rasa_models.py clinc150|banking77|banking77_10shot|hwu64|desk ...
                                [--pipeline diet|fast] [--data DIR]

Writes the data set's training split as Rasa NLU YAML (the sample desk: config/nlu as it is)
and trains Rasa 3.6 on it with one of Guichet's Rasa pipelines, through nlu/rasa/rasa.sh's
environment: `diet` (nlu/rasa/config.yml, the default a desk gets) or `fast`
(nlu/rasa/config-fast.yml: Rasa's LogisticRegressionClassifier, minutes instead of hours).
A model is named after a hash of its data and pipeline, so bench/nlu.py reuses it: DIET
takes hours on CLINC150 on a 2-core machine, which no benchmark run should repeat.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
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
PIPELINES = {"diet": ROOT / "nlu" / "rasa" / "config.yml", "fast": ROOT / "nlu" / "rasa" / "config-fast.yml"}


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
    raise SystemExit(f"unknown data set {name!r} (clinc150, banking77, banking77_10shot, hwu64, desk)")


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


def nlu_files(name: str, data: Path) -> dict[str, str]:
    """The training files Rasa gets, by file name: the desk's own, or one written from a data set."""
    if name == "desk":
        return {
            f.name: f.read_text(encoding="utf-8") for f in sorted((ROOT / "config" / "nlu").glob("*.y*ml"))
        }
    return {"nlu.yml": rasa_yaml(training_examples(name, data))}


def stem(name: str, pipeline: str) -> str:
    """The cache's name for a data set's model: DIET's keep the bare data-set name."""
    return name if pipeline == "diet" else f"{name}-{pipeline}"


def model_path(name: str, data: Path, pipeline: str = "diet") -> tuple[Path, dict[str, str]]:
    files = nlu_files(name, data)
    content = "".join(files[f] for f in sorted(files))
    digest = hashlib.sha256((content + PIPELINES[pipeline].read_text()).encode()).hexdigest()[:16]
    return CACHE / f"{stem(name, pipeline)}-{digest}.tar.gz", files


def training_record(model: Path) -> dict[str, float]:
    """How the cached model was trained: wall-clock seconds and the load average then ({} if
    it was trained before this was recorded)."""
    record = model.with_suffix("").with_suffix(".json")
    try:
        found = json.loads(record.read_text())
    except (OSError, ValueError):
        return {}
    return found if isinstance(found, dict) else {}


def training_marker(name: str, pipeline: str = "diet") -> Path:
    """Present (holding the trainer's process id) while that model is being trained."""
    return CACHE / f"{stem(name, pipeline)}.training"


def train(name: str, data: Path, pipeline: str = "diet", quiet: bool = False) -> Path:
    model, files = model_path(name, data, pipeline)
    if model.exists():
        print(f"{name}: already trained ({pipeline}): {model}")
        return model
    work = CACHE / f"{stem(name, pipeline)}-work"
    # Rasa keeps what each component trained in .rasa/cache and reuses it on the same data:
    # a second training would take seconds. The time kept beside the model is a whole training.
    for kept in ("data", ".rasa"):
        shutil.rmtree(work / kept, ignore_errors=True)
    (work / "data").mkdir(parents=True)
    for file, content in files.items():
        (work / "data" / file).write_text(content, encoding="utf-8")
    examples = sum(content.count("\n    - ") for content in files.values())
    print(f"{name}: training Rasa ({pipeline}) on about {examples:,} examples…", flush=True)
    # While the marker exists, `bench/nlu.py --wait-for-rasa` waits for this model instead of
    # reporting it untrained: a benchmark can start while the longest training finishes.
    marker = training_marker(name, pipeline)
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
                str(PIPELINES[pipeline]),
                "--out",
                str(CACHE),
                "--fixed-model-name",
                model.name.removesuffix(".tar.gz"),
                *(["--quiet"] if quiet else []),
            ],
            cwd=work,
            env={**os.environ, "RASA_MAX_CACHE_SIZE": "0"},
            check=True,
            stdout=subprocess.DEVNULL if quiet else None,
            stderr=subprocess.DEVNULL if quiet else None,
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
    print(f"{name}: trained ({pipeline}) in {seconds / 60:.1f} min: {model}", flush=True)
    return model


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("datasets", nargs="+")
    parser.add_argument("--pipeline", choices=sorted(PIPELINES), default="diet")
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    args = parser.parse_args()
    for name in args.datasets:
        train(name, args.data, args.pipeline)


if __name__ == "__main__":
    main()

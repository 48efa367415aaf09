"""A Rasa 3.6 assistant built from Guichet's own configuration, for bench/load.py's comparison.

Rasa's REST channel needs a whole assistant, not only an NLU model: this writes a domain with
one response per intent of config/nlu/ and one rule per intent (intent → its response; Rasa's
`nlu_fallback` → a default answer), trains it with Rasa's recommended pipeline
(nlu/rasa/config.yml) and the RulePolicy, and serves it with `rasa run`. The model is kept
under ~/.cache/guichet/rasa-work/assistant and reused while the data is the same. Rasa's
environment is the one `nlu/rasa/rasa.sh setup` makes.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
RASA_HOME = Path(os.environ.get("GUICHET_RASA_HOME", Path.home() / ".cache" / "guichet" / "rasa-3.6"))
WORK = (
    Path(os.environ.get("GUICHET_RASA_WORK", Path.home() / ".cache" / "guichet" / "rasa-work")) / "assistant"
)


def build(config_dir: Path = ROOT / "config") -> Path:
    """Write the assistant's files and train it (once per data); returns the model path."""
    subprocess.run([str(ROOT / "nlu" / "rasa" / "rasa.sh"), "setup"], check=True, capture_output=True)
    intents: list[str] = []
    for path in sorted((config_dir / "nlu").glob("*.yml")):
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        intents += [str(item["intent"]) for item in data.get("nlu", []) if "intent" in item]
    WORK.mkdir(parents=True, exist_ok=True)
    domain = {
        "version": "3.1",
        "intents": sorted(set(intents)),
        "responses": {f"utter_{i}": [{"text": f"[{i}]"}] for i in sorted(set(intents))}
        | {"utter_default": [{"text": "Je n'ai pas compris / I did not understand."}]},
    }
    rules = {
        "version": "3.1",
        "rules": [
            {"rule": f"answer {i}", "steps": [{"intent": i}, {"action": f"utter_{i}"}]}
            for i in sorted(set(intents))
        ]
        + [{"rule": "fallback", "steps": [{"intent": "nlu_fallback"}, {"action": "utter_default"}]}],
    }
    config = yaml.safe_load((ROOT / "nlu" / "rasa" / "config.yml").read_text(encoding="utf-8"))
    config["policies"] = [{"name": "RulePolicy", "core_fallback_action_name": "utter_default"}]
    files = {
        "domain.yml": yaml.safe_dump(domain, allow_unicode=True, sort_keys=False),
        "rules.yml": yaml.safe_dump(rules, allow_unicode=True, sort_keys=False),
        "config.yml": yaml.safe_dump(config, allow_unicode=True, sort_keys=False),
        "credentials.yml": "rest:\n",
        "endpoints.yml": "",
    }
    digest = hashlib.sha256()
    for name, text in files.items():
        (WORK / name).write_text(text, encoding="utf-8")
        digest.update(text.encode())
    for path in sorted((config_dir / "nlu").glob("*.yml")):
        digest.update(path.read_bytes())
    name = f"assistant-{digest.hexdigest()[:16]}"
    model = WORK / "models" / f"{name}.tar.gz"
    if not model.exists():
        print("Training a Rasa assistant on config/nlu (a few minutes, once)…", flush=True)
        subprocess.run(
            [str(RASA_HOME / "bin" / "rasa"), "train", "--domain", "domain.yml", "--config", "config.yml",
             "--data", str(config_dir / "nlu"), "rules.yml", "--out", "models", "--fixed-model-name", name, "--quiet"],
            cwd=WORK, check=True,
        )  # fmt: skip
    return model


def serve(model: Path, port: int) -> subprocess.Popen[bytes]:
    """`rasa run` with the REST channel on 127.0.0.1:port (about 40 s to load)."""
    return subprocess.Popen(
        [str(RASA_HOME / "bin" / "rasa"), "run", "-m", str(model), "-i", "127.0.0.1", "-p", str(port),
         "--credentials", "credentials.yml", "--endpoints", "endpoints.yml", "--quiet"],
        cwd=WORK, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip

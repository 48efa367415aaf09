"""A desk's Rasa NLU files read as Rasa 3.6 reads them (YAML 1.2): `- intent: yes` is the intent
"yes", not the boolean true. Checked against Rasa's own loader, run in its own environment, on a
file full of YAML 1.1 booleans and on the files `rasa init` writes."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from nlu.engine import strip_annotations
from nlu.kb import parse_article
from nlu.training_data import TrainingData, parse_file
from tests.processes import ROOT

RASA_SCRIPT = ROOT / "nlu" / "rasa" / "rasa.sh"
RASA_HOME = Path(os.environ.get("GUICHET_RASA_HOME", Path.home() / ".cache" / "guichet" / "rasa-3.6"))

WORDS_NOT_BOOLEANS = """version: "3.1"
nlu:
- intent: yes
  examples: |
    - oui
    - yes please
    - c'est bien ça
- intent: no
  examples: |
    - non
    - no thanks
- intent: on
  examples: |
    - allume le [wifi](device)
    - turn it on
- intent: off
  examples: |
    - éteins tout
    - switch it off
- intent: y
  examples: |
    - y
- synonym: on
  examples: |
    - allumé
    - en marche
- synonym: no
  examples: |
    - nope
- lookup: off
  examples: |
    - hors ligne
    - offline
- regex: n
  examples: |
    - \\bn[o°]\\s?\\d+\\b
"""

# What Rasa's loader gives: intents and their examples (annotations removed), synonyms, lookups.
RASA_READER = """
import json, sys
from rasa.shared.nlu.training_data.loading import load_data
found = {}
for path in sys.argv[1:]:
    data = load_data(path)
    intents = {}
    for example in data.intent_examples:
        intents.setdefault(str(example.get("intent")), []).append(example.get("text"))
    found[path] = {
        "intents": intents,
        "synonyms": {str(k): str(v) for k, v in data.entity_synonyms.items()},
        "lookups": {str(t["name"]): [str(e) for e in t["elements"]] for t in data.lookup_tables},
        "regexes": {str(r["name"]): [str(r["pattern"])] for r in data.regex_features},
    }
print(json.dumps(found))
"""


def as_rasa_reads(data: TrainingData) -> dict[str, object]:
    return {
        "intents": {
            name: [strip_annotations(e) for e in examples] for name, examples in data.intents.items()
        },
        "synonyms": {variant: name for name, variants in data.synonyms.items() for variant in variants},
        "lookups": dict(data.lookups),
        "regexes": dict(data.regexes),
    }


def test_yes_no_on_off_are_names(tmp_path: Path) -> None:
    path = tmp_path / "nlu.yml"
    path.write_text(WORDS_NOT_BOOLEANS, encoding="utf-8")
    data, problems = parse_file(path)
    assert problems == []
    assert sorted(data.intents) == ["no", "off", "on", "y", "yes"]
    assert data.synonyms == {"on": ["allumé", "en marche"], "no": ["nope"]}
    assert data.lookups == {"off": ["hors ligne", "offline"]}
    assert list(data.regexes) == ["n"]


def test_an_article_named_like_a_boolean_keeps_its_name(tmp_path: Path) -> None:
    path = tmp_path / "on.md"
    path.write_text(
        "---\nid: on\ntitle: Turn it on\nquestions: [how do I switch it on]\ntags: [yes, no]\n"
        "intents: [on]\n---\nPress the button.\n",
        encoding="utf-8",
    )
    article, problems = parse_article(path, "en")
    assert problems == [] and article is not None
    assert (article.id, article.tags, article.intents) == ("on", ("yes", "no"), ("on",))


def test_the_files_are_read_as_rasa_reads_them(tmp_path: Path) -> None:
    setup = subprocess.run([str(RASA_SCRIPT), "setup"], capture_output=True, text=True, timeout=1800)
    if setup.returncode != 0:
        pytest.fail(
            f"Rasa could not be set up (nlu/rasa/rasa.sh setup):\n{setup.stderr[-3000:]}", pytrace=False
        )
    ours = tmp_path / "booleans.yml"
    ours.write_text(WORDS_NOT_BOOLEANS, encoding="utf-8")
    initial = RASA_HOME / "lib" / "python3.10" / "site-packages" / "rasa" / "cli" / "initial_project" / "data"
    files = [ours, initial / "nlu.yml", ROOT / "config" / "nlu" / "helpdesk.yml"]
    assert all(f.exists() for f in files), files
    read = subprocess.run(
        [str(RASA_HOME / "bin" / "python"), "-c", RASA_READER, *map(str, files)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert read.returncode == 0, read.stderr[-3000:]
    rasa = json.loads(read.stdout.strip().splitlines()[-1])
    for path in files:
        data, problems = parse_file(path)
        assert problems == [], problems
        assert as_rasa_reads(data) == rasa[str(path)], path

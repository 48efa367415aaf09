"""Reading NLU training data written in Rasa 3.x's YAML format (`nlu:` with intents, synonyms,
regexes and lookup tables), so the same files train the built-in engine and a Rasa server. They
are read as Rasa reads them, YAML 1.2 (nlu/yaml12.py): `- intent: yes` is the intent "yes"."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import yaml

from nlu import yaml12
from nlu.problems import DataProblem

_KINDS = ("intent", "synonym", "regex", "lookup")


@dataclass
class TrainingData:
    intents: dict[str, list[str]] = field(default_factory=dict)
    synonyms: dict[str, list[str]] = field(default_factory=dict)
    regexes: dict[str, list[str]] = field(default_factory=dict)
    lookups: dict[str, list[str]] = field(default_factory=dict)

    def merge(self, other: TrainingData) -> None:
        for mine, theirs in (
            (self.intents, other.intents),
            (self.synonyms, other.synonyms),
            (self.regexes, other.regexes),
            (self.lookups, other.lookups),
        ):
            for name, items in theirs.items():
                mine.setdefault(name, []).extend(items)


def load_training_data(nlu_dir: Path) -> tuple[TrainingData, list[DataProblem]]:
    data = TrainingData()
    problems: list[DataProblem] = []
    if not nlu_dir.is_dir():
        return data, problems
    for path in sorted([*nlu_dir.glob("*.yml"), *nlu_dir.glob("*.yaml")]):
        part, found = parse_file(path)
        data.merge(part)
        problems.extend(found)
    return data, problems


def parse_file(path: Path) -> tuple[TrainingData, list[DataProblem]]:
    data = TrainingData()
    try:
        text = path.read_text(encoding="utf-8")
        root = yaml12.compose(text)
        document = yaml12.load(text)
    except (OSError, UnicodeDecodeError) as exc:
        return data, [DataProblem(path, None, f"cannot read the file: {exc}", "save it as UTF-8 text")]
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        return data, [
            DataProblem(
                path,
                mark.line + 1 if mark else None,
                f"not valid YAML: {exc}",
                "check the indentation; examples go in a '|' block, one '- ' line each",
            )
        ]
    if root is None:
        return data, []
    if not isinstance(root, yaml.MappingNode):
        return data, [
            DataProblem(
                path,
                1,
                "the file must be a mapping with 'version' and 'nlu'",
                'start with version: "3.1" then nlu:',
            )
        ]
    top = {key.value: value for key, value in root.value}
    problems: list[DataProblem] = []
    if "nlu" not in top:
        # Rasa also keeps stories and rules in data files; they are not ours to read.
        return data, problems
    nlu_node = top["nlu"]
    if not isinstance(nlu_node, yaml.SequenceNode) or not isinstance(document.get("nlu"), list):
        return data, [
            DataProblem(
                path,
                nlu_node.start_mark.line + 1,
                "'nlu' must be a list",
                "write each intent as '- intent: name' under nlu:",
            )
        ]
    # The items as values (read as YAML 1.2, as Rasa reads them), their nodes for the line numbers
    for item, entry in zip(nlu_node.value, document["nlu"], strict=True):
        line = item.start_mark.line + 1
        if not isinstance(entry, dict):
            problems.append(
                DataProblem(
                    path,
                    line,
                    "each nlu item must be a mapping",
                    "write '- intent: name' followed by 'examples: |'",
                )
            )
            continue
        kinds = [k for k in _KINDS if k in entry]
        if len(kinds) != 1:
            problems.append(
                DataProblem(
                    path,
                    line,
                    "an nlu item needs exactly one of intent, synonym, regex, lookup",
                    "split it into separate items",
                )
            )
            continue
        kind = kinds[0]
        name = entry[kind]
        examples = entry.get("examples")
        if not isinstance(name, str) or not name:
            problems.append(DataProblem(path, line, f"the {kind} has no name", f"write '- {kind}: a_name'"))
            continue
        if not isinstance(examples, str):
            problems.append(
                DataProblem(
                    path,
                    line,
                    f"{kind} {name!r} has no 'examples: |' block",
                    "add examples: | followed by '- example' lines",
                )
            )
            continue
        parsed, bad = _examples(examples)
        for offset in bad:
            problems.append(
                DataProblem(
                    path,
                    line + 2 + offset,
                    f"in {kind} {name!r}, an example does not start with '- '",
                    "begin every example line with '- '",
                )
            )
        if not parsed:
            problems.append(
                DataProblem(
                    path, line, f"{kind} {name!r} has no examples", "add at least one '- example' line"
                )
            )
            continue
        target = {
            "intent": data.intents,
            "synonym": data.synonyms,
            "regex": data.regexes,
            "lookup": data.lookups,
        }[kind]
        target.setdefault(name, []).extend(parsed)
    return data, problems


def _examples(block: str) -> tuple[list[str], list[int]]:
    found: list[str] = []
    bad: list[int] = []
    for offset, raw in enumerate(block.splitlines()):
        line = raw.strip()
        if not line:
            continue
        if not line.startswith("- "):
            bad.append(offset)
            continue
        found.append(line[2:].strip())
    return found, bad

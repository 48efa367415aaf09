"""YAML as Rasa reads it: the 1.2 core schema, where `yes`, `no`, `on`, `off`, `y` and `n` are
words, not booleans.

PyYAML implements YAML 1.1, which reads `- intent: yes` as the boolean true and `on: 1` as a key
true; Rasa 3.x reads its files with ruamel.yaml in YAML 1.2, where only `true` and `false` are
booleans, `017` is seventeen and `1:30` is text. A desk's NLU files, articles and settings name
things (intents, synonyms, article ids, tags, queues): `Loader` reads them with the 1.2 core
schema's plain scalars (booleans, nulls, integers, floats), and everything else stays text.
"""

from __future__ import annotations

import re
from typing import Any

import yaml

_BOOL = re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$")
_NULL = re.compile(r"^(?:~|null|Null|NULL|)$")
_INT = re.compile(r"^(?:[-+]?[0-9]+|0o[0-7]+|0x[0-9a-fA-F]+)$")
_FLOAT = re.compile(
    r"^(?:[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?|[-+]?\.(?:inf|Inf|INF)|\.nan|\.NaN|\.NAN)$"
)


class Loader(yaml.SafeLoader):
    """PyYAML's safe loader with YAML 1.2's core schema for plain scalars."""

    def construct_yaml_int(self, node: yaml.Node) -> int:
        value = str(self.construct_scalar(node))  # type: ignore[arg-type]
        sign = -1 if value.startswith("-") else 1
        digits = value.lstrip("+-")
        if digits.startswith("0x"):
            return sign * int(digits[2:], 16)
        if digits.startswith("0o"):
            return sign * int(digits[2:], 8)
        return sign * int(digits, 10)  # 017 is seventeen in YAML 1.2, not fifteen

    def construct_yaml_bool(self, node: yaml.Node) -> bool:
        return str(self.construct_scalar(node)).lower() == "true"  # type: ignore[arg-type]


Loader.yaml_implicit_resolvers = {}  # none of SafeLoader's YAML 1.1 ones, then the 1.2 core schema's
for _tag, _pattern, _first in (
    ("tag:yaml.org,2002:bool", _BOOL, list("tTfF")),
    ("tag:yaml.org,2002:null", _NULL, ["~", "n", "N", ""]),
    ("tag:yaml.org,2002:int", _INT, list("-+0123456789")),
    ("tag:yaml.org,2002:float", _FLOAT, list("-+.0123456789")),
):
    Loader.add_implicit_resolver(_tag, _pattern, _first)
Loader.add_implicit_resolver("tag:yaml.org,2002:merge", re.compile(r"^(?:<<)$"), ["<"])
Loader.add_constructor("tag:yaml.org,2002:int", Loader.construct_yaml_int)
Loader.add_constructor("tag:yaml.org,2002:bool", Loader.construct_yaml_bool)


def load(text: str) -> Any:
    """The document in `text`, read as YAML 1.2 (see the module)."""
    return yaml.load(text, Loader=Loader)  # a SafeLoader: no arbitrary objects


def compose(text: str) -> yaml.Node | None:
    """The document's node tree, its scalars resolved as YAML 1.2."""
    return yaml.compose(text, Loader=Loader)

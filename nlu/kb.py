"""Knowledge-base articles: Markdown files with YAML front matter, one folder per language.

kb/<lang>/<id>.md
---
id: password-reset
title: Reset a forgotten password
questions: [ways people ask it, ...]
tags: [account]
category: account      # optional
---
The answer, shown to the person as plain text.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from nlu import yaml12
from nlu.problems import DataProblem

REQUIRED_FIELDS = ("id", "title", "questions", "tags")


@dataclass(frozen=True, slots=True)
class Article:
    id: str
    language: str
    title: str
    questions: tuple[str, ...]
    tags: tuple[str, ...]
    body: str
    category: str | None
    path: Path
    # The intents this article answers (front matter `intents:`); without it, the intent named
    # like the article's id (password-reset: password_reset). When the classifier is sure of
    # one of them, the article is as sure as that (nlu.engine.understood_articles), whatever
    # words it shares with the message.
    intents: tuple[str, ...] = ()

    @property
    def answers(self) -> tuple[str, ...]:
        return self.intents or (self.id.replace("-", "_"),)


def load_articles(kb_dir: Path) -> tuple[list[Article], list[DataProblem]]:
    """Every article under kb_dir/<lang>/, and every problem found on the way (nothing raised)."""
    articles: list[Article] = []
    problems: list[DataProblem] = []
    if not kb_dir.is_dir():
        return articles, problems
    seen: dict[tuple[str, str], Path] = {}
    for lang_dir in sorted(p for p in kb_dir.iterdir() if p.is_dir()):
        for path in sorted(lang_dir.glob("*.md")):
            article, found = parse_article(path, lang_dir.name)
            problems.extend(found)
            if article is None:
                continue
            key = (article.language, article.id)
            if key in seen:
                problems.append(
                    DataProblem(
                        path,
                        2,
                        f"article id {article.id!r} is already used by {seen[key]}",
                        "give each article of a language its own id",
                    )
                )
                continue
            seen[key] = path
            articles.append(article)
    return articles, problems


def parse_article(path: Path, language: str) -> tuple[Article | None, list[DataProblem]]:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        return None, [DataProblem(path, None, f"cannot read the file: {exc}", "save it as UTF-8 text")]
    lines = text.splitlines()
    if not lines or lines[0].strip() != "---":
        return None, [
            DataProblem(
                path,
                1,
                "the file does not start with a '---' front-matter line",
                "begin with '---', the fields id, title, questions, tags, then '---'",
            )
        ]
    try:
        end = next(i for i in range(1, len(lines)) if lines[i].strip() == "---")
    except StopIteration:
        return None, [
            DataProblem(
                path,
                1,
                "the front matter is never closed",
                "add a line '---' after the last field, before the answer",
            )
        ]
    try:
        meta = yaml12.load("\n".join(lines[1:end])) or {}
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 2 if mark is not None else 2
        return None, [
            DataProblem(
                path,
                line,
                f"the front matter is not valid YAML: {exc}",
                "check the indentation and quote values that contain ':'",
            )
        ]
    if not isinstance(meta, dict):
        return None, [
            DataProblem(
                path, 2, "the front matter must be a mapping of fields", "write one 'field: value' per line"
            )
        ]
    problems = _check_fields(path, meta, lines[1:end])
    body = "\n".join(lines[end + 1 :]).strip()
    if not body:
        problems.append(
            DataProblem(
                path,
                end + 2,
                "the article has no answer after the front matter",
                "write the answer below the closing '---'",
            )
        )
    if problems:
        return None, problems
    return Article(
        id=str(meta["id"]),
        language=language,
        title=str(meta["title"]).strip(),
        questions=tuple(str(q).strip() for q in meta["questions"] if str(q).strip()),
        tags=tuple(str(t) for t in meta["tags"]),
        body=body,
        category=str(meta["category"]) if meta.get("category") else None,
        path=path,
        intents=tuple(str(i).strip() for i in meta.get("intents") or () if str(i).strip()),
    ), []


def _field_line(front_lines: list[str], name: str) -> int:
    for number, line in enumerate(front_lines, start=2):
        if line.startswith(f"{name}:"):
            return number
    return 2


def _check_fields(path: Path, meta: dict[str, Any], front: list[str]) -> list[DataProblem]:
    problems = [
        DataProblem(path, 2, f"the field {name!r} is missing", f"add '{name}:' to the front matter")
        for name in REQUIRED_FIELDS
        if name not in meta
    ]
    if problems:
        return problems
    if not isinstance(meta["id"], str) or not meta["id"].strip():
        problems.append(
            DataProblem(
                path,
                _field_line(front, "id"),
                "'id' must be a non-empty text",
                "use a short name such as password-reset",
            )
        )
    if not isinstance(meta["title"], str) or not meta["title"].strip():
        problems.append(
            DataProblem(
                path,
                _field_line(front, "title"),
                "'title' must be a non-empty text",
                "write the article's title",
            )
        )
    questions = meta["questions"]
    if not isinstance(questions, list) or not questions or not all(isinstance(q, str) for q in questions):
        problems.append(
            DataProblem(
                path,
                _field_line(front, "questions"),
                "'questions' must be a list of texts, at least one",
                "list the ways people ask it, one '- ' line each",
            )
        )
    intents = meta.get("intents")
    if intents is not None and not (isinstance(intents, list) and all(isinstance(i, str) for i in intents)):
        problems.append(
            DataProblem(
                path,
                _field_line(front, "intents"),
                "'intents' must be a list of intent names",
                "write intents: [password_reset] (the intents of nlu/ this article answers)",
            )
        )
    if not isinstance(meta["tags"], list):
        problems.append(
            DataProblem(
                path,
                _field_line(front, "tags"),
                "'tags' must be a list",
                "write tags: [tag1, tag2] (or tags: [] for none)",
            )
        )
    return problems

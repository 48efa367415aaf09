"""A configuration directory, loaded whole: settings, knowledge base, NLU training data.

<dir>/guichet.yml        settings (optional: every setting has a default)
<dir>/kb/<lang>/*.md     knowledge-base articles
<dir>/nlu/*.yml          training data in Rasa 3.x's NLU YAML format
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from bot.errors import ConfigError
from bot.settings import Settings, load_settings
from nlu.encoder import passage_encoder_unavailable, unavailable
from nlu.kb import Article, load_articles
from nlu.problems import DataProblem
from nlu.training_data import TrainingData, load_training_data

KNOWN_LANGUAGES = ("fr", "en")


@dataclass(frozen=True)
class Configuration:
    settings: Settings
    articles: tuple[Article, ...]
    training: TrainingData


def default_config_dir() -> Path:
    """$GUICHET_CONFIG, else ./config, else the sample configuration beside the code."""
    if "GUICHET_CONFIG" in os.environ:
        return Path(os.environ["GUICHET_CONFIG"])
    if Path("config", "guichet.yml").exists():
        return Path("config")
    return Path(__file__).resolve().parent.parent / "config"


def check_configuration(
    config_dir: Path, environ: Mapping[str, str] | None = None
) -> tuple[Configuration | None, list[DataProblem]]:
    """Everything in the directory, with every problem found (an empty list: all good)."""
    if not config_dir.is_dir():
        return None, [
            DataProblem(
                config_dir,
                None,
                "the configuration directory does not exist",
                "pass --config DIR with a directory holding guichet.yml, kb/ and nlu/",
            )
        ]
    settings, problems = load_settings(config_dir, environ)
    articles, kb_problems = load_articles(config_dir / "kb")
    training, nlu_problems = load_training_data(config_dir / "nlu")
    problems += kb_problems + nlu_problems
    for article in articles:
        if article.language not in KNOWN_LANGUAGES:
            problems.append(
                DataProblem(
                    article.path,
                    None,
                    f"the folder kb/{article.language} is not a known language",
                    f"put articles in kb/{' or kb/'.join(KNOWN_LANGUAGES)}",
                )
            )
        unknown = [i for i in article.intents if i not in training.intents]
        if unknown and training.intents:
            problems.append(
                DataProblem(
                    article.path,
                    None,
                    f"'intents' names {', '.join(map(repr, unknown))}, which nlu/ does not define",
                    f"use intents of nlu/ (such as {', '.join(sorted(training.intents)[:3])}), or add examples for it",
                )
            )
    if not articles and not training.intents:
        problems.append(
            DataProblem(
                config_dir,
                None,
                "there is neither a knowledge base (kb/) nor NLU data (nlu/)",
                "add articles under kb/fr/ or kb/en/, or intents under nlu/",
            )
        )
    if settings is not None and settings.nlu.encoder != "none":
        # found now, not at the first training: an optional encoder may not be installed
        reason = unavailable(settings.nlu.encoder)
        if reason:
            problems.append(
                DataProblem(
                    config_dir / "guichet.yml",
                    None,
                    f"nlu.encoder: {reason}",
                    "install it, or choose another nlu.encoder (none reads words only)",
                )
            )
    if settings is not None and settings.nlu.kb_encoder != "none":
        reason = passage_encoder_unavailable()
        if settings.nlu.encoder == "none":
            reason = "it reads beside the sentence encoder, and nlu.encoder is none"
        if reason:
            problems.append(
                DataProblem(
                    config_dir / "guichet.yml",
                    None,
                    f"nlu.kb_encoder: {reason}",
                    "install it (or set nlu.encoder), or set nlu.kb_encoder: none",
                )
            )
    if settings is not None and settings.triage.category_model:
        settings, problem = _category_model(config_dir, settings)
        problems += problem
    if problems or settings is None:
        return None, problems
    return Configuration(settings, tuple(articles), training), []


def _category_model(config_dir: Path, settings: Settings) -> tuple[Settings, list[DataProblem]]:
    """`triage.category_model` resolved against the configuration directory, and loaded now:
    a missing or stale model is a problem at startup, not at the first ticket."""
    from triage import history

    triage = settings.triage
    path = (config_dir / triage.category_model).resolve()
    try:
        _, categories = history.load(str(path))
    except history.HistoryError as error:
        return settings, [
            DataProblem(
                config_dir / "guichet.yml",
                None,
                f"triage.category_model: {error}",
                "train it, or remove the line",
            )
        ]
    unknown = [c for c in categories if triage.category(c) is None]
    if unknown:
        return settings, [
            DataProblem(
                config_dir / "guichet.yml",
                None,
                f"triage.category_model: the model knows categories {unknown} that triage.categories does not",
                "train it again on this configuration's categories (guichet triage train)",
            )
        ]
    resolved = triage.model_copy(update={"category_model": str(path)})
    return settings.model_copy(update={"triage": resolved}), []


def load_configuration(config_dir: Path, environ: Mapping[str, str] | None = None) -> Configuration:
    configuration, problems = check_configuration(config_dir, environ)
    if configuration is None:
        raise ConfigError(problems)
    return configuration

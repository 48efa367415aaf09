"""`guichet check`: every problem of a configuration directory, with its file, line and a fix."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

from nlu.training_data import load_training_data
from tests.conftest import SAMPLE_CONFIG


def check(config: Path, *, estimate: bool = False, **env: str) -> subprocess.CompletedProcess[str]:
    """`guichet check`; the knowledge base's estimate (seconds to a minute) only with `estimate`."""
    return subprocess.run(
        [sys.executable, "-m", "bot.cli", "check", "--config", str(config)]
        + ([] if estimate else ["--no-estimate"]),
        capture_output=True,
        text=True,
        env={"PATH": "/usr/bin:/bin", **env},
        timeout=120,
    )


def test_the_sample_configuration_is_valid() -> None:
    result = check(SAMPLE_CONFIG)
    assert result.returncode == 0, result.stderr
    intents = len(load_training_data(SAMPLE_CONFIG / "nlu")[0].intents)
    assert f"OK — 92 articles (46 en, 46 fr), {intents} intents" in result.stdout


def test_every_problem_is_reported_with_file_line_and_fix(tmp_path: Path) -> None:
    config = tmp_path / "config"
    shutil.copytree(SAMPLE_CONFIG, config)
    (config / "guichet.yml").write_text(
        "organisation: Test\nhttp:\n  port: 99999\nwebchat:\n  max_mesage_chars: 10\nanswering:\n"
        "  answer_threshold: 0.2\n  suggest_threshold: 0.4\n",
        encoding="utf-8",
    )
    (config / "kb" / "fr" / "broken.md").write_text("---\nid: broken\ntitle: Cassé\n---\n", encoding="utf-8")
    (config / "kb" / "en" / "no-front.md").write_text("Just text\n", encoding="utf-8")
    shutil.copy(config / "kb" / "fr" / "vpn-cannot-connect.md", config / "kb" / "fr" / "vpn-copy.md")
    (config / "nlu" / "extra.yml").write_text(
        'version: "3.1"\nnlu:\n- intent: order_pizza\n  examples: |\n    - une pizza\n    deux pizzas\n',
        encoding="utf-8",
    )

    result = check(config)
    assert result.returncode == 1
    report = result.stderr
    yml = config / "guichet.yml"
    assert f"{yml}:3: http.port: Input should be less than or equal to 65535" in report
    assert f"{yml}:5: webchat.max_mesage_chars: Extra inputs are not permitted" in report
    assert "fix: did you mean 'max_message_chars'?" in report
    assert f"{yml}:6: answering: Value error, suggest_threshold must not be above answer_threshold" in report
    assert f"{config / 'kb' / 'fr' / 'broken.md'}:2: the field 'questions' is missing" in report
    assert f"{config / 'kb' / 'fr' / 'broken.md'}:5: the article has no answer" in report
    assert f"{config / 'kb' / 'en' / 'no-front.md'}:1: the file does not start with a '---'" in report
    assert "article id 'vpn-cannot-connect' is already used by" in report
    assert (
        f"{config / 'nlu' / 'extra.yml'}:6: in intent 'order_pizza', an example does not start with '- '"
        in report
    )
    assert report.count("    fix: ") == 9


def test_secrets_are_refused_in_the_settings_file(tmp_path: Path) -> None:
    config = tmp_path / "config"
    shutil.copytree(SAMPLE_CONFIG, config)
    with (config / "guichet.yml").open("a", encoding="utf-8") as settings:
        settings.write("secret_key: hunter2\n")
    result = check(config)
    assert result.returncode == 1
    assert "secrets do not belong in the settings file" in result.stderr
    assert "GUICHET_SECRET_KEY" in result.stderr


def test_wrong_environment_values_name_the_variable(tmp_path: Path) -> None:
    result = check(SAMPLE_CONFIG, GUICHET_HTTP_PORT="eighty")
    assert result.returncode == 1
    assert "$GUICHET_HTTP_PORT: GUICHET_HTTP_PORT='eighty' is not valid" in result.stderr


def test_a_directory_with_only_nlu_data_is_valid(tmp_path: Path) -> None:
    config = tmp_path / "nlu-only"
    shutil.copytree(SAMPLE_CONFIG / "nlu", config / "nlu")
    result = check(config)
    assert result.returncode == 0, result.stderr
    assert "0 articles" in result.stdout


def test_run_refuses_to_start_on_a_broken_configuration(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "bot.cli", "run", "--config", str(tmp_path / "missing")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert "the configuration directory does not exist" in result.stderr


def test_environment_variables_in_the_settings_file(tmp_path: Path) -> None:
    """${NAME:-default}: one file for a laptop and for a cluster; a missing one is named."""
    from bot.settings import load_settings

    config = tmp_path / "config"
    config.mkdir()
    (config / "guichet.yml").write_text(
        "organisation: ${DESK_NAME:-Exemple SA}\n"
        "handoff:\n  queues:\n    support:\n      url: ${LEVEL2:-http://127.0.0.1:9000/tickets}\n"
        "      secret_env: ${SECRET_VAR:-}\n"
        "  default_queue: support\n",
        encoding="utf-8",
    )
    settings, problems = load_settings(config, {"LEVEL2": "http://level2:9000/tickets"})
    assert problems == [] and settings is not None
    assert settings.organisation == "Exemple SA"
    assert settings.handoff.queues["support"].url == "http://level2:9000/tickets"
    assert settings.handoff.queues["support"].secret_env is None  # "": Guichet makes the secret
    settings, _ = load_settings(config, {"SECRET_VAR": "GUICHET_QUEUE_SECRET"})
    assert settings is not None and settings.handoff.queues["support"].secret_env == "GUICHET_QUEUE_SECRET"
    (config / "guichet.yml").write_text(
        "organisation: Desk\nwebchat:\n  allowed_origins:\n    - ${SITE}\n", encoding="utf-8"
    )
    settings, problems = load_settings(config, {})
    assert settings is None and len(problems) == 1
    assert problems[0].line == 4 and "SITE" in problems[0].message and "${SITE:-" in problems[0].fix


def test_a_desk_of_articles_alone_is_told_what_the_encoder_would_give(tmp_path: Path) -> None:
    config = tmp_path / "config"
    shutil.copytree(SAMPLE_CONFIG, config)
    shutil.rmtree(config / "nlu")
    result = check(config, GUICHET_NLU_ENCODER="none")  # the sample turns it on: off here
    assert result.returncode == 0, result.stderr
    assert "0 intents" in result.stdout and "nlu.encoder: use-multilingual-3" in result.stdout
    result = check(config)
    assert result.returncode == 0 and "Hint" not in result.stdout, result.stdout
    assert "Hint" not in check(SAMPLE_CONFIG).stdout  # a desk with intents needs no such hint

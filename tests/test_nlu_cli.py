"""`guichet nlu train | evaluate | shell`, run as a help desk would run them."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

from tests.conftest import MODEL_DIR, SAMPLE_CONFIG


def guichet(
    *args: str, data_dir: Path, stdin: str | None = None, config: Path = SAMPLE_CONFIG
) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "GUICHET_DATA_DIR": str(data_dir), "GUICHET_MODEL_DIR": str(MODEL_DIR)}
    return subprocess.run(
        [sys.executable, "-m", "bot.cli", *args, "--config", str(config)],
        capture_output=True,
        text=True,
        env=env,
        input=stdin,
        timeout=300,
    )


def test_train_then_train_again_reuses_the_model(tmp_path: Path) -> None:
    # A desk of three intents, not the sample's 2,500 examples: what is checked is the reuse
    config = tmp_path / "config"
    (config / "nlu").mkdir(parents=True)
    shutil.copy(SAMPLE_CONFIG / "guichet.yml", config / "guichet.yml")
    lines = {
        "greet": ["bonjour", "salut", "hello", "bonsoir", "hi there", "coucou"],
        "thanks": ["merci", "merci beaucoup", "thanks", "thank you", "super merci", "cheers"],
        "printer": [
            "l'imprimante est en panne",
            "printer broken",
            "je ne peux plus imprimer",
            "the printer jams",
            "imprimante hors ligne",
            "cannot print anything",
        ],
    }
    (config / "nlu" / "intents.yml").write_text(
        'version: "3.1"\nnlu:\n'
        + "".join(
            f"- intent: {i}\n  examples: |\n" + "".join(f"    - {e}\n" for e in ex) for i, ex in lines.items()
        ),
        encoding="utf-8",
    )
    first = guichet("nlu", "train", "--force", data_dir=tmp_path, config=config)
    assert first.returncode == 0, first.stderr
    assert ": trained." in first.stdout and "out-of-scope threshold" in first.stdout
    again = guichet("nlu", "train", data_dir=tmp_path, config=config)
    assert "already trained" in again.stdout


def test_evaluate_prints_the_figures_and_writes_the_report(tmp_path: Path) -> None:
    data = tmp_path / "test.csv"
    data.write_text(
        "text,intent\nbonjour tout le monde,greet\nmerci beaucoup pour votre aide,thanks\n"
        "hello there,greet\nquelle est la recette du gâteau au chocolat,out_of_scope\n"
        "who won the football match,out_of_scope\n",
        encoding="utf-8",
    )
    result = guichet(
        "nlu", "evaluate", "--data", str(data), "--out", str(tmp_path / "report"), data_dir=tmp_path
    )
    assert result.returncode == 0, result.stderr
    for line in ("accuracy", "macro F1", "out-of-scope recall", "out-of-scope prec."):
        assert line in result.stdout
    report = json.loads((tmp_path / "report" / "nlu-report.json").read_text())
    assert report["examples"] == 5
    assert 0.0 <= report["accuracy"] <= 1.0
    assert (tmp_path / "report" / "confusion-matrix.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_evaluate_refuses_a_missing_file_clearly(tmp_path: Path) -> None:
    result = guichet("nlu", "evaluate", "--data", str(tmp_path / "nope.csv"), data_dir=tmp_path)
    assert result.returncode == 2
    assert "nope.csv" in result.stderr


def test_the_shell_shows_how_a_message_is_understood(tmp_path: Path) -> None:
    result = guichet("nlu", "shell", data_dir=tmp_path, stdin="Outlook plante depuis hier sur PC-12345\n")
    assert result.returncode == 0, result.stderr
    assert "language   fr" in result.stdout
    assert "entity     application = 'Outlook'" in result.stdout
    assert "entity     asset_tag = 'PC-12345'" in result.stdout


def test_the_shell_shows_which_article_the_desk_would_answer_and_why(tmp_path: Path) -> None:
    # The words match the article on a VPN that does not connect best; the intent is a slow VPN.
    result = guichet("nlu", "shell", data_dir=tmp_path, stdin="le vpn marche mais il rame énormément\n")
    assert result.returncode == 0, result.stderr
    articles = re.findall(r"article\s+(\S+) \([\d.]+, ([\w+]+)\)", result.stdout)
    assert articles[0] == ("vpn-slow-disconnects", "intent")
    # close by its questions' words (and their sentence vectors: the sample turns them on), but
    # the answer to another intent, one the model finds unlikely: shown as set aside, not offered
    assert "vpn-cannot-connect" not in dict(articles)
    assert "  the chat   answers vpn-slow-disconnects" in result.stdout
    assert re.search(
        r"set aside\s+vpn-cannot-connect \([\d.]+, words(\+vector)?\): another intent", result.stdout
    )

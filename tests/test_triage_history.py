"""Categories learnt from a desk's ticket history: `guichet triage train`, then
`triage.category_model` in guichet.yml, as a desk would do it (triage/history.py)."""

from __future__ import annotations

import csv
import shutil
import sys
from pathlib import Path

import pytest

from bot.cli import main
from bot.config import check_configuration
from tests.conftest import SAMPLE_CONFIG
from triage.assess import assess
from triage.config import TriageSettings

# At this desk the "bluebox" is the VPN appliance and "zebra" the label printers: words no
# keyword list or intent of the sample knows, and the history does.
HISTORY = {
    "network": [
        "the bluebox keeps dropping my session",
        "bluebox disconnects every ten minutes",
        "cannot reach the bluebox from home",
        "la bluebox coupe sans arrêt",
        "bluebox très lente ce matin",
        "bluebox refuses my connection",
        "the bluebox tunnel is down for the whole team",
        "impossible de joindre la bluebox",
    ],
    "printing": [
        "the zebra prints blank labels",
        "zebra on the dock is jammed",
        "labels from the zebra come out crooked",
        "la zebra n'imprime plus les étiquettes",
        "zebra ribbon is finished",
        "zebra offline in the warehouse",
        "zebra prints half of each label",
        "la zebra du quai fait des traits",
    ],
    "hardware": [
        "my laptop screen is cracked",
        "keyboard keys are stuck",
        "mon écran reste noir",
        "the mouse stopped working",
        "docking station does not charge",
        "battery drains in one hour",
        "mon pc fait un bruit de ventilateur",
        "headset microphone makes noise",
    ],
}


def write_history(path: Path, rows: list[tuple[str, str]]) -> Path:
    with path.open("w", encoding="utf-8", newline="") as file:
        writer = csv.writer(file)
        writer.writerow(["text", "category"])
        writer.writerows(rows)
    return path


@pytest.fixture
def desk(tmp_path: Path) -> Path:
    config = tmp_path / "config"
    shutil.copytree(SAMPLE_CONFIG, config, ignore=shutil.ignore_patterns("models"))
    return config


def use_model(config: Path, directory: str) -> None:
    yml = config / "guichet.yml"
    text = yml.read_text(encoding="utf-8")
    assert "\ntriage:\n" in text
    yml.write_text(
        text.replace("\ntriage:\n", f"\ntriage:\n  category_model: {directory}\n"), encoding="utf-8"
    )


@pytest.mark.parametrize("fine_tune", [False, True], ids=["classifier", "fine-tuned"])
def test_a_desk_trains_on_its_history_and_new_requests_get_its_categories(
    desk: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], fine_tune: bool
) -> None:
    request = "the bluebox dropped again"
    before = assess(request, None, TriageSettings(), "en")
    assert before.category != "network"  # nothing in the sample says what a bluebox is

    rows = [(text, category) for category, texts in HISTORY.items() for text in texts]
    data = write_history(tmp_path / "history.csv", rows)
    argv = ["triage", "train", str(data), "--config", str(desk)]
    with pytest.raises(SystemExit) as exit_:
        main([*argv, "--fine-tune", "--epochs", "3"] if fine_tune else argv)
    assert exit_.value.code == 0
    out = capsys.readouterr().out
    assert "24 tickets, 3 categories: hardware, network, printing" in out
    assert "category_model: models/categories" in out
    assert ("set aside" in out) == fine_tune  # the vote's weight and where it was chosen

    use_model(desk, "models/categories")
    configuration, problems = check_configuration(desk)
    assert problems == [] and configuration is not None
    triage = configuration.settings.triage
    assert Path(triage.category_model) == (desk / "models" / "categories").resolve()
    after = assess(request, None, triage, "en")
    assert after.category == "network" and after.category_confidence >= triage.category_model_above
    assert assess("la zebra ne sort plus rien", None, triage, "fr").category == "printing"
    # the other qualities of the request are still read from its words
    assert (
        assess("the bluebox is down for everyone, we are fully blocked", None, triage, "en").impact
        == "organisation"
    )


def test_a_history_the_configuration_cannot_use_is_refused_with_the_reason(
    desk: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    def run(*argv: str) -> str:
        with pytest.raises(SystemExit) as exit_:
            main(["triage", "train", *argv, "--config", str(desk)])
        assert exit_.value.code == 2
        return capsys.readouterr().err

    rows = [(text, category) for category, texts in HISTORY.items() for text in texts]
    unknown = write_history(tmp_path / "unknown.csv", [*rows, *[("x", "Finance")] * 6])
    assert "'Finance' are not in triage.categories" in run(str(unknown))
    few = write_history(tmp_path / "few.csv", [*rows, ("my email bounces", "email")])
    assert "at least two categories with 5 tickets each" in run(str(few))
    headless = tmp_path / "headless.csv"
    headless.write_text("bluebox down,network\n", encoding="utf-8")
    assert "the header must name 'text' and 'category'" in run(str(headless))
    assert "cannot read" in run(str(tmp_path / "missing.csv"))
    assert not (desk / "models" / "categories").exists()  # nothing half-written

    use_model(desk, "models/nowhere")
    configuration, problems = check_configuration(desk)
    assert configuration is None
    assert len(problems) == 1 and "triage.category_model" in problems[0].message
    assert "guichet triage train" in problems[0].message


def test_a_training_that_fails_leaves_the_model_trained_before(
    desk: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    rows = [(text, category) for category, texts in HISTORY.items() for text in texts]
    data = write_history(tmp_path / "history.csv", rows)
    argv = ["triage", "train", str(data), "--config", str(desk)]
    with pytest.raises(SystemExit) as exit_:
        main(argv)
    assert exit_.value.code == 0
    model = desk / "models" / "categories"
    before = sorted(p.name for p in model.iterdir())
    monkeypatch.setitem(sys.modules, "torch", None)  # as on a machine without PyTorch
    with pytest.raises(SystemExit) as exit_:
        main([*argv, "--fine-tune"])
    assert exit_.value.code == 2 and "PyTorch" in capsys.readouterr().err
    assert sorted(p.name for p in model.iterdir()) == before == ["classifier.npz"]
    assert sorted(p.name for p in model.parent.iterdir()) == ["categories"]  # nothing left half-written
    use_model(desk, "models/categories")
    configuration, problems = check_configuration(desk)
    assert problems == [] and configuration is not None
    assert (
        assess("the bluebox dropped again", None, configuration.settings.triage, "en").category == "network"
    )

"""Fine-tuning all-MiniLM-L6-v2 on a desk's labels (nlu/finetune.py, PyTorch) and answering with
the result in NumPy (nlu/minilm.py `TunedHead`), alone and in the vote with the classifier
(nlu/tuned.py). The networks here are tiny runs on a few tickets: what is checked is that
PyTorch's network is BERT's, that NumPy reads back exactly what PyTorch learnt, and how the
vote's weight is chosen; bench/triage.py measures accuracy on 38,225 real tickets."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from nlu import finetune, minilm
from nlu.tuned import TunedClassifier
from tests.test_minilm import REFERENCE, TEXTS, VECTORS

TICKETS = {
    "hardware": [
        "my laptop screen is cracked",
        "the printer on floor two jams every morning",
        "keyboard keys are stuck",
        "docking station does not charge the laptop",
        "mouse stopped working after the update",
        "the monitor flickers and goes black",
        "battery drains in one hour",
        "headset microphone makes noise",
        "desk phone has no dial tone",
        "the projector in room b will not turn on",
        "my pc makes a loud fan noise",
        "usb port broken on the workstation",
    ],
    "access": [
        "reset my password please",
        "i cannot log in to the vpn",
        "grant me access to the finance share",
        "my account is locked after three tries",
        "new starter needs an email account",
        "remove access for a leaver",
        "two factor code never arrives",
        "permission denied on the project folder",
        "please add me to the sales distribution list",
        "my badge does not open the door",
        "need admin rights to the crm",
        "password expired and cannot change it",
    ],
    "purchase": [
        "order a new laptop for the new hire",
        "quote for twenty licences of the design tool",
        "buy a second monitor for my desk",
        "purchase order for toner cartridges",
        "we need to renew the antivirus subscription",
        "request approval to buy a tablet",
        "invoice for the headsets has not arrived",
        "order ten keyboards for the training room",
        "budget for replacing old phones",
        "please order a docking station",
        "price of a new projector",
        "renew the support contract with the vendor",
    ],
}
EXAMPLES = [(text, label) for label, texts in TICKETS.items() for text in texts]


@pytest.fixture(scope="module")
def tuned(tmp_path_factory: pytest.TempPathFactory) -> Path:
    steps: list[tuple[int, int]] = []
    out = finetune.fine_tune(
        EXAMPLES, tmp_path_factory.mktemp("tuned") / "network", epochs=6, max_tokens=24, batch=8,
        progress=lambda done, total: steps.append((done, total)),
    )  # fmt: skip
    assert steps[-1] == (6 * 5, 6 * 5)  # 36 examples in batches of 8: 5 a pass
    return out


def test_the_pytorch_network_is_bert_with_the_base_weights() -> None:
    """Before any training, PyTorch's network gives sentence-transformers' own vectors."""
    base = minilm.model_directory()
    network = finetune._network(torch, minilm.read_safetensors(base / "model.safetensors"), 2).eval()
    with torch.no_grad():
        for text, ids, expected in zip(TEXTS, REFERENCE["token_ids"], VECTORS, strict=True):
            x, mask = finetune._padded(torch, [ids])
            pooled = network.pooled(x, mask)[0].numpy()
            assert np.abs(pooled / np.linalg.norm(pooled) - expected).max() < 1e-4, text[:40]


def test_numpy_reads_back_what_pytorch_learnt(tuned: Path) -> None:
    head = minilm.TunedHead(tuned)
    manifest = json.loads((tuned / "tuned.json").read_text(encoding="utf-8"))
    assert head.labels == manifest["labels"] == ["access", "hardware", "purchase"]
    texts = ["my screen is broken", "reset password", "order a laptop " * 40, "", "🙂"]
    assert [len(head.pieces(t)) for t in texts][2] == 24  # cut as in training, [SEP] kept
    ours = head.logits(texts)
    # PyTorch's network takes every fine-tuned tensor of the file, the head's included
    network = finetune._network(torch, minilm.read_safetensors(tuned / "model.safetensors"), 3).eval()
    with torch.no_grad():
        for text, row in zip(texts, ours, strict=True):
            x, mask = finetune._padded(torch, [head.pieces(text)])
            assert np.abs(network(x, mask)[0].numpy() - row).max() < 1e-4, text[:40]


def test_the_fine_tuned_network_learnt_the_desk_s_labels(tuned: Path) -> None:
    head = minilm.TunedHead(tuned)
    right = head.logits([t for t, _ in EXAMPLES]).argmax(1) == [head.labels.index(y) for _, y in EXAMPLES]
    assert right.mean() >= 0.9
    # and the base network's own head would be chance: the weights moved
    base = minilm.read_safetensors(minilm.model_directory() / "model.safetensors")
    moved = minilm.read_safetensors(tuned / "model.safetensors")
    name = "encoder.layer.5.output.dense.weight"
    assert np.abs(base[name] - moved[name]).max() > 1e-4


def test_safetensors_written_are_read_back_exactly(tmp_path: Path) -> None:
    arrays = {
        "b": np.arange(6, dtype=np.float32).reshape(2, 3),
        "a.weight": np.array([1.5, -2.0], np.float32),
    }
    finetune.write_safetensors(tmp_path / "x.safetensors", arrays)
    back = minilm.read_safetensors(tmp_path / "x.safetensors")
    assert sorted(back) == ["a.weight", "b"]
    for name, value in arrays.items():
        assert back[name].shape == value.shape and np.array_equal(back[name], value)


def test_bad_requests_get_clear_errors(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ValueError, match="two labels"):
        finetune.fine_tune([("a", "x"), ("b", "x")], tmp_path / "n")
    with pytest.raises(ValueError, match="epochs"):
        finetune.fine_tune(EXAMPLES, tmp_path / "n", epochs=0)
    with pytest.raises(ValueError, match="validation"):
        TunedClassifier.train(EXAMPLES, tmp_path / "t", validation=0.7)
    monkeypatch.setitem(sys.modules, "torch", None)  # as on a machine without PyTorch
    with pytest.raises(finetune.FineTuneUnavailable, match="PyTorch"):
        finetune.fine_tune(EXAMPLES, tmp_path / "n")
    assert not (tmp_path / "n").exists()


def test_the_vote_s_weight_is_the_best_on_the_examples_set_aside(tmp_path: Path) -> None:
    seen: list[int] = []
    model = TunedClassifier.train(
        EXAMPLES, tmp_path / "tuned", epochs=4, max_tokens=24, validation=0.25,
        progress=lambda done, total: seen.append(done),
    )  # fmt: skip
    assert seen == sorted(seen) and seen[-1] == 1000
    vote = json.loads((tmp_path / "tuned" / "vote.json").read_text(encoding="utf-8"))
    accuracy = {float(w): a for w, a in vote["validation_accuracy"].items()}
    assert vote["validation_examples"] == 3 * 3  # a quarter of each label's twelve
    assert model.weight == vote["weight"] and accuracy[model.weight] == max(accuracy.values())
    assert len(accuracy) == 21 and min(accuracy) == 0.0 and max(accuracy) == 1.0

    again = TunedClassifier.load(tmp_path / "tuned")
    texts = ["the screen of my laptop is cracked", "my account is locked", "buy two monitors"]
    assert np.allclose(again.scores(texts), model.scores(texts), atol=1e-5)
    ranking = again.predict(texts[0])
    assert sorted(label for label, _ in ranking) == ["access", "hardware", "purchase"]
    assert abs(sum(p for _, p in ranking) - 1) < 1e-5 and ranking[0][1] >= ranking[1][1]
    assert [again.top(t)[0] for t in texts] == ["hardware", "access", "purchase"]
    assert again.top("")[0] in again.labels  # no words: still an answer, never an exception

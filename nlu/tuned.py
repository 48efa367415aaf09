"""Guichet's classifier and a fine-tuned network, voting together: for a desk with thousands of
labelled tickets (its history), the most accurate categories Guichet gives.

The two see different things: the classifier (nlu/classifier.py) every word, pair and
spelling of a ticket, weighted by how much it tells; the fine-tuned all-MiniLM-L6-v2
(nlu/finetune.py) the sentence as a whole, in words it learnt English from. They are wrong on
different tickets: on the 3,059 IT tickets bench/triage.py's training sets aside, the
classifier alone has 87.1% right, the network alone 88.9%, their vote 89.5%; on the test
fifth, the vote 88.4% (2026-12-06).

Training (`TunedClassifier.train`, PyTorch needed for this step only):

1. a stratified tenth of the examples is set aside (`validation`);
2. the network is fine-tuned on the rest, and a classifier is trained on the same rest;
3. on the tenth set aside, both give each label a log-probability (the classifier's calibrated
   confidences, normalised to add up to one; the network's softmax), and the weight `w` of
   the network in `w·network + (1 - w)·classifier` is the one with the most of that tenth
   right: chosen on examples neither saw, never on a test set;
4. the classifier is trained again on all the examples (a minute); the network keeps what it
   learnt from nine tenths (another fine-tuning would cost as much again).

Answering needs NumPy only: the classifier's sparse product and the network's forward pass
(nlu/minilm.py `TunedHead`), about 23 ms a ticket here. The confidence of a label is the
softmax of the vote. The directory written holds `network/` (the weights, as safetensors),
`classifier.npz` and `vote.json`.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from nlu.classifier import IntentClassifier, Settings
from nlu.finetune import fine_tune
from nlu.minilm import TunedHead

FloatArray = npt.NDArray[np.float32]
Progress = Callable[[int, int], None]
_WEIGHTS = tuple(round(0.05 * i, 2) for i in range(21))  # the network's weights tried
_FLOOR = 1e-6  # a confidence of 0 would veto a label outright


class TunedClassifier:
    def __init__(
        self,
        classifier: IntentClassifier,
        network: TunedHead,
        weight: float,
        vote: dict[str, Any] | None = None,
    ) -> None:
        if sorted(classifier.intents) != sorted(network.labels):
            raise ValueError("the classifier and the network were trained on different labels")
        self.classifier, self.network, self.weight = classifier, network, weight
        self.vote = vote or {"weight": weight}  # how the weight was chosen (vote.json)
        self.labels = list(network.labels)
        position = {label: i for i, label in enumerate(classifier.intents)}
        self._order = np.array([position[label] for label in self.labels])  # classifier → network order

    @classmethod
    def train(
        cls,
        examples: Sequence[tuple[str, str]],
        out: Path,
        *,
        settings: Settings | None = None,
        epochs: int = 2,
        max_tokens: int = 128,
        validation: float = 0.1,
        seed: int = 0,
        threads: int | None = None,
        progress: Progress | None = None,
    ) -> TunedClassifier:
        if not 0 < validation < 0.5:
            raise ValueError("validation is the share of examples set aside: between 0 and 0.5")
        settings = settings or Settings()
        fit, held = _stratified(examples, validation, seed)
        if not held:
            raise ValueError("too few examples per label to set any aside for the vote's weight")
        stage = _Stages(progress, (0.8, 0.04, 0.04, 0.12))
        fine_tune(
            fit,
            out / "network",
            epochs=epochs,
            max_tokens=max_tokens,
            seed=seed,
            threads=threads,
            progress=stage.next(),
        )
        network = TunedHead(out / "network")
        first = IntentClassifier.train(fit, settings=settings, seed=seed, progress=stage.next())
        texts, truth = [t for t, _ in held], [network.labels.index(label) for _, label in held]
        scored = stage.next()
        their = _log_softmax(network.logits(texts))
        scored(1, 2)
        ours = cls(first, network, 0.0)._classifier_log(texts)
        scored(2, 2)
        accuracy = {w: float(np.mean((w * their + (1 - w) * ours).argmax(1) == truth)) for w in _WEIGHTS}
        weight = max(_WEIGHTS, key=lambda w: (accuracy[w], -abs(w - 0.5)))  # ties: the more even vote
        classifier = IntentClassifier.train(examples, settings=settings, seed=seed, progress=stage.next())
        classifier.save(out / "classifier.npz")
        vote = {
            "weight": weight,
            "validation_examples": len(held),
            "validation_accuracy": {str(w): a for w, a in accuracy.items()},
        }
        (out / "vote.json").write_text(json.dumps(vote, indent=1), encoding="utf-8")
        return cls(classifier, network, weight, vote)

    @classmethod
    def load(cls, directory: Path) -> TunedClassifier:
        vote = json.loads((directory / "vote.json").read_text(encoding="utf-8"))
        return cls(
            IntentClassifier.load(directory / "classifier.npz"),
            TunedHead(directory / "network"),
            vote["weight"],
            vote,
        )

    def vote_summary(self) -> str:
        """How the vote's weight was chosen, in one line (after `train`)."""
        accuracy = self.vote.get("validation_accuracy", {})
        if not accuracy:
            return f"the fine-tuned network's weight in the vote: {self.weight:.2f}"
        return (
            f"the fine-tuned network's weight in the vote {self.weight:.2f}, chosen on "
            f"{self.vote['validation_examples']} examples set aside: {accuracy[str(self.weight)]:.1%} right "
            f"with the vote, the classifier alone {accuracy['0.0']:.1%}, the network alone {accuracy['1.0']:.1%}"
        )

    def scores(self, texts: Sequence[str]) -> FloatArray:
        """The vote, one row per text, one column per label (`self.labels` order)."""
        texts = [t if isinstance(t, str) else str(t) for t in texts]
        out: FloatArray = self.weight * _log_softmax(self.network.logits(texts)) + (
            1 - self.weight
        ) * self._classifier_log(texts)
        return out

    def predict(self, text: str) -> list[tuple[str, float]]:
        """Every label, best first, with the softmax of the vote."""
        row = self.scores([text])[0]
        probabilities = np.exp(row - row.max())
        probabilities /= probabilities.sum()
        order = np.argsort(-row, kind="stable")
        return [(self.labels[i], float(probabilities[i])) for i in order.tolist()]

    def top(self, text: str) -> tuple[str, float]:
        return self.predict(text)[0]

    def _classifier_log(self, texts: Sequence[str]) -> FloatArray:
        confidences = self.classifier.confidences(self.classifier.margins_many(texts))[:, self._order]
        confidences = np.maximum(confidences, _FLOOR)
        out: FloatArray = np.log(confidences / confidences.sum(axis=1, keepdims=True))
        return out


def _log_softmax(logits: FloatArray) -> FloatArray:
    shifted = logits - logits.max(axis=1, keepdims=True)
    out: FloatArray = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    return out


def _stratified(
    examples: Sequence[tuple[str, str]], share: float, seed: int
) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    """(kept, set aside): `share` of each label's examples set aside, at least one from a label
    with three or more, none from a smaller one."""
    rng = random.Random(seed)
    by_label: dict[str, list[int]] = {}
    for i, (_, label) in enumerate(examples):
        by_label.setdefault(label, []).append(i)
    aside: set[int] = set()
    for label in sorted(by_label):
        rows = by_label[label]
        if len(rows) >= 3:
            aside.update(rng.sample(rows, max(1, round(share * len(rows)))))
    return (
        [e for i, e in enumerate(examples) if i not in aside],
        [e for i, e in enumerate(examples) if i in aside],
    )


class _Stages:
    """Consecutive parts of one progress scale of 1000, each part its share."""

    def __init__(self, progress: Progress | None, shares: Sequence[float]) -> None:
        self.progress, self.shares, self.start, self.index = progress, shares, 0.0, 0

    def next(self) -> Progress:
        start, share = self.start, self.shares[self.index]
        self.start += share
        self.index += 1
        outer = self.progress

        def update(done: int, total: int) -> None:
            if outer is not None:
                outer(int(1000 * (start + share * min(1.0, done / max(total, 1)))), 1000)

        return update

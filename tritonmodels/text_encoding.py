"""Text -> fixed-length token ids, shared by the sentiment trainer and the `sentiment_tokenizer` model.

Both sides load the same tokenizer.json with `load_tokenizer` and call `encode_texts`, so the ids
the classifier was trained on are exactly the ids it is served.

Truncation: a text longer than `max_tokens` tokens keeps its first `max_tokens` tokens; the rest
is dropped. Shorter texts are right-padded with PAD_ID (0). A hard byte cap bounds the work per
request before any tokenization happens.

Depends only on numpy and `tokenizers`, so it runs in the Triton python stub and in unit tests.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from tokenizers import Tokenizer

PAD_TOKEN = "[PAD]"
UNK_TOKEN = "[UNK]"
PAD_ID = 0  # the trainer reserves id 0 for PAD_TOKEN; load_tokenizer checks it
DEFAULT_MAX_TEXT_BYTES = 65536


class TextRejected(ValueError):
    """The request's text cannot be encoded; the message names the problem and the limit."""


def load_tokenizer(path: Path | str) -> Tokenizer:
    """Load tokenizer.json with its own padding / truncation off: `encode_texts` applies ours."""
    tokenizer = Tokenizer.from_file(str(path))
    if tokenizer.token_to_id(PAD_TOKEN) != PAD_ID:
        raise ValueError(f"{path}: token {PAD_TOKEN} must have id {PAD_ID}, "
                         f"got {tokenizer.token_to_id(PAD_TOKEN)}; re-run the export to rebuild the tokenizer")
    tokenizer.no_padding()
    tokenizer.no_truncation()
    return tokenizer


def decode_text(raw: bytes, max_text_bytes: int = DEFAULT_MAX_TEXT_BYTES) -> str:
    """Validate one request's UTF-8 bytes and return the text."""
    if len(raw) > max_text_bytes:
        raise TextRejected(f"text is {len(raw)} bytes, more than max_text_bytes={max_text_bytes}; "
                           f"send a shorter text (only the first tokens are used anyway)")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as error:
        raise TextRejected(f"text is not valid UTF-8: byte offset {error.start} "
                           f"(0x{raw[error.start]:02x}): {error.reason}; encode the text as UTF-8") from None
    if not text.strip():
        raise TextRejected("text is empty or whitespace only; send at least one word")
    return text


def decode_texts(raw_texts, max_text_bytes: int = DEFAULT_MAX_TEXT_BYTES) -> list[str]:
    """One request's texts (the UTF-8 bytes items of its input), each validated by decode_text."""
    return [decode_text(bytes(raw), max_text_bytes) for raw in raw_texts]


def encode_texts(tokenizer: Tokenizer, texts: list[str], max_tokens: int) -> np.ndarray:
    """Token ids int64 [len(texts), max_tokens]: first max_tokens tokens, right-padded with PAD_ID."""
    ids = np.full((len(texts), max_tokens), PAD_ID, dtype=np.int64)
    for row, encoding in enumerate(tokenizer.encode_batch(texts, add_special_tokens=False)):
        kept = encoding.ids[:max_tokens]
        ids[row, :len(kept)] = kept
    return ids

"""Texts -> the int64 arrays a Hugging Face model takes, with the checkpoint's own tokenizer.json.

The generated tokenizer model of a [model.text] table runs this file, and so does the export's end-to-end parity
check (export/text_parity.py), which compares it with `transformers`. It does what
`tokenizer(texts, padding="max_length", truncation=True, max_length=L)` does: the special tokens of tokenizer.json's
post-processor ([CLS] ... [SEP] for BERT), longest-first truncation to L tokens, padding to L with the pad token that
tokenizer_config.json names, on the sides it names.

Depends only on numpy and `tokenizers`, so it runs in the Triton python stub.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from tokenizers import Tokenizer

TOKENIZER_FILE = "tokenizer.json"
CONFIG_FILE = "tokenizer_config.json"
# The graph input each tokenizers.Encoding field feeds.
FIELDS = {"input_ids": "ids", "attention_mask": "attention_mask", "token_type_ids": "type_ids"}


def _token(value: object) -> str | None:
    """A special token as tokenizer_config.json writes it: a string, or an AddedToken table with `content`."""
    return value.get("content") if isinstance(value, dict) else value


def load(directory: Path | str, max_length: int) -> Tokenizer:
    """tokenizer.json from `directory`, set to truncate and pad every text to exactly max_length tokens."""
    directory = Path(directory)
    tokenizer = Tokenizer.from_file(str(directory / TOKENIZER_FILE))
    config_path = directory / CONFIG_FILE
    config = json.loads(config_path.read_text(encoding="utf-8")) if config_path.is_file() else {}
    pad = _token(config.get("pad_token"))
    pad_id = tokenizer.token_to_id(pad) if pad else None
    if pad_id is None:
        raise ValueError(f"{config_path}: pad_token {pad!r} is not a token of {TOKENIZER_FILE}; save the tokenizer "
                         f"with a pad token (tokenizer.pad_token = ...; save_pretrained) and export again")
    tokenizer.enable_truncation(max_length, strategy="longest_first",
                                direction=config.get("truncation_side", "right"))
    tokenizer.enable_padding(direction=config.get("padding_side", "right"), pad_id=pad_id, pad_token=pad,
                             pad_type_id=int(config.get("pad_token_type_id", 0)), length=max_length)
    return tokenizer


def encode(tokenizer: Tokenizer, texts: list[str], names: list[str]) -> dict[str, np.ndarray]:
    """The arrays `names` (keys of FIELDS), int64 [len(texts), max_length] each."""
    unknown = [n for n in names if n not in FIELDS]
    if unknown:
        raise ValueError(f"cannot produce {', '.join(unknown)}: a tokenizer emits {', '.join(FIELDS)}")
    encodings = tokenizer.encode_batch(texts)
    return {n: np.array([getattr(e, FIELDS[n]) for e in encodings], dtype=np.int64).reshape(len(texts), -1)
            for n in names}

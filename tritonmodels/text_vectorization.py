"""Keras `TextVectorization` and `StringLookup` (output_mode "int") in plain Python, from the layer's own config and vocabulary, so the
generated python step serves the ids the Keras model computes in its graph. The export writes the layer's settings to
text_vectorization.json (STEP_FILE) and checks on the held-out texts that these ids are the layer's own.

What the layer does, step by step, and what reproduces it here (keras/src/layers/preprocessing/text_vectorization.py):
- standardize "lower": tf.strings.lower, which lowers ASCII letters only (Ü stays Ü);
- standardize "strip_punctuation": tf.strings.regex_replace of the layer's punctuation class (the JSON carries it);
- split "whitespace": tf.strings.split, runs of ASCII whitespace, no empty tokens; "character": Unicode code points;
- ngrams: tf.strings.ngrams, for each width in order all n-grams joined by " " (widths longer than the text give none);
- lookup: the vocabulary's index, index 0 the mask token "", unknown tokens the OOV index;
- output_sequence_length: the first L ids, right-padded with 0.
StringLookup looks the whole string up as it is (no standardize, no split): one id per text.

No TensorFlow, no numpy beyond the output array: it runs in the Triton python stub.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np

STEP_FILE = "text_vectorization.json"
ASCII_WHITESPACE = re.compile(r"[ \t\n\v\f\r]+")
ASCII_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")


class TextVectorization:
    def __init__(self, settings: dict) -> None:
        self.lower = settings["standardize"] in ("lower", "lower_and_strip_punctuation")
        strip = settings["standardize"] in ("strip_punctuation", "lower_and_strip_punctuation")
        self.punctuation = re.compile(settings["strip_regex"]) if strip else None
        self.split = settings["split"]
        self.ngrams = tuple(settings["ngrams"] or ())
        self.length = int(settings["output_sequence_length"])
        self.index = {token: i for i, token in enumerate(settings["vocabulary"])}
        self.oov = int(settings["oov_index"])


    def tokens(self, text: str) -> list[str]:
        if self.lower:
            text = text.translate(ASCII_LOWER)
        if self.punctuation is not None:
            text = self.punctuation.sub("", text)
        if self.split == "whitespace":
            words = [w for w in ASCII_WHITESPACE.split(text) if w]
        elif self.split == "character":
            words = list(text)
        else:
            words = [text]
        if not self.ngrams:
            return words
        return [" ".join(words[i:i + n]) for n in self.ngrams for i in range(len(words) - n + 1)]

    def encode(self, texts: list[str]) -> np.ndarray:
        """Token ids int64 [len(texts), output_sequence_length]."""
        ids = np.zeros((len(texts), self.length), dtype=np.int64)
        for row, text in enumerate(texts):
            found = [self.index.get(token, self.oov) for token in self.tokens(text)[:self.length]]
            ids[row, :len(found)] = found
        return ids


class StringLookup:
    def __init__(self, settings: dict) -> None:
        self.length = 1
        self.index = {token: i for i, token in enumerate(settings["vocabulary"])}
        self.oov = int(settings["oov_index"])

    def encode(self, texts: list[str]) -> np.ndarray:
        """Token ids int64 [len(texts), 1]."""
        return np.array([[self.index.get(text, self.oov)] for text in texts], dtype=np.int64)


LAYERS = {"TextVectorization": TextVectorization, "StringLookup": StringLookup}


def from_settings(settings: dict):
    return LAYERS[settings["layer"]](settings)


def load(path: Path | str):
    """The layer text_vectorization.json describes."""
    return from_settings(json.loads(Path(path).read_text(encoding="utf-8")))

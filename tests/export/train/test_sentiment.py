from pathlib import Path

import numpy as np

from export.train import sentiment
from tests.conftest import ROOT

TEXTS = ["a gorgeous , witty film .", "dull and lifeless .", "witty , witty , witty !", "Gorgeous FILM"]


def test_tokenizer_training_is_deterministic_so_cached_ids_stay_valid(tmp_path):
    sentiment.train_tokenizer(TEXTS, tmp_path / "a.json")
    sentiment.train_tokenizer(TEXTS, tmp_path / "b.json")
    assert (tmp_path / "a.json").read_bytes() == (tmp_path / "b.json").read_bytes()


def test_tokenizer_reserves_0_for_padding_and_1_for_unknown_and_lowercases(tmp_path):
    tokenizer = sentiment.train_tokenizer(TEXTS, tmp_path / "tokenizer.json")
    assert tokenizer.token_to_id("[PAD]") == 0
    assert tokenizer.token_to_id("[UNK]") == 1
    assert tokenizer.encode("Gorgeous FILM", add_special_tokens=False).tokens == ["gorgeous", "film"]


def test_unseen_words_fall_back_to_seen_characters_not_unknown(tmp_path):
    tokenizer = sentiment.train_tokenizer(TEXTS, tmp_path / "tokenizer.json")
    tokens = tokenizer.encode("wild", add_special_tokens=False).tokens
    assert tokens == ["w", "##i", "##l", "##d"]


def test_training_inputs_come_from_the_serving_encoder(tmp_path):
    tokenizer = sentiment.train_tokenizer(TEXTS, tmp_path / "tokenizer.json")
    encoding = sentiment.text_encoding
    assert Path(encoding.__file__) == ROOT / "tritonmodels" / "text_encoding.py"  # the file the export deploys
    ids = encoding.encode_texts(tokenizer, TEXTS, sentiment.MAX_TOKENS)
    assert ids.shape == (4, 64) and ids.dtype == np.int64
    assert ids[0, :6].tolist() == tokenizer.encode(TEXTS[0], add_special_tokens=False).ids


def test_reviews_are_cut_into_padded_windows_labelled_with_their_review(tmp_path):
    tokenizer = sentiment.train_tokenizer(TEXTS, tmp_path / "tokenizer.json")
    long_review = " ".join(["witty"] * 130)  # 64 + 64 + 2 tokens: the 2-token tail is too short to keep
    windows, labels = sentiment.review_windows(tokenizer, [long_review, "dull ."], np.array([1, 0]))
    assert windows.shape == (2, sentiment.MAX_TOKENS) and windows.dtype == np.int64
    assert labels.tolist() == [1, 1]
    assert (windows != 0).all()


def test_classifier_takes_int64_ids_of_fixed_length_and_returns_two_probabilities():
    model = sentiment.build_model(vocab_size=100)
    assert tuple(model.inputs[0].shape) == (None, sentiment.MAX_TOKENS)
    assert model.inputs[0].dtype == "int64"
    assert tuple(model.outputs[0].shape) == (None, 2)

import numpy as np
import pytest

from export.train import sentiment
from tests.tritonmodels.loading import load_helper

encoding = load_helper("sentiment_tokenizer", "text_encoding")

TEXTS = ["a gorgeous , witty film .", "dull and lifeless .", "an utterly dull film"]


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory):
    path = tmp_path_factory.mktemp("tokenizer") / "tokenizer.json"
    sentiment.train_tokenizer(TEXTS, path)
    return encoding.load_tokenizer(path)


def test_valid_utf8_text_is_returned_as_is():
    assert encoding.decode_text("caf\u00e9 \u2014 great".encode()) == "caf\u00e9 \u2014 great"


def test_invalid_utf8_is_rejected_naming_the_byte_offset():
    with pytest.raises(encoding.TextRejected, match=r"not valid UTF-8: byte offset 5 \(0xff\)"):
        encoding.decode_text(b"good \xff film")


def test_a_truncated_multibyte_character_is_invalid_utf8_at_its_first_byte():
    with pytest.raises(encoding.TextRejected, match="byte offset 4"):
        encoding.decode_text("fine\u00e9".encode()[:-1])


@pytest.mark.parametrize("raw", [b"", b"   ", b"\n\t "])
def test_empty_or_whitespace_only_text_is_rejected(raw):
    with pytest.raises(encoding.TextRejected, match="empty or whitespace only"):
        encoding.decode_text(raw)


def test_text_over_the_byte_cap_is_rejected_and_text_at_the_cap_is_accepted():
    assert encoding.decode_text(b"a" * 100, max_text_bytes=100) == "a" * 100
    with pytest.raises(encoding.TextRejected, match="101 bytes, more than max_text_bytes=100"):
        encoding.decode_text(b"a" * 101, max_text_bytes=100)


def test_short_texts_are_right_padded_with_zero_to_max_tokens(tokenizer):
    ids = encoding.encode_texts(tokenizer, ["dull film"], max_tokens=8)
    assert ids.dtype == np.int64 and ids.shape == (1, 8)
    assert ids[0, :2].tolist() == [tokenizer.token_to_id("dull"), tokenizer.token_to_id("film")]
    assert ids[0, 2:].tolist() == [0] * 6


def test_long_texts_keep_their_first_max_tokens_tokens(tokenizer):
    words = ["dull", "film"] * 50
    ids = encoding.encode_texts(tokenizer, [" ".join(words)], max_tokens=8)
    assert ids[0].tolist() == [tokenizer.token_to_id(word) for word in words[:8]]


def test_a_batch_encodes_each_text_as_it_would_alone(tokenizer):
    batch = encoding.encode_texts(tokenizer, TEXTS, max_tokens=16)
    alone = np.concatenate([encoding.encode_texts(tokenizer, [text], max_tokens=16) for text in TEXTS])
    np.testing.assert_array_equal(batch, alone)
    assert (batch[:, 0] != 0).all()


def test_loading_ignores_padding_and_truncation_saved_in_the_tokenizer_file(tmp_path):
    padded = sentiment.train_tokenizer(TEXTS, tmp_path / "tokenizer.json")
    padded.enable_padding(pad_id=0, length=3)
    padded.enable_truncation(max_length=2)
    padded.save(str(tmp_path / "tokenizer.json"))
    reloaded = encoding.load_tokenizer(tmp_path / "tokenizer.json")
    assert encoding.encode_texts(reloaded, ["a gorgeous , witty film ."], 8)[0, :6].tolist() == \
        [reloaded.token_to_id(token) for token in ["a", "gorgeous", ",", "witty", "film", "."]]


def test_a_tokenizer_whose_pad_token_is_not_id_0_is_refused(tmp_path):
    from tokenizers import Tokenizer, models
    broken = Tokenizer(models.WordLevel({"[UNK]": 0, "[PAD]": 1}, unk_token="[UNK]"))
    broken.save(str(tmp_path / "tokenizer.json"))
    with pytest.raises(ValueError, match=r"\[PAD\] must have id 0, got 1"):
        encoding.load_tokenizer(tmp_path / "tokenizer.json")

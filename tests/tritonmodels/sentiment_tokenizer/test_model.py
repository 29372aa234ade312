import shutil

import numpy as np
import pytest

from export.train import sentiment
from tests.tritonmodels.fake_triton import Request, TritonError, TritonModelException, load_model, strings
from tests.tritonmodels.loading import load_helper, version_dir

CONFIG = {
    "name": "sentiment_tokenizer",
    "max_batch_size": 32,
    "input": [{"name": "text", "data_type": "TYPE_STRING", "dims": [1]}],
    "output": [{"name": "input_ids", "data_type": "TYPE_INT64", "dims": [8]}],
    "parameters": {"max_tokens": {"string_value": "8"}, "max_text_bytes": {"string_value": "100"}},
}
TEXTS = ["a gorgeous , witty film .", "dull and lifeless ."]


@pytest.fixture
def model_dir(tmp_path, monkeypatch):
    """A copy of the model's version directory with a freshly trained tokenizer, as the export deploys it."""
    version = tmp_path / "sentiment_tokenizer" / "1"
    shutil.copytree(version_dir("sentiment_tokenizer"), version, ignore=shutil.ignore_patterns("__pycache__"))
    sentiment.train_tokenizer(TEXTS, version / "tokenizer.json")
    monkeypatch.setattr("tests.tritonmodels.fake_triton.version_dir", lambda model: version)
    return version


def test_each_request_gets_its_texts_as_padded_int64_ids_in_order(model_dir, monkeypatch):
    model = load_model(monkeypatch, "sentiment_tokenizer", CONFIG)
    responses = model.execute([Request(text=strings(b"dull film", b"witty")), Request(text=strings(b"a film"))])
    ids = responses[0].output("input_ids")
    assert ids.dtype == np.int64 and ids.shape == (2, 8)
    assert ids[1].tolist() == [model.tokenizer.token_to_id("witty")] + [0] * 7
    assert responses[1].output("input_ids").shape == (1, 8)


def test_bad_text_gets_its_own_invalid_arg_error_and_the_others_still_succeed(model_dir, monkeypatch):
    model = load_model(monkeypatch, "sentiment_tokenizer", CONFIG)
    responses = model.execute([Request(text=strings(b"dull \xff")), Request(text=strings(b"witty")),
                               Request(text=strings(b" ")), Request(text=strings(b"a" * 101))])
    assert responses[1].error is None
    assert [r.error.code() for r in (responses[0], responses[2], responses[3])] == [TritonError.INVALID_ARG] * 3
    assert "byte offset 5" in responses[0].error.message()
    assert "max_text_bytes=100" in responses[3].error.message()


def test_output_dims_that_differ_from_max_tokens_fail_loading(model_dir, monkeypatch):
    config = {**CONFIG, "output": [{"name": "input_ids", "data_type": "TYPE_INT64", "dims": [64]}]}
    with pytest.raises(TritonModelException, match=r"must have dims \[8\] \(max_tokens\), got \[64\]"):
        load_model(monkeypatch, "sentiment_tokenizer", config)


def test_max_tokens_is_required(model_dir, monkeypatch):
    config = {**CONFIG, "parameters": {}}
    with pytest.raises(TritonModelException, match="parameter max_tokens must be a positive integer, got None"):
        load_model(monkeypatch, "sentiment_tokenizer", config)


def test_a_missing_tokenizer_file_fails_loading_with_the_fix(model_dir, monkeypatch):
    (model_dir / "tokenizer.json").unlink()
    with pytest.raises(TritonModelException, match="tokenizer.json is missing; run `make export`"):
        load_model(monkeypatch, "sentiment_tokenizer", CONFIG)


def test_the_tokenizer_runs_once_per_batch_and_each_request_gets_exactly_its_own_ids(model_dir, monkeypatch):
    model = load_model(monkeypatch, "sentiment_tokenizer", CONFIG)
    text_encoding = load_helper("sentiment_tokenizer", "model").text_encoding
    encode, calls = text_encoding.encode_texts, []
    monkeypatch.setattr(text_encoding, "encode_texts",
                        lambda tokenizer, texts, n: calls.append(list(texts)) or encode(tokenizer, texts, n))
    requests = [[b"dull film", b"witty"], [b"bad \xff"], [b"a gorgeous , witty film ."]]
    responses = model.execute([Request(text=strings(*texts)) for texts in requests])
    assert calls == [["dull film", "witty", "a gorgeous , witty film ."]]
    assert responses[1].error.code() == TritonError.INVALID_ARG
    for texts, response in ((requests[0], responses[0]), (requests[2], responses[2])):
        alone = encode(model.tokenizer, [t.decode() for t in texts], 8)
        np.testing.assert_array_equal(response.output("input_ids"), alone)


def test_tensor_names_come_from_the_config(model_dir, monkeypatch):
    config = {**CONFIG, "input": [{"name": "sentence", "data_type": "TYPE_STRING", "dims": [1]}],
              "output": [{"name": "ids", "data_type": "TYPE_INT64", "dims": [8]}]}
    model = load_model(monkeypatch, "sentiment_tokenizer", config)
    (response,) = model.execute([Request(sentence=strings(b"witty"))])
    assert response.output("ids").tolist() == [[model.tokenizer.token_to_id("witty")] + [0] * 7]


def test_a_config_with_two_inputs_fails_loading(model_dir, monkeypatch):
    config = {**CONFIG, "input": CONFIG["input"] * 2}
    with pytest.raises(TritonModelException, match=r"sentiment_tokenizer: needs exactly one TYPE_STRING input"):
        load_model(monkeypatch, "sentiment_tokenizer", config)

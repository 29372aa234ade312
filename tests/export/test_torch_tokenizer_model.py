"""The generated tokenizer step of a [model.text] table, run in process against a stand-in for the python backend's
utilities: its contract comes from config.pbtxt, each request gets its own answer, bad texts get their own
INVALID_ARG as `sentiment_tokenizer` gives them. Needs only `tokenizers` (a base dependency), not the torch extra."""

from __future__ import annotations

import importlib.util
import json
import shutil
import sys

import numpy as np
import pytest

from core.spec import TEXT_ENCODING, TRITONMODELS
from export.pipeline import MODEL_CONFIG
from tests.export.torch_models import tokenizer_files
from tests.tritonmodels.fake_triton import Request, TritonError, TritonModelException, fake_pb_utils, strings

CONFIG = {
    "name": "review_tokenizer",
    "max_batch_size": 8,
    "input": [{"name": "text", "data_type": "TYPE_STRING", "dims": [1]}],
    "output": [{"name": "input_ids", "data_type": "TYPE_INT64", "dims": [8]},
               {"name": "attention_mask", "data_type": "TYPE_INT64", "dims": [8]}],
    "parameters": {"max_text_bytes": {"string_value": "100"}},
}


@pytest.fixture
def version_dir(tmp_path):
    """The model's version directory as the export deploys it."""
    version = tmp_path / "review_tokenizer" / "1"
    tokenizer_files(version)
    shutil.copy2(TRITONMODELS / "hf_tokenizer.py", version / "model.py")
    for source in (TRITONMODELS / "hf_tokenization.py", TEXT_ENCODING, MODEL_CONFIG):
        shutil.copy2(source, version / source.name)
    return version


def load(monkeypatch, version_dir, config=CONFIG):
    monkeypatch.setitem(sys.modules, "triton_python_backend_utils", fake_pb_utils())
    for name in ("hf_tokenization", "text_encoding", "model_config"):  # imported afresh from this version directory
        monkeypatch.delitem(sys.modules, name, raising=False)
    monkeypatch.syspath_prepend(str(version_dir))  # as the stub does
    spec = importlib.util.spec_from_file_location(f"generated_tokenizer_{id(version_dir)}", version_dir / "model.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    model = module.TritonPythonModel()
    model.initialize({"model_config": json.dumps(config), "model_repository": str(version_dir.parent),
                      "model_version": "1", "model_name": config["name"]})
    return model


def test_each_request_gets_exactly_the_configured_int64_tensors_in_order(monkeypatch, version_dir):
    model = load(monkeypatch, version_dir)
    responses = model.execute([Request(text=strings(b"dull film", b"witty")), Request(text=strings(b"a film"))])
    ids, mask = responses[0].output("input_ids"), responses[0].output("attention_mask")
    assert ids.dtype == mask.dtype == np.int64 and ids.shape == mask.shape == (2, 8)
    vocab = model.tokenizer.get_vocab()
    assert ids[1].tolist() == [vocab["[CLS]"], vocab["witty"], vocab["[SEP]"]] + [vocab["[PAD]"]] * 5
    assert mask[1].tolist() == [1, 1, 1, 0, 0, 0, 0, 0]
    assert [t.name() for t in responses[1].output_tensors] == ["input_ids", "attention_mask"]
    assert responses[1].output("input_ids").shape == (1, 8)


def test_a_graph_that_also_takes_token_type_ids_gets_them(monkeypatch, version_dir):
    config = {**CONFIG, "output": [*CONFIG["output"], {"name": "token_type_ids", "data_type": "TYPE_INT64",
                                                       "dims": [8]}]}
    (response,) = load(monkeypatch, version_dir, config).execute([Request(text=strings(b"funny"))])
    assert response.output("token_type_ids").tolist() == [[0] * 8]


def test_a_text_longer_than_the_max_length_is_truncated_and_keeps_its_closing_token(monkeypatch, version_dir):
    model = load(monkeypatch, version_dir)
    (response,) = model.execute([Request(text=strings(b"witty " * 15))])
    ids = response.output("input_ids")[0]
    assert response.output("attention_mask").all() and ids[-1] == model.tokenizer.token_to_id("[SEP]")


def test_bad_text_gets_its_own_invalid_arg_error_as_sentiment_gives_it_and_the_others_still_succeed(monkeypatch,
                                                                                                   version_dir):
    model = load(monkeypatch, version_dir)
    responses = model.execute([Request(text=strings(b"dull \xff")), Request(text=strings(b"witty")),
                               Request(text=strings(b" \n ")), Request(text=strings(b"a" * 101))])
    assert responses[1].error is None
    assert [r.error.code() for r in (responses[0], responses[2], responses[3])] == [TritonError.INVALID_ARG] * 3
    assert "not valid UTF-8: byte offset 5" in responses[0].error.message()
    assert "empty or whitespace only" in responses[2].error.message()
    assert "101 bytes, more than max_text_bytes=100" in responses[3].error.message()


@pytest.mark.parametrize(("output", "message"), [
    ({"name": "pixel_values", "data_type": "TYPE_INT64", "dims": [8]}, "among input_ids, attention_mask"),
    ({"name": "attention_mask", "data_type": "TYPE_FP32", "dims": [8]}, "must be TYPE_INT64"),
    ({"name": "attention_mask", "data_type": "TYPE_INT64", "dims": [16]}, "one dims [max length]"),
])
def test_a_config_the_tokenizer_cannot_serve_fails_loading_and_says_what_to_fix(monkeypatch, version_dir, output,
                                                                                message):
    config = {**CONFIG, "output": [CONFIG["output"][0], output]}
    with pytest.raises(TritonModelException, match="fix models.toml") as info:
        load(monkeypatch, version_dir, config)
    assert message in str(info.value)


def test_a_missing_tokenizer_or_pad_token_fails_loading_with_the_fix(monkeypatch, version_dir):
    (version_dir / "tokenizer_config.json").write_text(json.dumps({"pad_token": "<pad>"}))
    with pytest.raises(TritonModelException, match=r"pad_token '<pad>' is not a token of tokenizer.json"):
        load(monkeypatch, version_dir)
    (version_dir / "tokenizer.json").unlink()
    with pytest.raises(TritonModelException, match=r"tokenizer.json is missing; run `make export`"):
        load(monkeypatch, version_dir)

"""The generated step of a Keras text model (tritonmodels/keras_text_step.py), deployed as the export deploys it and run
against the stand-in for triton_python_backend_utils: ids for each request's texts, a bad text its request's own error."""

import importlib.util
import json
import shutil
import sys

import numpy as np

from core.spec import TEXT_ENCODING, TRITONMODELS
from tests.tritonmodels.fake_triton import Request, TritonError, fake_pb_utils, strings

SETTINGS = {"layer": "TextVectorization", "standardize": "lower", "strip_regex": "", "split": "whitespace",
            "ngrams": None, "output_sequence_length": 4, "vocabulary": ["", "[UNK]", "good", "film"], "oov_index": 1}
CONFIG = {"name": "review_step", "max_batch_size": 8,
          "input": [{"name": "review", "data_type": "TYPE_STRING", "dims": ["1"]}],
          "output": [{"name": "tokens", "data_type": "TYPE_INT64", "dims": ["4"]}],
          "parameters": {"max_text_bytes": {"string_value": "30"}}}


def test_each_request_gets_its_texts_ids_and_a_bad_text_only_its_own_request_error(monkeypatch, tmp_path):
    version = tmp_path / "review_step" / "1"
    version.mkdir(parents=True)
    shutil.copy2(TRITONMODELS / "keras_text_step.py", version / "model.py")
    for source in (TRITONMODELS / "text_vectorization.py", TEXT_ENCODING, TRITONMODELS / "model_config.py"):
        shutil.copy2(source, version / source.name)
    (version / "text_vectorization.json").write_text(json.dumps(SETTINGS))
    monkeypatch.setitem(sys.modules, "triton_python_backend_utils", fake_pb_utils())
    for name in ("text_vectorization", "text_encoding", "model_config"):  # imported afresh from the version folder
        monkeypatch.delitem(sys.modules, name, raising=False)
    monkeypatch.syspath_prepend(str(version))  # as the stub does
    spec = importlib.util.spec_from_file_location("deployed_keras_text_step", version / "model.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    model = module.TritonPythonModel()
    model.initialize({"model_config": json.dumps(CONFIG), "model_repository": str(version.parent),
                      "model_version": "1", "model_name": "review_step"})

    first, bad, last = model.execute([Request(review=strings(b"Good film", b"bad")), Request(review=strings(b"\xff")),
                                      Request(review=strings(b"film film film film film"))])

    np.testing.assert_array_equal(first.output("tokens"), [[2, 3, 0, 0], [1, 0, 0, 0]])
    np.testing.assert_array_equal(last.output("tokens"), [[3, 3, 3, 3]])
    assert first.error is None and last.error is None
    assert bad.error.code() == TritonError.INVALID_ARG and "not valid UTF-8" in bad.error.message()

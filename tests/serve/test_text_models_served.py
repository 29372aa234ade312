"""The text-in ensembles that [model.text] tables generate (in the project's spec: sentiment_bert), on the real Triton:
the served tokenizer reproduces from raw text exactly the inputs the classifier was gated on, the modelport client gets
the same labelled answers over HTTP and gRPC with the card's held-out accuracy, and bad text gets a 400 /
INVALID_ARGUMENT that says why, as `sentiment` answers it. Models are taken from the spec: without the torch extra
there are none (they are skipped at export), and these tests are skipped with them."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException

import modelport
from core.spec import install_hint, load_spec

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
SPEC = load_spec(ROOT / "models.toml")
# the served text models, and those whose extra is missing here as skips that say which extra installs them
MODELS = [pytest.param(m, id=m.source.onnx.text.ensemble) for m in SPEC.models if m.source.onnx and m.source.onnx.text]
MODELS += [pytest.param(m, id=m.source.onnx.text.ensemble, marks=pytest.mark.skip(reason=install_hint(m.extra)))
           for m in SPEC.skipped if m.source.onnx and m.source.onnx.text]
ACCURACY_TOLERANCE_SAMPLES = 1  # as tests/serve/test_spec_models.py: thread scheduling may flip a near-tie


def heldout(model):
    with np.load(model.source.onnx.heldout, allow_pickle=False) as data:
        return {k: data[k] for k in data.files}


def chunks(items, size):
    return [items[i:i + size] for i in range(0, len(items), size)]


@pytest.mark.parametrize("model", MODELS)
def test_the_served_tokenizer_turns_the_heldout_texts_into_exactly_the_inputs_the_classifier_was_gated_on(triton,
                                                                                                        model):
    data = heldout(model)
    client = httpclient.InferenceServerClient(triton.http_url)
    served = {t.name: [] for t in model.inputs}
    for part in chunks([t.encode() for t in data["text"]], model.batching.max_batch_size):
        tensor = httpclient.InferInput(model.source.onnx.text.input, [len(part), 1], "BYTES")
        tensor.set_data_from_numpy(np.array([[p] for p in part], dtype=np.object_))
        result = client.infer(model.source.onnx.text.tokenizer, [tensor])
        for t in model.inputs:
            served[t.name].append(result.as_numpy(t.name))
    for t in model.inputs:
        np.testing.assert_array_equal(np.concatenate(served[t.name]), data[t.name], err_msg=t.name)


@pytest.mark.parametrize("model", MODELS)
def test_http_and_grpc_give_the_same_labelled_answers_with_the_cards_heldout_accuracy(triton, model):
    data = heldout(model)
    texts = [str(t) for t in data["text"]]
    labels = model.outputs[0].labels
    answers = {}
    for protocol, url in (("http", triton.http_url), ("grpc", triton.grpc_url)):
        with modelport.Client(url, protocol=protocol) as client:
            answers[protocol] = [p.prediction for part in chunks(texts, model.batching.max_batch_size)
                                 for p in client.predict(model.source.onnx.text.ensemble, part)]
    assert [p.label for p in answers["http"]] == [p.label for p in answers["grpc"]]
    np.testing.assert_allclose([list(p.scores.values()) for p in answers["http"]],
                               [list(p.scores.values()) for p in answers["grpc"]], atol=1e-6)
    correct = sum(labels.index(p.label) == y for p, y in zip(answers["http"], data["y"]))
    card = json.loads((triton.repository / model.name / "card.json").read_text())
    recorded = round(card["variants"][0]["accuracy"] * len(texts))
    assert abs(correct - recorded) <= ACCURACY_TOLERANCE_SAMPLES, (
        f"{model.source.onnx.text.ensemble}: {correct}/{len(texts)} right from raw text on Triton, the card of "
        f"{model.name} recorded {recorded}/{len(texts)}")


BAD_TEXTS = [(b"good \xff film", "not valid UTF-8: byte offset 5"), (b" \n ", "empty or whitespace only"),
             (b"a " * 40_000, "80000 bytes, more than max_text_bytes=65536")]


@pytest.mark.parametrize("protocol", ["http", "grpc"])
@pytest.mark.parametrize("model", MODELS)
def test_bad_text_gets_a_client_error_that_says_why_as_sentiment_answers_it(triton, model, protocol):
    module = httpclient if protocol == "http" else grpcclient
    client = module.InferenceServerClient(triton.http_url if protocol == "http" else triton.grpc_url)
    for payload, message in BAD_TEXTS:
        tensor = module.InferInput(model.source.onnx.text.input, [1, 1], "BYTES")
        tensor.set_data_from_numpy(np.array([[payload]], dtype=np.object_))
        with pytest.raises(InferenceServerException) as raised:
            client.infer(model.source.onnx.text.ensemble, [tensor])
        status = str(raised.value.status())
        assert status == ("400" if protocol == "http" else "StatusCode.INVALID_ARGUMENT"), status
        assert message in raised.value.message()

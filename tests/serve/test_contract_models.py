"""Every contract model answers correctly on the real Triton, over HTTP and gRPC."""
from __future__ import annotations

import io

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from PIL import Image

from export.data.digits import load_digits_images
from export.data.polarity import load_polarity

pytestmark = pytest.mark.integration

DIGIT_MODELS = ["digits", "digits_int8", "digits_fp16"]
PROTOCOLS = ["http", "grpc"]


def client_for(triton, protocol):
    if protocol == "http":
        return httpclient, httpclient.InferenceServerClient(triton.http_url)
    return grpcclient, grpcclient.InferenceServerClient(triton.grpc_url)


def infer(triton, protocol, model, input_name, array, datatype):
    module, client = client_for(triton, protocol)
    tensor = module.InferInput(input_name, list(array.shape), datatype)
    tensor.set_data_from_numpy(array)
    result = client.infer(model, [tensor], outputs=[module.InferRequestedOutput("probabilities")])
    return result.as_numpy("probabilities")


def encoded(image_8x8: np.ndarray, fmt: str, size: int = 64) -> bytes:
    """A load_digits image as a photo of ink on paper: dark digit on light background, upscaled."""
    pixels = (255 - image_8x8[:, :, 0]).clip(0, 255).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels, "L").resize((size, size), Image.NEAREST).save(buffer, format=fmt)
    return buffer.getvalue()


@pytest.fixture(scope="module")
def digits():
    images, labels = load_digits_images()
    return images[-64:], labels[-64:]


@pytest.mark.parametrize("protocol", PROTOCOLS)
@pytest.mark.parametrize("model", DIGIT_MODELS)
def test_digit_models_classify_real_digits(triton, digits, model, protocol):
    images, labels = digits
    probabilities = infer(triton, protocol, model, "image", images[:32].astype(np.float32), "FP32")
    assert probabilities.shape == (32, 10)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, atol=1e-3)
    accuracy = float((probabilities.argmax(axis=1) == labels[:32]).mean())
    assert accuracy >= 0.9, f"{model} over {protocol}: accuracy {accuracy:.2f} on 32 real digits"


@pytest.mark.parametrize("protocol", PROTOCOLS)
@pytest.mark.parametrize("fmt", ["PNG", "JPEG"])
def test_digits_image_classifies_encoded_photos_of_digits(triton, digits, fmt, protocol):
    images, labels = digits
    payload = np.array([[encoded(image, fmt)] for image in images[:16]], dtype=object)
    probabilities = infer(triton, protocol, "digits_image", "image_bytes", payload, "BYTES")
    assert probabilities.shape == (16, 10)
    accuracy = float((probabilities.argmax(axis=1) == labels[:16]).mean())
    assert accuracy >= 0.75, f"digits_image on {fmt} over {protocol}: accuracy {accuracy:.2f}"


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_sentiment_classifies_real_sentences(triton, protocol):
    texts, labels = load_polarity()
    texts, labels = texts[:32], labels[:32]
    payload = np.array([[t.encode("utf-8")] for t in texts], dtype=object)
    probabilities = infer(triton, protocol, "sentiment", "text", payload, "BYTES")
    assert probabilities.shape == (32, 2)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, atol=1e-3)
    accuracy = float((probabilities.argmax(axis=1) == labels).mean())
    assert accuracy >= 0.6, f"sentiment over {protocol}: accuracy {accuracy:.2f} on 32 real sentences"


def test_digits_on_triton_matches_onnx_runtime_in_process(triton, digits):
    import onnxruntime as ort

    images, _ = digits
    session = ort.InferenceSession(str(triton.repository / "digits" / "1" / "model.onnx"), providers=["CPUExecutionProvider"])
    expected = session.run(None, {session.get_inputs()[0].name: images[:8]})[0]
    served = infer(triton, "http", "digits", "image", images[:8].astype(np.float32), "FP32")
    np.testing.assert_allclose(served, expected, rtol=1e-5, atol=1e-6)


# The serving contract outside tools rely on: model -> (input, datatype, dims), (output, dims), labels.
CONTRACT = {
    "digits": (("image", "FP32", [-1, 8, 8, 1]), ("probabilities", [-1, 10]), [str(d) for d in range(10)]),
    "digits_int8": (("image", "FP32", [-1, 8, 8, 1]), ("probabilities", [-1, 10]), [str(d) for d in range(10)]),
    "digits_fp16": (("image", "FP32", [-1, 8, 8, 1]), ("probabilities", [-1, 10]), [str(d) for d in range(10)]),
    "digits_image": (("image_bytes", "BYTES", [-1, 1]), ("probabilities", [-1, 10]), [str(d) for d in range(10)]),
    "sentiment": (("text", "BYTES", [-1, 1]), ("probabilities", [-1, 2]), ["negative", "positive"]),
}


@pytest.mark.parametrize("model", sorted(CONTRACT))
def test_contract_models_keep_their_names_tensors_and_labels(triton, model):
    """Every other served model is checked against models.toml by test_spec_models.py; these are fixed."""
    (input_name, datatype, shape), (output_name, output_shape), labels = CONTRACT[model]
    client = httpclient.InferenceServerClient(triton.http_url)
    metadata = client.get_model_metadata(model)
    assert [(t["name"], t["datatype"], t["shape"]) for t in metadata["inputs"]] == [(input_name, datatype, shape)]
    assert [(t["name"], t["shape"]) for t in metadata["outputs"]] == [(output_name, output_shape)]
    if datatype == "FP32":
        array = np.zeros((1, 8, 8, 1), np.float32)
    elif model == "sentiment":
        array = np.array([[b"a moving film"]], dtype=object)
    else:
        images, _ = load_digits_images()
        array = np.array([[encoded(images[0], "PNG")]], dtype=object)
    tensor = httpclient.InferInput(input_name, list(array.shape), datatype)
    tensor.set_data_from_numpy(array)
    result = client.infer(model, [tensor], outputs=[httpclient.InferRequestedOutput(output_name,
                                                                                    class_count=len(labels))])
    served = {entry.decode().split(":", 2)[2] for entry in result.as_numpy(output_name).reshape(-1)}
    assert served == set(labels)

"""Models whose outputs are not single-label classes, end to end through models.toml alone: a regression model, a
multi-label model and a recurrent (GRU, LSTM, SimpleRNN) model are trained here (tiny, seconds), exported by
`python -m export`, served by a real Triton and compared with their Keras source; each output's gate is shown refusing
a deliberately broken variant, and a variant that cannot be converted is one line, never a traceback."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from core.errors import ParityError
from core.heldout import load_npz
from core.spec import load_spec
from core.state import read_state
from export.verify import gate, run_onnx
from tests import specs
from tests.conftest import launch_triton

pytestmark = pytest.mark.integration

ROWS, CALIBRATION_ROWS, STEPS = 160, 64, 12


def train(directory: Path) -> dict[str, np.ndarray]:
    """Three tiny Keras models and their held-out / calibration files; returns each model's Keras predictions."""
    import keras

    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    predictions = {}

    # house: 4 features -> a price between about 25 and 350 (one unlabelled float output: regression)
    x = rng.uniform(0, 1, (600, 4)).astype("float32")
    price = 25 + 325 * (0.4 * x[:, 0] + 0.3 * x[:, 1] ** 2 + 0.2 * x[:, 2] + 0.1 * np.sin(3 * x[:, 3]))
    inputs = keras.Input((4,), name="features")
    hidden = keras.layers.Dense(16, activation="relu")(inputs)
    model = keras.Model(inputs, keras.layers.Rescaling(325, offset=25)(keras.layers.Dense(1)(hidden)))
    model.compile(keras.optimizers.Adam(0.02), "mse")
    model.fit(x[:-ROWS], price[:-ROWS, None] , epochs=40, batch_size=64, verbose=0)
    save(directory / "house", model, x, price[:, None].astype("float32"), "price")
    predictions["house"] = model.predict(x[-ROWS:], verbose=0)

    # tags: 6 features -> 3 independent labels (sigmoid, multi-hot targets: multi-label)
    x = rng.normal(0, 1, (600, 6)).astype("float32")
    tags = (x @ rng.normal(0, 1, (6, 3)) > 0).astype("int64")
    inputs = keras.Input((6,), name="features")
    hidden = keras.layers.Dense(16, activation="relu")(inputs)
    model = keras.Model(inputs, keras.layers.Dense(3, activation="sigmoid")(hidden))
    model.compile(keras.optimizers.Adam(0.02), "binary_crossentropy")
    model.fit(x[:-ROWS], tags[:-ROWS], epochs=30, batch_size=64, verbose=0)
    save(directory / "tags", model, x, tags, "tags")
    predictions["tags"] = model.predict(x[-ROWS:], verbose=0)

    # sensor: 12 steps x 3 channels -> rising or steady, through GRU, LSTM and SimpleRNN side by side
    trend = rng.choice([0.0, 0.15], 600)
    x = (rng.normal(0, 0.3, (600, STEPS, 3)) + trend[:, None, None] * np.arange(STEPS)[None, :, None]).astype("float32")
    inputs = keras.Input((STEPS, 3), name="series")
    conv = keras.layers.Conv1D(8, 3, activation="relu")(inputs)
    recurrent = [keras.layers.GRU(6)(conv), keras.layers.LSTM(6)(conv), keras.layers.SimpleRNN(6)(conv)]
    model = keras.Model(inputs, keras.layers.Dense(2, activation="softmax")(keras.layers.Concatenate()(recurrent)))
    model.compile(keras.optimizers.Adam(0.02), "sparse_categorical_crossentropy")
    model.fit(x[:-ROWS], (trend[:-ROWS] > 0).astype("int64"), epochs=8, batch_size=64, verbose=0)
    save(directory / "sensor", model, x, (trend > 0).astype("int64"), None)
    predictions["sensor"] = model.predict(x[-ROWS:], verbose=0)
    return predictions


def save(directory: Path, model, x: np.ndarray, y: np.ndarray, output: str | None) -> None:
    directory.mkdir(parents=True)
    model.save(directory / "model.keras")
    targets = {f"y_{output}": y[-ROWS:]} if output else {"y": y[-ROWS:]}  # both forms of heldout.npz
    np.savez(directory / "heldout.npz", x=x[-ROWS:], **targets)
    np.savez(directory / "calibration.npz", x=x[:CALIBRATION_ROWS])


def entries(directory: Path) -> dict[str, dict]:
    """The three models' spec entries, by name; every variant that may fail its gate is optional."""
    def files(name: str, calibration: bool = True) -> dict:
        return {"source": directory / name / "model.keras", "heldout": directory / name / "heldout.npz",
                "calibration": directory / name / "calibration.npz" if calibration else None, "max_batch_size": 16}

    return {
        "house": specs.model("house", **files("house"), variants=["fp32", "int8", "fp16"], optional_variants=["int8"],
                             inputs=[specs.tensor("features", [4])], outputs=[specs.tensor("price", [1])],
                             gate={"price": {"int8_max_range_error": 0.1}}),
        "tags": specs.model("tags", **files("tags"), variants=["fp32", "int8"], optional_variants=["int8"],
                            inputs=[specs.tensor("features", [6])],
                            outputs=[specs.tensor("tags", [3], labels=["red", "round", "sweet"])]),
        "sensor": specs.model("sensor", **files("sensor", calibration=False), variants=["fp32", "fp16"],
                              optional_variants=["fp16"], inputs=[specs.tensor("series", [STEPS, 3])],
                              outputs=[specs.tensor("trend", [2], labels=["steady", "rising"])]),
    }


def export(spec: Path, repository: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "export", "--spec", str(spec), "--repository", str(repository),
                           "--int8-search-seconds", "5"], capture_output=True, text=True, timeout=600)


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    directory = tmp_path_factory.mktemp("output_kinds")
    predictions = train(directory)
    spec = specs.write_spec(directory, *entries(directory).values())
    exported = export(spec, directory / "model_repository")
    assert exported.returncode == 0, exported.stdout[-4000:] + exported.stderr[-4000:]
    return directory, load_spec(spec), predictions, exported.stdout + exported.stderr


@pytest.fixture(scope="module")
def server(project, tmp_path_factory):
    directory = project[0]
    with launch_triton(directory / "model_repository", tmp_path_factory.mktemp("triton")) as triton:
        yield triton


def card(project, name: str) -> dict:
    return json.loads((project[0] / "model_repository" / name / "card.json").read_text())


def perturbed(path: Path, scale: float, column: int | None = None) -> bytes:
    """The model with its last Dense kernel scaled (one column only when given): a wrong model that still runs."""
    proto = onnx.load(path)
    kernels = [i for i in proto.graph.initializer if len(i.dims) == 2]
    weights = numpy_helper.to_array(kernels[-1]).copy()
    if column is None:
        weights *= scale
    else:
        weights[:, column] *= scale
    kernels[-1].CopyFrom(numpy_helper.from_array(weights, kernels[-1].name))
    return proto.SerializeToString()


def test_each_output_is_judged_by_its_kind_and_the_card_reports_the_tasks_metric(project):
    price = card(project, "house")["variants"][0]["outputs"]["price"]
    assert price["task"] == "regression" and price["range_error"] <= 1e-4 and price["mean_relative_error"] <= 1e-4
    assert price["r2"] > 0.5 and abs(price["mae"] - price["source_mae"]) < 1e-3, "MAE and R² against y_price"
    tags = card(project, "tags")["variants"][0]["outputs"]["tags"]
    assert tags["task"] == "multilabel" and tags["label_agreement"] == 1.0 and tags["micro_f1"] > 0.7
    trend = card(project, "sensor")["variants"][0]["outputs"]["trend"]
    assert trend["task"] == "classification" and trend["accuracy"] > 0.8 and trend["argmax_agreement"] == 1.0
    markdown = (project[0] / "model_repository" / "house" / "card.md").read_text()
    assert "| `house_fp16` | `price` | regression | range error" in markdown and "R²" in markdown


def test_a_variant_within_its_outputs_tolerances_is_served_and_one_outside_is_left_out_with_why(project):
    """house_int8 is served only when the gate passed it; otherwise its card says which figure missed."""
    record = card(project, "house")
    served = [v["triton_name"] for v in record["variants"]]
    if "house_int8" in served:
        int8 = next(v for v in record["variants"] if v["variant"] == "int8")["outputs"]["price"]
        assert int8["range_error"] <= 0.1 and int8["mean_relative_error"] <= 0.02
    else:
        reason = read_state(project[0] / "model_repository" / "house").left_out["int8"]["reason"]
        assert "range error" in reason or "mean relative error" in reason


def test_the_regression_gate_refuses_a_variant_off_by_a_tenth_of_its_range(project):
    directory, spec, _, _ = project
    model = spec.model("house")
    heldout = load_npz(model, model.source.onnx.heldout, with_labels=True)
    fp32 = directory / "model_repository" / "house" / "1" / "model.onnx"
    reference = run_onnx(fp32.read_bytes(), heldout.x, 16, ["price"])
    with pytest.raises(ParityError) as info:
        gate(model, {"int8": perturbed(fp32, 1.2), "fp16": perturbed(fp32, 1.05)}, heldout, reference)
    checks = {(f.variant, f.check) for f in info.value.failures}
    assert {("int8", "range error (max |diff| / source p1-p99 range)"), ("int8", "mean relative error"),
            ("fp16", "range error (max |diff| / source p1-p99 range)")} <= checks
    gate(model, {"fp16": perturbed(fp32, 1.0001)}, heldout, reference)  # fp16-sized noise passes


def test_the_multilabel_gate_refuses_a_variant_that_flips_one_labels_decisions(project):
    directory, spec, _, _ = project
    model = spec.model("tags")
    heldout = load_npz(model, model.source.onnx.heldout, with_labels=True)
    fp32 = directory / "model_repository" / "tags" / "1" / "model.onnx"
    reference = run_onnx(fp32.read_bytes(), heldout.x, 16, ["tags"])
    with pytest.raises(ParityError) as info:
        gate(model, {"int8": perturbed(fp32, -1.0, column=2)}, heldout, reference)
    failures = {f.check: f for f in info.value.failures}
    assert failures["label agreement (worst label)"].measured < 0.5
    assert failures["micro-F1 drop (points)"].measured > 10


def test_the_recurrent_model_converts_its_gru_lstm_and_simplernn_and_keeps_tensorrt(project):
    record = card(project, "sensor")
    ops = record["variants"][0]["ops"]
    assert "Loop" in ops and "LSTM" in ops, "tf2onnx fuses LSTM; GRU and SimpleRNN become Loop"
    assert read_state(project[0] / "model_repository" / "sensor").without_tensorrt == {}, "Loop is on TensorRT's list"
    config = (project[0] / "model_repository" / "sensor" / "config.pbtxt").read_text()
    assert 'name: "tensorrt"' in config


def test_an_optional_variant_that_cannot_be_converted_is_left_out_with_one_line(project):
    reason = read_state(project[0] / "model_repository" / "sensor").left_out["fp16"]["reason"]
    assert "sensor_fp16: fp16 conversion failed at op Loop" in reason and "Traceback" not in project[3]
    assert not (project[0] / "model_repository" / "sensor_fp16").exists()


def test_a_required_variant_that_cannot_be_converted_fails_the_export_with_that_line(project, tmp_path):
    directory = project[0]
    sensor = entries(directory)["sensor"]
    sensor["source"] = str(directory / "model_repository" / "sensor" / "1" / "model.onnx")
    del sensor["optional_variants"]  # fp16 required now
    spec = specs.write_spec(tmp_path, sensor)
    result = export(spec, tmp_path / "model_repository")
    assert result.returncode == 1, result.stdout + result.stderr
    assert "sensor_fp16: fp16 conversion failed at op Loop" in result.stderr
    assert 'mark it optional: optional_variants = ["fp16"]' in result.stderr
    assert "Traceback" not in result.stderr and not (tmp_path / "model_repository" / "sensor").exists()


@pytest.mark.parametrize("name", ["house", "house_fp16", "tags", "sensor"])
def test_the_served_models_answer_as_their_keras_source(project, server, name):
    import tritonclient.http as httpclient

    directory, spec, predictions, _ = project
    model = spec.model(name)
    heldout = load_npz(model, model.source.onnx.heldout, with_labels=True)
    (tensor,), (output,) = model.inputs, model.outputs
    served = []
    with httpclient.InferenceServerClient(server.http_url) as client:
        for start in range(0, len(heldout), model.batching.max_batch_size):
            rows = heldout.x[tensor.name][start:start + model.batching.max_batch_size]
            request = httpclient.InferInput(tensor.name, list(rows.shape), "FP32")
            request.set_data_from_numpy(rows)
            served.append(client.infer(name, [request]).as_numpy(output.name))
    served, source = np.concatenate(served), predictions[model.name]
    scale = float(np.ptp(source))
    tolerance = 1e-2 if name.endswith("fp16") else 1e-4
    assert np.max(np.abs(served - source)) <= tolerance * scale, f"{name} differs from its Keras source"

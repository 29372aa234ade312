"""Our Python-based `onnxruntime` backend, run in-process against a stand-in for triton_python_backend_utils."""
from __future__ import annotations

import importlib.util
import json
import sys
import types
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from core import triton_install
from tests.tritonmodels.fake_triton import Request, TritonError, fake_pb_utils

MODEL_PY = triton_install.OUR_BACKENDS["onnxruntime"]
SESSION_MODULE = triton_install.SESSION_MODULE
WEIGHTS = (np.arange(12, dtype=np.float32).reshape(4, 3) / 10)


def write_model(directory: Path) -> None:
    """probabilities = softmax(reshape(x, [N, 4]) @ W) for x of shape [N, 2, 2, 1]."""
    graph = helper.make_graph(
        [helper.make_node("Reshape", ["x", "shape"], ["flat"]), helper.make_node("MatMul", ["flat", "W"], ["logits"]),
         helper.make_node("Softmax", ["logits"], ["probs"], axis=1)],
        "tiny",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 2, 2, 1])],
        [helper.make_tensor_value_info("probs", TensorProto.FLOAT, ["N", 3])],
        [helper.make_tensor("shape", TensorProto.INT64, [2], [-1, 4]), numpy_helper.from_array(WEIGHTS, "W")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    (directory / "1").mkdir(parents=True)
    onnx.save(model, directory / "1" / "net.onnx")


def config(**extra) -> dict:
    return {
        "name": "tiny", "max_batch_size": 8, "default_model_filename": "net.onnx",
        "input": [{"name": "x", "data_type": "TYPE_FP32", "dims": ["2", "2", "1"]}],
        "output": [{"name": "probs", "data_type": "TYPE_FP32", "dims": ["3"]}],
        **extra,
    }


@pytest.fixture
def backend(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "triton_python_backend_utils", fake_pb_utils())
    # the stub puts the backend folder on sys.path, where serve/triton_install.py deploys onnxruntime_session.py
    monkeypatch.syspath_prepend(str(SESSION_MODULE.parent))
    spec = importlib.util.spec_from_file_location("onnxruntime_backend_model", MODEL_PY)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    write_model(tmp_path / "tiny")

    def make(**extra):
        model = module.TritonPythonModel()
        model.initialize({"model_config": json.dumps(config(**extra)), "model_name": "tiny",
                          "model_repository": str(tmp_path / "tiny"), "model_version": "1"})
        return model

    return make


def expected(x: np.ndarray) -> np.ndarray:
    logits = x.reshape(-1, 4) @ WEIGHTS
    e = np.exp(logits - logits.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def images(n, seed=0):
    return np.random.default_rng(seed).normal(size=(n, 2, 2, 1)).astype(np.float32)


def test_requests_of_one_call_run_as_one_batch_and_split_back_in_order(backend):
    model = backend()
    calls = []
    run = model.session.run
    model.session = types.SimpleNamespace(run=lambda names, feed: calls.append(feed["x"].shape) or run(names, feed))
    batches = [images(1, 1), images(3, 2), images(2, 3)]
    responses = model.execute([Request(x=b) for b in batches])
    assert calls == [(6, 2, 2, 1)]
    for batch, response in zip(batches, responses):
        assert response.error is None
        np.testing.assert_allclose(response.output("probs"), expected(batch), rtol=1e-5)


def test_one_row_requests_get_their_own_row_back_in_order(backend):
    model = backend()
    calls = []
    run = model.session.run
    model.session = types.SimpleNamespace(run=lambda names, feed: calls.append(feed["x"].shape) or run(names, feed))
    rows = [images(1, seed) for seed in range(5)]
    responses = model.execute([Request(x=row) for row in rows])
    assert calls == [(5, 2, 2, 1)]
    for row, response in zip(rows, responses):
        assert response.error is None and response.output("probs").shape == (1, 3)
        np.testing.assert_allclose(response.output("probs"), expected(row), rtol=1e-5)


def test_requests_of_different_variable_dims_run_once_per_shape_and_answer_in_order(backend):
    # dims -1 let a 3x3 image past Triton's check; it runs on its own, ONNX Runtime refuses it, the 2x2s succeed.
    model = backend(input=[{"name": "x", "data_type": "TYPE_FP32", "dims": ["-1", "-1", "1"]}])
    calls = []
    run = model.session.run
    model.session = types.SimpleNamespace(run=lambda names, feed: calls.append(feed["x"].shape) or run(names, feed))
    square, wrong, other_square = images(2, 1), np.zeros((1, 3, 3, 1), np.float32), images(1, 3)
    responses = model.execute([Request(x=square), Request(x=wrong), Request(x=other_square)])
    assert sorted(calls) == [(1, 3, 3, 1), (3, 2, 2, 1)]
    np.testing.assert_allclose(responses[0].output("probs"), expected(square), rtol=1e-5)
    np.testing.assert_allclose(responses[2].output("probs"), expected(other_square), rtol=1e-5)
    assert responses[1].error.code() == TritonError.INVALID_ARG


def test_a_request_without_an_optional_input_gets_its_own_invalid_arg_error_and_the_rest_succeed(backend):
    # Triton checks names, datatypes and shapes before execute (tests/serve/test_bad_requests.py); only an input
    # the config marks optional can be absent, and ONNX Runtime needs every input.
    model = backend(input=[{"name": "x", "data_type": "TYPE_FP32", "dims": ["2", "2", "1"], "optional": True}])
    first, last = images(2, 1), images(1, 2)
    responses = model.execute([Request(x=first), Request(), Request(x=last)])
    np.testing.assert_allclose(responses[0].output("probs"), expected(first), rtol=1e-5)
    np.testing.assert_allclose(responses[2].output("probs"), expected(last), rtol=1e-5)
    error = responses[1].error
    assert error.code() == TritonError.INVALID_ARG and "input 'x' is missing" in error.message()


def test_onnx_runtime_failure_is_isolated_to_the_failing_request(backend):
    model = backend()
    real = model.session.run

    def run(names, feed):
        if np.isnan(feed["x"]).any():
            raise RuntimeError("bad value")
        return real(names, feed)

    model.session = types.SimpleNamespace(run=run)
    poisoned = np.full((1, 2, 2, 1), np.nan, np.float32)
    responses = model.execute([Request(x=images(1)), Request(x=poisoned), Request(x=images(2, 5))])
    assert responses[0].error is None and responses[2].error is None
    assert "ONNX Runtime failed: RuntimeError: bad value" in responses[1].error.message()


def test_inputs_onnx_runtime_refuses_are_the_requests_fault_invalid_arg(backend):
    # dims -1 let a 3x3 image past the config check; the real ONNX Runtime session refuses it (InvalidArgument).
    model = backend(input=[{"name": "x", "data_type": "TYPE_FP32", "dims": ["-1", "-1", "1"]}])
    wrong = np.zeros((1, 3, 3, 1), np.float32)
    good, bad = model.execute([Request(x=images(1)), Request(x=wrong)])
    assert good.error is None
    assert bad.error.code() == TritonError.INVALID_ARG and "ONNX Runtime rejected the request" in bad.error.message()


def test_onnx_runtime_failures_that_are_not_the_requests_fault_are_internal(backend):
    model = backend()

    def out_of_memory(names, feed):
        raise RuntimeError("Failed to allocate memory for requested buffer of size 4096")

    model.session = types.SimpleNamespace(run=out_of_memory)
    (response,) = model.execute([Request(x=images(2))])
    assert response.error.code() == TritonError.INTERNAL and "Failed to allocate memory" in response.error.message()


def test_unexpected_exception_becomes_an_error_response_for_every_request(backend):
    model = backend()
    model.input_names = None  # any bug inside execute
    responses = model.execute([Request(x=images(1)), Request(x=images(1))])
    assert all(r.error is not None and r.error.code() == TritonError.INTERNAL for r in responses)


def test_real_backend_parameters_are_honoured(backend):
    model = backend(
        parameters={"intra_op_thread_count": {"string_value": "1"}, "inter_op_thread_count": {"string_value": "2"},
                    "execution_mode": {"string_value": "1"}},
        optimization={"graph": {"level": 2}},
    )
    options = model.session.get_session_options()
    assert options.intra_op_num_threads == 1 and options.inter_op_num_threads == 2
    assert options.execution_mode == ort.ExecutionMode.ORT_PARALLEL
    assert options.graph_optimization_level == ort.GraphOptimizationLevel.ORT_DISABLE_ALL


@pytest.mark.parametrize("level, expected_level", [
    (0, ort.GraphOptimizationLevel.ORT_ENABLE_ALL), (-1, ort.GraphOptimizationLevel.ORT_ENABLE_BASIC),
    (1, ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED), (2, ort.GraphOptimizationLevel.ORT_DISABLE_ALL),
])
def test_graph_level_maps_like_the_real_onnxruntime_backend(backend, level, expected_level):
    model = backend(optimization={"graph": {"level": level}})
    assert model.session.get_session_options().graph_optimization_level == expected_level


def test_invalid_parameter_fails_initialize_naming_it(backend):
    with pytest.raises(ValueError, match="'execution_mode' must be 0 \\(sequential\\) or 1 \\(parallel\\), got 7"):
        backend(parameters={"execution_mode": {"string_value": "7"}})


def test_gpu_accelerators_are_ignored_on_cpu(backend):
    model = backend(optimization={"execution_accelerators": {"gpu_execution_accelerator": [{"name": "tensorrt"}]}})
    assert model.execute([Request(x=images(1))])[0].error is None


def test_missing_model_file_fails_initialize_with_the_export_hint(backend, tmp_path):
    (tmp_path / "tiny" / "1" / "net.onnx").unlink()
    with pytest.raises(Exception, match=r"model file .*net.onnx is missing: run `make export`"):
        backend()

"""A stand-in for `triton_python_backend_utils`, enough to run a python model's (and our onnxruntime backend's)
initialize/execute in a unit test.

Only the names our model.py files use; shapes, dtypes and error codes behave as in Triton 2.51's python
backend. The real server checks the same models end to end in the integration tests.
"""

import json
import types

import numpy as np

from tests.tritonmodels.loading import load_helper, version_dir


class Tensor:
    def __init__(self, name, array):
        self._name, self._array = name, array

    def name(self):
        return self._name

    def as_numpy(self):
        return self._array


class TritonError:
    UNKNOWN, INTERNAL, NOT_FOUND, INVALID_ARG, UNAVAILABLE, UNSUPPORTED, ALREADY_EXISTS, CANCELLED = range(8)

    def __init__(self, message, code=UNKNOWN):
        self._message, self._code = message, code

    def message(self):
        return self._message

    def code(self):
        return self._code


class TritonModelException(Exception):
    pass


class InferenceResponse:
    def __init__(self, output_tensors=(), error=None):
        self.output_tensors, self.error = list(output_tensors), error

    def output(self, name):
        return next(t.as_numpy() for t in self.output_tensors if t.name() == name)


class Request:
    def __init__(self, **inputs):
        self._inputs = [Tensor(name, array) for name, array in inputs.items()]

    def inputs(self):
        return self._inputs


def get_input_tensor_by_name(request, name):
    return next((t for t in request.inputs() if t.name() == name), None)


def get_output_config_by_name(config, name):
    return next((o for o in config.get("output", []) if o["name"] == name), None)


NUMPY_TYPES = {"TYPE_FP32": np.float32, "TYPE_INT64": np.int64, "TYPE_INT32": np.int32, "TYPE_STRING": np.object_}


def fake_pb_utils():
    module = types.ModuleType("triton_python_backend_utils")
    module.Tensor, module.TritonError, module.TritonModelException = Tensor, TritonError, TritonModelException
    module.InferenceResponse = InferenceResponse
    module.get_input_tensor_by_name = get_input_tensor_by_name
    module.get_output_config_by_name = get_output_config_by_name
    module.triton_string_to_numpy = NUMPY_TYPES.__getitem__
    module.Logger = types.SimpleNamespace(log_info=lambda message: None, log_warn=lambda message: None)
    return module


def load_model(monkeypatch, model: str, config: dict, directory=None):
    """Import `model`'s model.py against the fake utils and run initialize with `config` as Triton would, on the
    model `directory` (default: the deployed copy of its python files)."""
    monkeypatch.setitem(__import__("sys").modules, "triton_python_backend_utils", fake_pb_utils())
    module = load_helper(model, "model")
    instance = module.TritonPythonModel()
    repository = directory or version_dir(model).parent
    instance.initialize({"model_config": json.dumps(config), "model_repository": str(repository),
                         "model_version": "1", "model_name": model})
    return instance


def strings(*items: bytes) -> np.ndarray:
    """A request's TYPE_STRING [N, 1] input as the backend hands it over."""
    return np.array([[item] for item in items], dtype=np.object_)

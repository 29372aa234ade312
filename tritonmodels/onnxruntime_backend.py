"""A Python-based Triton backend named `onnxruntime`: serves `backend: "onnxruntime"` configs on a CPU host.

It behaves like the real C++ onnxruntime_backend where it matters:
- all requests of one execute() call become one batch per input, ONNX Runtime runs once, the outputs are split back
  per request in order;
- it honours the real backend's model-config knobs: `default_model_filename` and the session settings
  tritonmodels/onnxruntime_session.py reads (core/triton_install.py deploys that module beside this file);
- a bad request gets its own error response while the rest of the batch succeeds, and nothing raised here may take
  the instance down.

execute() is the hot path: its cost is paid once per batch on top of ONNX Runtime's own work, so everything that
can be decided once is decided in initialize(), and per request it does only what cannot be done per batch: take the
input arrays, and build one InferenceResponse holding one pb_utils.Tensor per output. It does not re-check
datatypes and shapes: Triton validates every request against the model config (input names, datatypes, shapes,
batch size) before the backend sees it and answers a bad one with its own 400 (tests/serve/test_bad_requests.py).
`python -m bench --backend-cost` measures what is left per execute and per request (issue 9).
"""
from __future__ import annotations

import json
import os

import numpy as np
import onnxruntime as ort
import triton_python_backend_utils as pb_utils
from onnxruntime.capi.onnxruntime_pybind11_state import InvalidArgument

from onnxruntime_session import ort_session

# Error codes by name: pb_utils.TritonError only exists once the stub has set the module up, not at import.
INVALID_ARG = "INVALID_ARG"
INTERNAL = "INTERNAL"


def triton_error(message: str, code: str) -> "pb_utils.TritonError":
    return pb_utils.TritonError(message, getattr(pb_utils.TritonError, code))


def shape_range(config: dict, name: str):
    """(min shape, max shape) of an input with -1 dims, batch excluded, from the config parameter the export writes;
    None for an input without one."""
    raw = config.get("parameters", {}).get(f"shape_range.{name}", {}).get("string_value", "")
    if not raw:
        return None
    bounds = json.loads(raw)
    return tuple(bounds["min"]), tuple(bounds["max"])


class TritonPythonModel:
    def initialize(self, args):
        config = json.loads(args["model_config"])
        self.model_name = args["model_name"]
        # For a Python-based backend, model_repository is the model's own directory.
        path = os.path.join(
            args["model_repository"], args["model_version"], config.get("default_model_filename") or "model.onnx"
        )
        if not os.path.exists(path):
            raise pb_utils.TritonModelException(f"{self.model_name}: model file {path} is missing: run `make export`")
        accelerators = config.get("optimization", {}).get("execution_accelerators", {})
        ignored = [a.get("name", "?") for kind in accelerators.values() for a in kind]
        if ignored:
            # The GPU container's C++ backend uses these (TensorRT); this CPU build of ONNX Runtime cannot.
            pb_utils.Logger.log_warn(
                f"{self.model_name}: execution accelerators {ignored} are ignored by the CPU onnxruntime backend"
            )
        self.session = ort_session(config, path)
        self.batching = config.get("max_batch_size", 0) > 0
        self.input_names = [i["name"] for i in config["input"]]
        self.output_names = [o["name"] for o in config["output"]]
        session_inputs = {i.name for i in self.session.get_inputs()}
        missing = [name for name in self.input_names if name not in session_inputs]
        if missing:
            raise pb_utils.TritonModelException(
                f"{self.model_name}: config inputs {missing} are not inputs of {path} (it has {sorted(session_inputs)})"
            )
        # Requests can share one ORT run only when their non-batch shapes agree: with fixed dims they always do.
        self.variable_dims = any(int(d) == -1 for i in config["input"] for d in i["dims"])
        # The sizes the export verified and TensorRT profiles cover (export/repository.py shape_range_parameters):
        # Triton itself takes any size for a -1 dim, so this backend refuses the others.
        self.shape_ranges = [shape_range(config, name) for name in self.input_names]
        # An optional input may be absent; every other one Triton guarantees is there.
        self.optional_inputs = any(i.get("optional", False) for i in config["input"])
        pb_utils.Logger.log_info(
            f"{self.model_name}: ONNX Runtime {ort.__version__} session on {path} "
            f"(intra_op={self.session.get_session_options().intra_op_num_threads}, batching={self.batching})"
        )

    def execute(self, requests):
        responses = [None] * len(requests)
        try:
            members = []  # (index, input arrays in config order)
            if len(self.input_names) == 1 and not self.optional_inputs:
                members = [(index, [request.inputs()[0].as_numpy()]) for index, request in enumerate(requests)]
            else:
                for index, request in enumerate(requests):
                    arrays = self.read_inputs(request)
                    if isinstance(arrays, str):
                        responses[index] = pb_utils.InferenceResponse(error=triton_error(arrays, INVALID_ARG))
                    else:
                        members.append((index, arrays))
            if self.variable_dims:
                members = self.within_range(members, responses)
            if self.variable_dims and len(members) > 1:
                groups = {}
                for member in members:
                    groups.setdefault(tuple(a.shape[1:] for a in member[1]), []).append(member)
                for group in groups.values():
                    self.run_group(group, responses)
            elif members:
                self.run_group(members, responses)
        except Exception as error:  # never let anything take the instance down
            self.fail_rest(responses, f"{self.model_name}: {type(error).__name__}: {error}")
        return responses

    def within_range(self, members, responses):
        """The members whose variable dims are within their inputs' ranges; the others get an error response."""
        kept = []
        for index, arrays in members:
            for name, bounds, array in zip(self.input_names, self.shape_ranges, arrays):
                if bounds is not None and not all(low <= d <= high for d, low, high in zip(array.shape[1:], *bounds)):
                    message = (f"{self.model_name}: input '{name}' has shape {list(array.shape)}; this model takes "
                               f"[N, {', '.join(f'{a}..{b}' if a != b else str(a) for a, b in zip(*bounds))}]: send "
                               f"sizes within that range")
                    responses[index] = pb_utils.InferenceResponse(error=triton_error(message, INVALID_ARG))
                    break
            else:
                kept.append((index, arrays))
        return kept

    def read_inputs(self, request):
        """The request's input arrays in config order, or the name of an (optional) input it lacks."""
        tensors = {tensor.name(): tensor for tensor in request.inputs()}
        arrays = []
        for name in self.input_names:
            tensor = tensors.get(name)
            if tensor is None:
                return f"input '{name}' is missing"
            arrays.append(tensor.as_numpy())
        return arrays

    def run_group(self, members, responses):
        if len(members) == 1:
            feed = dict(zip(self.input_names, members[0][1]))
        else:
            # np.concatenate of the requests' arrays beats filling a preallocated batch row by row (issue 9)
            feed = {name: np.concatenate([arrays[position] for _, arrays in members])
                    for position, name in enumerate(self.input_names)}
        try:
            outputs = self.session.run(self.output_names, feed)
        except Exception as error:
            if len(members) == 1:
                # ONNX Runtime's InvalidArgument is about the inputs (an id out of an embedding's range, a shape the
                # graph refuses): the request's fault. Anything else (out of memory, a kernel failing) is ours.
                if isinstance(error, InvalidArgument):
                    message, code = f"{self.model_name}: ONNX Runtime rejected the request: {error}", INVALID_ARG
                else:
                    message = f"{self.model_name}: ONNX Runtime failed: {type(error).__name__}: {error}"
                    code = INTERNAL
                responses[members[0][0]] = pb_utils.InferenceResponse(error=triton_error(message, code))
                return
            # One bad request must not fail its neighbours: run each alone to find it.
            for member in members:
                self.run_group([member], responses)
            return
        Tensor, Response, names = pb_utils.Tensor, pb_utils.InferenceResponse, self.output_names
        if len(members) == 1:
            responses[members[0][0]] = Response([Tensor(name, output) for name, output in zip(names, outputs)])
            return
        rows = len(members)
        if len(names) == 1 and len(outputs[0]) == rows:
            # every request one row (the common case under load): iterating a [rows, 1, ...] view yields each
            # request's output without a Python slice per request
            name = names[0]
            per_row = outputs[0].reshape(rows, 1, *outputs[0].shape[1:])
            for (index, _), output in zip(members, per_row):
                responses[index] = Response([Tensor(name, output)])
            return
        stop = 0
        for index, arrays in members:
            start, stop = stop, stop + len(arrays[0])
            responses[index] = Response([Tensor(name, output[start:stop]) for name, output in zip(names, outputs)])

    def fail_rest(self, responses, message):
        for index, response in enumerate(responses):
            if response is None:
                responses[index] = pb_utils.InferenceResponse(error=triton_error(message, INTERNAL))

    def finalize(self):
        self.session = None

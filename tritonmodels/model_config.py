"""A python model's contract, read from the config Triton hands to `initialize` (args["model_config"]).

Every python model here takes its tensor names, dtypes, dims and parameters from its config.pbtxt (generated from
models.toml), never from constants of its own: a config that does not fit the model fails loading with an error
naming the model, the field and the fix.
"""

import json
import os

import triton_python_backend_utils as pb_utils


class ModelConfig:
    def __init__(self, args):
        self.config = json.loads(args["model_config"])
        self.name = self.config["name"]
        self.inputs = self.config.get("input", [])
        self.outputs = self.config.get("output", [])
        self.version_dir = os.path.join(args["model_repository"], args["model_version"])

    def error(self, message: str) -> Exception:
        return pb_utils.TritonModelException(f"{self.name}: {message}")

    def integer(self, key: str, default: int | None = None) -> int:
        """A positive integer parameter (Triton passes parameters as strings); required when default is None."""
        raw = self.config.get("parameters", {}).get(key, {}).get("string_value")
        if raw is None and default is not None:
            return default
        try:
            value = int(raw)
        except (TypeError, ValueError):
            value = 0
        if value <= 0:
            raise self.error(f"parameter {key} must be a positive integer, got {raw!r}; fix it in models.toml")
        return value

    def string_input(self) -> str:
        """The name of the model's one input, a TYPE_STRING tensor (execute takes a request's first input)."""
        if len(self.inputs) != 1 or self.inputs[0]["data_type"] != "TYPE_STRING":
            raise self.error(f"needs exactly one TYPE_STRING input, got {self.inputs}; fix models.toml")
        return self.inputs[0]["name"]

    def only_output(self, data_type: str | None = None) -> tuple[str, list[int], object]:
        """(name, dims, numpy dtype) of the model's one output, of `data_type` when given."""
        if len(self.outputs) != 1 or data_type not in (None, self.outputs[0]["data_type"]):
            kind = f"{data_type} " if data_type else ""
            raise self.error(f"needs exactly one {kind}output, got {self.outputs}; fix models.toml")
        output = self.outputs[0]
        return output["name"], [int(d) for d in output["dims"]], pb_utils.triton_string_to_numpy(output["data_type"])

    def deployed_file(self, filename: str) -> str:
        """The path of a file the export deploys into the version folder; loading fails when it is missing."""
        path = os.path.join(self.version_dir, filename)
        if not os.path.isfile(path):
            raise self.error(f"{path} is missing; run `make export`")
        return path


def invalid_request(message: str):
    """A response carrying one request's own INVALID_ARG error: the rest of the batch still gets answers."""
    return pb_utils.InferenceResponse(error=pb_utils.TritonError(message, pb_utils.TritonError.INVALID_ARG))


def answer_in_one_batch(requests, decode, rejected, run) -> list:
    """One response per request, in order, with the model run once for the whole batch. `decode` turns a request's
    one input (as numpy, [N, 1]) into its N rows; a request it refuses with `rejected` gets its own INVALID_ARG error.
    `run` turns every row decoded from the batch into {output name: array}, of which each request gets its rows.
    (Triton has checked each input's name, datatype and shape against the config before execute.)"""
    responses = [None] * len(requests)
    rows, owners = [], []  # owners: (request index, its first and last+1 row in rows)
    for index, request in enumerate(requests):
        try:
            decoded = decode(request.inputs()[0].as_numpy().reshape(-1))
        except rejected as error:
            responses[index] = invalid_request(str(error))
            continue
        owners.append((index, len(rows), len(rows) + len(decoded)))
        rows += decoded
    if rows:
        outputs = run(rows)
        for index, start, stop in owners:
            responses[index] = pb_utils.InferenceResponse(
                [pb_utils.Tensor(name, array[start:stop]) for name, array in outputs.items()])
    return responses

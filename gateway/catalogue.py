"""What the JSON API serves, generated from models.toml: one endpoint per served Triton model, with its request and
response JSON Schemas (OpenAPI shows one per model) and the description GET /v1/models gives.

Nothing here knows a model by name. A TYPE_STRING input takes a JSON string (sent as UTF-8) or {"b64": "..."} (bytes,
for images), and a model whose one input is TYPE_STRING also takes multipart uploads, one file per item. Any other
input takes nested lists of exactly its dims per item; a -1 dim takes any size within the input's range
(core.repository.shape_ranges), the same for every item of one request (Triton takes one array per input).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

from core.repository import served_names, shape_ranges
from core.spec import ModelSpec, Spec, Tensor

JSON_TYPES = {"TYPE_BOOL": "boolean", "TYPE_STRING": "string"}
MIN_JSON_VALUES = 65_536  # about 10 ms of parsing, whatever the body holds
INTEGER_DTYPES = {"TYPE_INT8", "TYPE_INT16", "TYPE_INT32", "TYPE_INT64", "TYPE_UINT8", "TYPE_UINT16", "TYPE_UINT32",
                  "TYPE_UINT64"}


@dataclass(frozen=True)
class Endpoint:
    name: str  # the Triton model name (a variant's differs from its spec entry's)
    spec: ModelSpec
    ranges: tuple[tuple[str, tuple[int, ...], tuple[int, ...]], ...] = ()  # (input, min, max) of inputs with -1 dims

    def bounds(self, tensor: Tensor) -> tuple[tuple[int, ...], tuple[int, ...]]:
        """(min shape, max shape) of an input per item: its dims, or for -1 dims the range it was exported for."""
        return next(((low, high) for name, low, high in self.ranges if name == tensor.name), (tensor.dims, tensor.dims))

    @property
    def path(self) -> str:
        return f"/v1/models/{self.name}:predict"

    @property
    def inputs(self) -> tuple[Tensor, ...]:
        return self.spec.inputs

    @property
    def outputs(self) -> tuple[Tensor, ...]:
        return self.spec.outputs

    @property
    def max_items(self) -> int:
        return self.spec.batching.max_batch_size

    @property
    def takes_files(self) -> bool:
        """One input, TYPE_STRING: multipart uploads are its items."""
        return len(self.inputs) == 1 and self.inputs[0].dtype == "TYPE_STRING"

    @property
    def flat(self) -> bool:
        """One output, with labels: each prediction is {label, score, scores}; otherwise {outputs: {...}}."""
        return len(self.outputs) == 1 and bool(self.outputs[0].labels)

    @cached_property
    def max_json_values(self) -> int:
        """A bound on the JSON values (keys included) of any request this endpoint takes, with a margin; bodies past it
        are refused before they are parsed (gateway/bodies.py). At least 65,536, so that texts may hold commas."""
        values = 8  # the object, `inputs`, `top` and their values
        for tensor in self.inputs:
            if tensor.dtype == "TYPE_STRING":
                per_item = 3  # "text", or {"b64": "..."}
            else:
                lists, width = 0, 1
                for dim in self.bounds(tensor)[1]:  # the largest shape it takes (a -1 dim: its range's top)
                    lists += width
                    width *= dim
                per_item = lists + width
            values += 2 + self.max_items * per_item
        return max(MIN_JSON_VALUES, values + values // 10 + 1024)

    # ---- JSON Schemas -----------------------------------------------------------------------------------------

    def item_schema(self, tensor: Tensor) -> dict:
        if tensor.dtype == "TYPE_STRING":
            return {"oneOf": [{"type": "string", "description": "sent as UTF-8"},
                              {"type": "object", "required": ["b64"], "additionalProperties": False,
                               "properties": {"b64": {"type": "string", "contentEncoding": "base64",
                                                      "description": "bytes, e.g. a PNG or JPEG file"}}}]}
        schema: dict = {"type": JSON_TYPES.get(tensor.dtype,
                                               "integer" if tensor.dtype in INTEGER_DTYPES else "number")}
        for low, high in reversed(list(zip(*self.bounds(tensor)))):
            schema = {"type": "array", "items": schema, "minItems": low, "maxItems": high}
        return schema

    def batch_schema(self, tensor: Tensor) -> dict:
        return {"type": "array", "items": self.item_schema(tensor), "minItems": 1, "maxItems": self.max_items,
                "description": f"one item per prediction; {tensor.dtype} {list(tensor.dims)} each"}

    def request_schema(self) -> dict:
        by_name = {"type": "object", "required": [t.name for t in self.inputs], "additionalProperties": False,
                   "properties": {t.name: self.batch_schema(t) for t in self.inputs},
                   "description": "items by input name; every input has the same number of items"}
        inputs = {"oneOf": [self.batch_schema(self.inputs[0]), by_name]} if len(self.inputs) == 1 else by_name
        return {"title": f"{self.name} request", "type": "object", "required": ["inputs"],
                "additionalProperties": False,
                "properties": {"inputs": inputs,
                               "top": {"type": "integer", "minimum": 1,
                                       "description": "keep only the K best labels in `scores`, best first"}}}

    def multipart_schema(self) -> dict:
        return {"type": "object", "required": ["inputs"],
                "properties": {"inputs": {"type": "array", "maxItems": self.max_items,
                                          "items": {"type": "string", "format": "binary"},
                                          "description": "one file per item"},
                               "top": {"type": "integer", "minimum": 1}}}

    @staticmethod
    def prediction_schema(tensor: Tensor) -> dict:
        return {"type": "object", "required": ["label", "score", "scores"],
                "properties": {"label": {"type": "string", "enum": list(tensor.labels)},
                               "score": {"type": "number"},
                               "scores": {"type": "object", "additionalProperties": {"type": "number"},
                                          "description": "every label's score in the model's order; with `top` "
                                                         "the K best, best first"}}}

    def response_schema(self) -> dict:
        if self.flat:
            item = self.prediction_schema(self.outputs[0])
        else:
            item = {"type": "object", "required": ["outputs"], "properties": {"outputs": {
                "type": "object", "properties": {
                    t.name: self.prediction_schema(t) if t.labels else self.item_schema(t) for t in self.outputs}}}}
        return {"title": f"{self.name} response", "type": "object", "required": ["model", "predictions"],
                "properties": {"model": {"type": "string", "const": self.name},
                               "predictions": {"type": "array", "items": item}}}

    def describe(self) -> dict:
        """GET /v1/models/<name>: what to send and what comes back."""
        return {
            "name": self.name, "kind": self.spec.kind, "description": self.spec.description,
            "predict": self.path, "max_items": self.max_items, "takes_files": self.takes_files,
            "inputs": [{"name": t.name, "dtype": t.dtype, "dims": list(t.dims)} for t in self.inputs],
            "outputs": [{"name": t.name, "dtype": t.dtype, "dims": list(t.dims),
                         **({"labels": list(t.labels)} if t.labels else {})} for t in self.outputs],
        }


def endpoints(spec: Spec, repository: Path) -> tuple[Endpoint, ...]:
    """Every Triton model the repository serves for this spec, in spec order: a spec entry not exported yet (no
    config.pbtxt in the repository) is not served, so it gets no endpoint (`make export` writes it)."""
    return tuple(Endpoint(name, m, tuple((r.input, r.min, r.max) for r in shape_ranges(m).values()))
                 for m in spec.models for name in served_names(m, repository)
                 if (repository / name / "config.pbtxt").is_file())

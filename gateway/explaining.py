"""POST /v1/models/<name>:explain: why a model answers what it does for one item, computed through Triton by the
client's model-agnostic methods (modelport.explain: occlusion for images, leave-one-word-out for text, Kernel SHAP
for other tensors), at most `budget` requests of max_batch_size items, each charged to the caller's rate limit.

Kernel SHAP compares the input with a reference input, the `baseline`: by default the mean of the model's held-out
data (models.toml's `heldout`) for floating-point inputs that are not images, as SHAP's own explainers take the mean
of a background set (zeros would be far outside the data for most tabular models); zeros otherwise.

A model whose one input is an encoded image (an ensemble that decodes it, then classifies the pixels) is explained on
the pixels: the decoding step runs once, and the classifying step is explained by occlusion over the decoded image,
which the answer carries so that the heatmap can be drawn over it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Optional

from pathlib import Path

import numpy as np

import modelport
from core.spec import Spec, Tensor
from gateway import inputs
from gateway.backend import problem_of
from gateway.catalogue import Endpoint
from gateway.problems import InvalidInput
from modelport.explain import DEFAULT_BUDGET, METHODS

MAX_BUDGET = 32  # requests: a 32-item model explained with 1,024 items, about a second of one Triton instance
# Kernel SHAP's least squares runs on the event loop: (coalitions x features), at most 1,024 x 512, is ~50 ms of CPU
MAX_SHAP_FEATURES = 512
# The perturbed copies of the item are built in memory at once: at most this many values (numbers, or a text's bytes)
MAX_EXPLAIN_VALUES = 4 * 1024 * 1024
OPTIONS = ("method", "output", "budget", "baseline", "patch", "seed")
IMAGE_FORMATS = ("FORMAT_NHWC", "FORMAT_NCHW")
IMAGE_CHANNELS = (1, 3, 4)
FLOAT_DTYPES = ("TYPE_FP16", "TYPE_FP32", "TYPE_FP64", "TYPE_BF16")


@dataclass(frozen=True)
class Decoding:
    """An ensemble of two steps whose first turns the request's bytes into an image the second classifies."""

    decoder: str  # the first step's Triton model
    image: str  # its output, the decoded image
    classifier: str  # the second step's Triton model
    pixels: str  # the classifier's input the image goes to
    size: int  # values in one decoded image


def is_image(tensor: Tensor) -> bool:
    """A numeric input laid out as an image: its format says so, or it is H x W x C with a usual channel count."""
    dims = tensor.dims
    return tensor.format in IMAGE_FORMATS or (len(dims) == 3 and min(dims) > 0 and dims[-1] in IMAGE_CHANNELS
                                              and min(dims[:2]) >= 4)


def heldout_mean(endpoint: Endpoint) -> Optional[dict[str, np.ndarray]]:
    """Each input's mean over the held-out data (npz keys by input name, or `x` for a single input), when every input
    is floating-point and not an image and the data is there; else None (the explainer's zeros)."""
    source = endpoint.spec.onnx.heldout if endpoint.spec.onnx is not None else None
    if source is None or not Path(source).is_file() or not all(
            t.dtype in FLOAT_DTYPES and -1 not in t.dims and not is_image(t) for t in endpoint.inputs):
        return None
    means = {}
    with np.load(source, allow_pickle=False) as heldout:
        for tensor in endpoint.inputs:
            key = tensor.name if tensor.name in heldout.files else "x" if len(endpoint.inputs) == 1 else None
            if key not in heldout.files or heldout[key].shape[1:] != tensor.dims or not len(heldout[key]):
                return None
            means[tensor.name] = heldout[key].astype(np.float64).mean(axis=0).astype(tensor.numpy_dtype)
    return means if all(np.isfinite(m).all() for m in means.values()) else None


@dataclass(frozen=True)
class ExplainRequest:
    arrays: dict[str, np.ndarray]  # one item per input, with the batch axis
    method: Optional[str]
    output: Optional[str]
    budget: int
    baseline: Any
    patch: Optional[int]
    seed: int


def decoding_of(endpoint: Endpoint, spec: Spec) -> Optional[Decoding]:
    """The decoding ensemble's steps if `endpoint` is one (see the module's doc), else None."""
    steps = endpoint.spec.steps
    if not endpoint.takes_files or len(steps) != 2:
        return None
    by_name = {m.name: m for m in spec.models}
    first, second = by_name.get(steps[0].model), by_name.get(steps[1].model)
    if first is None or second is None or len(second.inputs) != 1:
        return None
    produced = {ensemble: own for own, ensemble in steps[0].output_map}
    consumed = {ensemble: own for own, ensemble in steps[1].input_map}
    for ensemble_name, own in produced.items():
        tensor = first.tensor(own)
        if tensor is not None and tensor.format in IMAGE_FORMATS and ensemble_name in consumed:
            return Decoding(first.name, own, second.name, consumed[ensemble_name], math.prod(tensor.dims))
    return None


def request_schema(endpoint: Endpoint) -> dict:
    """The explain body's JSON Schema, for OpenAPI: predict's `inputs` (one item), and the options."""
    schema = endpoint.request_schema()
    properties = {"inputs": schema["properties"]["inputs"],
                  "method": {"type": "string", "enum": list(METHODS),
                             "description": "default: by the input's kind (image, text, other tensors)"},
                  "output": {"type": "string", "enum": [t.name for t in endpoint.outputs]},
                  "budget": {"type": "integer", "minimum": 1, "maximum": MAX_BUDGET, "default": DEFAULT_BUDGET,
                             "description": "requests to the model, each charged to the key's rate limit"},
                  "baseline": {"description": "the reference input: a number, or one item shaped as an input item"},
                  "patch": {"type": "integer", "minimum": 1, "description": "occlusion's square side in pixels"},
                  "seed": {"type": "integer", "minimum": 0}}
    return {**schema, "title": f"{endpoint.name} explain request", "properties": properties}


def _integer(document: dict, name: str, default: Optional[int], low: int, high: Optional[int]) -> Optional[int]:
    value = document.get(name)
    if value is None:  # left out, or null: the default
        return default
    if isinstance(value, bool) or not isinstance(value, int) or value < low or (high is not None and value > high):
        allowed = f"{low}..{high}" if high is not None else f">= {low}"
        raise InvalidInput(f"{name} must be an integer in {allowed}, got {value!r}", field=f"/{name}",
                           fix=f"send e.g. \"{name}\": {default if default is not None else low}, or leave it out")
    return value


def _baseline(endpoint: Endpoint, value: Any) -> Any:
    """A number (occlusion's fill, or every feature's reference value), or one item shaped as `inputs` takes it (an
    object by input name for several inputs), checked like inputs are."""
    if value is None or (isinstance(value, (int, float)) and not isinstance(value, bool)):
        return value
    wrapped = {"inputs": {k: [v] for k, v in value.items()} if isinstance(value, dict) else [value]}
    try:
        checked = inputs.from_json(endpoint, wrapped)
    except InvalidInput as problem:
        field = "/baseline" + (problem.field or "").removeprefix("/inputs")
        raise InvalidInput(problem.detail.replace("`inputs`", "`baseline`"), field=field,
                           fix="send a number, or one item shaped as an input item (an object by input name for "
                               "several inputs)") from None
    arrays = {name: array[0] for name, array in checked.arrays.items()}
    return arrays if len(arrays) > 1 else next(iter(arrays.values()))


def _bound_budget(endpoint: Endpoint, decoding: Optional[Decoding], arrays: dict[str, np.ndarray],
                  budget: int) -> None:
    """Refuse a budget whose perturbed copies of this item would hold more than MAX_EXPLAIN_VALUES values."""
    if decoding is not None:
        per_item = decoding.size
    else:
        per_item = sum(sum(len(v) for v in a[0].ravel()) if a.dtype == object else a[0].size for a in arrays.values())
    per_request = max(1, endpoint.max_items)
    allowed = MAX_EXPLAIN_VALUES // (max(1, per_item) * per_request)
    if budget > allowed:
        fix = f'send "budget": {allowed} or less' if allowed >= 1 else "explain a smaller item"
        raise InvalidInput(f"{endpoint.name}: a budget of {budget} builds up to {budget * per_request} copies of an "
                           f"item of {per_item} values, more than the gateway holds at once "
                           f"({MAX_EXPLAIN_VALUES} values)", field="/budget", fix=fix)


def parse(endpoint: Endpoint, document: Any, decoding: Optional[Decoding] = None) -> ExplainRequest:
    """The body: `inputs` as predict takes them, one item, and the explanation's options."""
    if not isinstance(document, dict):
        raise InvalidInput("the body must be a JSON object with `inputs`", field="", fix='send {"inputs": [...]}')
    unknown = sorted(set(document) - {"inputs", *OPTIONS})
    if unknown:
        raise InvalidInput(f"unknown field {unknown[0]!r}; the body has `inputs` and optionally "
                           f"{', '.join(OPTIONS)}", field=f"/{unknown[0]}", fix=f"remove {unknown[0]!r}")
    parsed = inputs.from_json(endpoint, {"inputs": document.get("inputs")} if "inputs" in document else {})
    if parsed.items != 1:
        raise InvalidInput(f"{endpoint.name}: explain takes one item, got {parsed.items}", field="/inputs",
                           fix="send one item, and explain each item on its own")
    method = document.get("method")
    if method is not None and method not in METHODS:
        raise InvalidInput(f"method must be one of {', '.join(METHODS)}, got {method!r}", field="/method",
                           fix="leave it out: the method follows the input's kind")
    output = document.get("output")
    names = [t.name for t in endpoint.outputs]
    if output is not None and output not in names:
        raise InvalidInput(f"{endpoint.name}: no output {output!r}; its outputs are {', '.join(names)}",
                           field="/output", fix="leave it out to explain the output with labels")
    strings = any(t.dtype == "TYPE_STRING" for t in endpoint.inputs)
    image = len(endpoint.inputs) == 1 and is_image(endpoint.inputs[0])
    features = sum(a[0].size for a in parsed.arrays.values())
    if (method == "kernel-shap" or (method is None and not strings and not image)) and features > MAX_SHAP_FEATURES:
        raise InvalidInput(f"{endpoint.name}: Kernel SHAP over {features} values is more than the gateway computes "
                           f"({MAX_SHAP_FEATURES})", field="/method" if method else "/inputs",
                           fix="explain it with the client (modelport.Client.explain), which runs where you are")
    budget = _integer(document, "budget", DEFAULT_BUDGET, 1, MAX_BUDGET)
    _bound_budget(endpoint, decoding, parsed.arrays, budget)
    return ExplainRequest(parsed.arrays, method, output, budget,
                          _baseline(endpoint, document.get("baseline")),
                          _integer(document, "patch", None, 1, None), _integer(document, "seed", 0, 0, 2**31 - 1))


async def explain(client: modelport.AsyncClient, endpoint: Endpoint, decoding: Optional[Decoding],
                  mean: Optional[dict[str, np.ndarray]], request: ExplainRequest,
                  version: Optional[str] = None) -> dict:
    """The explanation as JSON (modelport's Explanation.to_dict()), plus `reference` (what the baseline input was)
    and, when the model takes an encoded image, `image`, the decoded pixels. `version`: of the explained model (the
    classifier, for an encoded image), its stable one; None, Triton's newest."""
    baseline, reference = request.baseline, "given" if request.baseline is not None else "zeros"
    if baseline is None and mean is not None and request.method in (None, "kernel-shap"):
        baseline, reference = (mean if len(mean) > 1 else next(iter(mean.values()))), "held-out mean"
    options = dict(method=request.method, output=request.output, budget=request.budget, baseline=baseline,
                   patch=request.patch, seed=request.seed)
    model, item, extra = endpoint.name, request.arrays, {}
    try:
        if decoding is not None:
            model = decoding.decoder
            decoded = (await client.infer(decoding.decoder, request.arrays, outputs=[decoding.image]))[decoding.image]
            model, item = decoding.classifier, {decoding.pixels: decoded}
            options["output"] = None  # the ensemble's output names are its own; the classifier's labelled one
            extra = {"explained": decoding.classifier, "image": decoded[0].tolist()}
        found = await client.explain(model, item, version=version, **options)
    except modelport.ModelportError as error:
        if isinstance(error, modelport.InvalidInput) and error.server_message is None:
            # the client refused before sending (a method that does not fit the input): the caller's to fix
            raise InvalidInput(f"{endpoint.name}: {error.message.removeprefix(model + ': ')}",
                               fix="leave `method` out (it follows the input's kind), or raise `budget`") from None
        raise problem_of(error, endpoint.name) from None
    if found.method == "leave-one-out":
        reference = "given" if request.baseline is not None else None
    return {**found.to_dict(), "model": endpoint.name, "reference": reference, **extra}

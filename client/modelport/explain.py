"""Why a model answered what it did, for any model, computed through the server in batched requests.

The method follows the input's kind:

- images (a numeric input laid out HWC/CHW/HW): an occlusion heatmap per class -- grey out one square patch at a
  time and record how much each class's score drops;
- text (one TYPE_STRING input holding UTF-8 text): leave one word out (whitespace words) and re-ask;
- any other tensors (tabular rows, token ids, several inputs): Kernel SHAP -- coalitions of features kept from the
  input or taken from a baseline, fitted by the Shapley-kernel weighted least squares under the efficiency
  constraint, so that the attributions sum to prediction - baseline. Every coalition is asked when the budget
  allows it (then the values are the exact Shapley values), otherwise paired coalitions are sampled.

Each method is independent of how the server is called: `plan()` builds every input it needs as one batch,
the caller runs that batch through the model (`Client.explain` sends it in requests of at most max_batch_size items;
an asyncio caller such as a web route awaits `AsyncClient.infer` on `plan.inputs`), and `plan.explanation(scores)`
turns the scores into an `Explanation`. `budget` is in requests: at most budget x max_batch_size items are asked.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable, Mapping, Optional, Union

import numpy as np

from .errors import InvalidInput
from .metadata import ModelMetadata
from .validation import Signature

OCCLUSION, LEAVE_ONE_OUT, KERNEL_SHAP = "occlusion", "leave-one-out", "kernel-shap"
METHODS = (OCCLUSION, LEAVE_ONE_OUT, KERNEL_SHAP)
DEFAULT_BUDGET = 8  # requests; at max_batch_size 32: 256 items, enough for exact Kernel SHAP up to 8 features
IMAGE_CHANNELS = (1, 3, 4)
MIN_IMAGE_SIDE = 4


@dataclass(frozen=True)
class ExplainOptions:
    """How to explain. `method` None picks one from the input's kind; `baseline` is the reference input (an image's
    fill value, a tensor row or a dict of them by input name; default zeros); `patch` is the occlusion square's side
    in pixels (default a quarter of the smaller side); `seed` makes sampled Kernel SHAP repeatable."""

    method: Optional[str] = None
    output: Optional[str] = None
    budget: int = DEFAULT_BUDGET
    baseline: Any = None
    patch: Optional[int] = None
    seed: int = 0

    def __post_init__(self) -> None:
        if self.method is not None and self.method not in METHODS:
            raise InvalidInput(f"explain: method must be one of {', '.join(METHODS)} (or None to pick by the "
                               f"input's kind), got {self.method!r}")
        if isinstance(self.budget, bool) or not isinstance(self.budget, int) or self.budget < 1:
            raise InvalidInput(f"explain: budget is a number of requests >= 1, got {self.budget!r}")
        if self.patch is not None and (isinstance(self.patch, bool) or not isinstance(self.patch, int)
                                       or self.patch < 1):
            raise InvalidInput(f"explain: patch is a side in pixels >= 1, got {self.patch!r}")


@dataclass(frozen=True)
class Explanation:
    """`attributions[c]` says how much each feature raised class c's score (negative: lowered it). Its shape after
    the class axis: the image's (H, W) for occlusion, one value per word for text, the item's values flattened for
    Kernel SHAP (`features` names them). `prediction` and `baseline` are the scores of the input and of the
    reference input (the image all occluded, the baseline row; for text None, or the `baseline` text's scores)."""

    model: str
    output: str
    method: str
    labels: tuple[str, ...]
    prediction: np.ndarray
    baseline: Optional[np.ndarray]
    attributions: np.ndarray
    features: Optional[tuple[str, ...]]
    requests: int
    items: int

    @property
    def target(self) -> int:
        """The predicted class: the index of the highest score."""
        return int(np.argmax(self.prediction))

    @property
    def label(self) -> str:
        return self.labels[self.target]

    def of(self, label: Union[str, int, None] = None) -> np.ndarray:
        """One class's attributions, by label or index; default the predicted class."""
        if label is None:
            return self.attributions[self.target]
        if isinstance(label, str):
            if label not in self.labels:
                raise InvalidInput(f"{self.model}: no class {label!r}; the classes are: {', '.join(self.labels)}",
                                   model=self.model)
            return self.attributions[self.labels.index(label)]
        if isinstance(label, bool) or not isinstance(label, int) or not 0 <= label < len(self.labels):
            raise InvalidInput(f"{self.model}: class index {label!r} is not in 0..{len(self.labels) - 1}",
                               model=self.model)
        return self.attributions[label]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: what the CLI prints with --json and what a web route returns."""
        return {"model": self.model, "output": self.output, "method": self.method, "label": self.label,
                "labels": list(self.labels), "prediction": self.prediction.tolist(),
                "baseline": self.baseline.tolist() if self.baseline is not None else None,
                "attributions": self.attributions.tolist(),
                "features": list(self.features) if self.features is not None else None,
                "requests": self.requests, "items": self.items}


@dataclass(frozen=True)
class Target:
    """What the server says about the model being explained: its signature, config (None if unreadable), the output
    explained and that output's class labels (None: the classes are named by index)."""

    signature: Signature
    config: Any
    output: str
    labels: Optional[tuple[str, ...]]

    @property
    def items_per_request(self) -> int:
        batch = self.signature.max_batch_size
        return batch if self.signature.batched and batch else 1


@dataclass(frozen=True)
class Plan:
    """Every input the method needs, as one batch by input name (item 0 is the input itself, item 1 the reference
    input when `has_reference`), and how to turn the output's scores for all of them into attributions."""

    target: Target
    method: str
    inputs: Mapping[str, np.ndarray]
    attribute: Callable[[np.ndarray], np.ndarray] = field(repr=False)
    features: Optional[tuple[str, ...]] = None
    has_reference: bool = True

    @property
    def items(self) -> int:
        return len(next(iter(self.inputs.values())))

    @property
    def requests(self) -> int:
        return math.ceil(self.items / self.target.items_per_request)

    def explanation(self, scores: np.ndarray) -> Explanation:
        """`scores`: the explained output for every item of `inputs`, in order (the batch axis first)."""
        scores = np.asarray(scores, dtype=np.float64).reshape(self.items, -1)
        meta = self.target.signature.metadata
        labels = self.target.labels or tuple(str(i) for i in range(scores.shape[1]))
        if len(labels) != scores.shape[1]:
            raise InvalidInput(f"{meta.name}: output '{self.target.output}' has {scores.shape[1]} values per item "
                               f"but {len(labels)} labels", model=meta.name)
        return Explanation(model=meta.name, output=self.target.output, method=self.method, labels=labels,
                           prediction=scores[0], baseline=scores[1] if self.has_reference else None,
                           attributions=self.attribute(scores),
                           features=self.features, requests=self.requests, items=self.items)


def choose_output(metadata: ModelMetadata, config: Any, output: Optional[str]) -> str:
    """The output to explain: the one asked for, else the only one with labels, else the first."""
    names = [t.name for t in metadata.outputs]
    if output is not None:
        if output not in names:
            raise InvalidInput(f"{metadata.name}: has no output {output!r}; its outputs are: {', '.join(names)}",
                               model=metadata.name)
        return output
    labelled = [o.name for o in config.output if o.label_filename] if config is not None else []
    return labelled[0] if len(labelled) == 1 else names[0]


def _image_axes(metadata: ModelMetadata, config: Any, shape: tuple[int, ...]) -> Optional[tuple[int, int]]:
    """The (height, width) axes of one item if it is an image, else None."""
    fmt = ""
    if config is not None and len(config.input) == 1:
        from tritonclient.grpc import model_config_pb2 as mc

        fmt = mc.ModelInput.Format.Name(config.input[0].format)
    declared = fmt in ("FORMAT_NHWC", "FORMAT_NCHW")  # the config says it is an image, whatever its size
    if len(shape) == 3 and (fmt == "FORMAT_NCHW" or (fmt != "FORMAT_NHWC" and shape[-1] not in IMAGE_CHANNELS
                                                     and shape[0] in IMAGE_CHANNELS)):
        return (1, 2) if min(shape[1:]) >= MIN_IMAGE_SIDE or declared else None
    if len(shape) == 3 and (fmt == "FORMAT_NHWC" or shape[-1] in IMAGE_CHANNELS):
        return (0, 1) if min(shape[:2]) >= MIN_IMAGE_SIDE or declared else None
    if len(shape) == 2 and min(shape) >= MIN_IMAGE_SIDE:
        return (0, 1)
    return None


def choose_method(target: Target, item: Mapping[str, np.ndarray]) -> str:
    meta = target.signature.metadata
    if len(meta.inputs) == 1 and meta.inputs[0].datatype == "BYTES":
        return LEAVE_ONE_OUT
    if len(meta.inputs) == 1 and _image_axes(meta, target.config, item[meta.inputs[0].name].shape) is not None:
        return OCCLUSION
    return KERNEL_SHAP


def plan(target: Target, item: Mapping[str, np.ndarray], options: ExplainOptions) -> Plan:
    """`item`: one input item by input name, without the batch axis, already validated (prepare_inputs)."""
    meta = target.signature.metadata
    method = options.method or choose_method(target, item)
    max_items = options.budget * target.items_per_request
    if max_items < 3:
        raise InvalidInput(f"{meta.name}: a budget of {options.budget} request(s) of {target.items_per_request} "
                           f"item(s) is too small to explain anything (at least 3 items); raise the budget",
                           model=meta.name)
    if method == KERNEL_SHAP:
        return kernel_shap_plan(target, item, options, max_items)
    if len(meta.inputs) != 1:
        raise InvalidInput(f"{meta.name}: {method} explains a model with one input, this one has "
                           f"{len(meta.inputs)}; use method={KERNEL_SHAP!r}", model=meta.name)
    name = meta.inputs[0].name
    if method == LEAVE_ONE_OUT:
        return leave_one_out_plan(target, name, item[name], options.baseline, max_items)
    return occlusion_plan(target, name, item[name], options, max_items)


# Images ---------------------------------------------------------------------------------------------------------

def _starts(side: int, patch: int, stride: int) -> list[int]:
    starts = list(range(0, side - patch + 1, stride))
    if starts[-1] != side - patch:  # cover the last rows/columns too
        starts.append(side - patch)
    return starts


def occlusion_plan(target: Target, name: str, image: np.ndarray, options: ExplainOptions, max_items: int) -> Plan:
    meta = target.signature.metadata
    axes = _image_axes(meta, target.config, image.shape)
    if axes is None:
        raise InvalidInput(f"{meta.name}: input '{name}' of shape {list(image.shape)} is not an image (HWC, CHW or "
                           f"HW with sides >= {MIN_IMAGE_SIDE}); use method={KERNEL_SHAP!r}", model=meta.name)
    height, width = image.shape[axes[0]], image.shape[axes[1]]
    patch = min(options.patch or max(1, min(height, width) // 4), height, width)
    stride = max(1, patch // 2)
    fill = 0.0 if options.baseline is None else float(options.baseline)
    while len(_starts(height, patch, stride)) * len(_starts(width, patch, stride)) + 2 > max_items:
        stride += 1
        if stride > max(height, width):
            raise InvalidInput(f"{meta.name}: the budget allows {max_items} items, too few for {patch}-pixel patches; "
                               f"raise the budget or the patch", model=meta.name)
    windows = [(r, c) for r in _starts(height, patch, stride) for c in _starts(width, patch, stride)]
    # Move the spatial axes first so that one slice occludes every channel of a window.
    spatial = np.moveaxis(image, axes, (0, 1))
    batch = np.repeat(spatial[None], len(windows) + 2, axis=0)
    batch[1] = fill
    for i, (r, c) in enumerate(windows, start=2):
        batch[i, r:r + patch, c:c + patch] = fill
    batch = np.moveaxis(batch, (1, 2), (axes[0] + 1, axes[1] + 1))

    def attribute(scores: np.ndarray) -> np.ndarray:
        drops = scores[0] - scores[2:]  # (windows, classes): how much hiding each window cost each class
        heat = np.zeros((scores.shape[1], height, width))
        covered = np.zeros((height, width))
        for (r, c), drop in zip(windows, drops):
            heat[:, r:r + patch, c:c + patch] += drop[:, None, None]
            covered[r:r + patch, c:c + patch] += 1
        return heat / np.maximum(covered, 1)

    return Plan(target, OCCLUSION, {name: batch}, attribute)


# Text -----------------------------------------------------------------------------------------------------------

def leave_one_out_plan(target: Target, name: str, value: np.ndarray, baseline: Any, max_items: int) -> Plan:
    meta = target.signature.metadata
    cells = np.asarray(value, dtype=object).reshape(-1)
    if cells.size != 1:
        raise InvalidInput(f"{meta.name}: leave-one-out explains one text; input '{name}' holds {cells.size} values",
                           model=meta.name)
    try:
        text = cells[0].decode("utf-8") if isinstance(cells[0], bytes) else str(cells[0])
    except UnicodeDecodeError:
        raise InvalidInput(f"{meta.name}: input '{name}' is not UTF-8 text, which leave-one-out needs (for encoded "
                           f"images, explain the model that takes the decoded pixels)", model=meta.name) from None
    words = text.split()
    if not words:
        raise InvalidInput(f"{meta.name}: the text has no words to explain", model=meta.name)
    # No reference text unless one is given: a model may refuse the empty text (the sentiment tokenizer does).
    references = [] if baseline is None else [str(baseline)]
    first = 1 + len(references)
    # Over budget, neighbouring words leave together and share their group's attribution.
    group = math.ceil(len(words) / (max_items - first))
    spans = [range(start, min(start + group, len(words))) for start in range(0, len(words), group)]
    texts = [text, *references] + [" ".join(w for i, w in enumerate(words) if i not in span) for span in spans]
    batch = np.array([t.encode("utf-8") for t in texts], dtype=object).reshape(len(texts), *np.shape(value))

    def attribute(scores: np.ndarray) -> np.ndarray:
        found = np.zeros((scores.shape[1], len(words)))
        for span, row in zip(spans, scores[first:]):
            found[:, span.start:span.stop] = ((scores[0] - row) / len(span))[:, None]
        return found

    return Plan(target, LEAVE_ONE_OUT, {name: batch}, attribute, features=tuple(words),
                has_reference=bool(references))


# Tensors --------------------------------------------------------------------------------------------------------

def _baseline_item(target: Target, item: Mapping[str, np.ndarray], baseline: Any) -> dict[str, np.ndarray]:
    meta = target.signature.metadata
    names = [t.name for t in meta.inputs]
    if baseline is None:
        return {n: np.zeros_like(item[n]) for n in names}
    given = baseline if isinstance(baseline, Mapping) else {names[0]: baseline} if len(names) == 1 else None
    if given is None or set(given) != set(names):
        raise InvalidInput(f"{meta.name}: baseline takes one value per input, by name: {', '.join(names)}",
                           model=meta.name)
    found = {}
    for n in names:
        value = np.asarray(given[n])
        if value.size != 1 and value.shape != item[n].shape:
            raise InvalidInput(f"{meta.name}: baseline for input '{n}' has shape {list(value.shape)}; give a "
                               f"number or one item of shape {list(item[n].shape)}", model=meta.name)
        found[n] = np.broadcast_to(value, item[n].shape).astype(item[n].dtype)
    return found


def shapley_kernel_weight(features: int, size: int) -> float:
    """Lundberg & Lee's kernel: (M - 1) / (C(M, s) s (M - s)) for a coalition of s of M features."""
    return (features - 1) / (math.comb(features, size) * size * (features - size))


def coalitions(features: int, max_count: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(masks, weights): every coalition but the empty and the full one when they fit in max_count, each weighted by
    the Shapley kernel; else max_count sampled in complementary pairs, sizes drawn by the kernel, weighted equally."""
    if features < 2:
        return np.zeros((0, features), dtype=bool), np.zeros(0)
    if features < 30 and 2 ** features - 2 <= max_count:
        codes = np.arange(1, 2 ** features - 1)
        masks = ((codes[:, None] >> np.arange(features)) & 1).astype(bool)
        weights = np.array([shapley_kernel_weight(features, int(s)) for s in masks.sum(axis=1)])
        return masks, weights
    rng = np.random.default_rng(seed)
    sizes = np.arange(1, features)
    probability = 1.0 / (sizes * (features - sizes))
    probability /= probability.sum()
    pairs = max(1, max_count // 2)
    masks = np.zeros((2 * pairs, features), dtype=bool)
    for i, size in enumerate(rng.choice(sizes, size=pairs, p=probability)):
        masks[2 * i, rng.choice(features, size=size, replace=False)] = True
        masks[2 * i + 1] = ~masks[2 * i]
    return masks, np.ones(len(masks))


def shapley_values(masks: np.ndarray, weights: np.ndarray, scores: np.ndarray, prediction: np.ndarray,
                   baseline: np.ndarray) -> np.ndarray:
    """Solve min sum_z w(z) (f(z) - f(baseline) - z.phi)^2 subject to sum(phi) = f(x) - f(baseline), for every
    class at once: the last feature's value is eliminated through the constraint. Returns (classes, features)."""
    features = masks.shape[1]
    total = prediction - baseline  # (classes,)
    if features == 1:
        return total[:, None]
    z = masks.astype(np.float64)
    target = scores - baseline - z[:, -1:] * total  # (coalitions, classes)
    design = z[:, :-1] - z[:, -1:]
    root = np.sqrt(weights)[:, None]
    head, *_ = np.linalg.lstsq(design * root, target * root, rcond=None)  # (features - 1, classes)
    return np.concatenate([head, (total - head.sum(axis=0))[None]], axis=0).T


def kernel_shap_plan(target: Target, item: Mapping[str, np.ndarray], options: ExplainOptions,
                     max_items: int) -> Plan:
    meta = target.signature.metadata
    strings = [t.name for t in meta.inputs if t.datatype == "BYTES"]
    if strings:
        raise InvalidInput(f"{meta.name}: Kernel SHAP masks numeric inputs; {', '.join(strings)} hold strings "
                           f"(a model with one text input is explained by {LEAVE_ONE_OUT!r})", model=meta.name)
    names = [t.name for t in meta.inputs]
    reference = _baseline_item(target, item, options.baseline)
    sizes = [item[n].size for n in names]
    flat_x = [item[n].reshape(-1) for n in names]
    flat_b = [reference[n].reshape(-1) for n in names]
    features = sum(sizes)
    masks, weights = coalitions(features, max_items - 2, options.seed)
    full = np.vstack([np.ones((1, features), bool), np.zeros((1, features), bool), masks])
    batch, offset = {}, 0
    for n, size, x, b in zip(names, sizes, flat_x, flat_b):
        keep = full[:, offset:offset + size]
        batch[n] = np.where(keep, x, b).astype(item[n].dtype).reshape(len(full), *item[n].shape)
        offset += size
    labels = tuple(f"{n}[{i}]" if size > 1 else n for n, size in zip(names, sizes) for i in range(size))

    def attribute(scores: np.ndarray) -> np.ndarray:
        return shapley_values(masks, weights, scores[2:], scores[0], scores[1])

    return Plan(target, KERNEL_SHAP, batch, attribute, features=labels)


def one_item(signature: Signature, arrays: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The single item to explain, without the batch axis; a batch of several is refused."""
    if not signature.batched:
        return dict(arrays)
    sizes = {len(a) for a in arrays.values()}
    if sizes != {1}:
        model = signature.metadata.name
        raise InvalidInput(f"{model}: explain takes one item, got a batch of {max(sizes)}; explain each item on its "
                           f"own", model=model)
    return {name: array[0] for name, array in arrays.items()}


def explain(run: Callable[[Mapping[str, np.ndarray]], np.ndarray], target: Target,
            item: Mapping[str, np.ndarray], options: ExplainOptions) -> Explanation:
    """Plan, run the batch through `run` (inputs by name, batch axis first -> the target output's scores), and
    attribute. For a model without a batch axis `run` gets one item at a time."""
    built = plan(target, item, options)
    if target.signature.batched:
        scores = np.asarray(run(built.inputs))
    else:
        scores = np.stack([np.asarray(run({n: a[i] for n, a in built.inputs.items()})) for i in range(built.items)])
    return built.explanation(scores)



async def explain_async(run: Callable[[Mapping[str, np.ndarray]], Awaitable[np.ndarray]], target: Target,
                        item: Mapping[str, np.ndarray], options: ExplainOptions) -> Explanation:
    """`explain` for an asyncio caller: `run` is awaited (AsyncClient.explain; a web route)."""
    built = plan(target, item, options)
    if target.signature.batched:
        scores = np.asarray(await run(built.inputs))
    else:
        scores = np.stack([np.asarray(await run({n: a[i] for n, a in built.inputs.items()}))
                           for i in range(built.items)])
    return built.explanation(scores)

"""models.toml -> typed, validated model specs.

Every value is checked when its dataclass is built, so a wrong spec fails before any training or conversion, with a
message naming the model, the field, the bad value and what is allowed. Field names follow Triton's model_config.proto
where one exists (max_batch_size, preferred_batch_size, max_queue_delay_microseconds, ...).
"""

from __future__ import annotations

import importlib.util
import json
import re
import tomllib
import zipfile
from dataclasses import dataclass, field, fields, replace
from pathlib import Path

from tritonclient.grpc import model_config_pb2 as mc

from core.errors import SpecError

KINDS = ("onnx", "python", "ensemble")
VARIANTS = ("fp32", "int8", "fp16", "pruned", "pruned_int8")
PRUNING_METHODS = ("weights", "units")  # export/prune.py
DTYPES = tuple(n for n in mc.DataType.keys() if n != "TYPE_INVALID")
FORMATS = ("FORMAT_NONE", "FORMAT_NHWC", "FORMAT_NCHW")
INSTANCE_KINDS = ("KIND_AUTO", "KIND_CPU", "KIND_GPU")
NAME_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_\-]*$")
# Source formats of onnx-kind models; a source's suffix (for a folder: its config.json, or a [model.text] table) picks
# one unless the spec's `source_format` names it (a folder a trainer has not written yet has no config.json).
SOURCE_FORMATS = ("keras", "savedmodel", "onnx", "huggingface", "torch_export", "torchscript")
TORCH_FORMATS = ("huggingface", "torch_export", "torchscript")  # export/torch_source.py; they need the torch extra
ACTIVATIONS = ("none", "softmax", "sigmoid")
# What an output predicts, which decides how the parity gate judges it (export/verify.py, docs/export-gate.md).
TASKS = ("classification", "multilabel", "regression")
TOKENIZER_INPUTS = ("input_ids", "attention_mask", "token_type_ids")  # what a generated tokenizer model can emit
# Optional extras (`make venv EXTRAS=NAME`, env/locks.py) and the modules that tell they are installed.
EXTRAS = {"torch": ("torch", "transformers", "onnxscript")}
# The python models' package: the export deploys its hf_tokenizer.py for a [model.text] table and its
# keras_text_step.py for a Keras model that takes raw strings through TextVectorization (no model.py to write).
TRITONMODELS = Path(__file__).resolve().parents[1] / "tritonmodels"
KERAS_STRING_LAYERS = ("TextVectorization", "StringLookup", "IntegerLookup", "Hashing")
KERAS_SPLIT_LAYERS = ("TextVectorization", "StringLookup")  # those the generated step reproduces
# Text validation shared with `sentiment_tokenizer`, so bad texts get the same answers (deployed beside the model).
TEXT_ENCODING = TRITONMODELS / "text_encoding.py"


def installed_extras() -> frozenset[str]:
    """The extras whose modules can be imported here (found, not imported: that would cost seconds)."""
    return frozenset(e for e, modules in EXTRAS.items() if all(importlib.util.find_spec(m) for m in modules))


ALL_EXTRAS = frozenset(EXTRAS)


def install_hint(extra: str) -> str:
    return (f"the optional {extra} extra ({', '.join(EXTRAS[extra])}) is not installed here; "
            f"`make venv EXTRAS={extra}` installs it")


def variant_model_name(base: str, variant: str) -> str:
    """The Triton model name of a variant: fp32 keeps the base name, others get a suffix (digits_int8)."""
    return base if variant == "fp32" else f"{base}_{variant}"


def _require(ok: bool, model: str, fld: str, value: object, allowed: str) -> None:
    if not ok:
        raise SpecError(model, fld, value, allowed)


def _is_int(v: object) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


@dataclass(frozen=True)
class Tensor:
    """One input or output, as Triton sees it: dims exclude the batch dimension."""

    model: str
    name: str
    dtype: str
    dims: tuple[int, ...]
    format: str = "FORMAT_NONE"
    labels: tuple[str, ...] = ()
    # Bounds of the variable (-1) dims, full shapes like dims (batch excluded), as TensorRT's profiles take them;
    # () = not declared: an onnx model's export takes it from the held-out data (dataset.Dataset.shape_range).
    min_dims: tuple[int, ...] = ()
    opt_dims: tuple[int, ...] = ()
    max_dims: tuple[int, ...] = ()
    task: str = ""  # an output's TASKS entry; "" = told by the held-out targets and labels (export/verify.py)

    def __post_init__(self) -> None:
        where = f"{self.name}"
        _require(isinstance(self.name, str) and NAME_RE.match(self.name) is not None, self.model, "name", self.name,
                 "a tensor name of letters, digits, _ and -, starting with a letter")
        _require(self.dtype in DTYPES, self.model, f"{where}.dtype", self.dtype, ", ".join(DTYPES))
        _require(len(self.dims) > 0 and all(_is_int(d) and (d > 0 or d == -1) for d in self.dims), self.model,
                 f"{where}.dims", list(self.dims),
                 "a non-empty list of positive integers, or -1 for a variable size (the batch dimension is implicit)")
        for bound in ("min_dims", "opt_dims", "max_dims"):
            shape = getattr(self, bound)
            _require(not shape or (self.variable and len(shape) == len(self.dims) and all(
                _is_int(b) and (b == d if d > 0 else b > 0) for b, d in zip(shape, self.dims))), self.model,
                f"{where}.{bound}", list(shape),
                f"a shape like dims {list(self.dims)} with a positive size in place of each -1 (only for dims with -1)")
        if self.min_dims and self.max_dims:
            _require(all(a <= b for a, b in zip(self.min_dims, self.max_dims)), self.model, f"{where}.max_dims",
                     list(self.max_dims), f">= min_dims {list(self.min_dims)} in every position")
        if self.opt_dims:
            low, high = self.min_dims or self.opt_dims, self.max_dims or self.opt_dims
            _require(all(a <= o <= b for a, o, b in zip(low, self.opt_dims, high)), self.model, f"{where}.opt_dims",
                     list(self.opt_dims), f"between min_dims {list(low)} and max_dims {list(high)}")
        _require(self.format in FORMATS, self.model, f"{where}.format", self.format, ", ".join(FORMATS))
        _require(self.format == "FORMAT_NONE" or len(self.dims) == 3, self.model, f"{where}.format", self.format,
                 "FORMAT_NHWC/FORMAT_NCHW only for 3 dims (H, W, C or C, H, W)")
        if self.labels:
            _require(all(isinstance(x, str) and x and "\n" not in x for x in self.labels), self.model,
                     f"{where}.labels", list(self.labels), "non-empty single-line strings")
            _require(len(self.dims) == 1 and self.dims[0] == len(self.labels), self.model, f"{where}.labels",
                     f"{len(self.labels)} labels for dims {list(self.dims)}", "one label per class of a 1-D output")
        _require(self.task in ("", *TASKS), self.model, f"{where}.task", self.task,
                 f"{', '.join(TASKS)} (or leave it out: the held-out targets and the labels tell)")

    @property
    def variable(self) -> bool:
        """Some dim is -1: requests may differ in its size (within min_dims..max_dims)."""
        return -1 in self.dims

    @property
    def numpy_dtype(self) -> str:
        return {"TYPE_FP32": "float32", "TYPE_FP16": "float16", "TYPE_FP64": "float64", "TYPE_INT64": "int64",
                "TYPE_INT32": "int32", "TYPE_INT8": "int8", "TYPE_UINT8": "uint8", "TYPE_BOOL": "bool",
                "TYPE_STRING": "object"}.get(self.dtype, "object")


@dataclass(frozen=True)
class Gate:
    """Parity tolerances. The defaults are the product's promise; change them only with a reason.

    Labelled outputs (classification, multi-label) are judged on their probabilities and decisions, regression and
    other unlabelled outputs on their error relative to the source output's p1-p99 range (export/verify.py). A
    `[model.gate.<output>]` table overrides any of these for one output (`outputs`)."""

    model: str
    fp32_max_abs_diff: float = 1e-4
    fp32_min_argmax_agreement: float = 1.0  # fp32: top-1 (classification) / per-label decision (multi-label) agreement
    int8_max_accuracy_drop: float = 1.0  # percentage points of held-out accuracy (multi-label: micro-F1)
    fp16_max_abs_diff: float = 1e-2
    fp16_min_agreement: float = 0.99
    int8_min_agreement: float = 0.95
    fp32_max_range_error: float = 1e-4  # max |diff| / (p99 - p1 of the source output)
    fp16_max_range_error: float = 1e-2
    int8_max_range_error: float = 0.05
    fp32_max_mean_relative_error: float = 1e-4  # mean |diff| / mean |source output|
    fp16_max_mean_relative_error: float = 1e-2
    int8_max_mean_relative_error: float = 0.02
    # pruned: judged like int8, by decisions and the task's metric (a pruned model is meant to differ)
    pruned_min_agreement: float = 0.95
    pruned_max_accuracy_drop: float = 1.0
    pruned_max_range_error: float = 0.05
    pruned_max_mean_relative_error: float = 0.02
    multilabel_threshold: float = 0.5  # a multi-label output's decision: score >= threshold
    outputs: tuple[tuple[str, Gate], ...] = ()  # per-output overrides, by output name
    table: str = field(default="gate", compare=False)  # where the values come from, for error messages

    def __post_init__(self) -> None:
        for name in GATE_TOLERANCES:
            v = getattr(self, name)
            fraction = name in GATE_FRACTIONS
            _require(isinstance(v, (int, float)) and not isinstance(v, bool) and v >= 0 and (not fraction or v <= 1),
                     self.model, f"{self.table}.{name}", v, "a fraction between 0 and 1" if fraction else "a number >= 0")

    def limit(self, output: str, name: str) -> float:
        """A tolerance for one output: its [model.gate.<output>] value, else the model's."""
        return getattr(dict(self.outputs).get(output, self), name)


GATE_TOLERANCES = tuple(f for f in Gate.__dataclass_fields__ if f not in ("model", "outputs", "table"))
GATE_FRACTIONS = ("fp32_min_argmax_agreement", "fp16_min_agreement", "int8_min_agreement",
                  "pruned_min_agreement")


@dataclass(frozen=True)
class Rollout:
    """[model.lifecycle]: how many exported versions stay on disk, and when a canary is rolled back (or promoted) on
    its own. The gateway judges the canary over `window_seconds` once it has `min_requests` (core/lifecycle.py,
    docs/lifecycle.md); every limit compares the canary with stable over the same window."""

    model: str
    keep_versions: int = 3  # numbered versions kept on disk; stable and canary are never removed
    window_seconds: float = 300.0
    min_requests: int = 50  # canary requests (shadow: compared requests) before the window is judged
    max_error_rate: float = 0.02  # canary's failed share of requests
    max_p99_ratio: float = 2.0  # canary p99 / stable p99
    max_disagreement: float = 0.10  # share of requests where canary's top-1 differs from stable's (shadow, canary)
    max_accuracy_drop: float = 0.05  # stable's live accuracy minus canary's, from feedback (min_feedback judgements)
    min_feedback: int = 30
    auto_promote: bool = False  # promote after a clean window instead of waiting for `rollout promote`

    def __post_init__(self) -> None:
        n = self.model
        for fld in ("keep_versions", "min_requests", "min_feedback"):
            v = getattr(self, fld)
            _require(_is_int(v) and v >= (1 if fld != "min_feedback" else 0), n, f"lifecycle.{fld}", v,
                     "an integer >= 1" if fld != "min_feedback" else "an integer >= 0")
        _require(isinstance(self.window_seconds, (int, float)) and not isinstance(self.window_seconds, bool)
                 and self.window_seconds > 0, n, "lifecycle.window_seconds", self.window_seconds, "seconds > 0")
        for fld in ("max_error_rate", "max_disagreement", "max_accuracy_drop"):
            v = getattr(self, fld)
            _require(isinstance(v, (int, float)) and not isinstance(v, bool) and 0 <= v <= 1, n,
                     f"lifecycle.{fld}", v, "a fraction between 0 and 1")
        _require(isinstance(self.max_p99_ratio, (int, float)) and not isinstance(self.max_p99_ratio, bool)
                 and self.max_p99_ratio >= 1, n, "lifecycle.max_p99_ratio", self.max_p99_ratio,
                 "a number >= 1 (canary p99 / stable p99)")
        _require(isinstance(self.auto_promote, bool), n, "lifecycle.auto_promote", self.auto_promote, "true or false")


ROLLOUT_FIELDS = tuple(f for f in Rollout.__dataclass_fields__ if f != "model")


def _rollout(model: str, table: object) -> Rollout:
    _require(isinstance(table, dict), model, "lifecycle", table, "a table: [model.lifecycle]")
    bad = sorted(set(table) - set(ROLLOUT_FIELDS))
    _require(not bad, model, f"lifecycle.{bad[0] if bad else ''}", table.get(bad[0]) if bad else None,
             ", ".join(ROLLOUT_FIELDS))
    return Rollout(model, **table)


@dataclass(frozen=True)
class Step:
    """One ensemble step: input_map/output_map go from the step model's tensor names to the ensemble's."""

    model: str
    input_map: tuple[tuple[str, str], ...]
    output_map: tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class TextModel:
    """A [model.text] table: the export generates `tokenizer` (a python model running the checkpoint's tokenizer.json)
    and `ensemble` (text in -> tokenizer -> this model -> its outputs out)."""

    ensemble: str
    tokenizer: str
    input: str
    max_text_bytes: int
    samples: Path | None = None  # the ensemble's load-test payloads
    loadtest_weight: int = 1  # the ensemble's share of the mixed load-test scenario
    instance_count: int = 1  # the generated tokenizer's instances (`make tune` writes it here)


@dataclass(frozen=True)
class OnnxSource:
    """Where an ONNX-served model comes from and how it is verified."""

    source: Path
    heldout: Path
    calibration: Path | None
    trainer: str | None
    variants: tuple[str, ...]
    gate: Gate
    tensorrt: bool
    optional_variants: tuple[str, ...] = ()  # left out with a warning when no recipe passes their gate
    declared_format: str | None = None  # the spec's `source_format`, when it names one
    activation: str = "none"  # torch sources: applied to the model's output (HF checkpoints: to its logits)
    text: TextModel | None = None
    # Keras sources taking raw strings: the name of the TextVectorization layer the export splits off into a python
    # step (keras_text_models); this model is then the numeric rest, token ids in.
    keras_text_layer: str = ""
    pruning: str = "weights"  # how the pruned variant prunes (PRUNING_METHODS)

    @property
    def source_format(self) -> str:
        if self.declared_format is not None:
            return self.declared_format
        suffix = self.source.suffix
        if suffix in (".keras", ".h5"):
            return "keras"
        if suffix == ".onnx":
            return "onnx"
        if suffix == ".pt2":
            return "torch_export"
        if suffix in (".pt", ".pth", ".ts", ".torchscript"):
            return "torchscript"
        return "huggingface" if (self.source / "config.json").is_file() else "savedmodel"


@dataclass(frozen=True)
class PythonCode:
    code: Path
    files: tuple[Path, ...]


@dataclass(frozen=True)
class Batching:
    """How requests are batched: Triton's max_batch_size and its dynamic_batching message."""

    max_batch_size: int
    preferred_batch_size: tuple[int, ...] = ()
    max_queue_delay_microseconds: int = 0
    queue_timeout_microseconds: int = 0
    max_queue_size: int = 0
    model: str = field(default="", compare=False, repr=False)  # the [[model]] entry, for error messages

    def __post_init__(self) -> None:
        n = self.model
        _require(_is_int(self.max_batch_size) and self.max_batch_size >= 1, n, "max_batch_size",
                 self.max_batch_size, "an integer >= 1 (every model batches, so requests are [N, ...dims])")
        _require(all(_is_int(b) and 1 <= b <= self.max_batch_size for b in self.preferred_batch_size), n,
                 "preferred_batch_size", list(self.preferred_batch_size),
                 f"integers between 1 and max_batch_size ({self.max_batch_size})")
        for fld in ("max_queue_delay_microseconds", "queue_timeout_microseconds", "max_queue_size"):
            v = getattr(self, fld)
            _require(_is_int(v) and v >= 0, n, fld, v, "an integer >= 0 (0 = no delay / no timeout / unbounded)")


@dataclass(frozen=True)
class Runtime:
    """Where and how the model runs: Triton's instance_group, model_warmup, parameters and response_cache, and the
    ONNX Runtime session options of onnx models."""

    instance_count: int = 1
    instance_kind: str = "KIND_AUTO"
    warmup_batch_sizes: tuple[int, ...] = ()  # checked against max_batch_size and the inputs by ModelSpec
    intra_op_thread_count: int = 1
    inter_op_thread_count: int = 1
    execution_mode: int = 0
    # 0 = every ONNX Runtime optimization, its own default and the one the parity gate runs with. Level 1 (extended)
    # leaves out the layout transforms: measured 3.2x slower on digits_mobilenet, 2.8x on digits at batch 16.
    graph_optimization_level: int = 0
    parameters: tuple[tuple[str, str], ...] = ()
    # Triton's response cache: identical requests are answered from the server's cache (`serve --cache-size`).
    response_cache: bool = False
    model: str = field(default="", compare=False, repr=False)  # the [[model]] entry, for error messages

    def __post_init__(self) -> None:
        n = self.model
        _require(_is_int(self.instance_count) and self.instance_count >= 1, n, "instance_count",
                 self.instance_count, "an integer >= 1")
        _require(self.instance_kind in INSTANCE_KINDS, n, "instance_kind", self.instance_kind,
                 ", ".join(INSTANCE_KINDS))
        for fld in ("intra_op_thread_count", "inter_op_thread_count"):
            v = getattr(self, fld)
            _require(_is_int(v) and v >= 0, n, fld, v, "an integer >= 0 (0 = ONNX Runtime picks)")
        _require(self.execution_mode in (0, 1), n, "execution_mode", self.execution_mode,
                 "0 (sequential), 1 (parallel)")
        _require(self.graph_optimization_level in (0, -1, 1, 2), n, "graph_optimization_level",
                 self.graph_optimization_level,
                 "0 (all, the default), -1 (basic), 1 (basic + extended, no layout transforms), 2 (disabled), "
                 "as Triton's ORT backend maps optimization.graph.level")
        _require(isinstance(self.response_cache, bool), n, "response_cache", self.response_cache,
                 "true or false (true: Triton answers repeated requests from its cache; serve with --cache-size)")


@dataclass(frozen=True)
class LoadTest:
    """The model's part in load tests."""

    samples: Path | None = None  # request inputs: a folder of files, or a text file of lines (else heldout.npz rows)
    loadtest_weight: int = 1  # share of the mixed load-test scenario; 0 leaves the model out of the mix
    model: str = field(default="", compare=False, repr=False)  # the [[model]] entry, for error messages

    def __post_init__(self) -> None:
        _require(_is_int(self.loadtest_weight) and self.loadtest_weight >= 0, self.model, "loadtest_weight",
                 self.loadtest_weight, "an integer >= 0 (0 = not part of the mixed load-test scenario)")


@dataclass(frozen=True)
class Source:
    """What Triton serves, by kind: an ONNX export (onnx), model code (python) or steps (ensemble)."""

    onnx: OnnxSource | None = None
    python: PythonCode | None = None
    steps: tuple[Step, ...] = ()


# models.toml keys that a group of ModelSpec holds -> the group's attribute (the group's fields are named after them).
GROUPED_KEYS = {f.name: group for group, cls in (("batching", Batching), ("runtime", Runtime), ("loadtest", LoadTest))
                for f in fields(cls) if f.name != "model"}


@dataclass(frozen=True)
class ModelSpec:
    """One served model. models.toml's keys are flat; here they are grouped (GROUPED_KEYS) and each group checks its
    own values when built, while the checks that span groups run here."""

    name: str
    kind: str
    inputs: tuple[Tensor, ...]
    outputs: tuple[Tensor, ...]
    batching: Batching
    runtime: Runtime = Runtime()
    loadtest: LoadTest = LoadTest()
    source: Source = Source()
    description: str = ""
    raw: str = field(default="", compare=False, repr=False)  # canonical JSON of the TOML table: for fingerprints
    extra: str = ""  # the optional extra (EXTRAS) the export of this model needs; "" for none
    rollout: Rollout | None = None  # [model.lifecycle]; onnx models only (their versions are what a rollout moves)

    def __post_init__(self) -> None:
        n = self.name
        mbs, warmup = self.batching.max_batch_size, self.runtime.warmup_batch_sizes
        _require(self.loadtest.samples is None or (len(self.inputs) == 1 and self.inputs[0].dtype == "TYPE_STRING"),
                 n, "samples", str(self.loadtest.samples),
                 "only for models with one TYPE_STRING input (others load-test on their heldout.npz rows)")
        _require(all(_is_int(b) and 1 <= b <= mbs for b in warmup), n, "warmup_batch_sizes", list(warmup),
                 f"integers between 1 and max_batch_size ({mbs})")
        if warmup:
            # Triton warms up with zero data; an empty string is an invalid request to our python steps.
            strings = [t.name for t in self.inputs if t.dtype == "TYPE_STRING"]
            _require(not strings, n, "warmup_batch_sizes", list(warmup),
                     f"[] for models with TYPE_STRING inputs ({', '.join(strings)}): "
                     "zero-data warmup sends empty strings")
        variable = [t.name for t in self.inputs if t.variable]
        _require(not (variable and warmup), n, "warmup_batch_sizes", list(warmup),
                 f"[] for models with variable dims ({', '.join(variable)}): zero-data warmup needs fixed dims")
        unbounded = [t.name for t in self.inputs if t.variable and not (t.min_dims and t.max_dims)]
        _require(self.kind == "onnx" or not unbounded, n, f"{unbounded[0] if unbounded else ''}.max_dims", None,
                 "min_dims and max_dims for every input with -1 dims (only onnx models take them from held-out data)")
        if self.kind == "onnx":
            varying = [t.name for t in self.outputs if t.variable]
            _require(not varying, n, f"{varying[0] if varying else ''}.dims", "-1",
                     "fixed dims for the outputs of an onnx model (the parity gate compares fixed-size outputs; "
                     "inputs may have -1 dims)")
        _require(len(self.inputs) > 0, n, "input", [], "at least one [[model.input]] table")
        _require(len(self.outputs) > 0, n, "output", [], "at least one [[model.output]] table")
        names = [t.name for t in self.inputs + self.outputs]
        dup = sorted({x for x in names if names.count(x) > 1})
        _require(not dup, n, "input/output name", dup, "names unique within a model")
        if self.source.onnx is not None:
            preferred = self.batching.preferred_batch_size
            _require(preferred == tuple(sorted(set(preferred))), n, "preferred_batch_size", list(preferred),
                     "increasing, without repeats")

    def value(self, key: str):
        """A models.toml field's value, by the key written there (max_batch_size, instance_count, ...)."""
        return getattr(getattr(self, GROUPED_KEYS[key]), key) if key in GROUPED_KEYS else getattr(self, key)

    def with_values(self, **values) -> ModelSpec:
        """This model with grouped models.toml fields set by key; the groups and the model check them again."""
        groups: dict[str, dict] = {}
        for key, v in values.items():
            groups.setdefault(GROUPED_KEYS[key], {})[key] = v
        return replace(self, **{g: replace(getattr(self, g), **changed) for g, changed in groups.items()})

    @property
    def triton_names(self) -> tuple[str, ...]:
        if self.source.onnx is None:
            return (self.name,)
        return tuple(variant_model_name(self.name, v) for v in self.source.onnx.variants)

    def tensor(self, name: str) -> Tensor | None:
        return next((t for t in self.inputs + self.outputs if t.name == name), None)


@dataclass(frozen=True)
class BenchModels:
    """[bench]: the models the benchmark's reference plan (`make bench`) checks its targets on, by role."""

    tensors: str  # raw tensors in: Triton against the Flask and FastAPI baselines
    pipeline: str  # a pipeline of steps: dynamic batching on against off, served against in-process
    compute: str  # compute-bound: served samples/s against in-process ONNX Runtime


@dataclass(frozen=True)
class Spec:
    path: Path
    models: tuple[ModelSpec, ...]  # what this machine exports and serves: `skipped` is left out everywhere
    skipped: tuple[ModelSpec, ...] = ()  # models whose extra is not installed (ModelSpec.extra, install_hint)
    bench: BenchModels | None = None  # None: the file has no [bench] table (the benchmark then takes --model)

    @property
    def root(self) -> Path:
        return self.path.parent

    def model(self, triton_name: str) -> ModelSpec | None:
        return next((m for m in self.models if triton_name in m.triton_names), None)


# ---- parsing ---------------------------------------------------------------------------------------------------

_COMMON_KEYS = {"name", "kind", "description", "input", "output", "max_batch_size", "preferred_batch_size",
                "max_queue_delay_microseconds", "queue_timeout_microseconds", "max_queue_size", "instance_count",
                "instance_kind", "warmup_batch_sizes", "parameters", "samples", "loadtest_weight", "response_cache"}
_KIND_KEYS = {
    "onnx": {"source", "heldout", "calibration", "trainer", "variants", "optional_variants", "gate", "tensorrt",
             "source_format", "activation", "text", "intra_op_thread_count", "pruning",
             "inter_op_thread_count", "execution_mode", "graph_optimization_level", "lifecycle"},
    "python": {"code", "files"},
    "ensemble": {"step"},
}
_TENSOR_KEYS = {"name", "dtype", "dims", "format", "labels", "min_dims", "opt_dims", "max_dims", "task"}


def _tensors(model: str, table: dict, key: str) -> tuple[Tensor, ...]:
    items = table.get(key, [])
    _require(isinstance(items, list) and all(isinstance(t, dict) for t in items), model, key, items,
             f"an array of tables: [[model.{key}]]")
    out = []
    for t in items:
        unknown = sorted(set(t) - _TENSOR_KEYS)
        _require(not unknown, model, f"{key}.{unknown[0] if unknown else ''}", unknown, ", ".join(sorted(_TENSOR_KEYS)))
        for req in ("name", "dtype", "dims"):
            _require(req in t, model, f"{key}.{req}", None, f"required in every [[model.{key}]]")
        dims = t["dims"]
        _require(isinstance(dims, list), model, f"{t['name']}.dims", dims, "a list of positive integers")
        labels = t.get("labels", [])
        _require(isinstance(labels, list), model, f"{t['name']}.labels", labels, "a list of strings")
        bounds = {}
        for bound in ("min_dims", "opt_dims", "max_dims"):
            shape = t.get(bound, [])
            _require(isinstance(shape, list), model, f"{t['name']}.{bound}", shape, "a list of positive integers")
            bounds[bound] = tuple(shape)
        _require(key == "output" or "task" not in t, model, f"{t['name']}.task", t.get("task"),
                 "only on [[model.output]] tables")
        out.append(Tensor(model, t["name"], t["dtype"], tuple(dims), t.get("format", "FORMAT_NONE"), tuple(labels),
                          **bounds, task=t.get("task", "")))
    return tuple(out)


def _gate(model: str, table: object, outputs: tuple[Tensor, ...]) -> Gate:
    """[model.gate]: tolerances for every output, and [model.gate.<output>] tables overriding them for one output."""
    _require(isinstance(table, dict), model, "gate", table, "a table: [model.gate]")
    names = [t.name for t in outputs]
    allowed = f"{', '.join(GATE_TOLERANCES)}, or a [model.gate.<output>] table for one of {', '.join(names)}"
    for key, value in table.items():
        if isinstance(value, dict):
            _require(key in names, model, f"gate.{key}", value, allowed)
            bad = sorted(set(value) - set(GATE_TOLERANCES))
            _require(not bad, model, f"gate.{key}.{bad[0] if bad else ''}", bad, ", ".join(GATE_TOLERANCES))
        else:
            _require(key in GATE_TOLERANCES, model, f"gate.{key}", value, allowed)
    base = Gate(model, **{k: v for k, v in table.items() if not isinstance(v, dict)})
    per_output = tuple((k, replace(base, table=f"gate.{k}", **sub)) for k, sub in table.items() if isinstance(sub, dict))
    return replace(base, outputs=per_output)


def _path(root: Path, model: str, fld: str, value: object) -> Path:
    _require(isinstance(value, str) and value != "", model, fld, value, "a path relative to models.toml")
    p = Path(value)
    return p if p.is_absolute() else root / p


def _int_list(model: str, table: dict, key: str) -> tuple:
    v = table.get(key, [])
    _require(isinstance(v, list), model, key, v, "a list of integers")
    return tuple(v)


def _text_model(model: str, table: object, root: Path, fmt: str, inputs: tuple[Tensor, ...]) -> TextModel:
    _require(isinstance(table, dict), model, "text", table, "a table: [model.text]")
    keys = {"name", "input", "max_text_bytes", "samples", "loadtest_weight", "instance_count"}
    bad = sorted(set(table) - keys)
    _require(not bad, model, f"text.{bad[0] if bad else ''}", bad, ", ".join(sorted(keys)))
    _require(fmt == "huggingface", model, "text", fmt,
             "a Hugging Face checkpoint folder source (the generated tokenizer runs its tokenizer.json)")
    ensemble = table.get("name")
    _require(isinstance(ensemble, str) and NAME_RE.match(ensemble) is not None, model, "text.name", ensemble,
             "the Triton name of the text-in ensemble the export generates (letters, digits, _ and -)")
    text_input = table.get("input", "text")
    _require(isinstance(text_input, str) and NAME_RE.match(text_input) is not None and text_input not in
             TOKENIZER_INPUTS, model, "text.input", text_input, "a tensor name for the ensemble's TYPE_STRING input")
    max_bytes = table.get("max_text_bytes", 65536)
    _require(_is_int(max_bytes) and max_bytes > 0, model, "text.max_text_bytes", max_bytes, "an integer > 0")
    weight = table.get("loadtest_weight", 1)
    _require(_is_int(weight) and weight >= 0, model, "text.loadtest_weight", weight, "an integer >= 0")
    instances = table.get("instance_count", 1)
    _require(_is_int(instances) and instances >= 1, model, "text.instance_count", instances,
             "an integer >= 1 (instances of the generated tokenizer)")
    names = [t.name for t in inputs]
    _require("input_ids" in names and all(t.name in TOKENIZER_INPUTS and t.dtype == "TYPE_INT64" and len(t.dims) == 1
                                          and t.dims == inputs[0].dims and not t.variable for t in inputs), model,
             "input",
             [f"{t.name} {t.dtype} {list(t.dims)}" for t in inputs],
             f"input_ids, and any of {', '.join(TOKENIZER_INPUTS[1:])} the graph takes, all TYPE_INT64 with the same "
             "dims [max length]: what the generated tokenizer emits")
    return TextModel(ensemble, f"{ensemble}_tokenizer", text_input, max_bytes,
                     _path(root, model, "text.samples", table["samples"]) if "samples" in table else None, weight,
                     instances)


def text_models(m: ModelSpec) -> tuple[ModelSpec, ModelSpec]:
    """The tokenizer model and the ensemble a [model.text] table stands for, as if the spec listed them."""
    onnx, text = m.source.onnx, m.source.onnx.text
    ids = ", ".join(t.name for t in m.inputs)
    feeds = tuple((t.name, t.name) for t in m.inputs)
    batching = Batching(m.batching.max_batch_size)
    tokenizer = ModelSpec(
        name=text.tokenizer, kind="python", inputs=(Tensor(text.tokenizer, text.input, "TYPE_STRING", (1,)),),
        outputs=tuple(replace(t, model=text.tokenizer) for t in m.inputs), batching=batching,
        runtime=Runtime(instance_count=text.instance_count, instance_kind="KIND_CPU",
                        parameters=(("max_text_bytes", str(text.max_text_bytes)),), model=text.tokenizer),
        description=f"Generated from {m.name}'s [model.text]: UTF-8 text -> {ids} (int64 [{m.inputs[0].dims[0]}]) "
                    f"with the checkpoint's own tokenizer.json.",
        loadtest=LoadTest(text.samples, loadtest_weight=0), raw=m.raw, extra=m.extra,
        source=Source(python=PythonCode(TRITONMODELS / "hf_tokenizer.py", (
            onnx.source / "tokenizer.json", onnx.source / "tokenizer_config.json",
            TRITONMODELS / "hf_tokenization.py", TEXT_ENCODING))))
    ensemble = ModelSpec(
        name=text.ensemble, kind="ensemble", inputs=(Tensor(text.ensemble, text.input, "TYPE_STRING", (1,)),),
        outputs=tuple(replace(t, model=text.ensemble) for t in m.outputs), batching=batching,
        description=f"Generated from {m.name}'s [model.text]: UTF-8 text in, {m.outputs[0].name} out: "
                    f"{text.tokenizer} -> {m.name}.",
        loadtest=LoadTest(text.samples, text.loadtest_weight), raw=m.raw, extra=m.extra,
        source=Source(steps=(Step(text.tokenizer, ((text.input, text.input),), feeds),
                             Step(m.name, feeds, tuple((t.name, t.name) for t in m.outputs)))))
    return tokenizer, ensemble


def _keras_first_layer(model: str, source: Path) -> dict:
    """The config of the layer a .keras file's input feeds first, read from the archive's config.json (no Keras)."""
    try:
        with zipfile.ZipFile(source) as archive:
            layers = json.loads(archive.read("config.json"))["config"]["layers"]
    except (OSError, KeyError, ValueError, zipfile.BadZipFile) as e:
        raise SpecError(model, "source", str(source), f"a readable .keras file ({e})") from None
    return next((layer for layer in layers if layer.get("class_name") != "InputLayer"), {})


def keras_text_names(m: ModelSpec) -> tuple[str, str]:
    """(numeric model, python step) of a raw-strings Keras model, from its spec name or its numeric model's."""
    base = m.name.removesuffix("_numeric") if m.source.onnx is not None and m.source.onnx.keras_text_layer else m.name
    return f"{base}_numeric", f"{base}_preprocess"


def keras_text_models(m: ModelSpec) -> tuple[ModelSpec, ModelSpec, ModelSpec]:
    """A Keras model taking raw strings through TextVectorization or StringLookup, split the way a [model.text] table
    is served: the numeric rest (`<name>_numeric`, token ids in, exported to ONNX), the layer as a generated python
    step (`<name>_preprocess`) and an ensemble under the model's own name taking the strings."""
    text = m.inputs[0]
    _require(len(m.inputs) == 1 and text.dims == (1,), m.name, "input", [f"{t.name} {t.dtype} {list(t.dims)}"
                                                                         for t in m.inputs],
             "one TYPE_STRING input of dims [1] for a Keras model taking raw strings (one text per item)")
    layer = _keras_first_layer(m.name, m.source.onnx.source)
    kind, config = layer.get("class_name", "?"), layer.get("config", {})
    _require(kind in KERAS_SPLIT_LAYERS, m.name, f"{text.name}.dtype", text.dtype,
             f"TYPE_STRING inputs of a Keras model feeding a TextVectorization or StringLookup layer first (this one "
             f"feeds {kind}" + ("; IntegerLookup and Hashing on strings are not split off: apply them before the "
                                "model and declare their integer output as the input"
                                if kind in KERAS_STRING_LAYERS else "") + ")")
    where = f"{text.name} ({kind} {layer.get('name')})"
    if kind == "StringLookup":
        settings = {k: config.get(k) for k in ("output_mode", "invert", "num_oov_indices")}
        _require(settings == {"output_mode": "int", "invert": False, "num_oov_indices": 1}, m.name, where, settings,
                 'output_mode "int", invert false, num_oov_indices 1 (more OOV buckets hash with TensorFlow\'s '
                 "FarmHash, which the step does not reproduce)")
        length = 1
    else:
        settings = {k: config.get(k) for k in ("output_mode", "output_sequence_length", "standardize", "split")}
        _require(settings["output_mode"] == "int" and _is_int(settings["output_sequence_length"])
                 and settings["standardize"] in (None, "lower", "strip_punctuation", "lower_and_strip_punctuation")
                 and settings["split"] in (None, "whitespace", "character"), m.name, where, settings,
                 'output_mode "int" with an output_sequence_length, a built-in standardize and split (a callable has '
                 "no config to reproduce)")
        length = settings["output_sequence_length"]
    numeric, step = keras_text_names(m)
    ids = Tensor(numeric, "token_ids", "TYPE_INT64", (length,))
    outputs = tuple((t.name, t.name) for t in m.outputs)
    numeric_model = replace(
        m, name=numeric, inputs=(ids,), outputs=tuple(replace(t, model=numeric) for t in m.outputs),
        loadtest=LoadTest(loadtest_weight=0),
        description=f"The numeric part of {m.name}: token ids in (its TextVectorization layer runs in {step}). "
                    f"{m.description}".strip(),
        source=Source(onnx=replace(m.source.onnx, keras_text_layer=str(layer.get("name", "")))))
    batching = Batching(m.batching.max_batch_size)
    preprocess = ModelSpec(
        name=step, kind="python", inputs=(replace(text, model=step),), outputs=(replace(ids, model=step),),
        batching=batching, runtime=Runtime(instance_kind="KIND_CPU"),
        description=f"Generated from {m.name}'s {kind} layer: UTF-8 text -> token_ids (int64 [{length}]).",
        loadtest=LoadTest(loadtest_weight=0), raw=m.raw,
        source=Source(python=PythonCode(TRITONMODELS / "keras_text_step.py", (TRITONMODELS / "text_vectorization.py",
                                                                              TEXT_ENCODING))))
    ensemble = ModelSpec(
        name=m.name, kind="ensemble", inputs=m.inputs, outputs=m.outputs, batching=batching,
        description=m.description or f"UTF-8 text in: {step} -> {numeric}.", loadtest=m.loadtest, raw=m.raw,
        source=Source(steps=(Step(step, ((text.name, text.name),), (("token_ids", "token_ids"),)),
                             Step(numeric, (("token_ids", "token_ids"),), outputs))))
    return numeric_model, preprocess, ensemble


def _splits_keras_text(m: ModelSpec) -> bool:
    onnx = m.source.onnx
    return (onnx is not None and onnx.source_format == "keras" and onnx.text is None
            and any(t.dtype == "TYPE_STRING" for t in m.inputs) and onnx.source.is_file())


def parse_model(table: dict, root: Path) -> ModelSpec:
    """Build one ModelSpec from its [[model]] table; raises SpecError on the first wrong field."""
    name = table.get("name", "?")
    _require(isinstance(name, str) and NAME_RE.match(name) is not None, str(name), "name", name,
             "letters, digits, _ and -, starting with a letter (it becomes a Triton model directory)")
    kind = table.get("kind")
    _require(kind in KINDS, name, "kind", kind, ", ".join(KINDS))
    allowed = _COMMON_KEYS | _KIND_KEYS[kind]
    unknown = sorted(set(table) - allowed)
    _require(not unknown, name, unknown[0] if unknown else "", table.get(unknown[0]) if unknown else None,
             f"keys for kind {kind!r}: {', '.join(sorted(allowed))}")
    _require("max_batch_size" in table, name, "max_batch_size", None, "required: an integer >= 1")
    _require(isinstance(table.get("description", ""), str), name, "description", table.get("description"),
             "a string")
    params = table.get("parameters", {})
    _require(isinstance(params, dict) and all(isinstance(v, (str, int, float)) for v in params.values()), name,
             "parameters", params, "a table of string or number values (Triton model parameters)")

    onnx = python = None
    steps: tuple[Step, ...] = ()
    if kind == "onnx":
        _require("source" in table, name, "source", None, "required: a .keras file, a SavedModel dir or a .onnx file")
        _require("heldout" in table, name, "heldout", None,
                 "required: an .npz with x (model-ready inputs) and, per output, targets (y or y_<output>) for the parity gate")
        variants = table.get("variants", ["fp32"])
        _require(isinstance(variants, list) and variants and all(v in VARIANTS for v in variants)
                 and len(set(variants)) == len(variants) and "fp32" in variants, name, "variants", variants,
                 f"a list of distinct {', '.join(VARIANTS)} that includes fp32 (the reference variant)")
        optional = table.get("optional_variants", [])
        _require(isinstance(optional, list) and all(v in variants and v != "fp32" for v in optional), name,
                 "optional_variants", optional,
                 "a list of variants from `variants`, except fp32 (the reference variant is always required)")
        _require(not {"int8", "pruned_int8"} & set(variants) or "calibration" in table, name, "calibration", None,
                 "required when variants include int8 or pruned_int8: an .npz with x (representative inputs)")
        gate = _gate(name, table.get("gate", {}), _tensors(name, table, "output"))
        trainer = table.get("trainer")
        _require(trainer is None or isinstance(trainer, str), name, "trainer", trainer,
                 "the name of a trainer in export.train.TRAINERS")
        tensorrt = table.get("tensorrt", True)
        _require(isinstance(tensorrt, bool), name, "tensorrt", tensorrt, "true or false")
        pruning = table.get("pruning", "weights")
        _require(pruning in PRUNING_METHODS, name, "pruning", pruning,
                 "weights (zeros by magnitude: a smaller gzip) or units (whole hidden units and channels: faster)")
        declared = table.get("source_format")
        _require(declared is None or declared in SOURCE_FORMATS, name, "source_format", declared,
                 ", ".join(SOURCE_FORMATS) + " (or leave it out: the source's suffix or config.json tells)")
        if declared is None and "text" in table and not Path(str(table["source"])).suffix:
            declared = "huggingface"  # a [model.text] folder is a checkpoint, even before its trainer wrote it
        onnx = OnnxSource(
            source=_path(root, name, "source", table["source"]),
            heldout=_path(root, name, "heldout", table["heldout"]),
            calibration=_path(root, name, "calibration", table["calibration"]) if "calibration" in table else None,
            trainer=trainer, variants=tuple(variants), gate=gate, tensorrt=tensorrt,
            optional_variants=tuple(optional), declared_format=declared, pruning=pruning)
        fmt = onnx.source_format
        activation = table.get("activation", "softmax" if fmt == "huggingface" else "none")
        _require(activation in ACTIVATIONS and (fmt in TORCH_FORMATS or "activation" not in table), name,
                 "activation", activation,
                 f"{', '.join(ACTIVATIONS)}, for PyTorch sources ({', '.join(TORCH_FORMATS)}) only")
        text = _text_model(name, table["text"], root, fmt, _tensors(name, table, "input")) if "text" in table else None
        onnx = replace(onnx, activation=activation, text=text)
    elif kind == "python":
        code = _path(root, name, "code", table.get("code", f"model_repository/{name}/1/model.py"))
        _require(code.is_file(), name, "code", str(code), "an existing model.py (python backend model code)")
        files = table.get("files", [])
        _require(isinstance(files, list), name, "files", files, "a list of paths to deploy beside model.py")
        python = PythonCode(code, tuple(_path(root, name, "files", f) for f in files))
    else:
        raw_steps = table.get("step", [])
        _require(isinstance(raw_steps, list) and raw_steps, name, "step", raw_steps,
                 "one or more [[model.step]] tables with model, input_map, output_map")
        built = []
        for s in raw_steps:
            bad = sorted(set(s) - {"model", "input_map", "output_map"})
            _require(not bad, name, f"step.{bad[0] if bad else ''}", bad, "model, input_map, output_map")
            for k in ("input_map", "output_map"):
                m = s.get(k)
                _require(isinstance(m, dict) and m and all(isinstance(v, str) for v in m.values()), name,
                         f"step.{k}", m, "a table from the step model's tensor names to ensemble tensor names")
            built.append(Step(s.get("model", ""), tuple(s["input_map"].items()), tuple(s["output_map"].items())))
        steps = tuple(built)

    ort = {k: table[k] for k in ("intra_op_thread_count", "inter_op_thread_count", "execution_mode",
                                 "graph_optimization_level") if k in table}
    return ModelSpec(
        name=name, kind=kind,
        inputs=_tensors(name, table, "input"), outputs=_tensors(name, table, "output"),
        batching=Batching(
            table["max_batch_size"], _int_list(name, table, "preferred_batch_size"),
            table.get("max_queue_delay_microseconds", 0), table.get("queue_timeout_microseconds", 0),
            table.get("max_queue_size", 0), model=name),
        runtime=Runtime(
            instance_count=table.get("instance_count", 1),
            instance_kind=table.get("instance_kind", "KIND_CPU" if kind == "python" else "KIND_AUTO"),
            warmup_batch_sizes=_int_list(name, table, "warmup_batch_sizes"),
            parameters=tuple(sorted((k, str(v)) for k, v in params.items())),
            response_cache=table.get("response_cache", False), model=name, **ort),
        loadtest=LoadTest(_path(root, name, "samples", table["samples"]) if "samples" in table else None,
                          table.get("loadtest_weight", 1), model=name),
        source=Source(onnx, python, steps),
        description=table.get("description", ""),
        raw=json.dumps(table, sort_keys=True, default=str),
        extra="torch" if onnx is not None and onnx.source_format in TORCH_FORMATS else "",
        rollout=_rollout(name, table.get("lifecycle", {})) if kind == "onnx" else None,
    )


def _check_ensemble(m: ModelSpec, spec_models: dict[str, tuple[ModelSpec, str]]) -> ModelSpec:
    """Cross-model checks; returns the ensemble with output labels inherited from the step that produces them."""
    available = {t.name: t for t in m.inputs}
    for i, step in enumerate(m.source.steps):
        where = f"step[{i}]"
        _require(step.model in spec_models, m.name, f"{where}.model", step.model,
                 f"a non-ensemble model of this spec: {', '.join(sorted(spec_models))}")
        target, _ = spec_models[step.model]
        mbs, step_mbs = m.batching.max_batch_size, target.batching.max_batch_size
        _require(step_mbs >= mbs, m.name, "max_batch_size", mbs,
                 f"<= max_batch_size of step model {step.model!r} ({step_mbs})")
        for inner, outer in step.input_map:
            t = target.tensor(inner)
            _require(t is not None and t in target.inputs, m.name, f"{where}.input_map", inner,
                     f"inputs of {step.model!r}: {', '.join(x.name for x in target.inputs)}")
            _require(outer in available, m.name, f"{where}.input_map.{inner}", outer,
                     f"an ensemble input or an earlier step's output: {', '.join(sorted(available))}")
            src = available[outer]
            _require((src.dtype, src.dims) == (t.dtype, t.dims), m.name, f"{where}.input_map.{inner}",
                     f"{outer} is {src.dtype} {list(src.dims)}", f"{t.dtype} {list(t.dims)} as {step.model!r} expects")
        mapped = {inner for inner, _ in step.input_map}
        missing = [t.name for t in target.inputs if t.name not in mapped]
        _require(not missing, m.name, f"{where}.input_map", dict(step.input_map),
                 f"a mapping for every input of {step.model!r}; missing {', '.join(missing)}")
        for inner, outer in step.output_map:
            t = target.tensor(inner)
            _require(t is not None and t in target.outputs, m.name, f"{where}.output_map", inner,
                     f"outputs of {step.model!r}: {', '.join(x.name for x in target.outputs)}")
            available[outer] = t
    outputs = []
    for out in m.outputs:
        src = available.get(out.name)
        produced = sorted(set(available) - {t.name for t in m.inputs})
        _require(src is not None and out.name in produced, m.name, f"output.{out.name}", out.name,
                 f"a tensor some step produces: {', '.join(produced)}")
        _require((src.dtype, src.dims) == (out.dtype, out.dims), m.name, f"output.{out.name}",
                 f"{out.dtype} {list(out.dims)}", f"{src.dtype} {list(src.dims)}, as the producing step declares")
        if not out.labels and src.labels:
            out = replace(out, labels=src.labels)
        outputs.append(out)
    return replace(m, outputs=tuple(outputs))


def load_spec(path: Path, extras: frozenset[str] | None = None) -> Spec:
    """Parse and validate a whole spec file. Nothing else in the export reads TOML.

    Every model is validated; those that need an extra not in `extras` (default: installed_extras()), and ensembles
    with such a step, go to Spec.skipped instead of Spec.models."""
    path = Path(path).resolve()
    if not path.is_file():
        raise SpecError("-", "--spec", str(path), "an existing models.toml")
    try:
        doc = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as e:
        raise SpecError("-", "syntax", str(e), "valid TOML") from None
    unknown = sorted(set(doc) - {"model", "bench"})
    _require(not unknown, "-", unknown[0] if unknown else "", None, "[[model]] tables and a [bench] table")
    tables = doc.get("model", [])
    _require(isinstance(tables, list) and tables, "-", "model", tables, "one or more [[model]] tables")
    models = [parse_model(t, path.parent) for t in tables]
    models = [x for m in models for x in (m, *(text_models(m) if m.source.onnx and m.source.onnx.text else ()))]
    models = [x for m in models for x in (keras_text_models(m) if _splits_keras_text(m) else (m,))]

    triton: dict[str, tuple[ModelSpec, str]] = {}
    for m in models:
        for v, tn in zip(m.source.onnx.variants if m.source.onnx else ("",), m.triton_names):
            _require(tn not in triton, m.name, "name", tn, "unique Triton model names (variants add _int8 / _fp16)")
            triton[tn] = (m, v)
    non_ensembles = {k: v for k, v in triton.items() if v[0].kind != "ensemble"}
    models = [_check_ensemble(m, non_ensembles) if m.kind == "ensemble" else m for m in models]
    extras = installed_extras() if extras is None else extras
    missing = {n: m.extra for m in models if m.extra and m.extra not in extras for n in m.triton_names}
    for m in models:  # an ensemble needs what its steps (any variant) need
        needs = next((missing[s.model] for s in m.source.steps if s.model in missing), "")
        if needs:
            missing.setdefault(m.name, needs)
    models = [replace(m, extra=missing[m.name]) if m.name in missing else m for m in models]
    return Spec(path, tuple(m for m in models if m.name not in missing),
                tuple(m for m in models if m.name in missing), _bench(doc["bench"], triton) if "bench" in doc else None)


def _bench(table: object, names: dict) -> BenchModels:
    roles = BenchModels.__dataclass_fields__
    _require(isinstance(table, dict) and set(table) == set(roles), "-", "bench", table,
             f"a [bench] table with {', '.join(roles)}")
    for role, name in table.items():
        _require(name in names, "-", f"bench.{role}", name, f"a model of this file: {', '.join(names)}")
    return BenchModels(**table)


def load_declared_spec(path: Path) -> Spec:
    """Every model models.toml declares, as if every extra were installed: what generated files (deploy/, the
    dashboard, rules, tune's writes) are made from, so they depend on models.toml alone, not on this machine."""
    return load_spec(path, extras=ALL_EXTRAS)

"""The python backend's own cost, per execute and per request, measured on the real stub (issue 9).

For each model and each batch of N one-row requests (N = 1, 8, 32) the model is served from a copy whose dynamic
batcher waits for exactly N (preferred_batch_size [N], a long max_queue_delay), and the client sends waves of N
concurrent requests on N keep-alive sockets, so every execution holds N requests. Three measures of the same runs:

- wall: Triton's statistics (/v2/models/<m>/stats, batch_stats of batch size N), compute_input + compute_infer +
  compute_output per execution, minus the model's own work on the same N rows timed here in-process with the same
  settings (ONNX Runtime's session.run for an `onnxruntime`-backend model, the decode/tokenize helper module for a
  python model);
- CPU: the stub process's CPU time per execution minus the CPU time of that own work. Other tenants of a shared
  machine stretch wall times (a preempted stub still counts) far more than CPU times, so this one is the steadier;
- execute loop: every copy is served through a timing wrapper (TIMING_MODEL_PY) that runs the model's own
  model.py unchanged and records, inside the stub, the CPU time of execute() and of the model's own work within it
  (session.run; the decode/tokenize helpers); the difference is our execute loop alone, without the stub around it.

What is left is the backend's cost: the stub's IPC, the pb_utils objects, our execute loop, fitted as
per_execute + N × per_request. `stub_floor` is a python model that answers every request with a ready tensor and
reads nothing: the share of that cost no model code can remove. An `onnxruntime`-backend model is served here as a
python model whose model.py is serve/backends/onnxruntime/model.py: the same stub binary runs the same code.

    python -m bench --backend-cost           # writes bench/results/backend-cost.md and .json
    python -m bench --backend-cost --quick   # one short round: checks the harness, not speed
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import socket
import statistics
import time
import urllib.request
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
import psutil
from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2

from bench import servers
from core.measure import loadgen, payloads, v2
from core.spec import Spec

REPO_ROOT = Path(__file__).resolve().parents[1]
ONNXRUNTIME_BACKEND = REPO_ROOT / "serve" / "backends" / "onnxruntime" / "model.py"
BATCHES = (1, 8, 32)
FLOOR = "stub_floor"
TARGET_US = 50.0  # issue 9: the backend's own overhead per request at the batch formed under load
WAIT_US = 2_000_000  # the batcher waits this long for a wave to complete; a wave is sent in well under a millisecond
FLOOR_MODEL_PY = '''"""Answers each request with a ready tensor of zeros, reads nothing: the stub's cost per request."""
import json

import numpy as np
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def initialize(self, args):
        output = json.loads(args["model_config"])["output"][0]
        self.name = output["name"]
        self.zeros = np.zeros([1, *map(int, output["dims"])], pb_utils.triton_string_to_numpy(output["data_type"]))

    def execute(self, requests):
        return [pb_utils.InferenceResponse([pb_utils.Tensor(self.name, self.zeros)]) for _ in requests]
'''
TIMING_MODEL_PY = '''"""bench/backend_cost.py's timing wrapper: serves the model of timing.json's `impl` unchanged
and keeps, in timing-totals.json beside this file, the CPU time of every execute() and of the model's own work in it."""
import importlib.util
import json
import os
import time

HERE = os.path.dirname(os.path.abspath(__file__))
with open(os.path.join(HERE, "timing.json")) as file:
    SETUP = json.load(file)
_spec = importlib.util.spec_from_file_location("timed_model", SETUP["impl"])
impl = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(impl)
TOTALS = {"executions": 0, "execute_cpu_ns": 0, "work_cpu_ns": 0}


def timed(function):
    def call(*args, **kwargs):
        start = time.process_time_ns()
        try:
            return function(*args, **kwargs)
        finally:
            TOTALS["work_cpu_ns"] += time.process_time_ns() - start
    return call


class TritonPythonModel(impl.TritonPythonModel):
    def initialize(self, args):
        if SETUP["model_file"]:  # the onnxruntime backend reads its file name from the config the python one uses
            config = json.loads(args["model_config"])
            config["default_model_filename"] = SETUP["model_file"]
            args = dict(args, model_config=json.dumps(config))
        super().initialize(args)
        for path in SETUP["work"]:  # "session.run" on the instance, "text_encoding.encode_texts" in the module
            head, *middle, name = path.split(".")
            owner = getattr(self, head) if hasattr(self, head) else getattr(impl, head)
            for part in middle:
                owner = getattr(owner, part)
            setattr(owner, name, timed(getattr(owner, name)))
        self.written = time.monotonic()

    def execute(self, requests):
        start = time.process_time_ns()
        responses = super().execute(requests)
        TOTALS["execute_cpu_ns"] += time.process_time_ns() - start
        TOTALS["executions"] += 1
        if time.monotonic() - self.written > 0.2:
            self.write()
        return responses

    def write(self):
        self.written = time.monotonic()
        with open(os.path.join(HERE, "timing-totals.json.tmp"), "w") as file:
            json.dump(TOTALS, file)
        os.replace(os.path.join(HERE, "timing-totals.json.tmp"), os.path.join(HERE, "timing-totals.json"))
'''


@dataclass(frozen=True)
class CostOptions:
    repository: Path
    work_dir: Path
    rounds: int
    duration_s: float  # per model, batch and round
    models: tuple[str, ...] = ()  # default: measured_models(spec, repository)
    batches: tuple[int, ...] = BATCHES
    formed_batches: dict[str, float] = field(default_factory=dict)  # model -> batch a `make bench` run saw formed


@dataclass(frozen=True)
class BatchRound:
    """One round of one (model, batch): means per execution of exactly `batch` one-row requests."""

    executions: int
    compute_input_us: float  # Triton's statistics
    compute_infer_us: float
    compute_output_us: float
    stub_cpu_us: float  # the stub process's CPU time
    work_us: float  # the model's own work on the same rows, in-process: wall
    work_cpu_us: float  # and CPU
    execute_cpu_us: float  # inside the stub: execute() ...
    execute_work_cpu_us: float  # ... and the model's own work within it

    @property
    def served_us(self) -> float:
        return self.compute_input_us + self.compute_infer_us + self.compute_output_us

    @property
    def overhead_us(self) -> float:
        return self.served_us - self.work_us

    @property
    def overhead_cpu_us(self) -> float:
        return self.stub_cpu_us - self.work_cpu_us

    @property
    def execute_loop_cpu_us(self) -> float:
        return self.execute_cpu_us - self.execute_work_cpu_us

    @property
    def infer_overhead_us(self) -> float:
        """compute_infer minus the own work: the backend's execute() beyond the model, as issue 9 measured it."""
        return self.compute_infer_us - self.work_us


@dataclass(frozen=True)
class BatchCost:
    model: str
    batch: int
    rounds: tuple[BatchRound, ...]

    def median(self, name: str) -> float:
        return statistics.median(getattr(r, name) for r in self.rounds)

    def spread(self, name: str) -> tuple[float, float]:
        values = [getattr(r, name) for r in self.rounds]
        return min(values), max(values)


@dataclass(frozen=True)
class ModelCost:
    model: str
    work: str  # what the in-process side runs
    batches: tuple[BatchCost, ...]

    def fit(self, name: str = "overhead_us") -> tuple[float, float]:
        """(per execute, per request) µs: least squares of the median `name` = a + b × N over the batches."""
        sizes = np.array([b.batch for b in self.batches], dtype=float)
        values = np.array([b.median(name) for b in self.batches])
        if len(sizes) < 2:
            return float(values[0]), 0.0
        per_request, per_execute = np.polyfit(sizes, values, 1)
        return float(per_execute), float(per_request)


    def per_request_at(self, batch: float, name: str) -> float:
        """µs per request of `name` in an execution of `batch` requests, from the fit."""
        per_execute, per_request = self.fit(name)
        return per_execute / batch + per_request


@dataclass(frozen=True)
class CostResults:
    conditions: dict
    models: tuple[ModelCost, ...]
    formed_batches: dict[str, float] = field(default_factory=dict)


def measured_models(spec: Spec, repository: Path) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(models, notes): every exported onnx-kind model (its fp32 Triton name) and every exported python model whose
    own work can be timed in-process (kind_of), in spec order; the rest are named in the notes."""
    models, notes = [], []
    for model in spec.models:
        if model.kind not in ("onnx", "python"):
            continue
        if not (repository / model.name / "config.pbtxt").is_file():
            notes.append(f"{model.name}: not exported")
            continue
        try:
            kind_of(repository / model.name)
        except ValueError as error:
            notes.append(str(error))
            continue
        models.append(model.name)
    return tuple(models), tuple(notes)


# ---- the repository: one copy of each model per batch size --------------------------------------------------------

def copy_name(model: str, batch: int) -> str:
    return f"{model}__b{batch}"


def read_config(path: Path) -> model_config_pb2.ModelConfig:
    return text_format.Parse(path.read_text(), model_config_pb2.ModelConfig())


def _wait_for_exactly(config: model_config_pb2.ModelConfig, name: str, batch: int) -> None:
    config.name = name
    del config.instance_group[1:]
    config.instance_group[0].count = 1
    config.dynamic_batching.CopyFrom(model_config_pb2.ModelDynamicBatching(
        preferred_batch_size=[batch], max_queue_delay_microseconds=WAIT_US))


# What the model itself does, by kind: timed in-process by `work_for`, and inside the stub by the timing wrapper.
IN_STUB_WORK = {
    "onnxruntime": ("session.run",),
    "text_encoding": ("text_encoding.decode_text", "text_encoding.encode_texts"),
    "image_decoding": ("image_decoding.decode_digit",),
    FLOOR: (),
}


def kind_of(model_dir: Path) -> str:
    if model_dir.name.startswith(FLOOR):
        return FLOOR
    if read_config(model_dir / "config.pbtxt").backend == "onnxruntime":
        return "onnxruntime"
    if (model_dir / "1" / "hf_tokenization.py").is_file():
        # a tokenizer generated from [model.text] ships text_encoding.py for its checks only; its work is HF's
        raise ValueError(f"{model_dir.name}: no in-process equivalent (a generated Hugging Face tokenizer)")
    for helper in ("text_encoding", "image_decoding"):
        if (model_dir / "1" / f"{helper}.py").is_file():
            return helper
    raise ValueError(f"{model_dir.name}: no in-process equivalent (an onnxruntime-backend model, or a python model "
                     f"shipping text_encoding.py or image_decoding.py)")


def _serve_timed(copy: Path, kind: str) -> None:
    """Serve `copy` through TIMING_MODEL_PY: its model.py becomes model_impl.py (an onnxruntime-backend model's is
    the backend's), the wrapper takes its place."""
    config = read_config(copy / "config.pbtxt")
    model_file = None
    if kind == "onnxruntime":
        impl, model_file = ONNXRUNTIME_BACKEND, config.default_model_filename or "model.onnx"
        config.backend = "python"
        config.ClearField("default_model_filename")  # the python backend would look for its model.py under it
        (copy / "config.pbtxt").write_text(text_format.MessageToString(config))
    else:
        impl = copy / "1" / "model_impl.py"
        (copy / "1" / "model.py").rename(impl)
    (copy / "1" / "model.py").write_text(TIMING_MODEL_PY)
    setup = {"impl": str(impl), "model_file": model_file, "work": list(IN_STUB_WORK[kind])}
    (copy / "1" / "timing.json").write_text(json.dumps(setup))


def prepare_repository(source: Path, target: Path, models: tuple[str, ...], batches: tuple[int, ...]) -> Path:
    """A repository holding `model__bN` for each model and N (the exported model, one instance, whose batcher
    executes exactly N requests at a time) and `stub_floor__bN` with the first model's inputs and outputs, each
    served through the timing wrapper."""
    if target.exists():
        shutil.rmtree(target)
    target.mkdir(parents=True)
    for model in models:
        kind = kind_of(source / model)
        for batch in batches:
            copy = target / copy_name(model, batch)
            shutil.copytree(source / model, copy, ignore=shutil.ignore_patterns("__pycache__", "card.*"))
            config = read_config(copy / "config.pbtxt")
            _wait_for_exactly(config, copy.name, batch)
            (copy / "config.pbtxt").write_text(text_format.MessageToString(config))
            _serve_timed(copy, kind)
    template = read_config(source / models[0] / "config.pbtxt")
    for batch in batches:
        floor = model_config_pb2.ModelConfig(backend="python", max_batch_size=template.max_batch_size)
        floor.input.extend(template.input)
        floor.output.extend(model_config_pb2.ModelOutput(name=o.name, data_type=o.data_type, dims=o.dims)
                            for o in template.output)
        floor.instance_group.add(count=1, kind=model_config_pb2.ModelInstanceGroup.KIND_CPU)
        _wait_for_exactly(floor, copy_name(FLOOR, batch), batch)
        (target / floor.name / "1").mkdir(parents=True)
        (target / floor.name / "config.pbtxt").write_text(text_format.MessageToString(floor))
        (target / floor.name / "1" / "model.py").write_text(FLOOR_MODEL_PY)
        _serve_timed(target / floor.name, FLOOR)
    return target


# ---- the model's own work, in-process ------------------------------------------------------------------------------

def _load_module(path: Path):
    spec = importlib.util.spec_from_file_location(f"backend_cost_{path.parent.parent.name}_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _parameter(config: model_config_pb2.ModelConfig, key: str, default: int) -> int:
    raw = config.parameters[key].string_value if key in config.parameters else ""
    return int(raw) if raw else default


def work_function(model_dir: Path, rows: list[dict[str, np.ndarray]]):
    """(description, fn): fn() does what the model itself does with `rows` (one-row inputs), as the served model
    does it, without serving. `model_dir` is the exported model."""
    config = read_config(model_dir / "config.pbtxt")
    version = model_dir / "1"
    kind = kind_of(model_dir)
    if kind == "onnxruntime":
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = _parameter(config, "intra_op_thread_count", 0)
        options.inter_op_num_threads = _parameter(config, "inter_op_thread_count", 0)
        levels = {0: ort.GraphOptimizationLevel.ORT_ENABLE_ALL, -1: ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
                  1: ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED, 2: ort.GraphOptimizationLevel.ORT_DISABLE_ALL}
        options.graph_optimization_level = levels[config.optimization.graph.level]
        session = ort.InferenceSession(str(version / (config.default_model_filename or "model.onnx")), options,
                                       providers=["CPUExecutionProvider"])
        feed = {name: np.concatenate([r[name] for r in rows]) for name in rows[0]}
        names = [o.name for o in config.output]
        return (f"ONNX Runtime session.run, {options.intra_op_num_threads} intra-op thread(s)",
                lambda: session.run(names, feed))
    if kind == FLOOR:
        return "nothing", lambda: None
    items = [bytes(next(iter(r.values())).reshape(-1)[0]) for r in rows]
    if kind == "text_encoding":
        text_encoding = _load_module(version / "text_encoding.py")
        tokenizer = text_encoding.load_tokenizer(version / "tokenizer.json")
        max_tokens = _parameter(config, "max_tokens", 0)

        def tokenize():
            texts = [text_encoding.decode_text(item) for item in items]
            return text_encoding.encode_texts(tokenizer, texts, max_tokens)

        return "text_encoding: decode_text + encode_texts", tokenize
    image_decoding = _load_module(version / "image_decoding.py")
    return "image_decoding.decode_digit per image", lambda: [image_decoding.decode_digit(item) for item in items]


def time_us(fn, seconds: float) -> tuple[float, float]:
    """Median wall and CPU µs of fn() over repeated calls for `seconds` (medians shrug off a neighbour's burst)."""
    fn()
    walls, cpus, deadline = [], [], time.perf_counter() + seconds
    while time.perf_counter() < deadline or len(walls) < 20:
        wall, cpu = time.perf_counter(), time.process_time()
        fn()
        cpus.append(time.process_time() - cpu)
        walls.append(time.perf_counter() - wall)
    return statistics.median(walls) * 1e6, statistics.median(cpus) * 1e6


# ---- load, Triton's statistics and the stub's CPU time -------------------------------------------------------------

def batch_stats(http_url: str, model: str) -> dict[int, dict[str, tuple[int, int]]]:
    """{batch size: {compute_input|compute_infer|compute_output: (count, ns)}} from Triton's statistics."""
    with urllib.request.urlopen(f"http://{http_url}/v2/models/{model}/stats", timeout=10) as response:
        stats = json.load(response)["model_stats"][0]
    return {int(b["batch_size"]): {k: (int(b[k].get("count", 0)), int(b[k].get("ns", 0)))
                                   for k in ("compute_input", "compute_infer", "compute_output")}
            for b in stats.get("batch_stats", [])}


def stub_process(repository: Path, model: str) -> psutil.Process:
    """The python backend stub serving `model`: its command line names the model's version directory."""
    marker = f"{repository}/{model}/1/"
    for process in psutil.process_iter(["cmdline"]):
        if any(marker in part for part in process.info["cmdline"] or ()):
            return process
    raise RuntimeError(f"no python backend stub serving {model} from {repository}")


def cpu_seconds(process: psutil.Process) -> float:
    times = process.cpu_times()
    return times.user + times.system


def send_waves(http_url: str, requests: tuple[bytes, ...], batch: int, seconds: float) -> int:
    """Waves of `batch` concurrent one-row requests for `seconds`, one keep-alive socket per request in flight;
    returns the number of waves. Raw sockets, so the client spends microseconds per request, not milliseconds."""
    host, port = http_url.rsplit(":", 1)
    sockets = [socket.create_connection((host, int(port)), timeout=30) for _ in range(batch)]
    for sock in sockets:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    waves, cursor, deadline = 0, 0, time.perf_counter() + seconds
    try:
        while time.perf_counter() < deadline:
            for sock in sockets:
                sock.sendall(requests[cursor % len(requests)])
                cursor += 1
            for sock in sockets:
                _read_response(sock)
            waves += 1
    finally:
        for sock in sockets:
            sock.close()
    return waves


def _read_response(sock: socket.socket) -> None:
    buffer = b""
    while b"\r\n\r\n" not in buffer:
        buffer += _receive(sock)
    head, _, body = buffer.partition(b"\r\n\r\n")
    if not head.startswith(b"HTTP/1.1 200"):
        raise RuntimeError(f"request failed: {(head + body)[:300]!r}")
    length = loadgen.content_length(head.lower())
    while len(body) < (length or 0):
        body += _receive(sock)


def _receive(sock: socket.socket) -> bytes:
    chunk = sock.recv(65536)
    if not chunk:
        raise RuntimeError("Triton closed the connection")
    return chunk


def http_requests(samples: tuple[payloads.Sample, ...], model: str, host: str) -> tuple[bytes, ...]:
    """Each sample as a complete binary-tensor HTTP request to `model`."""
    built = []
    for sample in samples:
        request = v2.http_request(sample, "binary")
        built.append(loadgen.http_request(host, f"/v2/models/{model}/infer", request.body, request.headers))
    return tuple(built)


def in_stub_totals(model_dir: Path) -> dict[str, int]:
    """The timing wrapper's running totals (written at most every 0.2 s, so a snapshot is a little behind)."""
    try:
        return json.loads((model_dir / "1" / "timing-totals.json").read_text())
    except (OSError, ValueError):  # not written yet
        return {"executions": 0, "execute_cpu_ns": 0, "work_cpu_ns": 0}


def measure_round(http_url: str, stub: psutil.Process, model_dir: Path, batch: int, requests: tuple[bytes, ...],
                  work, seconds: float) -> BatchRound:
    name = model_dir.name
    before, cpu_before, inside_before = batch_stats(http_url, name).get(batch), cpu_seconds(stub), \
        in_stub_totals(model_dir)
    send_waves(http_url, requests, batch, seconds)
    time.sleep(0.25)  # let the wrapper write its totals for this round
    after, cpu_after, inside = batch_stats(http_url, name)[batch], cpu_seconds(stub), in_stub_totals(model_dir)
    inside = {k: inside[k] - inside_before[k] for k in inside}
    inside_executions = max(inside["executions"], 1)
    delta = {k: (after[k][0] - (before[k][0] if before else 0), after[k][1] - (before[k][1] if before else 0))
             for k in after}
    executions = delta["compute_infer"][0]
    per_execution = {k: ns / 1000 / count if count else 0.0 for k, (count, ns) in delta.items()}
    # the in-process side runs now, while the server is idle, so the two never share the cores
    work_us, work_cpu_us = time_us(work, min(seconds, 0.5))
    return BatchRound(executions, per_execution["compute_input"], per_execution["compute_infer"],
                      per_execution["compute_output"], (cpu_after - cpu_before) * 1e6 / max(executions, 1),
                      work_us, work_cpu_us, inside["execute_cpu_ns"] / 1000 / inside_executions,
                      inside["work_cpu_ns"] / 1000 / inside_executions)


def run(spec: Spec, options: CostOptions) -> CostResults:
    targets = {t.name: t for t in payloads.targets(spec)}
    skipped: tuple[str, ...] = ()
    if not options.models:
        chosen, skipped = measured_models(spec, options.repository)
        options = replace(options, models=chosen)
    if not options.models:
        raise SystemExit(f"backend cost: no exported onnx or python model in {spec.path}: run `make export`")
    missing = [m for m in options.models if m not in targets or not (options.repository / m).is_dir()]
    if missing:
        raise SystemExit(f"backend cost: {', '.join(missing)} not in {spec.path} or not exported: run `make export`")
    print(f"[backend cost] measuring {', '.join(options.models)}" + (f" (skipped: {'; '.join(skipped)})"
                                                                     if skipped else ""), flush=True)
    repository = prepare_repository(options.repository, options.work_dir / "repository-backend-cost",
                                    options.models, options.batches)
    load_before = os.getloadavg()
    samples = {m: payloads.samples(targets[m]) for m in options.models}
    samples[FLOOR] = samples[options.models[0]]
    works = {}
    for model in (*options.models, FLOOR):
        for batch in options.batches:
            rows = [{t.name: t.array for t in s.inputs} for s in samples[model][:batch]]
            exported = repository / copy_name(model, batch) if model == FLOOR else options.repository / model
            works[model, batch] = work_function(exported, (rows * batch)[:batch])
    rounds: dict[tuple[str, int], list[BatchRound]] = {key: [] for key in works}
    with servers.triton("triton-backend-cost", repository, options.work_dir) as server:
        http_url = f"{server.host}:{server.port}"
        stubs = {key: stub_process(repository, copy_name(*key)) for key in works}
        requests = {key: http_requests(samples[key[0]], copy_name(*key), http_url) for key in works}
        keys = list(works)
        for index in range(options.rounds):
            shift = index * len(keys) // options.rounds  # rotate the order so drift spreads over every cell
            for key in keys[shift:] + keys[:shift]:
                rounds[key].append(measure_round(http_url, stubs[key], repository / copy_name(*key), key[1],
                                                 requests[key], works[key][1], options.duration_s))
            print(f"[backend cost] round {index + 1}/{options.rounds} done, load average {os.getloadavg()[0]:.2f}",
                  flush=True)
    models = tuple(
        ModelCost(model, works[model, options.batches[0]][0],
                  tuple(BatchCost(model, b, tuple(rounds[model, b])) for b in options.batches))
        for model in (*options.models, FLOOR))
    conditions = {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "cpus": os.cpu_count(),
        "rounds": options.rounds,
        "duration_s": options.duration_s,
        "load_average_before": [round(v, 2) for v in load_before],
        "load_average_after": [round(v, 2) for v in os.getloadavg()],
        "skipped": list(skipped),
    }
    formed = {m: b for m, b in options.formed_batches.items() if m in options.models}
    return CostResults(conditions, models, formed)


# ---- results -------------------------------------------------------------------------------------------------------

def _cell(batch: BatchCost, name: str) -> str:
    low, high = batch.spread(name)
    return f"{batch.median(name):.0f} ({low:.0f}–{high:.0f})"


FITTED = (("overhead_us", "wall"), ("infer_overhead_us", "compute_infer"), ("overhead_cpu_us", "CPU"),
          ("execute_loop_cpu_us", "execute loop CPU"))


def format_target(results: CostResults) -> list[str]:
    """Issue 9's target at the batch each model formed in the `make bench` run that came before this one."""
    if not results.formed_batches:
        return ["No target check: the batch formed under load comes from a full `make bench` run, which runs this "
                "measurement after its own.", ""]
    lines = ["## Target (issue 9): overhead per request at the batch formed under load", "",
             f"Batch formed: Triton's average in the same `make bench` run, 64 connections. Overhead: compute_infer "
             f"minus the own work (the measure the issue used), and with compute_input and compute_output too; each "
             f"per request at that batch from the fits above. Target: the first at most {TARGET_US:g} µs.", "",
             "| model | batch formed | overhead per request µs (compute_infer) | with input and output µs "
             "| stub CPU per request µs | met |", "|---|---:|---:|---:|---:|---|"]
    for model in results.models:
        batch = results.formed_batches.get(model.model)
        if batch is None:
            continue
        infer = model.per_request_at(batch, "infer_overhead_us")
        met = infer <= TARGET_US
        verdict = "yes" if met else f"**no** ({infer - TARGET_US:.1f} µs over)"
        lines.append(f"| {model.model} | {batch:.2f} | {infer:.1f} | {model.per_request_at(batch, 'overhead_us'):.1f} "
                     f"| {model.per_request_at(batch, 'overhead_cpu_us'):.1f} | {verdict} |")
    return lines + [""]


def format_markdown(results: CostResults) -> str:
    c = results.conditions
    lines = [
        "# The python backend's own cost per execute and per request",
        "",
        f"{c['date']} · {c['cpus']} CPUs · {c['rounds']} interleaved rounds of {c['duration_s']} s per cell · "
        f"load average (1, 5, 15 min) before {c['load_average_before']}, after {c['load_average_after']}",
        "",
        "Per execution of N one-row requests, medians over rounds (min–max across rounds). Overhead (wall): Triton's "
        "compute_input + compute_infer + compute_output minus the model's own work timed in-process. Overhead (CPU): "
        "the stub's CPU time minus the own work's CPU time. Execute loop: inside the stub, execute()'s CPU time minus "
        "the own work's within it. `stub_floor` answers with a ready tensor and reads nothing.",
        "",
        "| model | N | executions | Triton input / infer / output µs | own work µs | overhead µs (wall) "
        "| stub CPU µs | own work CPU µs | overhead µs (CPU) | execute loop CPU µs |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for model in results.models:
        for b in model.batches:
            lines.append(
                f"| {model.model} | {b.batch} | {sum(r.executions for r in b.rounds)} "
                f"| {b.median('compute_input_us'):.0f} / {b.median('compute_infer_us'):.0f} / "
                f"{b.median('compute_output_us'):.0f} | {b.median('work_us'):.0f} | {_cell(b, 'overhead_us')} "
                f"| {b.median('stub_cpu_us'):.0f} | {b.median('work_cpu_us'):.0f} | {_cell(b, 'overhead_cpu_us')} "
                f"| {_cell(b, 'execute_loop_cpu_us')} |")
    lines += ["", "| model | own work measured as | " + " | ".join(
        f"per execute µs ({label}) | per request µs ({label})" for _, label in FITTED) + " |",
        "|---|---|" + "---:|" * (2 * len(FITTED))]
    for model in results.models:
        fits = " | ".join(f"{a:.0f} | {b:.1f}" for a, b in (model.fit(name) for name, _ in FITTED))
        lines.append(f"| {model.model} | {model.work} | {fits} |")
    lines += ["", "Per execute and per request: least-squares fit of the medians = per_execute + N × per_request. The "
                  "timing wrapper's clock reads (about 1 µs per timed call) are in every figure but the in-process "
                  "own work.", ""]
    if c.get("skipped"):
        lines += ["Not measured: " + "; ".join(c["skipped"]) + ".", ""]
    return "\n".join(lines + format_target(results))


def to_json(results: CostResults) -> str:
    payload = asdict(results)
    payload["fit"] = {m.model: {label: dict(zip(("per_execute_us", "per_request_us"), m.fit(name)))
                                for name, label in FITTED} for m in results.models}
    return json.dumps(payload, indent=2)


def main(spec: Spec, options: CostOptions, stem: Path) -> int:
    results = run(spec, options)
    markdown = format_markdown(results)
    stem.parent.mkdir(parents=True, exist_ok=True)
    stem.with_suffix(".md").write_text(markdown, encoding="utf-8")
    stem.with_suffix(".json").write_text(to_json(results), encoding="utf-8")
    print("\n" + markdown)
    print(f"backend cost results: {stem.with_suffix('.md')} (data: {stem.with_suffix('.json')})")
    return 0

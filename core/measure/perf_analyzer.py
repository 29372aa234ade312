"""NVIDIA's perf_analyzer, from packages only, as a second load generator next to core/measure/loadgen.py.

The `tritonclient==2.41.0` manylinux wheel carries the binary (the last release that ships it in the wheel); we
download that wheel with pip, unpack only `perf_analyzer` (the wheel is never installed: the project pins a newer
tritonclient) and give it the two shared libraries it links against, `libb64.so.0d` and `libcudart.so.12`, from the
pinned nvidia-pytriton wheel, where they sit in `nvidia_pytriton.libs/` under hashed names. Everything lands in
build/perf_analyzer/ once; later calls find it there.

A run is `-f results.csv --verbose-csv`: one row per concurrency with the client's throughput and latency
percentiles and Triton's own per-request breakdown (queue, compute input / infer / output), which `parse_csv` turns
into typed values. For an ensemble the CSV holds the ensemble's row only; its composing models' breakdown is read
from perf_analyzer's console summary (`parse_composing`).
"""

from __future__ import annotations

import base64
import csv
import glob
import io
import json
import os
import re
import struct
import subprocess
import sys
import zipfile
from dataclasses import dataclass, field, replace
from pathlib import Path

from core.errors import ServerError

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_DIR = REPO_ROOT / "build" / "perf_analyzer"
VERSION = "2.41.0"
WHEEL_MEMBER = f"tritonclient-{VERSION}.data/data/bin/perf_analyzer"
# real name -> the hashed name auditwheel gave it inside nvidia_pytriton.libs/
LIBRARIES = {"libb64.so.0d": "libb64-*.so.0d", "libcudart.so.12": "libcudart-*.so.12*"}
PROTOCOLS = ("http", "grpc")
# perf_analyzer reports once `WINDOWS` windows in a row agree within the stability threshold. Set that wide, so that
# the first three count and a run takes WINDOWS x window_ms whatever the noise: on a shared 2-core machine even 100 %
# was missed with 1 s windows, and an unstable run reports nothing at all.
WINDOWS = 3
STABILITY_PERCENT = 1000


class PerfAnalyzerUnavailable(ServerError):
    """perf_analyzer could not be provisioned (no network for pip, an unsupported platform, libraries missing)."""


class PerfAnalyzerFailed(ServerError):
    """perf_analyzer ran but reported no measurement; the message carries the tail of its output."""


@dataclass(frozen=True)
class Installation:
    binary: Path
    lib_dir: Path

    def environment(self) -> dict[str, str]:
        env = dict(os.environ)
        env["LD_LIBRARY_PATH"] = os.pathsep.join(p for p in (str(self.lib_dir), env.get("LD_LIBRARY_PATH", "")) if p)
        return env


@dataclass(frozen=True)
class ServerTimes:
    """Triton's side of a request as perf_analyzer reads it from the statistics API: µs per request."""

    model: str
    queue_us: float
    compute_input_us: float
    compute_infer_us: float
    compute_output_us: float


@dataclass(frozen=True)
class PerfResult:
    """One concurrency level: the client's view and Triton's breakdown."""

    model: str
    protocol: str
    concurrency: int
    throughput: float  # inferences/s (requests/s: perf_analyzer sends batch 1)
    p50_ms: float
    p90_ms: float
    p95_ms: float
    p99_ms: float
    client_send_us: float
    network_us: float  # perf_analyzer's "Network+Server Send/Recv"
    client_recv_us: float
    server: ServerTimes
    composing: tuple[ServerTimes, ...] = field(default_factory=tuple)  # an ensemble's steps, from the console

    @classmethod
    def from_dict(cls, data: dict) -> PerfResult:
        return cls(**{**data, "server": ServerTimes(**data["server"]),
                      "composing": tuple(ServerTimes(**s) for s in data.get("composing", ()))})


@dataclass(frozen=True)
class Run:
    """What to measure: one model at one concurrency, `WINDOWS` windows of `window_ms`."""

    model: str
    url: str  # host:port of Triton's HTTP or gRPC endpoint, per `protocol`
    protocol: str
    concurrency: int
    window_ms: int
    input_data: Path | None = None  # a perf_analyzer JSON file (write_input_data); None: random data

    def __post_init__(self) -> None:
        if self.protocol not in PROTOCOLS:
            raise ValueError(f"protocol must be one of {PROTOCOLS}, got {self.protocol!r}")
        if self.concurrency < 1 or self.window_ms < 100:
            raise ValueError(f"concurrency must be >= 1 and window_ms >= 100, got {self.concurrency}, {self.window_ms}")

    def argv(self, binary: Path, csv_path: Path) -> list[str]:
        argv = [str(binary), "-m", self.model, "-u", self.url, "-i", self.protocol,
                "--concurrency-range", str(self.concurrency), "-p", str(self.window_ms),
                "-s", str(STABILITY_PERCENT), "-r", str(WINDOWS), "--percentile", "99",
                "-f", str(csv_path), "--verbose-csv"]
        if self.input_data is not None:
            argv += ["--input-data", str(self.input_data)]
        return argv


# ---- provisioning ----------------------------------------------------------------------------------------------


def provision(build_dir: Path = DEFAULT_DIR) -> Installation:
    """The cached binary and library links, made on first use. Raises PerfAnalyzerUnavailable with one line."""
    binary = build_dir / "bin" / "perf_analyzer"
    lib_dir = build_dir / "lib"
    if not binary.is_file():
        wheel = _download_wheel(build_dir / "wheel")
        binary.parent.mkdir(parents=True, exist_ok=True)
        try:
            with zipfile.ZipFile(wheel) as archive, archive.open(WHEEL_MEMBER) as source:
                tmp = binary.with_suffix(".tmp")
                tmp.write_bytes(source.read())
        except (KeyError, zipfile.BadZipFile) as error:
            raise PerfAnalyzerUnavailable(f"{wheel} holds no {WHEEL_MEMBER} ({error}): delete {build_dir} and retry")
        tmp.chmod(0o755)
        tmp.replace(binary)
    _link_libraries(lib_dir)
    return Installation(binary, lib_dir)


def _download_wheel(target: Path) -> Path:
    found = sorted(target.glob(f"tritonclient-{VERSION}-*manylinux*.whl"))
    if found:
        return found[0]
    if sys.platform != "linux" or os.uname().machine != "x86_64":
        raise PerfAnalyzerUnavailable(f"perf_analyzer ships for Linux x86_64 only, this is {sys.platform} "
                                      f"{os.uname().machine}")
    target.mkdir(parents=True, exist_ok=True)
    command = [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--only-binary=:all:",
               f"tritonclient=={VERSION}", "-d", str(target)]
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    found = sorted(target.glob(f"tritonclient-{VERSION}-*manylinux*.whl"))
    if result.returncode != 0 or not found:
        last = (result.stderr.strip().splitlines() or ["no output"])[-1]
        raise PerfAnalyzerUnavailable(f"could not download tritonclient=={VERSION} for perf_analyzer "
                                      f"(`{' '.join(command[2:])}` exited {result.returncode}: {last})")
    return found[0]


def _link_libraries(lib_dir: Path) -> None:
    from core.triton_install import package_root  # the wheel's location

    bundled = package_root().parent / "nvidia_pytriton.libs"
    lib_dir.mkdir(parents=True, exist_ok=True)
    for real, pattern in LIBRARIES.items():
        matches = sorted(glob.glob(str(bundled / pattern)))
        if not matches:
            raise PerfAnalyzerUnavailable(f"{bundled} has no {pattern} (perf_analyzer needs {real}): reinstall the "
                                          "pinned environment with `make venv`")
        link = lib_dir / real
        if link.is_symlink() and os.readlink(link) == matches[0]:
            continue
        link.unlink(missing_ok=True)
        link.symlink_to(matches[0])


# ---- input data ------------------------------------------------------------------------------------------------


def input_document(samples) -> dict:
    """perf_analyzer's --input-data JSON for one-row payload samples (core.measure.payloads.Sample): numbers as flat
    content with the shape without the batch dimension, BYTES as base64 of Triton's serialized form (each element
    prefixed with its 4-byte little-endian length), which is what perf_analyzer sends as is."""
    data = []
    for sample in samples:
        entry = {}
        for tensor in sample.inputs:
            if tensor.array.shape[0] != 1:
                raise ValueError(f"{sample.model}.{tensor.name}: perf_analyzer adds the batch dimension itself, "
                                 f"so samples must be one row each, got shape {tensor.array.shape}")
            array = tensor.array[0]
            if tensor.datatype == "BYTES":
                raw = b"".join(struct.pack("<I", len(b)) + b for b in (_as_bytes(x) for x in array.ravel()))
                entry[tensor.name] = {"b64": base64.b64encode(raw).decode("ascii"), "shape": list(array.shape)}
            else:
                entry[tensor.name] = {"content": array.ravel().tolist(), "shape": list(array.shape)}
        data.append(entry)
    return {"data": data}


def _as_bytes(value) -> bytes:
    return value if isinstance(value, bytes) else str(value).encode("utf-8")


def write_input_data(samples, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(input_document(samples)), encoding="utf-8")
    return path


# ---- results ---------------------------------------------------------------------------------------------------

_COMPOSING = re.compile(
    r"^\s*(?P<model>\S+), version: \S+\s*$(?:\n(?!\s*\S+, version:).*$)*?"
    r"\n\s*Avg request latency: \d+ usec \(overhead \d+ usec \+ queue (?P<queue>\d+) usec \+ "
    r"compute input (?P<input>\d+) usec \+ compute infer (?P<infer>\d+) usec \+ compute output (?P<output>\d+) usec\)",
    re.MULTILINE)


def parse_csv(text: str, model: str, protocol: str) -> list[PerfResult]:
    """The rows of `-f FILE --verbose-csv`: the columns are named in its header, times in µs."""
    rows = []
    for row in csv.DictReader(io.StringIO(text)):
        try:
            number = {k.strip(): float(v) for k, v in row.items() if k and v not in (None, "")}
            rows.append(PerfResult(
                model=model, protocol=protocol, concurrency=int(number["Concurrency"]),
                throughput=number["Inferences/Second"],
                p50_ms=number["p50 latency"] / 1000, p90_ms=number["p90 latency"] / 1000,
                p95_ms=number["p95 latency"] / 1000, p99_ms=number["p99 latency"] / 1000,
                client_send_us=number["Client Send"], network_us=number["Network+Server Send/Recv"],
                client_recv_us=number["Client Recv"],
                server=ServerTimes(model, number["Server Queue"], number["Server Compute Input"],
                                   number["Server Compute Infer"], number["Server Compute Output"]),
            ))
        except (KeyError, ValueError) as error:
            raise PerfAnalyzerFailed(f"unexpected perf_analyzer CSV (column {error}): {dict(row)}") from None
    return rows


def parse_composing(console: str) -> tuple[ServerTimes, ...]:
    """An ensemble's composing models from the console summary ("Composing models:" onwards)."""
    at = console.find("Composing models:")
    if at < 0:
        return ()
    return tuple(ServerTimes(m["model"], float(m["queue"]), float(m["input"]), float(m["infer"]), float(m["output"]))
                 for m in _COMPOSING.finditer(console[at:]))


def measure(installation: Installation, run: Run, work_dir: Path, timeout_s: float | None = None) -> PerfResult:
    """Run perf_analyzer once; raises PerfAnalyzerFailed with its output's tail when it reports nothing."""
    work_dir.mkdir(parents=True, exist_ok=True)
    csv_path = work_dir / f"{run.model}-{run.protocol}-c{run.concurrency}.csv"
    csv_path.unlink(missing_ok=True)
    argv = run.argv(installation.binary, csv_path)
    timeout_s = timeout_s or WINDOWS * run.window_ms / 1000 * 4 + 30
    try:
        result = subprocess.run(argv, capture_output=True, text=True, env=installation.environment(),
                                timeout=timeout_s, check=False)
    except subprocess.TimeoutExpired:
        raise PerfAnalyzerFailed(f"perf_analyzer on {run.model} did not finish within {timeout_s:.0f} s") from None
    console = result.stdout + result.stderr
    if result.returncode != 0 or not csv_path.is_file():
        tail = " | ".join(line.strip() for line in console.strip().splitlines()[-4:])
        raise PerfAnalyzerFailed(f"perf_analyzer on {run.model} ({run.protocol}, concurrency {run.concurrency}) "
                                 f"exited {result.returncode}: {tail}")
    rows = parse_csv(csv_path.read_text(encoding="utf-8"), run.model, run.protocol)
    if len(rows) != 1:
        raise PerfAnalyzerFailed(f"perf_analyzer wrote {len(rows)} rows to {csv_path}, expected one")
    composing = parse_composing(console)
    return replace(rows[0], composing=composing)


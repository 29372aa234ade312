"""The response cache's two cells, cache on against cache off: repeated inputs (hit rate and throughput) and unique
inputs (what the cache costs when every request misses). The model runs alone from a copy of the repository, once
as exported and once with `response_cache { enable: true }` under `serve --cache-size`.

    python -m bench.response_cache [--model NAME] [--seconds 10] [--connections 8] [--cache-size 64MiB]
    python -m bench --response-cache   # the same with its defaults, written to bench/results/response-cache.md

A full `make bench` runs it last.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import tempfile
import urllib.request
from pathlib import Path

import numpy as np
from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2

from bench import servers
from core import cli
from core.measure import loadgen, payloads
from core.spec import load_spec
from core.triton import cache_size

REPO_ROOT = Path(__file__).resolve().parents[1]
REPEATED_DISTINCT = 16  # the repeated cell cycles this many different inputs


@dataclasses.dataclass(frozen=True)
class CacheCell:
    inputs: str  # "repeated" or "unique"
    cache: bool
    round: int
    measurement: loadgen.Measurement
    hits: int
    misses: int

    @property
    def hit_rate(self) -> float:
        return self.hits / (self.hits + self.misses) if self.hits + self.misses else 0.0


def repository_copy(source: Path, target: Path, model: str, steps: tuple[str, ...], cache: bool) -> Path:
    """`model` and the models its steps call, copied; the model's config with the response cache on if `cache`."""
    for name in (model, *steps):
        shutil.copytree(source / name, target / name, ignore=shutil.ignore_patterns("card.*"))
    path = target / model / "config.pbtxt"
    config = text_format.Parse(path.read_text(), model_config_pb2.ModelConfig())
    if cache:
        config.response_cache.enable = True
    path.write_text(text_format.MessageToString(config))
    return target


def unique_samples(samples: tuple[payloads.Sample, ...], count: int) -> list[payloads.Sample]:
    """`count` requests that differ from each other: the held-out rows, each copy nudged in its first value."""
    found = []
    for i in range(count):
        sample = samples[i % len(samples)]
        first, *rest = sample.inputs
        array = first.array.copy()
        array.reshape(-1)[0] += (i // len(samples)) * 1e-3
        found.append(dataclasses.replace(sample, inputs=(dataclasses.replace(first, array=array), *rest)))
    return found


def cache_counts(http_url: str, model: str) -> tuple[int, int]:
    with urllib.request.urlopen(f"http://{http_url}/v2/models/{model}/stats", timeout=10) as response:
        stats = json.load(response)["model_stats"][0]["inference_stats"]
    return int(stats["cache_hit"]["count"]), int(stats["cache_miss"]["count"])


def measure(model: str, steps: tuple[str, ...], cache_bytes: int, load: loadgen.LoadSpec, unique_count: int,
            rounds: int, work_dir: Path) -> list[CacheCell]:
    """Cache off, then on, `rounds` times over: a machine whose load drifts then biases neither side."""
    spec = load_spec(REPO_ROOT / "models.toml")
    target = next(t for t in payloads.targets(spec) if t.name == model)
    samples = payloads.samples(target)
    cells = []
    for index, cache in ((i, c) for i in range(rounds) for c in (False, True)):
        repository = work_dir / f"repository-{cache}"
        if not repository.exists():
            repository_copy(REPO_ROOT / "model_repository", repository, model, steps, cache)
        name = f"cache-{'on' if cache else 'off'}-{index}"
        with servers.triton(name, repository, work_dir, cache_size_bytes=cache_bytes if cache else 0) as server:
            host = f"{server.host}:{server.port}"
            for inputs, chosen in (("repeated", samples[:REPEATED_DISTINCT]),
                                   ("unique", unique_samples(samples, unique_count))):
                before = cache_counts(host, model)
                requests = loadgen.triton_requests(chosen, "binary", host)
                measured = loadgen.run(loadgen.HttpTarget(server.host, server.port, requests), load)
                after = cache_counts(host, model)
                cells.append(CacheCell(inputs, cache, index, measured, after[0] - before[0], after[1] - before[1]))
    return cells


def table(cells: list[CacheCell]) -> str:
    """One row per cell: the median over rounds, each round's req/s after it."""
    def median(inputs, cache, field):
        chosen = [c for c in cells if (c.inputs, c.cache) == (inputs, cache)]
        return float(np.median([getattr(c.measurement, field) for c in chosen]))

    lines = ["| inputs | cache | req/s (median) | vs cache off | p50 ms | p99 ms | hits / misses | errors | "
             "generator CPU | req/s by round |", "|---|---|---:|---:|---:|---:|---:|---:|---:|---|"]
    for inputs in ("repeated", "unique"):
        for cache in (False, True):
            chosen = [c for c in cells if (c.inputs, c.cache) == (inputs, cache)]
            rps = median(inputs, cache, "rps")
            lines.append(
                f"| {inputs} | {'on' if cache else 'off'} | {rps:,.0f} | {rps / median(inputs, False, 'rps'):.2f}x | "
                f"{median(inputs, cache, 'p50_ms'):.2f} | {median(inputs, cache, 'p99_ms'):.2f} | "
                f"{sum(c.hits for c in chosen):,} / {sum(c.misses for c in chosen):,} | "
                f"{sum(c.measurement.errors for c in chosen)} | {median(inputs, cache, 'generator_cpu'):.2f} | "
                f"{', '.join(f'{c.measurement.rps:,.0f}' for c in chosen)} |")
    return "\n".join(lines)


@cli.program("bench.response_cache")
def main(argv: list[str] | None = None) -> int:
    parser = cli.parser("bench.response_cache", __doc__.split("\n\n")[0])
    parser.add_argument("--model", help="a model of models.toml (default: its [bench] tensors model)")
    parser.add_argument("--seconds", type=float, default=10.0, help="measured seconds per cell (default 10)")
    parser.add_argument("--warmup", type=float, default=2.0, help="seconds before measuring (default 2)")
    parser.add_argument("--connections", type=int, default=8, help="closed-loop connections (default 8)")
    parser.add_argument("--cache-size", type=cache_size, default=64 << 20, help="cache bytes or 64MiB (default)")
    parser.add_argument("--rounds", type=int, default=3, help="cache off/on alternations (default 3)")
    parser.add_argument("--unique", type=int, default=150_000,
                        help="distinct requests of the unique cell: more than it sends (default %(default)s)")
    parser.add_argument("--output", type=Path, default=None, help="also write the table to this .md file")
    args = parser.parse_args(argv)
    spec = load_spec(REPO_ROOT / "models.toml")
    if args.model is None and spec.bench is None:
        parser.error("--model NAME: models.toml has no [bench] table to take the default from")
    args.model = args.model or spec.bench.tensors
    chosen = spec.model(args.model)
    if chosen is None:
        parser.error(f"--model {args.model}: not a model of models.toml")
    steps = tuple(step.model for step in chosen.source.steps)
    load = loadgen.LoadSpec(connections=args.connections, duration_s=args.seconds, warmup_s=args.warmup)
    with tempfile.TemporaryDirectory(prefix="bench-cache-") as work:
        cells = measure(args.model, steps, args.cache_size, load, args.unique, args.rounds, Path(work))
    heading = (f"`{args.model}`, {args.connections} connections, {args.seconds:g} s per cell, {args.rounds} rounds, "
               f"cache {args.cache_size} bytes, load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    markdown = f"# Response cache\n\n{heading}\n\n{table(cells)}\n"
    print(markdown)
    if args.output is not None:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(markdown, encoding="utf-8")
        print(f"response cache results: {args.output}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

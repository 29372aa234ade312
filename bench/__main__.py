"""`make bench`: Triton vs Triton without batching vs Flask/gunicorn vs FastAPI/uvicorn vs in-process ONNX Runtime.

    python -m bench                  # full run (a few minutes): writes bench/results/latest.md and latest.json
    python -m bench --quick          # seconds, for smoke tests: writes build/bench/results/quick.md and quick.json
    python -m bench --model NAME     # any onnx-kind model: bench/results/model-NAME.md (--quick: quick-NAME.md)
    python -m bench --gateway        # only the gateway cells and Triton's own JSON beside them (seconds to a minute):
                                     # build/bench/results/gateway.md
    python -m bench --backend-cost   # only the python backend's own cost per execute and per request:
                                     # bench/results/backend-cost.md (bench/backend_cost.py; a full run does it too)
    python -m bench --response-cache # only the response cache, on against off: bench/results/response-cache.md
                                     # (bench/response_cache.py; a full run does it too)

Starts every server itself on free ports (Triton through `python -m serve run`) and stops them at the end; needs
`make export` first. Run it on an otherwise idle machine: every contender shares the same cores.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from bench import backend_cost, response_cache
from bench import results as results_module
from bench.run import BenchOptions, run
from core import cli
from core.measure import triton_metrics
from core.spec import Spec, load_spec

REPO_ROOT = Path(__file__).resolve().parents[1]


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = cli.parser("bench", __doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="1 round of 1 s per cell: checks the harness, not speed")
    parser.add_argument("--rounds", type=int, default=None, help="interleaved rounds (default 3; quick 1)")
    parser.add_argument("--duration", type=float, default=None, help="measured seconds per cell and round (default 5)")
    parser.add_argument("--model", default=None,
                        help="an onnx-kind model (its Triton name: variants too) instead of the reference plan")
    parser.add_argument("--spec", type=Path, default=REPO_ROOT / "models.toml", help="the models.toml to read")
    parser.add_argument("--repository", type=Path, default=REPO_ROOT / "model_repository")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="baseline workers (default: cores)")
    parser.add_argument("--output", type=Path, default=None,
                        help="results file stem (default bench/results/latest, or model-NAME with --model)")
    parser.add_argument("--no-client", action="store_true", help="skip the modelport client overhead measurement")
    parser.add_argument("--gateway", action="store_true",
                        help="only the gateway cells and Triton's own HTTP JSON at 1 and 64 connections beside them")
    parser.add_argument("--backend-cost", action="store_true",
                        help="only the python backend's own cost per execute and per request (bench/backend_cost.py)")
    parser.add_argument("--response-cache", action="store_true",
                        help="only the response cache's cells, cache on against off (bench/response_cache.py)")
    parser.add_argument("--perf-analyzer", action=argparse.BooleanOptionalAction, default=True,
                        help="also measure the Triton cells with NVIDIA's perf_analyzer (default: on; fetched once "
                             "into build/perf_analyzer/)")
    return parser.parse_args(argv)


def backend_cost_run(args: argparse.Namespace, spec: Spec, formed_batches: dict[str, float] | None = None) -> int:
    quick, own = args.quick, args.backend_cost  # after a full run, its --rounds/--duration/--output are not ours
    options = backend_cost.CostOptions(repository=args.repository.resolve(), work_dir=REPO_ROOT / "build" / "bench",
                                       rounds=(own and args.rounds) or (1 if quick else 5),
                                       duration_s=(own and args.duration) or (0.5 if quick else 1.0),
                                       formed_batches=formed_batches or {})
    stem = (own and args.output) or (
        REPO_ROOT / "build" / "bench" / "results" / "backend-cost-quick" if quick
        else REPO_ROOT / "bench" / "results" / "backend-cost")
    return backend_cost.main(spec, options, stem)


def formed_batches(spec, outcome: results_module.BenchResults) -> dict[str, float]:
    """The batch Triton formed at 64 connections, per model that formed it (an ensemble's ONNX step)."""
    return {triton_metrics.batching_model(spec, r.cell.model): r.avg_batch for r in outcome.cells
            if r.cell.server == "triton" and r.cell.encoding == "binary" and r.cell.connections == 64 and r.avg_batch}


@cli.program("bench")
def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    if args.backend_cost:
        return backend_cost_run(args, load_spec(args.spec))
    if args.response_cache:
        return response_cache_run()
    quick = args.quick
    options = BenchOptions(
        repository=args.repository.resolve(),
        work_dir=REPO_ROOT / "build" / "bench",
        rounds=args.rounds or (1 if quick else 3),
        duration_s=args.duration or (1.0 if quick else 5.0),
        warmup_s=0.3 if quick else 1.0,
        workers=args.workers,
        mode="quick" if quick else "full",
        client_blocks=0 if args.no_client or args.gateway else (2 if quick else 5),
        in_process_s=1.0 if quick else 5.0,
        model=args.model,
        perf_analyzer=args.perf_analyzer and not args.gateway,
        gateway_only=args.gateway,
    )
    if args.output:
        stem = args.output
    elif args.gateway:
        stem = REPO_ROOT / "build" / "bench" / "results" / ("gateway-quick" if quick else "gateway")
    elif quick:
        stem = REPO_ROOT / "build" / "bench" / "results" / (f"quick-{args.model}" if args.model else "quick")
    else:
        stem = REPO_ROOT / "bench" / "results" / (f"model-{args.model}" if args.model else "latest")
    spec = load_spec(args.spec)
    outcome = run(spec, options)
    markdown = results_module.format_markdown(outcome)
    stem.parent.mkdir(parents=True, exist_ok=True)
    stem.with_suffix(".md").write_text(markdown, encoding="utf-8")
    stem.with_suffix(".json").write_text(results_module.to_json(outcome), encoding="utf-8")
    print("\n" + markdown)
    print(f"benchmark results: {stem.with_suffix('.md')} (data: {stem.with_suffix('.json')})")
    if not quick and not args.model and not args.gateway:
        return backend_cost_run(args, spec, formed_batches(spec, outcome)) or response_cache_run()
    return 0


def response_cache_run() -> int:
    return response_cache.main(["--output", str(REPO_ROOT / "bench" / "results" / "response-cache.md")])


if __name__ == "__main__":
    sys.exit(main())

"""python -m operate generate [--check] | measure | monitor

    generate   write deploy/ (Prometheus config + rules, Grafana dashboard, Kubernetes + KServe manifests) from
               models.toml; unchanged files are left alone. --check: exit 1 listing stale files, write nothing.
    measure    time Triton's load + warmup of the repository and record it in deploy/measured.json
    monitor    run Prometheus on 127.0.0.1:9090 scraping Triton (127.0.0.1:8002) and the supervisor (:8003)
"""
from __future__ import annotations

import sys
from pathlib import Path

from core import cli
from core.spec import load_declared_spec
from operate import generate, k8s, measure, monitor, prometheus

ROOT = Path(__file__).resolve().parents[1]
DEPLOY = ROOT / "deploy"


def parser():
    root = cli.parser("operate", __doc__.split("\n")[0])
    commands = root.add_subparsers(dest="command", required=True)
    gen = commands.add_parser("generate", help="write deploy/ from models.toml")
    gen.add_argument("--spec", type=Path, default=ROOT / "models.toml")
    gen.add_argument("--out", type=Path, default=DEPLOY)
    gen.add_argument("--check", action="store_true", help="list stale files and exit 1; write nothing")
    mea = commands.add_parser("measure", help="time Triton's model load + warmup into deploy/measured.json")
    mea.add_argument("--repository", type=Path, default=ROOT / "model_repository")
    mea.add_argument("--out", type=Path, default=DEPLOY / generate.MEASURED)
    mon = commands.add_parser("monitor", help="run Prometheus scraping the running Triton")
    mon.add_argument("--listen", default="127.0.0.1:9090", help="Prometheus's address (default %(default)s)")
    mon.add_argument("--triton", default="127.0.0.1:8002", help="Triton's metrics endpoint host:port")
    mon.add_argument("--supervisor", default="127.0.0.1:8003",
                     help="the supervisor's metrics host:port ('none' to leave it out)")
    mon.add_argument("--gateway", default="none", help="a gateway's metrics host:port, when there is one")
    mon.add_argument("--workdir", type=Path, default=ROOT / ".cache" / "monitor")
    return root


# The deploy generators validate their inputs (Cluster, Budgets, Targets, the measurement file) with ValueError.
@cli.program("operate", usage_errors=(ValueError,))
def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if args.command == "generate":
        files = generate.render(load_declared_spec(args.spec), k8s.Measured.read(args.out / generate.MEASURED))
        if args.check:
            stale = generate.stale(files, args.out)
            for name in stale:
                print(f"stale: {args.out / name}")
            if stale:
                print("deploy/ is out of date with models.toml or the generator: run `make deploy`")
            return 1 if stale else 0
        changed = generate.write(files, args.out)
        for name in changed:
            print(f"wrote {args.out / name}")
        print(f"{len(files) - len(changed)} of {len(files)} files in {args.out}/ unchanged")
        return 0
    if args.command == "measure":
        measured = measure.measure(args.repository, ROOT / ".cache" / "measure")
        measure.record(measured, args.out)
        print(f"Triton loaded and warmed up {measured.models} models in {measured.startup_s} s "
              f"({measured.where}); startup probe budget {measured.startup_budget_s()} s; wrote {args.out}")
        return 0
    optional = {name: None if value == "none" else value for name, value in
                (("supervisor", args.supervisor), ("gateway", args.gateway))}
    options = monitor.MonitorOptions(prometheus.Targets(args.triton, **optional), args.listen, args.workdir)
    return monitor.serve(options)


if __name__ == "__main__":
    sys.exit(main())

"""python -m operate generate [--check] | measure | monitor | rollout start|status|promote|rollback MODEL

    generate   write deploy/ (Prometheus config + rules, Grafana dashboard, Kubernetes + KServe manifests) from
               models.toml; unchanged files are left alone. --check: exit 1 listing stale files, write nothing.
    measure    time Triton's load + warmup of the repository and record it in deploy/measured.json
    monitor    run Prometheus on 127.0.0.1:9090 scraping Triton (127.0.0.1:8002) and the supervisor (:8003)
    rollout    move a model's versions between stable and canary, and show how each does (docs/lifecycle.md)
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from core import cli
from core.spec import load_declared_spec
from operate import generate, k8s, measure, monitor, prometheus, rollout

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
    add_rollout(commands)
    return root


ROLLOUT_EPILOG = """A changed model that `make export` writes is a candidate version beside stable; stable keeps every request
until `start`. The running server reloads the model as the action rewrites its config.pbtxt, and the gateway
routes by the new labels within a second; it rolls a canary back by itself when it crosses a limit of the
model's [model.lifecycle] table in models.toml.

examples:
  python -m operate rollout start digits --percent 20            20 % of requests to the newest candidate
  python -m operate rollout start digits --percent 50 --sticky X-User   the same user, the same version
  python -m operate rollout start digits --shadow --version 3    mirror requests to version 3, answer from stable
  python -m operate rollout status digits                        labels, versions, history, live figures
  python -m operate rollout promote digits                       the canary becomes stable
  python -m operate rollout rollback digits                      the canary stops; without one, the last promotion
                                                                 is undone

exit status: 0 done, 2 an action that does not apply (no canary to promote, a version not on disk, no versions).
"""


def add_rollout(commands) -> None:
    top = commands.add_parser("rollout", help="canary, shadow, promote and roll back a model's versions",
                              description="Move a model's numbered versions between stable and canary "
                                          "(or shadow), and show how each version does.", epilog=ROLLOUT_EPILOG,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    actions = top.add_subparsers(dest="action", required=True, metavar="ACTION")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("model", metavar="MODEL", help="a Triton model name (digits, digits_int8, ...)")
    common.add_argument("--repository", type=Path, default=ROOT / "model_repository", metavar="PATH",
                        help="the model repository (default: model_repository/)")
    reason = argparse.ArgumentParser(add_help=False)
    reason.add_argument("--reason", default="", metavar="TEXT", help="why, recorded in the history")
    start = actions.add_parser("start", parents=[common, reason], help="start a canary or a shadow of a version",
                               description="Give a version a share of the requests (canary) or a copy of every "
                                           "request (shadow). Stable keeps answering the rest.")
    mode = start.add_mutually_exclusive_group()
    mode.add_argument("--percent", type=float, metavar="N",
                      help=f"the canary's share of requests, 0 < N <= 100 (default {rollout.DEFAULT_PERCENT:g})")
    mode.add_argument("--shadow", action="store_true",
                      help="mirror every request to the version and compare; answers still come from stable")
    start.add_argument("--sticky", default="", metavar="HEADER",
                       help="pick the version by this request header's value, so one caller keeps one version")
    start.add_argument("--version", type=int, metavar="V", help="the version (default: the newest on disk)")
    promote = actions.add_parser("promote", parents=[common, reason], help="make the canary (or --version) stable",
                                 description="The canary becomes stable; with --version and no canary, that "
                                             "version does at once.")
    promote.add_argument("--version", type=int, metavar="V", help="promote this version (no canary running)")
    actions.add_parser("rollback", parents=[common, reason], help="stop the canary, or undo the last promotion",
                       description="The canary stops getting requests and Triton unloads it; without a canary, "
                                   "stable goes back to the version the last promotion replaced.")
    status = actions.add_parser("status", parents=[common], help="labels, versions, history and live figures",
                                description="What the repository holds (labels, versions on disk with their "
                                            "held-out accuracy, the last actions) and, from the gateway, each "
                                            "version's requests, errors, p50/p99, PSI, disagreement with stable "
                                            "and live accuracy.")
    status.add_argument("--gateway", default=rollout.DEFAULT_GATEWAY, metavar="URL",
                        help="the gateway to ask for live figures (default %(default)s)")
    status.add_argument("--key", default=None, metavar="KEY",
                        help=f"an admin-scoped gateway key (default: ${rollout.KEY_ENV})")


def run_rollout(args) -> int:
    if args.action == "status":
        print(rollout.describe(args.repository, args.model))
        key = args.key if args.key is not None else os.environ.get(rollout.KEY_ENV, "")
        try:
            report = rollout.fetch_live(args.gateway, args.model, key)
        except rollout.LifecycleError as error:
            print(f"live figures need the gateway: {error}")
            return 0
        print(f"live figures from {args.gateway} (since the canary started):")
        print(rollout.live_table(report))
        if report.get("limits"):
            print("limits: " + ", ".join(f"{k} {v}" for k, v in report["limits"].items()))
        return 0
    if args.action == "start":
        lc = rollout.start(args.repository, args.model, args.version, args.percent, args.shadow, args.sticky,
                           args.reason)
    elif args.action == "promote":
        lc = rollout.promote(args.repository, args.model, args.version, args.reason)
    else:
        lc = rollout.rollback(args.repository, args.model, args.reason)
    print(rollout.action_line(args.action, args.model, lc, rollout.ensembles_calling(args.repository, args.model)))
    return 0


# The deploy generators validate their inputs (Cluster, Budgets, Targets, the measurement file) with ValueError.
@cli.program("operate", usage_errors=(ValueError,))
def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if args.command == "rollout":
        return run_rollout(args)
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

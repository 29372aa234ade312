"""`make monitor`: a real Prometheus on loopback scraping the running Triton (and the supervisor, and a gateway when
given), loading the generated rules. Its config is operate/prometheus.py's, rendered with the targets asked for."""
from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import shutil
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Iterator

import yaml

from core import process
from core.errors import ServerError
from operate import prometheus

ROOT = Path(__file__).resolve().parents[1]
RULES = ROOT / "deploy" / "prometheus" / prometheus.RULES_FILE
INSTALL_HINT = (
    "install it with `apt-get install prometheus` (Debian/Ubuntu: 2.42, with promtool; .ci/run does this), or take a "
    "release from https://prometheus.io/download/ and set PROMETHEUS=/path/to/prometheus"
)
READY_TIMEOUT_S = 30.0


class MonitorError(ServerError):
    """Prometheus is missing, or did not start; the message says what to do."""

    exit_code = 2  # as a missing Triton runtime


def binary(name: str = "prometheus") -> str:
    wanted = os.environ.get(name.upper(), name)
    found = shutil.which(wanted)
    if found is None:
        raise MonitorError(f"{wanted} is not installed (not on PATH): {INSTALL_HINT}")
    return found


@dataclasses.dataclass(frozen=True)
class MonitorOptions:
    targets: prometheus.Targets = prometheus.Targets()
    listen: str = "127.0.0.1:9090"
    workdir: Path = Path(".cache/monitor")
    rules: Path = RULES
    scrape_interval: str = "5s"
    retention: str = "2d"

    @property
    def url(self) -> str:
        return f"http://{self.listen}"


@dataclasses.dataclass(frozen=True)
class PrometheusServer:
    url: str
    process: process.Child
    log: Path

    def query(self, expr: str, at: float | None = None) -> list[dict]:
        params = {"query": expr, **({"time": f"{at:.3f}"} if at is not None else {})}
        return self.api("query", params)["result"]

    def query_range(self, expr: str, start: float, end: float, step: str = "1s") -> list[dict]:
        return self.api("query_range", {"query": expr, "start": f"{start:.3f}", "end": f"{end:.3f}", "step": step})["result"]

    def api(self, path: str, params: dict | None = None) -> dict:
        url = f"{self.url}/api/v1/{path}" + (f"?{urllib.parse.urlencode(params)}" if params else "")
        try:
            with urllib.request.urlopen(url, timeout=10) as response:
                body = json.loads(response.read())
        except urllib.error.HTTPError as error:
            body = json.loads(error.read() or b"{}")
            raise MonitorError(f"Prometheus refused {path} {params}: {body.get('error', error)}") from None
        return body["data"]

    def targets(self) -> list[dict]:
        return self.api("targets")["activeTargets"]


def write_config(options: MonitorOptions) -> Path:
    options.workdir.mkdir(parents=True, exist_ok=True)
    if not options.rules.is_file():
        raise MonitorError(f"the rule file {options.rules} is missing: run `make deploy` to generate deploy/")
    path = options.workdir / "prometheus.yml"
    document = prometheus.config(options.targets, (str(options.rules.resolve()),), options.scrape_interval)
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    return path


def argv(options: MonitorOptions, config_path: Path) -> list[str]:
    return [
        binary(), f"--config.file={config_path.resolve()}", f"--storage.tsdb.path={(options.workdir / 'data').resolve()}",
        f"--storage.tsdb.retention.time={options.retention}", f"--web.listen-address={options.listen}",
    ]


@contextlib.contextmanager
def running(options: MonitorOptions) -> Iterator[PrometheusServer]:
    config_path = write_config(options)
    log = options.workdir / "prometheus.log"
    port = int(options.listen.rsplit(":", 1)[1])
    child = process.Child("Prometheus", argv(options, config_path), log, f"{options.url}/-/ready", ports=(port,),
                          grace_s=15)
    try:
        process.start(child, READY_TIMEOUT_S, attempts=1)
    except process.StartFailed as failure:
        taken = f"port {port} is taken by another process:" if failure.busy_ports else "is the port taken?"
        raise MonitorError(f"Prometheus did not become ready on {options.listen} (exit code {failure.exit_code}); "
                           f"{taken} choose another with PROMETHEUS_PORT=N / --listen\n{child.output(15)}") from None
    with child:
        yield PrometheusServer(options.url, child, log)


def wait_for_scrapes(server: PrometheusServer, timeout_s: float) -> list[dict]:
    """Every active target once it has been scraped at least once (or what there is when time runs out)."""
    targets: list[dict] = []

    def scraped() -> bool:
        nonlocal targets
        targets = server.targets()
        return bool(targets) and all(t.get("health") in ("up", "down") for t in targets)

    process.wait_until(scraped, timeout_s)
    return targets


def serve(options: MonitorOptions) -> int:
    """Foreground: start, report each target's first scrape, run until Ctrl-C or SIGTERM/SIGHUP (which stop Prometheus
    too: it runs in a session of its own, so only we get the terminal's signals, and core.process stops it)."""
    try:
        with running(options) as server:
            print(f"Prometheus {server.url} (config {options.workdir / 'prometheus.yml'}, rules {options.rules})",
                  flush=True)
            for target in wait_for_scrapes(server, 30):
                job, health = target["labels"].get("job"), target.get("health")
                note = f": {target.get('lastError')}" if health != "up" and target.get("lastError") else ""
                print(f"  {job:22s} {target['scrapeUrl']:38s} {health}{note}", flush=True)
            print(f"Ctrl-C stops it. Alerts: {server.url}/alerts", flush=True)
            code = server.process.popen.wait()
            raise MonitorError(f"Prometheus exited on its own (code {code}); see {server.log}")
    except KeyboardInterrupt:
        return 0

"""`python -m operate rollout`: actions move the labels and the served versions, refuse what does not apply with the
reason, and status shows the lifecycle without a gateway."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from core import lifecycle, repository
from operate import rollout
from tests.conftest import ROOT


def cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    proc = subprocess.run([sys.executable, "-m", "operate", "rollout", *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=60, env={**os.environ, **(env or {})})
    proc.tail = "\n".join((proc.stdout + proc.stderr).splitlines()[-30:])  # shown when an assertion fails
    return proc


def onnx_model(repo: Path, name: str, versions: tuple[int, ...]) -> Path:
    directory = repo / name
    directory.mkdir(parents=True)
    for v in versions:
        (directory / str(v)).mkdir(parents=True)
        (directory / str(v) / "model.onnx").write_bytes(b"onnx")
    config = repository.parse(f'name: "{name}"\nbackend: "onnxruntime"\nmax_batch_size: 8\n')
    config.version_policy.latest.num_versions = 1
    (directory / "config.pbtxt").write_text(repository.render(config))
    return directory


@pytest.fixture()
def repo(tmp_path):
    """digits with a candidate (stable 1, version 2 exported), a text model called by an ensemble, a python model."""
    repo = tmp_path / "model_repository"
    digits = onnx_model(repo, "digits", (1, 2))
    lifecycle.write_lifecycle(lifecycle.Lifecycle(stable=1), digits)
    lifecycle.apply_version_policy(digits)
    (digits / "state.json").write_text(json.dumps({"versions": {"1": {"accuracy": 0.97}, "2": {"accuracy": 0.99}}}))
    onnx_model(repo, "classifier", (1, 2))
    onnx_model(repo, "fresh", ())
    (repo / "text").mkdir()
    (repo / "text" / "config.pbtxt").write_text(
        'name: "text"\nplatform: "ensemble"\nmax_batch_size: 8\n'
        'ensemble_scheduling { step { model_name: "classifier" model_version: -1 } }\n')
    (repo / "tokenizer").mkdir()
    (repo / "tokenizer" / "config.pbtxt").write_text('name: "tokenizer"\nbackend: "python"\nmax_batch_size: 8\n')
    return repo


def served(directory: Path) -> list[int] | str:
    policy = repository.parse((directory / "config.pbtxt").read_text()).version_policy
    return list(policy.specific.versions) if policy.WhichOneof("policy_choice") == "specific" else "latest"


def test_start_promote_and_rollback_move_the_labels_the_config_and_the_history(repo):
    digits = repo / "digits"
    assert served(digits) == [1]

    proc = cli("start", "digits", "--percent", "25", "--sticky", "X-User", "--repository", str(repo))
    assert proc.returncode == 0, proc.tail
    assert "started version 2" in proc.stdout and "25 % of requests, sticky by header 'X-User'" in proc.stdout
    lc = lifecycle.read_lifecycle(digits)
    assert (lc.stable, lc.canary, lc.mode, lc.percent, lc.sticky) == (1, 2, "canary", 25.0, "X-User")
    assert served(digits) == [1, 2]

    proc = cli("promote", "digits", "--repository", str(repo), "--reason", "clean window")
    assert proc.returncode == 0, proc.tail
    assert (lifecycle.read_lifecycle(digits).stable, served(digits)) == (2, "latest")

    proc = cli("rollback", "digits", "--repository", str(repo))
    assert proc.returncode == 0, proc.tail
    lc = lifecycle.read_lifecycle(digits)
    assert (lc.stable, lc.canary, served(digits)) == (1, None, [1])
    assert [(h["action"], h["version"], h["by"]) for h in lc.history] == [
        ("start", 2, "cli"), ("promote", 2, "cli"), ("rollback", 2, "cli")]
    assert lc.history[1]["reason"] == "clean window"


def test_a_shadow_of_a_named_version(repo):
    proc = cli("start", "digits", "--shadow", "--version", "2", "--repository", str(repo))
    assert proc.returncode == 0, proc.tail
    lc = lifecycle.read_lifecycle(repo / "digits")
    assert (lc.canary, lc.mode, lc.percent) == (2, "shadow", 0.0)
    assert "every request mirrored to it, answers from stable" in proc.stdout


@pytest.mark.parametrize("args, message", [
    (("promote", "digits"), "there is no canary to promote"),
    (("start", "digits", "--version", "7"), "version 7 is not on disk (versions: 1, 2)"),
    (("start", "digits", "--percent", "0"), "--percent 0.0: a share between 0 (excluded) and 100"),
    (("start", "fresh"), "fresh has no exported version"),
    (("start", "text"), "text is an ensemble: only exported ONNX models have versions"),
    (("rollback", "tokenizer"), "tokenizer is a python model"),
    (("status", "digitz"), "model 'digitz' is not in"),
])
def test_an_action_that_does_not_apply_exits_2_saying_why(repo, args, message):
    before = (repo / "digits" / "lifecycle.json").read_text()
    proc = cli(*args, "--repository", str(repo))
    assert proc.returncode == 2, proc.tail
    assert proc.stderr.startswith("operate: error: ") and message in proc.stderr, proc.tail
    assert "Traceback" not in proc.stderr
    assert (repo / "digits" / "lifecycle.json").read_text() == before


def test_a_second_canary_waits_for_the_first_to_be_decided(repo):
    lifecycle.write_lifecycle(lifecycle.Lifecycle(stable=1), onnx_model(repo, "three", (1, 2, 3)))
    assert cli("start", "three", "--version", "2", "--repository", str(repo)).returncode == 0
    proc = cli("start", "three", "--repository", str(repo))
    assert proc.returncode == 2 and "version 2 is already the canary (canary); promote or roll it back" in proc.stderr


def step_version(repo: Path) -> int:
    (step,) = repository.parse((repo / "text" / "config.pbtxt").read_text()).ensemble_scheduling.step
    return step.model_version


def test_an_ensemble_keeps_calling_stable_while_its_step_has_a_canary(repo):
    lifecycle.write_lifecycle(lifecycle.Lifecycle(stable=1), repo / "classifier")
    proc = cli("start", "classifier", "--percent", "50", "--repository", str(repo))
    assert proc.returncode == 0, proc.tail
    assert "Requests through the ensemble text stay on version 1; only requests to classifier itself are split" \
        in proc.stdout
    assert served(repo / "classifier") == [1, 2] and step_version(repo) == 1

    proc = cli("promote", "classifier", "--repository", str(repo))
    assert proc.returncode == 0, proc.tail
    assert served(repo / "classifier") == "latest" and step_version(repo) == -1, "back to the config the spec gives"

    proc = cli("rollback", "classifier", "--repository", str(repo))
    assert proc.returncode == 0, proc.tail
    assert served(repo / "classifier") == [1] and step_version(repo) == 1


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_status_without_a_gateway_prints_the_lifecycle_and_says_the_live_figures_need_it(repo):
    assert cli("start", "digits", "--percent", "10", "--repository", str(repo), "--reason", "try it").returncode == 0
    gateway = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    proc = cli("status", "digits", "--repository", str(repo), "--gateway", gateway)
    assert proc.returncode == 0, proc.tail
    out = proc.stdout
    assert "digits: stable version 1, canary version 2 (canary: 10 % of requests)" in out
    rows = {line.split()[0]: line.split() for line in out.splitlines() if line.startswith("  ") and
            line.split()[0].isdigit()}
    assert rows["1"][:3] == ["1", "stable", "0.97"] and rows["2"][:3] == ["2", "canary", "0.99"]
    assert "start version 2 by cli (mode canary, percent 10.0): try it" in out
    assert f"live figures need the gateway: could not reach the gateway at {gateway}/v1/rollouts/digits" in out


def test_the_live_table_has_a_row_per_version_and_a_column_per_figure():
    report = {"versions": {"2": {"label": "canary", "requests": 40, "errors": 1, "error_rate": 0.025, "p50_ms": 1.5,
                                 "p99_ms": 9.25, "psi": 0.01, "compared": 40, "disagreement": 0.05, "judged": 0,
                                 "accuracy": None},
                           "1": {"label": "stable", "requests": 360, "errors": 0}}}
    lines = rollout.live_table(report).splitlines()
    assert lines[0].split() == ["version", "label", *rollout.LIVE_COLUMNS]
    assert lines[1].split()[:4] == ["1", "stable", "360", "0"]
    assert lines[2].split() == ["2", "canary", "40", "1", "0.025", "1.5", "9.25", "0.01", "40", "0.05", "0", "-"]


def test_help_names_every_action_and_flag():
    proc = cli("--help")
    assert proc.returncode == 0
    for text in ("start", "status", "promote", "rollback", "examples:", "--sticky X-User", "--shadow"):
        assert text in proc.stdout
    start = cli("start", "--help").stdout
    for text in ("--percent N", "--shadow", "--sticky HEADER", "--version V", "--repository PATH", "--reason TEXT"):
        assert text in start
    status = cli("status", "--help").stdout
    assert "--gateway URL" in status and rollout.KEY_ENV in status

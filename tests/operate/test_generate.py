"""deploy/ is generated from models.toml, and what is committed is what the generator writes."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys

from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models.dashboard import Dashboard

from core import promql
from core.spec import load_declared_spec
from operate import dashboard, generate, k8s, rules
from tests.conftest import ROOT

DEPLOY = ROOT / "deploy"
SPEC = load_declared_spec(ROOT / "models.toml")
BOARD = json.loads((DEPLOY / "grafana" / "modelport.json").read_text())


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "operate", *args], cwd=ROOT, capture_output=True, text=True, timeout=120)


def test_the_committed_deploy_folder_is_what_the_generator_writes_from_models_toml():
    files = generate.render(SPEC, k8s.Measured.read(DEPLOY / generate.MEASURED))
    assert generate.stale(files, DEPLOY) == [], "deploy/ is out of date: run `make deploy` and commit the result"


def test_a_second_generate_writes_nothing_and_says_so(tmp_path):
    shutil.copy(DEPLOY / generate.MEASURED, tmp_path)
    first = cli("generate", "--out", str(tmp_path))
    second = cli("generate", "--out", str(tmp_path))

    assert first.returncode == 0 and first.stdout.count("wrote ") == 13, first.stdout + first.stderr
    assert second.returncode == 0 and "wrote " not in second.stdout, second.stdout
    assert "13 of 13 files" in second.stdout and "unchanged" in second.stdout


def test_generate_check_names_a_stale_file_and_exits_1_without_writing(tmp_path):
    shutil.copy(DEPLOY / generate.MEASURED, tmp_path)
    assert cli("generate", "--out", str(tmp_path)).returncode == 0
    rules_file = tmp_path / "prometheus" / "rules.yml"
    rules_file.write_text("groups: []\n")

    result = cli("generate", "--check", "--out", str(tmp_path))

    assert result.returncode == 1 and f"stale: {rules_file}" in result.stdout and "make deploy" in result.stdout
    assert rules_file.read_text() == "groups: []\n"


def test_generate_without_a_startup_measurement_says_which_command_makes_one(tmp_path):
    result = cli("generate", "--out", str(tmp_path))
    assert result.returncode == 2 and "python -m operate measure" in result.stderr, result.stderr


def test_the_dashboard_round_trips_unchanged_through_grafanas_schema_types():
    # from_json keeps only the fields Grafana's schema defines, with their types: any stray or misspelled key is lost
    reencoded = json.loads(json.dumps(Dashboard.from_json(BOARD), cls=JSONEncoder))
    assert reencoded == BOARD


def test_the_dashboard_offers_every_served_model_and_repeats_two_rows_per_model():
    variables = {v["name"]: v for v in BOARD["templating"]["list"]}
    rows = [p for p in BOARD["panels"] if p["type"] == "row"]

    assert variables["model"]["query"].split(",") == list(rules.model_names(SPEC))
    assert variables["datasource"]["query"] == "prometheus"
    assert [r.get("repeat") for r in rows] == [None, "model", "model"]
    ids = [p["id"] for p in BOARD["panels"]]
    assert len(ids) == len(set(ids))


def test_every_model_panel_is_scoped_to_the_model_variable_and_every_query_has_a_legend():
    panels = BOARD["panels"]
    model_row = next(i for i, p in enumerate(panels) if p.get("repeat") == "model")
    for panel in panels[model_row + 1:]:
        for target in panel.get("targets", []):  # a row has none
            assert 'model=~"$model"' in target["expr"], (panel["title"], target["expr"])
    assert all(t.get("legendFormat") for p in panels for t in p.get("targets", []))


def test_the_dashboard_covers_what_the_issue_asks_per_model_and_per_server():
    titles = " | ".join(p["title"] for p in BOARD["panels"])
    for wanted in ("Requests/s", "latency", "Queue vs compute", "Batch size formed", "Errors/s by reason",
                   "Servers with the model loaded", "CPU", "Memory", "heals", "restarts"):
        assert wanted.lower() in titles.lower(), wanted
    exprs = dashboard.expressions(BOARD)
    assert promql.latency_quantile_ms("0.99", dashboard.MODEL) in exprs
    assert promql.latency_quantile_ms("0.5", dashboard.MODEL) in exprs


def test_the_dashboard_has_a_row_per_version_with_the_rollouts_figures():
    panels = BOARD["panels"]
    versions = next(i for i, p in enumerate(panels) if p["title"].startswith("Versions of $model"))
    below = panels[versions + 1:]
    titles = " | ".join(p["title"] for p in below)
    for wanted in ("by version", "Error ratio", "Latency", "canary share", "Disagreement", "Live accuracy",
                   "Rollout actions"):
        assert wanted.lower() in titles.lower(), wanted
    exprs = [t["expr"] for p in below for t in p.get("targets", [])]
    assert promql.live_accuracy(dashboard.MODEL, dashboard.LIVE_WINDOW) in exprs
    assert all(t["legendFormat"].startswith("v{{version}}") for p in below if "by version" in p["title"]
               for t in p["targets"])

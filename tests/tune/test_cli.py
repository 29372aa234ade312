"""`python -m tune` end to end: a real Triton on free ports, a tiny budget, a copy of models.toml in a tmp dir."""

from __future__ import annotations

import difflib
import json
import subprocess
import sys
import tomllib

from tests.conftest import ROOT, exported_repository
from tests.tune.helpers import entry_figures
from tune.models_toml import MARK
from tune.space import Candidate


def run_tune(*args: str, timeout: float = 240) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "tune", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=timeout)


def test_a_tiny_tune_of_digits_writes_its_report_and_the_winner_into_the_spec_copy(spec_copy, tmp_path):
    repository = exported_repository()
    project_spec = (ROOT / "models.toml").read_bytes()
    before = spec_copy.read_text()

    result = run_tune("--model", "digits", "--budget", "30", "--duration", "0.4", "--warmup", "0.1",
                      "--connections", "1,8", "--spec", str(spec_copy), "--repository", str(repository),
                      "--reports-dir", str(tmp_path / "reports"))

    output = result.stdout[-3000:] + result.stderr[-3000:]
    assert result.returncode == 0, output
    [report_dir] = (tmp_path / "reports").glob("tune-*")
    assert {p.name for p in report_dir.iterdir()} == {"report.md", "digits.png", "measurements.json"}, output
    assert "## digits" in (report_dir / "report.md").read_text()
    recorded = json.loads((report_dir / "measurements.json").read_text())["models"][0]
    assert len(recorded["trials"]) >= 2, "the untuned config and at least one neighbour"
    assert all(t["points"] and not t["error"] for t in recorded["trials"]), recorded["trials"]

    winner = Candidate.from_json(recorded["winner"])
    digits = next(m for m in tomllib.loads(spec_copy.read_text())["model"] if m["name"] == "digits")
    for _, field, value in winner.settings:
        assert digits[field] == (list(value) if isinstance(value, tuple) else value), field
    after = spec_copy.read_text()
    figures = [line for line in after.splitlines() if line.startswith(f"# {MARK}")]
    assert figures and report_dir.name in " ".join(figures)
    removed = [line for line in difflib.ndiff(before.splitlines(), after.splitlines()) if line.startswith("- ")]
    tuned_fields = {field for _, field, _ in winner.settings}
    earlier = set(entry_figures(before, "digits"))  # an earlier run's figures are replaced, no other comment is lost
    assert all(line[2:].split(" =")[0] in tuned_fields or line[2:] in earlier for line in removed), removed
    assert (ROOT / "models.toml").read_bytes() == project_spec


def test_a_python_model_is_refused_with_the_ensemble_to_tune_instead(spec_copy):
    result = run_tune("--model", "sentiment_tokenizer", "--spec", str(spec_copy), timeout=60)

    assert result.returncode == 2
    assert "--model sentiment" in result.stderr and "Traceback" not in result.stderr


def test_a_budget_that_is_not_a_duration_is_refused_by_the_command_line():
    result = run_tune("--budget", "soon", timeout=60)

    assert result.returncode == 2 and "expected seconds or minutes" in result.stderr


def test_the_readmes_tuning_commands_are_ones_the_command_line_accepts():
    import shlex

    from tune.__main__ import parse_args

    section = (ROOT / "docs" / "tuning.md").read_text()
    commands = [line.split("#")[0].strip() for line in section.splitlines() if line.startswith("    ")]
    assert len(commands) >= 3, "docs/tuning.md lost its examples"
    for command in commands:
        words = shlex.split(command)
        if words[:2] == ["make", "tune"]:  # MODEL=x -> --model x; TUNE_FLAGS=... -> as given
            variables = dict(w.split("=", 1) for w in words[2:])
            words = ["python", "-m", "tune", *(["--model", variables.pop("MODEL")] if "MODEL" in variables else []),
                     *shlex.split(variables.pop("TUNE_FLAGS", ""))]
            assert not variables, f"{command}: the Makefile's tune target takes only MODEL and TUNE_FLAGS"
        assert words[:3] == ["python", "-m", "tune"], command
        parse_args(words[3:])  # exits with status 2 on a flag it does not know

"""The README's "Adding your own model", run end to end on a copy of the project: the user's two-input, two-output
Keras model goes in through models.toml alone and comes out exported, served, predicted (Python and CLI) and
load-tested, with no code change.

The README's own snippets are what runs here (its blocks after `<!-- own-model: NAME -->`), so the worked example
cannot drift from what works.
"""
from __future__ import annotations

import csv
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import launch_triton

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
GENERATED = ("models", "model_repository")  # copied too, so the copy's export rebuilds only the new model


def readme_block(name: str) -> str:
    match = re.search(rf"<!-- own-model: {name} -->\s*```\w*\n(.*?)```", README.read_text(), re.S)
    assert match, f"README.md has no block marked <!-- own-model: {name} -->"
    return match.group(1)


def tail(result: subprocess.CompletedProcess) -> str:
    return f"exit {result.returncode}\n--- output tail ---\n{(result.stdout + result.stderr)[-5000:]}"


def run(argv: list[str], cwd: Path, timeout: float = 600) -> subprocess.CompletedProcess:
    result = subprocess.run(argv, cwd=cwd, capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, f"{' '.join(argv)}\n{tail(result)}"
    return result


def copy_project(destination: Path) -> Path:
    listed = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=ROOT, check=True,
                            capture_output=True).stdout.decode().split("\0")
    for rel in filter(None, listed):
        source = ROOT / rel
        if source.is_file():
            (destination / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, destination / rel)
    for rel in GENERATED:
        shutil.copytree(ROOT / rel, destination / rel, dirs_exist_ok=True, symlinks=True)
    return destination


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    """A copy of the project with the README's model built and its table added to models.toml, then exported."""
    copy = copy_project(tmp_path_factory.mktemp("project"))
    run([sys.executable, "-c", readme_block("build")], cwd=copy)
    with open(copy / "models.toml", "a", encoding="utf-8") as spec:
        spec.write("\n" + readme_block("spec"))
    exported = run([sys.executable, "-m", "export"], cwd=copy)
    output = exported.stdout + exported.stderr
    wrote = re.search(r"export: wrote (.*) into", output)
    # wine_int8 is optional: written when an INT8 recipe passes the gate, left out with a warning otherwise
    assert wrote is not None and wrote.group(1) in ("wine", "wine, wine_int8"), (
        f"only the new model is built, the reference models are reused\n{tail(exported)}")
    return copy


@pytest.fixture(scope="module")
def server(project, tmp_path_factory):
    with launch_triton(project / "model_repository", tmp_path_factory.mktemp("triton")) as triton:
        yield triton


def test_the_export_writes_the_users_model_with_its_spec_contract(project):
    config = (project / "model_repository" / "wine" / "config.pbtxt").read_text()
    for tensor in ("chemistry", "color", "cultivar", "alcohol"):
        assert f'name: "{tensor}"' in config
    assert (project / "model_repository" / "wine" / "labels.txt").read_text().split() == [
        "barolo", "grignolino", "barbera"]


def test_the_readme_client_snippet_labels_the_users_model(project, server):
    snippet = readme_block("client").replace('"127.0.0.1:8000"', f'"{server.http_url}"')
    result = run([sys.executable, "-c", snippet], cwd=project)
    lines = result.stdout.strip().splitlines()
    assert len(lines) == 3, tail(result)
    for line in lines:
        label, alcohol = line.split()[0], line.split()[1]
        assert label in ("barolo", "grignolino", "barbera"), line
        assert 10.0 < float(alcohol.strip("[]")) < 16.0, line  # wines of the data set hold 11-15 % alcohol


def test_the_cli_predicts_the_users_model_with_its_labels(project, server):
    result = run([sys.executable, "-m", "modelport", "--url", server.http_url, "predict", "wine",
                  "models/wine/three_wines.npz", "--top", "2"], cwd=project)
    assert re.search(r"\b(barolo|grignolino|barbera)\b", result.stdout), tail(result)
    assert "alcohol" in result.stdout, tail(result)


def test_the_predictions_match_onnx_runtime_in_process(project, server):
    import onnxruntime as ort

    import modelport

    rows = np.load(project / "models" / "wine" / "three_wines.npz")
    session = ort.InferenceSession(str(project / "model_repository" / "wine" / "1" / "model.onnx"),
                                   providers=["CPUExecutionProvider"])
    cultivar, alcohol = session.run(["cultivar", "alcohol"], {k: rows[k] for k in ("chemistry", "color")})
    with modelport.Client(server.http_url) as client:
        served = client.predict("wine", {k: rows[k] for k in ("chemistry", "color")})
    for i, item in enumerate(served):
        assert list(item["cultivar"].scores) == ["barolo", "grignolino", "barbera"]
        np.testing.assert_allclose(list(item["cultivar"].scores.values()), cultivar[i], rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(item["alcohol"], alcohol[i], rtol=1e-5, atol=1e-5)


def test_a_short_headless_locust_run_load_tests_the_users_model(project, server, tmp_path):
    command = [sys.executable, "-m", "locust", "-f", str(project / "loadtest" / "locustfile.py"), "--headless",
               "-u", "2", "-r", "2", "-t", "4s", "--host", f"http://{server.http_url}", "--grpc-host", server.grpc_url,
               "--metrics-url", server.metrics_url, "--csv", str(tmp_path / "run"), "TritonHttpUser", "--tags", "wine"]
    result = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=180)
    assert result.returncode == 0, tail(result)
    with open(tmp_path / "run_stats.csv", newline="") as handle:
        rows = {row["Name"]: row for row in csv.DictReader(handle)}
    assert int(rows["wine"]["Request Count"]) > 10, rows
    assert int(rows["wine"]["Failure Count"]) == 0, rows
    assert set(rows) == {"wine", "Aggregated"}, "--tags wine runs the user's model only"


# ---- the suite itself, with the user's models in the spec ------------------------------------------------------------

SECOND_MODEL_BUILD = """
import os
import keras
import numpy as np
from sklearn.datasets import load_iris
from sklearn.model_selection import train_test_split

x, y = load_iris(return_X_y=True)
x = x.astype("float32").reshape(-1, 2, 2)   # sepal and petal, each (length, width): a second input shape
x_train, x_test, y_train, y_test = train_test_split(x, y, test_size=0.3, random_state=0, stratify=y)
keras.utils.set_random_seed(0)
norm = keras.layers.Normalization(axis=None)
norm.adapt(x_train)
inputs = keras.Input((2, 2), name="measurements")
hidden = keras.layers.Dense(16, activation="relu")(keras.layers.Flatten()(norm(inputs)))
model = keras.Model(inputs, keras.layers.Dense(3, activation="softmax", name="species")(hidden))
model.compile(keras.optimizers.Adam(0.02), "sparse_categorical_crossentropy")
model.fit(x_train, y_train, epochs=60, verbose=0)
os.makedirs("models/iris", exist_ok=True)
model.save("models/iris/iris.keras")
np.savez("models/iris/heldout.npz", x=x_test, y=y_test)
"""

SECOND_MODEL_SPEC = """
[[model]]
name = "iris"
kind = "onnx"
source = "models/iris/iris.keras"
heldout = "models/iris/heldout.npz"
max_batch_size = 16
loadtest_weight = 2

[[model.input]]
name = "measurements"
dtype = "TYPE_FP32"
dims = [2, 2]

[[model.output]]
name = "species"
dtype = "TYPE_FP32"
dims = [3]
labels = ["setosa", "versicolor", "virginica"]
"""

# Every test file that reads models.toml (the served models, the load-test mix, deploy/, rules, tune's writes, the
# gateway's catalogue, the bench plan): run in the project copy, they must pass with the user's models added as they
# do without. The export's own tests build their specs in tmp dirs and do not depend on models.toml's contents.
SPEC_DRIVEN_TESTS = (
    "tests/loadtest", "tests/core/measure/test_payloads.py", "tests/operate/test_generate.py",
    "tests/operate/test_rules.py", "tests/operate/test_k8s.py",
    "tests/tune/test_models_toml.py", "tests/tune/test_space.py", "tests/tune/test_run.py",
    "tests/gateway/test_units.py", "tests/gateway/test_api.py", "tests/serve/test_spec_models.py",
    "tests/serve/test_contract_models.py", "tests/export/test_repository.py", "tests/bench/test_plan.py",
    "tests/client/test_integration.py",
)


def test_the_spec_driven_tests_pass_with_the_users_models_in_the_spec(project):
    run([sys.executable, "-c", SECOND_MODEL_BUILD], cwd=project)
    with open(project / "models.toml", "a", encoding="utf-8") as spec:
        spec.write(SECOND_MODEL_SPEC)
    # what `make export` runs: the export, then deploy/ regenerated from the spec
    exported = run([sys.executable, "-m", "export"], cwd=project)
    assert "export: wrote iris into" in exported.stdout + exported.stderr, tail(exported)
    run([sys.executable, "-m", "operate", "generate"], cwd=project)

    suite = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *SPEC_DRIVEN_TESTS],
                           cwd=project, capture_output=True, text=True, timeout=1500)

    summary = f"exit {suite.returncode}\n--- pytest's report, tail ---\n{suite.stdout[-6000:]}"
    assert suite.returncode == 0, summary
    assert re.search(r"\b\d+ passed\b", suite.stdout) and " failed" not in suite.stdout, summary

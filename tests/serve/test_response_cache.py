"""`response_cache = true` in models.toml, served with `--cache-size`: Triton answers a repeated request from its
cache (statistics and metrics count the hits), with the answer the model gave."""

from __future__ import annotations

import json
import re
import shutil
import urllib.request

import numpy as np
import pytest

import modelport
from core import repository
from core.spec import load_spec
from tests.conftest import REPOSITORY, ROOT, exported_repository, launch_triton

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def cached_digits(tmp_path_factory):
    """`digits` alone, its config generated from its spec with response_cache = true, under an 8 MiB cache."""
    exported_repository()
    spec = load_spec(ROOT / "models.toml").model("digits").with_values(response_cache=True)
    target = tmp_path_factory.mktemp("repository")
    shutil.copytree(REPOSITORY / "digits", target / "digits", ignore=shutil.ignore_patterns("card.*"))
    (target / "digits" / "config.pbtxt").write_text(repository.render(repository.onnx_config(spec, "fp32")))
    with launch_triton(target, tmp_path_factory.mktemp("triton"), cache_size_bytes=8 << 20) as server:
        yield server


def cache_stats(server) -> tuple[int, int]:
    with urllib.request.urlopen(f"http://{server.http_url}/v2/models/digits/stats", timeout=5) as response:
        stats = json.load(response)["model_stats"][0]["inference_stats"]
    return int(stats["cache_hit"]["count"]), int(stats["cache_miss"]["count"])


def test_a_repeated_request_is_answered_from_the_cache_with_the_models_answer(cached_digits):
    images = np.load(ROOT / "models/digits/heldout.npz")["x"][:2]
    with modelport.Client(cached_digits.http_url, retries=0) as client:
        hits, misses = cache_stats(cached_digits)
        first = client.infer("digits", images[:1])["probabilities"]
        again = [client.infer("digits", images[:1])["probabilities"] for _ in range(3)]
        after_repeats = cache_stats(cached_digits)
        client.infer("digits", images[1:2])
        after_new = cache_stats(cached_digits)
    assert after_repeats == (hits + 3, misses + 1)
    assert after_new == (hits + 3, misses + 2)  # a different input misses
    assert all(np.array_equal(first, answer) for answer in again)
    with urllib.request.urlopen(f"http://{cached_digits.metrics_url}/metrics", timeout=5) as response:
        metrics = response.read().decode()
    counted = re.search(r'^nv_cache_num_hits_per_model\{model="digits",version="1"\} (\d+)', metrics, re.M)
    assert counted and int(counted.group(1)) >= 3, metrics[-2000:]

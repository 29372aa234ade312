"""`make trt`: TensorRT plans where TensorRT and a GPU exist, a clear refusal elsewhere."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest
from tritonclient.grpc import model_config_pb2 as mc

from core import repository
from export.trt import profiles
from tests import specs
from tests.export.conftest import tiny_spec

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.skipif(importlib.util.find_spec("tensorrt") is not None, reason="TensorRT is installed here")
def test_without_tensorrt_make_trt_exits_nonzero_saying_why_and_where_it_works():
    proc = subprocess.run([sys.executable, "-m", "export.trt"], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 3, proc.stderr
    assert "no `tensorrt` Python module" in proc.stderr and "triton.Dockerfile" in proc.stderr


def test_the_plan_profile_spans_batch_1_to_max_with_the_largest_preferred_batch_as_optimum(tmp_path, tiny_model):
    model = specs.load(tmp_path, tiny_spec(tiny_model)).models[0]
    (p,) = profiles(model)
    assert (p.input, p.min, p.opt, p.max) == ("pixels", (1, 6, 6, 1), (16, 6, 6, 1), (16, 6, 6, 1))


def test_the_plan_config_is_a_gpu_tensorrt_model_with_the_same_contract(tmp_path, tiny_model):
    model = specs.load(tmp_path, tiny_spec(tiny_model)).models[0]
    config = repository.parse(repository.render(repository.trt_config(model, "int8")))
    assert (config.name, config.platform, config.default_model_filename) == ("tiny_int8_trt", "tensorrt_plan",
                                                                              "model.plan")
    assert config.instance_group[0].kind == mc.ModelInstanceGroup.KIND_GPU
    assert [i.name for i in config.input] == ["pixels"] and config.output[0].label_filename == "labels.txt"
    assert config.max_batch_size == 16


def test_no_plan_is_built_for_a_variant_whose_state_records_ops_tensorrt_cannot_run(tmp_path, tiny_model):
    import json

    from export.trt import build_all

    spec = specs.load(tmp_path, tiny_spec(tiny_model, variants=["fp32"]))
    (tmp_path / "repo" / "tiny").mkdir(parents=True)
    (tmp_path / "repo" / "tiny" / "state.json").write_text(json.dumps({"without_tensorrt": {"tiny": ["Hardmax"]}}))
    lines = []
    # TensorRT is never reached: the only variant is skipped before its plan would be built
    assert build_all(None, spec, tmp_path / "repo", (), lines.append) == []
    assert lines == ["tiny_trt: not built: its ONNX model has ops TensorRT cannot run (see its card)"]

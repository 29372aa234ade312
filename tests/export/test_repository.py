"""config.pbtxt comes from Triton's ModelConfig schema, and the committed configs are exactly what the spec produces."""

from __future__ import annotations

from pathlib import Path

import subprocess

import pytest
from tritonclient.grpc import model_config_pb2 as mc

from core import repository
from export.repository import committed_files, label_files, repository_files
from core.spec import load_spec
from tests import specs
from tests.export.conftest import tiny_spec

ROOT = Path(__file__).resolve().parents[2]
COMMITTED = ROOT / "model_repository"


@pytest.fixture(scope="module")
def project_spec():
    return load_spec(ROOT / "models.toml")


def _all_configs(spec):
    return [c for m in spec.models for c in repository.model_configs(m)]


def test_every_config_survives_a_round_trip_through_the_protobuf_text_parser(project_spec):
    for config in _all_configs(project_spec):
        parsed = repository.parse(repository.render(config))
        assert parsed == config, config.name
        assert parsed.max_batch_size > 0, f"{config.name}: requests must be [N, ...dims]"


def test_committed_configs_and_labels_match_what_the_spec_generates(project_spec):
    """As the working tree holds them: with the version policy a model's lifecycle names (docs/lifecycle.md), which
    is the spec's own `latest 1` unless a candidate or canary is on disk."""
    drift = []
    for model in project_spec.models:
        for rel, text in repository_files(model, COMMITTED).items():
            path = COMMITTED / rel
            if not path.is_file() or path.read_text() != text:
                drift.append(rel)
    assert not drift, f"committed files differ from models.toml: {drift}; run `make export` and commit the result"


def _git(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True)


def test_the_configs_in_git_match_what_the_spec_generates(project_spec):
    """`make test` exports before testing, which rewrites the working tree: compare with the last commit too."""
    if _git("rev-parse", "--verify", "HEAD").returncode != 0:
        pytest.skip("not a git checkout with a commit")
    drift = []
    for model in project_spec.models:
        for rel, text in committed_files(model, repository.served_variants(model, COMMITTED)).items():
            shown = _git("show", f"HEAD:model_repository/{rel}")
            if shown.returncode == 0 and shown.stdout != text:  # files not yet committed are not judged
                drift.append(rel)
    assert not drift, f"configs in the last commit differ from models.toml: {drift}; commit the regenerated files"


def test_every_committed_config_belongs_to_a_model_in_the_spec(project_spec):
    names = {n for m in project_spec.models for n in repository.served_names(m, COMMITTED)}
    committed = {p.parent.name for p in COMMITTED.glob("*/config.pbtxt") if not p.parent.name.endswith("_trt")}
    assert committed <= names, f"configs without a spec entry: {sorted(committed - names)}"
    assert names <= committed, f"spec models without a committed config: {sorted(names - committed)}"


def test_onnx_configs_carry_batching_queue_policy_threads_warmup_and_the_tensorrt_accelerator(tmp_path, tiny_model):
    spec = specs.load(tmp_path, tiny_spec(tiny_model, max_queue_delay_microseconds=100,
                                                    queue_timeout_microseconds=2_000_000))
    config = repository.parse(repository.render(repository.onnx_config(spec.models[0], "int8")))
    assert (config.name, config.backend, config.default_model_filename) == ("tiny_int8", "onnxruntime", "model.onnx")
    assert list(config.dynamic_batching.preferred_batch_size) == [4, 16]
    assert config.dynamic_batching.max_queue_delay_microseconds == 100
    policy = config.dynamic_batching.default_queue_policy
    assert policy.timeout_action == mc.ModelQueuePolicy.REJECT and policy.default_timeout_microseconds == 2_000_000
    assert config.parameters["intra_op_thread_count"].string_value == "1"
    assert config.instance_group[0].kind == mc.ModelInstanceGroup.KIND_AUTO
    (trt,) = config.optimization.execution_accelerators.gpu_execution_accelerator
    assert trt.name == "tensorrt" and trt.parameters["precision_mode"] == "INT8"
    assert trt.parameters["trt_engine_cache_enable"] == "1"
    (warmup,) = config.model_warmup
    assert warmup.batch_size == 1 and list(warmup.inputs["pixels"].dims) == [6, 6, 1]
    assert config.output[0].label_filename == "labels.txt"
    assert label_files(spec.models[0]) == {"labels.txt": "cat\ndog\nowl\n"}


@pytest.mark.parametrize("variant, precision", [("fp32", "FP32"), ("fp16", "FP16"), ("int8", "INT8")])
def test_the_tensorrt_accelerator_runs_each_variant_in_the_precision_the_gate_verified(tmp_path, tiny_model, variant,
                                                                                       precision):
    spec = specs.load(tmp_path, tiny_spec(tiny_model))
    config = repository.onnx_config(spec.models[0], variant)
    (trt,) = config.optimization.execution_accelerators.gpu_execution_accelerator
    assert trt.parameters["precision_mode"] == precision


def test_the_reference_models_fp32_configs_ask_tensorrt_for_fp32(project_spec):
    for model in (m for m in project_spec.models if m.onnx is not None and m.onnx.tensorrt):
        config = repository.parse((COMMITTED / model.name / "config.pbtxt").read_text())
        (trt,) = config.optimization.execution_accelerators.gpu_execution_accelerator
        assert trt.parameters["precision_mode"] == "FP32", model.name


def test_onnx_configs_carry_no_queue_policy_unless_the_spec_asks_for_one(tmp_path, tiny_model):
    spec = specs.load(tmp_path, tiny_spec(tiny_model))
    config = repository.onnx_config(spec.models[0], "fp32")
    assert config.HasField("dynamic_batching")
    assert not config.dynamic_batching.HasField("default_queue_policy")


def test_response_cache_true_enables_the_cache_in_every_variants_config_and_its_absence_leaves_none(tmp_path,
                                                                                                     tiny_model):
    plain = specs.load(tmp_path, tiny_spec(tiny_model)).models[0]
    cached = specs.load(tmp_path, tiny_spec(tiny_model, response_cache=True)).models[0]
    for variant in cached.onnx.variants:
        with_cache, without = repository.onnx_config(cached, variant), repository.onnx_config(plain, variant)
        assert with_cache.response_cache.enable and not without.HasField("response_cache")
        without.response_cache.enable = True
        assert repository.render(with_cache) == repository.render(without)  # the one field, nothing else
        assert "response_cache {\n  enable: true\n}" in repository.render(with_cache)


def test_the_digits_config_meets_the_serving_contract(project_spec):
    config = repository.onnx_config(project_spec.model("digits"), "fp32")
    assert config.backend == "onnxruntime" and config.max_batch_size >= 32
    assert config.HasField("dynamic_batching") and len(config.instance_group) == 1
    (image,) = config.input
    assert (image.name, image.data_type, image.format, list(image.dims)) == (
        "image", mc.TYPE_FP32, mc.ModelInput.FORMAT_NHWC, [8, 8, 1])
    (probs,) = config.output
    assert (probs.name, probs.data_type, list(probs.dims), probs.label_filename) == (
        "probabilities", mc.TYPE_FP32, [10], "labels.txt")


def test_ensembles_wire_their_steps_and_label_their_outputs(project_spec):
    model = project_spec.model("sentiment")
    config = repository.ensemble_config(model)
    assert config.platform == "ensemble"
    assert [s.model_name for s in config.ensemble_scheduling.step] == ["sentiment_tokenizer", "sentiment_classifier"]
    assert dict(config.ensemble_scheduling.step[1].output_map) == {"probabilities": "probabilities"}
    assert config.output[0].label_filename == "labels.txt"
    files = committed_files(model)
    assert files["sentiment/labels.txt"] == "negative\npositive\n"
    assert "sentiment/1/.gitkeep" in files  # Triton needs the empty version directory


def test_every_model_of_the_spec_is_exported_and_up_to_date_in_the_repository(project_spec):
    from export.pipeline import is_current

    stale = [m.name for m in project_spec.models if not is_current(m, COMMITTED)]
    assert not stale, f"not exported or out of date: {stale}; run `make export`"


def test_onnx_configs_leave_every_graph_optimization_on_unless_the_spec_lowers_it(tmp_path, tiny_model):
    # Unset optimization.graph.level is ONNX Runtime's "all" in Triton's backend and ours; level 1 drops the layout
    # transforms, which made convolutions 3x slower.
    default = repository.onnx_config(specs.load(tmp_path / "a", tiny_spec(tiny_model)).models[0], "fp32")
    lowered = repository.onnx_config(specs.load(
        tmp_path / "b", tiny_spec(tiny_model, graph_optimization_level=1)).models[0], "fp32")

    assert not default.optimization.HasField("graph")
    assert "graph" not in repository.render(default)
    assert lowered.optimization.graph.level == 1

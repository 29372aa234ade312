"""models.toml parsing: a wrong spec fails before any work, naming the model, the field, the value and what is allowed."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from core.errors import SpecError
from core.spec import load_spec
from tests import specs
from tests.export.conftest import tiny_spec
from tests.specs import spec_text

ROOT = Path(__file__).resolve().parents[2]


def test_the_project_spec_loads_and_declares_the_serving_contract():
    spec = load_spec(ROOT / "models.toml")
    digits = spec.model("digits")
    assert digits.triton_names == ("digits", "digits_int8", "digits_fp16")
    assert digits.batching.max_batch_size >= 32
    (image,) = digits.inputs
    assert (image.name, image.dtype, image.dims, image.format) == ("image", "TYPE_FP32", (8, 8, 1), "FORMAT_NHWC")
    (probs,) = digits.outputs
    assert (probs.name, probs.dims, probs.labels) == ("probabilities", (10,), tuple(str(i) for i in range(10)))
    sentiment = spec.model("sentiment")
    assert [(t.name, t.dtype, t.dims) for t in sentiment.inputs] == [("text", "TYPE_STRING", (1,))]
    assert sentiment.outputs[0].labels == ("negative", "positive")  # inherited from sentiment_classifier
    assert spec.model("digits_image").outputs[0].labels == probs.labels


@pytest.mark.parametrize(
    ("change", "field", "value", "allowed"),
    [
        (('dtype = "TYPE_FP32"\ndims = [6', 'dtype = "FLOAT"\ndims = [6'), "pixels.dtype", "FLOAT", "TYPE_FP32"),
        (("dims = [6, 6, 1]", "dims = [6, 0, 1]"), "pixels.dims", "[6, 0, 1]", "positive integers, or -1"),
        (("dims = [6, 6, 1]", "dims = [6, -1, 1]"), "warmup_batch_sizes", "[1]", "variable dims (pixels)"),
        (("max_batch_size = 16", "max_batch_size = 0"), "max_batch_size", "0", "an integer >= 1"),
        (("preferred_batch_size = [4, 16]", "preferred_batch_size = [4, 64]"), "preferred_batch_size", "[4, 64]",
         "between 1 and max_batch_size (16)"),
        (('variants = ["fp32", "int8", "fp16"]', 'variants = ["fp32", "int4"]'), "variants", "int4", "fp32, int8, fp16"),
        (('variants = ["fp32", "int8", "fp16"]', 'variants = ["int8"]'), "variants", "int8", "includes fp32"),
        (('kind = "onnx"', 'kind = "tflite"'), "kind", "tflite", "onnx, python, ensemble"),
        (('labels = ["cat", "dog", "owl"]', 'labels = ["cat", "dog"]'), "scores.labels", "2 labels",
         "one label per class"),
        (("warmup_batch_sizes = [1]", "warmup_batch_sizes = [1, 99]"), "warmup_batch_sizes", "99", "max_batch_size"),
        (('format = "FORMAT_NHWC"', 'format = "NHWC"'), "pixels.format", "NHWC", "FORMAT_NHWC"),
        (("max_batch_size = 16", "max_batch_size = 16\nmax_qeue_delay_microseconds = 5"),
         "max_qeue_delay_microseconds", "5", "max_queue_delay_microseconds"),
        (("int8_max_accuracy_drop = 25.0", "int8_max_accuracy_drop = -1.0"), "gate.int8_max_accuracy_drop", "-1.0",
         "a number >= 0"),
        (("int8_max_accuracy_drop = 25.0", "int8_max_accuracy_drop = 25.0\nint8_max_range_eror = 0.1"),
         "gate.int8_max_range_eror", "0.1", "int8_max_range_error"),
        (("int8_max_accuracy_drop = 25.0", "int8_max_accuracy_drop = 25.0\n[model.gate.logits]\nfp16_max_abs_diff = 1"),
         "gate.logits", "fp16_max_abs_diff", "a [model.gate.<output>] table for one of scores"),
        (("int8_max_accuracy_drop = 25.0", "int8_max_accuracy_drop = 25.0\n[model.gate.scores]\nint8_min_agreement = 2"),
         "gate.scores.int8_min_agreement", "2", "a fraction between 0 and 1"),
        (('labels = ["cat", "dog", "owl"]', 'labels = ["cat", "dog", "owl"]\ntask = "ranking"'), "scores.task",
         "ranking", "classification, multilabel, regression"),
        (('format = "FORMAT_NHWC"', 'format = "FORMAT_NHWC"\ntask = "regression"'), "pixels.task", "regression",
         "only on [[model.output]] tables"),
        (("max_batch_size = 16", "max_batch_size = 16\nloadtest_weight = -2"), "loadtest_weight", "-2",
         "an integer >= 0"),
        (("max_batch_size = 16", 'max_batch_size = 16\noptional_variants = ["fp32"]'), "optional_variants", "fp32",
         "except fp32"),
        (('variants = ["fp32", "int8", "fp16"]', 'variants = ["fp32", "int8"]\noptional_variants = ["fp16"]'),
         "optional_variants", "fp16", "from `variants`"),
        (("max_batch_size = 16", 'max_batch_size = 16\nsamples = "lines.txt"'), "samples", "lines.txt",
         "one TYPE_STRING input"),
        (("max_batch_size = 16", 'max_batch_size = 16\nresponse_cache = "yes"'), "response_cache", "yes",
         "true or false"),
        (("max_batch_size = 16", "max_batch_size = 16\nmax_queue_size = -1"), "max_queue_size", "-1",
         "an integer >= 0"),
        (("max_batch_size = 16", "max_batch_size = 16\ninstance_count = 0"), "instance_count", "0", "an integer >= 1"),
        (("max_batch_size = 16", "max_batch_size = 16\ngraph_optimization_level = 3"), "graph_optimization_level",
         "3", "-1 (basic)"),
        (("preferred_batch_size = [4, 16]", "preferred_batch_size = [16, 4]"), "preferred_batch_size", "[16, 4]",
         "increasing, without repeats"),
    ],
)
def test_a_wrong_field_fails_naming_model_field_value_and_what_is_allowed(tmp_path, tiny_model, change, field, value,
                                                                           allowed):
    text = spec_text(tiny_spec(tiny_model))
    assert change[0] in text, "the test's edit must apply to the spec"
    with pytest.raises(SpecError) as info:
        specs.load(tmp_path, text.replace(change[0], change[1], 1))
    message = str(info.value)
    assert "'tiny'" in message and repr(field) in message and value in message and allowed in message, message


def test_a_models_toml_key_reads_and_sets_the_value_in_its_group_and_every_check_runs_again(tmp_path, tiny_model):
    from core.spec import _COMMON_KEYS, _KIND_KEYS, GROUPED_KEYS

    assert set(GROUPED_KEYS) <= _COMMON_KEYS | _KIND_KEYS["onnx"], "a group's fields are named after models.toml keys"
    model = specs.load(tmp_path, tiny_spec(tiny_model)).models[0]
    tuned = model.with_values(instance_count=3, max_queue_delay_microseconds=500)
    assert (tuned.runtime.instance_count, tuned.batching.max_queue_delay_microseconds) == (3, 500)
    assert (tuned.value("instance_count"), tuned.value("preferred_batch_size")) == (3, (4, 16))
    assert tuned.runtime.warmup_batch_sizes == (1,) and tuned.source == model.source
    with pytest.raises(SpecError, match=r"model 'tiny', field 'instance_count'.*an integer >= 1"):
        model.with_values(instance_count=0)
    with pytest.raises(SpecError, match=r"field 'preferred_batch_size'.*increasing"):  # checked by ModelSpec
        model.with_values(preferred_batch_size=(16, 4))


def test_a_gate_table_per_output_overrides_the_models_tolerances_for_that_output_only(tmp_path, tiny_model):
    entry = tiny_spec(tiny_model, gate={"fp16_max_range_error": 0.05, "scores": {"int8_min_agreement": 0.5}})
    gate = specs.load(tmp_path, entry).models[0].source.onnx.gate
    assert gate.limit("scores", "int8_min_agreement") == 0.5 and gate.int8_min_agreement == 0.95
    assert gate.limit("scores", "fp16_max_range_error") == 0.05, "an output's table starts from the model's values"


def test_the_bench_table_names_a_model_of_the_file_for_each_role(tmp_path, tiny_model):
    loaded = specs.load(tmp_path, tiny_spec(tiny_model), specs.bench(tensors="tiny", pipeline="tiny_int8",
                                                                     compute="tiny"))
    assert (loaded.bench.tensors, loaded.bench.pipeline, loaded.bench.compute) == ("tiny", "tiny_int8", "tiny")
    assert specs.load(tmp_path, tiny_spec(tiny_model)).bench is None
    with pytest.raises(SpecError, match=r"'bench\.compute'.*'tiyn'.*a model of this file: tiny, tiny_int8"):
        specs.load(tmp_path, tiny_spec(tiny_model), specs.bench(tensors="tiny", pipeline="tiny", compute="tiyn"))
    with pytest.raises(SpecError, match=r"'bench'.*a \[bench\] table with tensors, pipeline, compute"):
        specs.load(tmp_path, tiny_spec(tiny_model), specs.bench(tensors="tiny"))


def test_a_lifecycle_table_sets_the_rollout_limits_and_refuses_unknown_or_wrong_ones(tmp_path, tiny_model):
    rollout = specs.load(tmp_path, tiny_spec(tiny_model, lifecycle={"max_error_rate": 0.1, "keep_versions": 5})
                         ).models[0].rollout
    assert (rollout.max_error_rate, rollout.keep_versions, rollout.max_p99_ratio) == (0.1, 5, 2.0)
    with pytest.raises(SpecError, match="'lifecycle.max_error_rat'.*max_error_rate"):
        specs.load(tmp_path, tiny_spec(tiny_model, lifecycle={"max_error_rat": 0.1}))
    with pytest.raises(SpecError, match="'lifecycle.max_p99_ratio'.*>= 1"):
        specs.load(tmp_path, tiny_spec(tiny_model, lifecycle={"max_p99_ratio": 0.5}))


def test_int8_without_calibration_data_is_a_spec_error(tmp_path, tiny_model):
    with pytest.raises(SpecError, match="'calibration'.*required when variants include int8"):
        specs.load(tmp_path, tiny_spec(tiny_model, calibration=None))


def pipeline(input_dims: list[int], step_model: str, input_map: dict[str, str]) -> dict:
    """An ensemble over the tiny model: inputs -> step_model -> scores."""
    return specs.model("pipeline", "ensemble", inputs=[specs.tensor(next(iter(input_map.values())), input_dims)],
                       outputs=[specs.tensor("scores", [3])],
                       step=[specs.step(step_model, input_map, {"scores": "scores"})])


def test_an_ensemble_step_naming_an_unknown_model_lists_the_models_it_could_use(tmp_path, tiny_model):
    with pytest.raises(SpecError, match=r"'pipeline'.*'step\[0\]\.model'.*'tiyn'.*tiny, tiny_fp16, tiny_int8"):
        specs.load(tmp_path, tiny_spec(tiny_model), pipeline([6, 6, 1], "tiyn", {"pixels": "pixels"}))


def test_an_ensemble_wiring_tensors_of_different_shapes_is_rejected(tmp_path, tiny_model):
    with pytest.raises(SpecError, match=r"flat is TYPE_FP32 \[36\].*TYPE_FP32 \[6, 6, 1\]"):
        specs.load(tmp_path, tiny_spec(tiny_model), pipeline([36], "tiny", {"pixels": "flat"}))


def test_zero_data_warmup_is_refused_for_string_inputs(tmp_path):
    code = tmp_path / "model.py"
    code.write_text("")
    decoder = specs.model("decoder", "python", code=code, max_batch_size=4, warmup_batch_sizes=[1],
                          inputs=[specs.tensor("blob", [1], "TYPE_STRING")])
    with pytest.raises(SpecError, match="warmup_batch_sizes.*empty strings"):
        specs.load(tmp_path, decoder)


def test_the_readme_example_of_adding_your_own_model_is_a_valid_spec(tmp_path):
    readme = (ROOT / "README.md").read_text()
    example = re.search(r"<!-- own-model: spec -->\s*```toml\n(.*?)```", readme, re.S).group(1)
    spec = specs.load(tmp_path, example)
    (model,) = spec.models
    assert model.triton_names == ("wine", "wine_int8")
    assert model.source.onnx.optional_variants == ("int8",)
    assert [t.name for t in model.inputs] == ["chemistry", "color"]
    assert [(t.name, t.labels) for t in model.outputs] == [("cultivar", ("barolo", "grignolino", "barbera")),
                                                          ("alcohol", ())]


def test_a_variable_dim_is_minus_one_with_an_optional_range_of_full_shapes():
    from core.spec import Tensor

    tokens = Tensor("m", "tokens", "TYPE_INT64", (-1, 4), min_dims=(2, 4), opt_dims=(8, 4), max_dims=(16, 4))
    assert tokens.variable and not Tensor("m", "x", "TYPE_FP32", (4,)).variable
    with pytest.raises(SpecError, match=r"field 'tokens\.max_dims'.*a positive size in place of each -1"):
        Tensor("m", "tokens", "TYPE_INT64", (-1, 4), max_dims=(16, 5))  # a fixed dim must repeat its size
    with pytest.raises(SpecError, match=r"field 'tokens\.opt_dims'.*between min_dims \[2\] and max_dims \[4\]"):
        Tensor("m", "tokens", "TYPE_INT64", (-1,), min_dims=(2,), opt_dims=(8,), max_dims=(4,))
    with pytest.raises(SpecError, match=r"field 'x\.dims'.*or -1 for a variable size"):
        Tensor("m", "x", "TYPE_FP32", (0,))


def test_variable_dims_need_a_declared_range_outside_onnx_models_and_no_zero_data_warmup():
    from core.spec import Batching, ModelSpec, Runtime, Tensor

    tokens = Tensor("m", "tokens", "TYPE_INT64", (-1,))
    out = Tensor("m", "p", "TYPE_FP32", (2,))
    assert ModelSpec("m", "onnx", (tokens,), (out,), Batching(4)).inputs == (tokens,)
    with pytest.raises(SpecError, match=r"field 'tokens\.max_dims'.*min_dims and max_dims"):
        ModelSpec("m", "python", (tokens,), (out,), Batching(4))
    with pytest.raises(SpecError, match=r"field 'warmup_batch_sizes'.*variable dims \(tokens\)"):
        ModelSpec("m", "onnx", (tokens,), (out,), Batching(4), Runtime(warmup_batch_sizes=(1,)))
    with pytest.raises(SpecError, match=r"field 'p\.dims'.*fixed dims for the outputs"):
        ModelSpec("m", "onnx", (tokens,), (Tensor("m", "p", "TYPE_FP32", (-1,)),), Batching(4))

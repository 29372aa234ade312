"""PyTorch and Hugging Face sources in models.toml, without PyTorch: what a [model.text] table stands for, the source
formats, the TensorRT profiles of a text model, and the skip-with-message path when the torch extra is missing (here
checked with the extra hidden, so it runs whether or not the extra is installed)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from core import repository
from core.errors import SpecError
from core import spec as spec_module
from core.spec import TRITONMODELS, TEXT_ENCODING, TORCH_FORMATS, load_declared_spec, load_spec
from core.measure import payloads
from export.repository import committed_files
from tests import specs
from tests.export.torch_models import hf_spec, module_spec
from tests.specs import spec_text, write_spec

ROOT = Path(__file__).resolve().parents[2]
ALL = frozenset({"torch"})  # as if the extra were installed: the spec alone, no torch needed


def test_a_text_table_stands_for_a_generated_tokenizer_model_and_a_text_in_ensemble(tmp_path):
    spec = specs.load(tmp_path, hf_spec(tmp_path), extras=ALL)
    assert [m.name for m in spec.models] == ["review_bert", "review_tokenizer", "review"]
    bert, tokenizer, ensemble = spec.models
    onnx, python = bert.source.onnx, tokenizer.source.python
    assert (onnx.source_format, onnx.activation, bert.extra) == ("huggingface", "softmax", "torch")
    assert bert.triton_names == ("review_bert", "review_bert_fp16")

    assert tokenizer.kind == "python" and python.code == TRITONMODELS / "hf_tokenizer.py"
    assert [(t.name, t.dtype, t.dims) for t in tokenizer.inputs] == [("text", "TYPE_STRING", (1,))]
    assert [(t.name, t.dtype, t.dims) for t in tokenizer.outputs] == [("input_ids", "TYPE_INT64", (16,)),
                                                                      ("attention_mask", "TYPE_INT64", (16,))]
    assert [p.name for p in python.files] == ["tokenizer.json", "tokenizer_config.json",
                                               "hf_tokenization.py", "text_encoding.py"]
    assert python.files[0].parent == tmp_path / "checkpoint" and TEXT_ENCODING in python.files
    assert dict(tokenizer.runtime.parameters) == {"max_text_bytes": "65536"}

    assert ensemble.kind == "ensemble"
    assert [s.model for s in ensemble.source.steps] == ["review_tokenizer", "review_bert"]
    assert [(t.name, t.dtype, t.dims) for t in ensemble.inputs] == [("text", "TYPE_STRING", (1,))]
    (probabilities,) = ensemble.outputs
    assert (probabilities.name, probabilities.dims, probabilities.labels) == ("probabilities", (2,),
                                                                              ("negative", "positive"))
    assert ensemble.loadtest.samples == tmp_path / "samples.txt" and ensemble.loadtest.loadtest_weight == 1


def test_the_generated_models_get_configs_from_the_schema_like_any_other(tmp_path):
    spec = specs.load(tmp_path, hf_spec(tmp_path), extras=ALL)
    files = {rel: text for m in spec.models for rel, text in committed_files(m).items()}
    assert sorted(files) == ["review/1/.gitkeep", "review/config.pbtxt", "review/labels.txt",
                             "review_bert/config.pbtxt", "review_bert/labels.txt", "review_bert_fp16/config.pbtxt",
                             "review_bert_fp16/labels.txt", "review_tokenizer/config.pbtxt"]
    tokenizer = repository.parse(files["review_tokenizer/config.pbtxt"])
    assert tokenizer.backend == "python" and [o.name for o in tokenizer.output] == ["input_ids", "attention_mask"]
    ensemble = repository.parse(files["review/config.pbtxt"])
    step_maps = [(s.model_name, dict(s.input_map), dict(s.output_map)) for s in ensemble.ensemble_scheduling.step]
    assert step_maps == [
        ("review_tokenizer", {"text": "text"}, {"input_ids": "input_ids", "attention_mask": "attention_mask"}),
        ("review_bert", {"input_ids": "input_ids", "attention_mask": "attention_mask"},
         {"probabilities": "probabilities"})]
    assert files["review/labels.txt"] == "negative\npositive\n"


def test_the_tensorrt_accelerator_has_a_profile_for_every_input_batch_by_sequence(tmp_path):
    bert = specs.load(tmp_path, hf_spec(tmp_path), extras=ALL).models[0]
    config = repository.parse(repository.render(repository.onnx_config(bert, "fp32")))
    (trt,) = config.optimization.execution_accelerators.gpu_execution_accelerator
    assert {k: v for k, v in trt.parameters.items() if k.startswith("trt_profile")} == {
        "trt_profile_min_shapes": "input_ids:1x16,attention_mask:1x16",
        "trt_profile_opt_shapes": "input_ids:8x16,attention_mask:8x16",
        "trt_profile_max_shapes": "input_ids:8x16,attention_mask:8x16"}
    assert [(p.input, p.min, p.opt, p.max) for p in repository.trt_profiles(bert)] == [
        ("input_ids", (1, 16), (8, 16), (8, 16)), ("attention_mask", (1, 16), (8, 16), (8, 16))]


@pytest.mark.parametrize(("source", "declared", "expected"), [
    ("net.pt2", None, "torch_export"), ("net.pt", None, "torchscript"), ("net.ts", None, "torchscript"),
    ("checkpoint", None, "huggingface"), ("not_yet_trained", "huggingface", "huggingface"),
    ("saved", None, "savedmodel"), ("model.keras", None, "keras"), ("model.onnx", None, "onnx"),
])
def test_the_source_format_comes_from_the_suffix_or_config_json_unless_the_spec_names_it(tmp_path, source, declared,
                                                                                         expected):
    (tmp_path / "checkpoint").mkdir()
    (tmp_path / "checkpoint" / "config.json").write_text("{}")
    activation = "none" if expected in TORCH_FORMATS else None  # only torch sources take one
    entry = module_spec(tmp_path / source, tmp_path / "heldout.npz", activation=activation, source_format=declared)
    (model,) = specs.load(tmp_path, entry, extras=ALL).models
    assert model.source.onnx.source_format == expected
    assert model.extra == ("torch" if expected in TORCH_FORMATS else "")


@pytest.mark.parametrize(("change", "field", "allowed"), [
    (('dtype = "TYPE_INT64"\ndims = [16]', 'dtype = "TYPE_INT32"\ndims = [16]'), "input",
     "all TYPE_INT64 with the same dims"),
    (('name = "attention_mask"', 'name = "pixel_values"'), "input", "input_ids, and any of attention_mask"),
    (('name = "review"\n', 'name = "review bert"\n'), "text.name", "the Triton name of the text-in ensemble"),
    (('[model.text]\n', '[model.text]\nmax_length = 32\n'), "text.max_length", "input, instance_count, loadtest_weight"),
    (('name = "review"\n', 'name = "review"\ninput = "input_ids"\n'), "text.input", "TYPE_STRING input"),
    (("max_batch_size = 8", 'max_batch_size = 8\nactivation = "relu"'), "activation", "none, softmax, sigmoid"),
    (("max_batch_size = 8", 'max_batch_size = 8\nsource_format = "tflite"'), "source_format", "huggingface"),
])
def test_a_wrong_text_or_torch_field_fails_naming_the_field(tmp_path, change, field, allowed):
    text = spec_text(hf_spec(tmp_path))
    assert change[0] in text, "the test's edit must apply to the spec"
    with pytest.raises(SpecError) as info:
        specs.load(tmp_path, text.replace(change[0], change[1], 1), extras=ALL)
    assert "'review_bert'" in str(info.value) and repr(field) in str(info.value) and allowed in str(info.value)


def test_only_the_checkpoint_selects_the_tokenizer_and_ensemble_its_text_table_stands_for(tmp_path):
    from export.pipeline import select

    spec = specs.load(tmp_path, hf_spec(tmp_path), extras=ALL)
    assert [m.name for m in select(spec, ("review_bert",))] == ["review_bert", "review_tokenizer", "review"]
    assert [m.name for m in select(spec, ("review",))] == ["review"], "an ensemble alone rebuilds only itself"


def test_a_text_table_needs_a_hugging_face_checkpoint_and_activation_needs_a_torch_source(tmp_path):
    with pytest.raises(SpecError, match=r"'text'.*a Hugging Face checkpoint folder source"):
        specs.load(tmp_path, hf_spec(tmp_path, source=tmp_path / "model.onnx"), extras=ALL)
    with pytest.raises(SpecError, match=r"'activation'.*for PyTorch sources"):
        specs.load(tmp_path, module_spec(tmp_path / "model.keras", tmp_path / "heldout.npz"), extras=ALL)


def test_the_docs_checkpoint_example_is_a_valid_spec_of_three_models(tmp_path):
    page = (ROOT / "docs" / "export.md").read_text()
    section = page[page.index("\n## PyTorch and Hugging Face models\n"):]
    example = section[section.index("```toml") + len("```toml"):section.index("```", section.index("```toml") + 7)]
    spec = specs.load(tmp_path, example, extras=ALL)
    assert [n for m in spec.models for n in m.triton_names] == [
        "reviews_classifier", "reviews_classifier_int8", "reviews_classifier_fp16", "reviews_tokenizer", "reviews"]
    assert spec.model("reviews").outputs[0].labels == ("negative", "positive")


# ---- without the extra ---------------------------------------------------------------------------------------------

def write_onnx_classifier(directory: Path) -> dict:
    """A models.toml entry for an ONNX file (softmax of two features) that exports without any extra."""
    import onnx
    from onnx import TensorProto, helper

    graph = helper.make_graph([helper.make_node("Softmax", ["x"], ["probabilities"], axis=1)], "plain",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 2])],
                              [helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, ["n", 2])])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(directory / "plain.onnx"))
    x = np.random.default_rng(0).normal(size=(20, 2)).astype(np.float32)
    np.savez(directory / "plain.npz", x=x, y=x.argmax(axis=1))
    return specs.model("plain", source=directory / "plain.onnx", heldout=directory / "plain.npz",
                       outputs=[specs.tensor("probabilities")])


def user_ensemble() -> dict:
    """An ensemble the user wrote by hand around the generated tokenizer: it needs the extra too."""
    masks = {"input_ids": "input_ids", "attention_mask": "attention_mask"}
    return specs.model("review_again", "ensemble", inputs=[specs.tensor("text", [1], "TYPE_STRING")],
                       outputs=[specs.tensor("probabilities")],
                       step=[specs.step("review_tokenizer", {"text": "text"}, masks),
                             specs.step("review_bert_fp16", masks, {"probabilities": "probabilities"})])


def test_without_the_extra_its_models_and_ensembles_using_them_are_skipped_and_the_rest_is_unchanged(tmp_path):
    path = write_spec(tmp_path, write_onnx_classifier(tmp_path), hf_spec(tmp_path), user_ensemble())
    spec = load_spec(path, frozenset())
    assert [m.name for m in spec.models] == ["plain"]
    assert [(m.name, m.extra) for m in spec.skipped] == [("review_bert", "torch"), ("review_tokenizer", "torch"),
                                                         ("review", "torch"), ("review_again", "torch")]
    assert load_spec(path, ALL).models[0] == spec.models[0]
    assert [t.name for t in payloads.targets(spec)] == ["plain"]  # the load test and bench see no skipped model


def test_the_declared_spec_keeps_every_model_whether_or_not_its_extra_is_installed(tmp_path, monkeypatch):
    path = write_spec(tmp_path, write_onnx_classifier(tmp_path), hf_spec(tmp_path), user_ensemble())
    monkeypatch.setattr(spec_module, "installed_extras", frozenset)  # a machine without the torch extra
    assert [m.name for m in load_spec(path).models] == ["plain"]
    declared = load_declared_spec(path)
    assert [m.name for m in declared.models] == ["plain", "review_bert", "review_tokenizer", "review", "review_again"]
    assert declared.skipped == ()


def test_a_broken_spec_entry_is_an_error_even_when_its_extra_is_missing(tmp_path):
    entry = hf_spec(tmp_path)
    entry["input"][0]["dtype"] = "TYPE_FP32"
    with pytest.raises(SpecError, match="'review_bert'"):
        specs.load(tmp_path, entry, extras=frozenset())


HIDE_TORCH = "import sys; sys.modules['torch'] = None  # find_spec('torch') is None: the extra looks missing\n"


def test_without_the_extra_the_export_says_in_one_line_how_to_install_it_and_exports_the_rest(tmp_path):
    path = write_spec(tmp_path, write_onnx_classifier(tmp_path), hf_spec(tmp_path))
    repo = tmp_path / "repo"
    (repo / "review" / "1").mkdir(parents=True)  # an export made where the extra was installed
    (repo / "review" / "card.json").write_text("{}")
    hidden = tmp_path / "hide_torch"
    hidden.mkdir()
    (hidden / "sitecustomize.py").write_text(HIDE_TORCH)
    env = {**os.environ, "PYTHONPATH": f"{hidden}:{ROOT}"}
    done = subprocess.run([sys.executable, "-m", "export", "--spec", str(path), "--repository", str(repo)], cwd=ROOT,
                          capture_output=True, text=True, timeout=600, env=env)
    output = done.stdout + done.stderr
    assert done.returncode == 0, output[-3000:]
    skipped = [line for line in output.splitlines() if "skipped review_bert" in line]
    assert skipped == ["export: skipped review_bert, review_tokenizer, review: the optional torch extra (torch, "
                       "transformers, onnxscript) is not installed here; `make venv EXTRAS=torch` installs it"], output
    assert "export: removing review (skipped: it cannot be rebuilt here)" in output
    assert (repo / "plain" / "1" / "model.onnx").is_file() and not (repo / "review").exists()
    assert sorted(p.name for p in repo.iterdir()) == ["plain"]
    only = subprocess.run([sys.executable, "-m", "export", "--spec", str(path), "--repository", str(repo), "--only",
                           "review"], cwd=ROOT, capture_output=True, text=True, timeout=600, env=env)
    assert only.returncode == 1 and "--only review: the optional torch extra" in only.stderr, only.stderr

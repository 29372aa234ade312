"""PyTorch and Hugging Face sources through the whole export: a user's checkpoint folder and a plain torch.nn.Module
(as an ExportedProgram and as TorchScript) come out as gated ONNX variants; a checkpoint also as a generated tokenizer
model and a text-in ensemble, with raw text checked end to end against transformers + PyTorch."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest

pytest.importorskip("torch", reason="the torch extra is not installed: make venv EXTRAS=torch")
pytest.importorskip("transformers", reason="the torch extra is not installed: make venv EXTRAS=torch")

from export import pipeline, text_parity  # noqa: E402
from core.errors import IncompatibleModelError  # noqa: E402
from core.spec import TRITONMODELS, load_spec  # noqa: E402
from tests.specs import write_spec  # noqa: E402
from tests.export.torch_models import (MAX_LENGTH, TEXTS, hf_checkpoint, hf_spec, module_spec,  # noqa: E402
                                       tokenizer_files, torch_module_files)


def export(spec_path: Path, repo: Path) -> tuple[pipeline.Outcome, list[str]]:
    lines: list[str] = []
    return pipeline.run(load_spec(spec_path), pipeline.Options(repo), lines.append), lines


@pytest.fixture(scope="module")
def checkpoint_export(tmp_path_factory):
    """A user's Hugging Face checkpoint folder and its models.toml entry, exported once."""
    work = tmp_path_factory.mktemp("hf")
    hf_checkpoint(work)
    spec_path = write_spec(work, hf_spec(work, variants=["fp32", "int8", "fp16"],
                                         optional_variants=["int8"]))
    outcome, lines = export(spec_path, work / "repo")
    return work, spec_path, work / "repo", outcome, lines


def test_a_checkpoint_folder_becomes_gated_variants_a_tokenizer_model_and_a_text_ensemble(checkpoint_export):
    work, _, repo, outcome, lines = checkpoint_export
    assert outcome.built == ("review_bert", "review_tokenizer", "review"), "\n".join(lines)
    card = json.loads((repo / "review_bert" / "card.json").read_text())
    served = [v["triton_name"] for v in card["variants"]]
    assert served[0] == "review_bert" and "review_bert_fp16" in served
    fp32 = card["variants"][0]
    assert fp32["argmax_agreement"] == 1.0 and fp32["accuracy"] == 1.0  # labels are the model's own predictions
    assert sorted(fp32["max_abs_diff"]) == ["1", "7", "8"] and max(fp32["max_abs_diff"].values()) <= 1e-4
    assert card["exported_with"]["opset"] == "18" and "torch" in card["exported_with"]

    graph = onnx.load(str(repo / "review_bert" / "1" / "model.onnx")).graph
    shapes = {v.name: [d.dim_param or d.dim_value for d in v.type.tensor_type.shape.dim]
              for v in (*graph.input, *graph.output)}
    assert shapes == {"input_ids": ["batch", MAX_LENGTH], "attention_mask": ["batch", MAX_LENGTH],
                      "probabilities": ["batch", 2]}
    assert all(v.type.tensor_type.elem_type == onnx.TensorProto.INT64 for v in graph.input)


def test_the_end_to_end_parity_from_raw_text_is_on_the_card(checkpoint_export):
    _, _, repo, _, lines = checkpoint_export
    e2e = json.loads((repo / "review_bert" / "card.json").read_text())["end_to_end"]
    assert e2e["texts"] == len(TEXTS) * 3
    assert (e2e["token_agreement"], e2e["argmax_agreement"]) == (1.0, 1.0) and e2e["max_abs_diff"] <= 1e-4
    assert "AutoTokenizer + BertForSequenceClassification" in e2e["reference"]
    assert "## End-to-end parity: raw text in" in (repo / "review_bert" / "card.md").read_text()
    assert any("review: tokens identical for 100.00% of texts" in line for line in lines)


def test_the_tokenizer_model_is_deployed_with_the_checkpoints_own_tokenizer_and_no_written_model_py(checkpoint_export):
    work, _, repo, _, _ = checkpoint_export
    version = repo / "review_tokenizer" / "1"
    assert sorted(p.name for p in version.iterdir()) == ["hf_tokenization.py", "model.py", "model_config.py",
                                                         "text_encoding.py", "tokenizer.json", "tokenizer_config.json"]
    assert (version / "tokenizer.json").read_bytes() == (work / "checkpoint" / "tokenizer.json").read_bytes()
    assert (version / "model.py").read_text() == (TRITONMODELS / "hf_tokenizer.py").read_text()
    assert (repo / "review" / "labels.txt").read_text() == "negative\npositive\n"


def test_a_second_export_of_the_checkpoint_does_no_work(checkpoint_export):
    _, spec_path, repo, _, _ = checkpoint_export
    outcome, lines = export(spec_path, repo)
    assert outcome.built == () and "nothing to do" in lines[-1]


def test_end_to_end_parity_fails_on_a_tokenizer_that_is_not_the_checkpoints(checkpoint_export, tmp_path):
    work, spec_path, repo, _, _ = checkpoint_export
    model = load_spec(spec_path).models[0]
    fp32 = (repo / "review_bert" / "1" / "model.onnx").read_bytes()
    texts = text_parity.heldout_texts(model)
    report, failures = text_parity.check(model, fp32, texts)
    assert failures == [] and report.argmax_agreement == 1.0
    # the same kind of tokenizer, trained on other texts: other ids for the same words
    other = tokenizer_files(tmp_path / "other", ["zebra crossing", "a film", "quantum leaps of faith", "dull"])
    report, failures = text_parity.check(model, fp32, texts, tokenizer_dir=other)
    assert report.token_agreement < 1.0 and report.argmax_agreement < 1.0 and report.max_abs_diff > 1e-4
    checks = {f.check: f for f in failures}
    assert {f.variant for f in failures} == {"end-to-end"}
    assert set(checks) == {"texts tokenized differently from transformers", "argmax agreement", "max |diff|"}
    assert "end-to-end 'input_ids, attention_mask': texts tokenized differently" in str(
        checks["texts tokenized differently from transformers"])


def test_spec_labels_that_are_not_the_checkpoints_id2label_fail_with_the_line_to_write(tmp_path):
    hf_checkpoint(tmp_path)
    spec_path = write_spec(tmp_path, hf_spec(tmp_path, labels=("bad", "good")))
    with pytest.raises(IncompatibleModelError) as info:
        export(spec_path, tmp_path / "repo")
    assert "not the checkpoint's id2label ['negative', 'positive']" in str(info.value)
    assert 'labels = ["negative", "positive"]' in str(info.value)
    assert not (tmp_path / "repo" / "review_bert").exists()


@pytest.fixture(scope="module")
def module_files(tmp_path_factory):
    return torch_module_files(tmp_path_factory.mktemp("module"))


@pytest.mark.parametrize("kind", ["pt2", "torchscript"])
def test_a_plain_torch_module_is_exported_and_gated(module_files, tmp_path, kind):
    spec_path = write_spec(tmp_path, module_spec(module_files[kind], module_files["heldout"],
                                                 variants=["fp32", "fp16"]))
    outcome, lines = export(spec_path, tmp_path / "repo")
    assert outcome.built == ("scorer",), "\n".join(lines)
    card = json.loads((tmp_path / "repo" / "scorer" / "card.json").read_text())
    assert [v["triton_name"] for v in card["variants"]] == ["scorer", "scorer_fp16"]
    assert card["variants"][0]["accuracy"] == 1.0 and max(card["variants"][0]["max_abs_diff"].values()) <= 1e-4
    graph = onnx.load(str(tmp_path / "repo" / "scorer" / "1" / "model.onnx")).graph
    assert [i.name for i in graph.input] == ["features", "bias"] and graph.output[0].name == "scores"
    assert graph.input[0].type.tensor_type.shape.dim[0].dim_param == "batch"
    assert "Softmax" in {n.op_type for n in graph.node}  # activation = "softmax"


def test_an_exported_program_with_a_static_batch_fails_saying_how_to_export_it(module_files, tmp_path):
    spec_path = write_spec(tmp_path, module_spec(module_files["static"], module_files["heldout"]))
    with pytest.raises(IncompatibleModelError,
                       match=r"fixes the batch dimension of features, bias.*Dim\('batch'\)") as info:
        export(spec_path, tmp_path / "repo")
    assert "scorer" in str(info.value)


def test_the_served_tokenizer_encodes_exactly_as_transformers_does_long_and_accented_texts_too(checkpoint_export):
    from transformers import AutoTokenizer

    work = checkpoint_export[0]
    texts = [*TEXTS, " ".join(["witty"] * 200), "naïve café — ÉCLAIR", "x"]
    encoding = text_parity.generated_encoding()
    served = encoding.encode(encoding.load(work / "checkpoint", MAX_LENGTH), texts, ["input_ids", "attention_mask"])
    expected = AutoTokenizer.from_pretrained(work / "checkpoint")(
        texts, padding="max_length", truncation=True, max_length=MAX_LENGTH, return_tensors="np")
    for name in ("input_ids", "attention_mask"):
        np.testing.assert_array_equal(served[name], expected[name])
    assert served["attention_mask"][len(TEXTS)].all()  # the long text is truncated to MAX_LENGTH, not rejected

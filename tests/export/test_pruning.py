"""The pruned variant (export/prune.py): searched up to the highest sparsity its gate passes, on the digits CNN
(the exported fp32 ONNX file and its held-out set, in a spec of their own: the reference models' set is untouched)."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import onnx
import pytest
from onnx import numpy_helper

from export import dataset, pipeline, prune, reference, verify
from export.errors import IncompatibleModelError, SpecError
from export.spec import load_spec
from tests.conftest import ROOT
from tests.export.test_pipeline import export_cli

DIGITS_ONNX = ROOT / "model_repository" / "digits" / "1" / "model.onnx"
DIGITS_HELDOUT = ROOT / "models" / "digits" / "heldout.npz"


def digits_spec(directory: Path, *, pruning: str = "weights", gate: str = "", extra: str = "",
                variants: str = '["fp32", "pruned"]') -> Path:
    if not (DIGITS_ONNX.is_file() and DIGITS_HELDOUT.is_file()):
        pytest.fail(f"{DIGITS_ONNX} or {DIGITS_HELDOUT} is missing: run `make export` first")
    path = directory / f"models-{pruning}-{abs(hash(gate + extra + variants))}.toml"
    path.write_text(textwrap.dedent(f"""
        [[model]]
        name = "digits"
        kind = "onnx"
        source = "{DIGITS_ONNX}"
        heldout = "{DIGITS_HELDOUT}"
        calibration = "{DIGITS_HELDOUT.with_name('calibration.npz')}"
        variants = {variants}
        pruning = "{pruning}"
        max_batch_size = 32
        {extra}

        [[model.input]]
        name = "image"
        dtype = "TYPE_FP32"
        dims = [8, 8, 1]
        format = "FORMAT_NHWC"

        [[model.output]]
        name = "probabilities"
        dtype = "TYPE_FP32"
        dims = [10]
        labels = ["0", "1", "2", "3", "4", "5", "6", "7", "8", "9"]

        [model.gate]
        {gate}
        """))
    return path


def searched(spec_path: Path) -> tuple[prune.PruneSearch, list[str]]:
    model = load_spec(spec_path).models[0]
    heldout = dataset.load_npz(model, model.onnx.heldout, with_labels=True)
    judge = pipeline._variant_judge(model, "pruned", heldout, reference.reference_outputs(model, heldout))
    lines: list[str] = []
    return prune.search(onnx.load(DIGITS_ONNX), model.onnx.pruning, judge, lines.append, "digits_pruned"), lines


def zeros_in_layer_weights(proto: onnx.ModelProto) -> tuple[int, int]:
    """Zeros and entries of the initializers that MatMul, Gemm and Conv nodes multiply by, counted here."""
    inits = {i.name: numpy_helper.to_array(i) for i in proto.graph.initializer}
    weights = {n.input[1] for n in proto.graph.node if n.op_type in ("MatMul", "Gemm", "Conv") and n.input[1] in inits}
    return (sum(int((inits[w] == 0).sum()) for w in weights), sum(inits[w].size for w in weights))


def card(repo: Path, name: str = "digits") -> dict:
    return json.loads((repo / name / "card.json").read_text())


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """digits with weights pruning, alone and with int8, exported through the CLI into a fresh repository."""
    work = tmp_path_factory.mktemp("pruned")
    repo = work / "model_repository"
    spec_path = digits_spec(work, variants='["fp32", "pruned", "pruned_int8"]')
    proc = export_cli("--spec", str(spec_path), "--repository", str(repo))
    assert proc.returncode == 0, proc.tail
    return work, repo, proc


def test_the_weight_search_stops_at_the_first_fraction_the_gate_refuses(tmp_path):
    result, lines = searched(digits_spec(tmp_path))
    *passed, refused = result.levels
    assert passed and all(lv.verdict.passed for lv in passed) and not refused.verdict.passed, lines
    assert refused.sparsity == pytest.approx(passed[-1].sparsity + prune.STEP, abs=1e-3), "one step past the last pass"
    assert prune.sparsity(result.proto, onnx.load(DIGITS_ONNX)).fraction == pytest.approx(passed[-1].sparsity)
    print(f"\ndigits, weights pruning at the default gate: {passed[-1].sparsity:.0%} passes; {refused.what}: "
          f"{refused.verdict.text}")


def test_a_stricter_gate_gives_a_lower_sparsity(tmp_path):
    default, _ = searched(digits_spec(tmp_path))
    strict, lines = searched(digits_spec(tmp_path, gate="pruned_min_agreement = 0.995"))
    served = [max(lv.sparsity for lv in s.levels if lv.verdict.passed) for s in (default, strict)]
    assert 0 < served[1] < served[0], lines
    assert "argmax agreement" in strict.levels[-1].verdict.text and "tolerance 0.995" in strict.levels[-1].verdict.text


def test_the_served_pruned_model_passes_the_gate_and_its_card_counts_its_zeros(exported):
    work, repo, proc = exported
    served = onnx.load(repo / "digits_pruned" / "1" / "model.onnx")
    zeros, entries = zeros_in_layer_weights(served)
    record = card(repo)["pruning"]
    assert record["method"] == "weights" and record["zeros"] == zeros and record["weights"] == entries
    assert record["sparsity"] == pytest.approx(zeros / entries, abs=1e-6) and record["sparsity"] >= 0.05
    assert zeros_in_layer_weights(onnx.load(DIGITS_ONNX))[0] < zeros / 10, "the zeros are the pruning's"
    assert record["gzip_bytes"]["pruned"] < record["gzip_bytes"]["fp32"], "zeros compress"
    model = load_spec(next(work.glob("models-weights-*.toml"))).models[0]
    heldout = dataset.load_npz(model, model.onnx.heldout, with_labels=True)
    report, failures = verify.check_variant(model, "pruned", (repo / "digits_pruned" / "1" / "model.onnx").read_bytes(),
                                            heldout, reference.reference_outputs(model, heldout))
    assert not failures and report.accuracy_drop <= model.onnx.gate.pruned_max_accuracy_drop
    markdown = (repo / "digits_pruned" / "card.md").read_text()
    assert "## Pruning" in markdown and f"Sparsity {record['sparsity']:.2%}" in markdown and "| pruned |" in markdown
    assert 'name: "digits_pruned"' in (repo / "digits_pruned" / "config.pbtxt").read_text()
    assert "pruned (weights) 5% of each weight" in proc.stdout


def test_pruned_int8_quantizes_the_pruned_model_and_is_smaller_still_within_the_int8_gate(exported):
    work, repo, proc = exported
    record = card(repo)["pruning"]
    served = onnx.load(repo / "digits_pruned_int8" / "1" / "model.onnx")
    assert {"QuantizeLinear", "DequantizeLinear"} <= {n.op_type for n in served.graph.node}
    assert record["gzip_bytes"]["pruned_int8"] < record["gzip_bytes"]["pruned"] < record["gzip_bytes"]["fp32"]
    (variant,) = [v for v in card(repo)["variants"] if v["variant"] == "pruned_int8"]
    assert variant["recipe"] and variant["accuracy"] >= card(repo)["source_accuracy"] - 0.01, "int8's 1-point limit"
    assert 'value: "INT8"' in (repo / "digits_pruned_int8" / "config.pbtxt").read_text()
    assert "| pruned_int8 |" in (repo / "digits" / "card.md").read_text()


def test_unit_pruning_removes_whole_channels_in_blocks_and_passes_the_gate(tmp_path):
    spec_path = digits_spec(tmp_path, pruning="units")
    result, lines = searched(spec_path)
    fp32 = onnx.load(DIGITS_ONNX)
    before = {i.name: tuple(i.dims) for i in fp32.graph.initializer}
    after = {i.name: tuple(i.dims) for i in result.proto.graph.initializer}
    shrunk = {n: (before[n], after[n]) for n in after if after[n] != before[n]}
    assert shrunk, lines
    for old, new in shrunk.values():
        assert all(n % prune.UNIT_MULTIPLE == 0 for n, o in zip(new, old) if n != o), shrunk
    assert zeros_in_layer_weights(result.proto)[0] == zeros_in_layer_weights(fp32)[0], "removed, not zeroed"
    model = load_spec(spec_path).models[0]
    heldout = dataset.load_npz(model, model.onnx.heldout, with_labels=True)
    _, failures = verify.check_variant(model, "pruned", result.proto.SerializeToString(), heldout,
                                       reference.reference_outputs(model, heldout))
    assert not failures
    assert [lv for lv in result.levels if lv.chosen] and all(lv.verdict.passed for lv in result.levels if lv.chosen)


def test_a_gate_no_pruning_passes_fails_the_export_in_one_line_and_leaves_the_repository(tmp_path):
    strict = "pruned_min_agreement = 1.0\npruned_max_accuracy_drop = 0.0"
    repo = tmp_path / "model_repository"
    proc = export_cli("--spec", str(digits_spec(tmp_path, gate=strict)), "--repository", str(repo))
    assert proc.returncode == 1, proc.tail
    (line,) = [x for x in proc.stderr.splitlines() if "digits_pruned" in x]
    assert "pruning (weights) fails the gate already at 5% of each weight" in line, proc.stderr
    assert "argmax agreement" in line and "tolerance 1" in line and "[model.gate]" in line, line
    assert 'optional_variants = ["pruned"]' in proc.stderr and not repo.exists()
    optional = export_cli("--spec", str(digits_spec(tmp_path, gate=strict, extra='optional_variants = ["pruned"]')),
                          "--repository", str(repo))
    assert optional.returncode == 0 and "warning: digits_pruned is left out" in optional.stdout, optional.tail
    assert sorted(p.name for p in repo.iterdir()) == ["digits"]


def test_an_unknown_pruning_method_names_the_field_and_the_choices(tmp_path):
    with pytest.raises(SpecError) as raised:
        load_spec(digits_spec(tmp_path, pruning="channels"))
    assert "'pruning'" in str(raised.value) and "weights" in str(raised.value) and "units" in str(raised.value)


def test_a_model_without_layer_weights_cannot_be_pruned_and_says_so(tmp_path):
    graph = onnx.helper.make_graph(
        [onnx.helper.make_node("Softmax", ["x"], ["y"], axis=1)], "softmax",
        [onnx.helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [None, 10])],
        [onnx.helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [None, 10])])
    proto = onnx.helper.make_model(graph)
    with pytest.raises(IncompatibleModelError, match="digits_pruned: no MatMul, Gemm or Conv weight to prune"):
        prune.search(proto, "weights", lambda blob: None, print, "digits_pruned")

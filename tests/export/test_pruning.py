"""The pruned variant (export/prune.py): searched up to the highest sparsity its gate passes, on the digits CNN
(the exported fp32 ONNX file and its held-out set, in a spec of their own: the reference models' set is untouched)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from core.heldout import load_npz
from export import pipeline, prune, reference, verify
from core.errors import IncompatibleModelError, SpecError
from core.spec import load_spec
from tests import specs
from tests.conftest import ROOT, exported_repository, launch_triton
from tests.export.test_pipeline import export_cli

DIGITS_ONNX = ROOT / "model_repository" / "digits" / "1" / "model.onnx"
DIGITS_HELDOUT = ROOT / "models" / "digits" / "heldout.npz"


def digits_spec(directory: Path, **fields) -> Path:
    """digits' exported fp32 model and held-out set in a spec of their own, fp32 and pruned by weights unless `fields`
    (models.toml fields) say otherwise."""
    exported_repository(DIGITS_ONNX, DIGITS_HELDOUT)
    entry = specs.model("digits", **{
        "source": DIGITS_ONNX, "heldout": DIGITS_HELDOUT, "calibration": DIGITS_HELDOUT.with_name("calibration.npz"),
        "variants": ["fp32", "pruned"], "pruning": "weights", "max_batch_size": 32,
        "inputs": [specs.tensor("image", [8, 8, 1], format="FORMAT_NHWC")],
        "outputs": [specs.tensor("probabilities", [10], labels=[str(i) for i in range(10)])], **fields})
    return specs.write_spec(directory, entry, filename=f"models-{abs(hash(repr(fields)))}.toml")


def searched(spec_path: Path) -> tuple[prune.PruneSearch, list[str]]:
    model = load_spec(spec_path).models[0]
    heldout = load_npz(model, model.source.onnx.heldout, with_labels=True)
    judge = pipeline._variant_judge(model, "pruned", heldout, reference.reference_outputs(model, heldout))
    lines: list[str] = []
    return prune.search(onnx.load(DIGITS_ONNX), model.source.onnx.pruning, judge, lines.append, "digits_pruned"), lines


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
    spec_path = digits_spec(work, variants=["fp32", "pruned", "pruned_int8"])
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
    strict, lines = searched(digits_spec(tmp_path, gate={"pruned_min_agreement": 0.995}))
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
    model = load_spec(next(work.glob("models-*.toml"))).models[0]
    heldout = load_npz(model, model.source.onnx.heldout, with_labels=True)
    report, failures = verify.check_variant(model, "pruned", (repo / "digits_pruned" / "1" / "model.onnx").read_bytes(),
                                            heldout, reference.reference_outputs(model, heldout))
    assert not failures and report.accuracy_drop <= model.source.onnx.gate.pruned_max_accuracy_drop
    markdown = (repo / "digits_pruned" / "card.md").read_text()
    assert "## Pruning" in markdown and f"Sparsity {record['sparsity']:.2%}" in markdown and "| pruned |" in markdown
    assert 'name: "digits_pruned"' in (repo / "digits_pruned" / "config.pbtxt").read_text()
    assert "pruned (weights) 5% of each weight" in proc.stdout
    again = export_cli("--spec", str(next(work.glob("models-*.toml"))), "--repository", str(repo))
    assert again.returncode == 0 and "nothing to do" in again.stdout, again.tail


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
    heldout = load_npz(model, model.source.onnx.heldout, with_labels=True)
    _, failures = verify.check_variant(model, "pruned", result.proto.SerializeToString(), heldout,
                                       reference.reference_outputs(model, heldout))
    assert not failures
    assert [lv for lv in result.levels if lv.chosen] and all(lv.verdict.passed for lv in result.levels if lv.chosen)


def test_a_gate_no_pruning_passes_fails_the_export_in_one_line_and_leaves_the_repository(tmp_path):
    strict = {"pruned_min_agreement": 1.0, "pruned_max_accuracy_drop": 0.0}
    repo = tmp_path / "model_repository"
    proc = export_cli("--spec", str(digits_spec(tmp_path, gate=strict)), "--repository", str(repo))
    assert proc.returncode == 1, proc.tail
    (line,) = [x for x in proc.stderr.splitlines() if "digits_pruned" in x]
    assert "pruning (weights) fails the gate already at 5% of each weight" in line, proc.stderr
    assert "argmax agreement" in line and "tolerance 1" in line and "[model.gate]" in line, line
    assert 'optional_variants = ["pruned"]' in proc.stderr and not repo.exists()
    optional = export_cli("--spec", str(digits_spec(tmp_path, gate=strict, optional_variants=["pruned"])),
                          "--repository", str(repo))
    assert optional.returncode == 0 and "warning: digits_pruned is left out" in optional.stdout, optional.tail
    assert sorted(p.name for p in repo.iterdir()) == ["digits"]


def test_an_unknown_pruning_method_names_the_field_and_the_choices(tmp_path):
    with pytest.raises(SpecError) as raised:
        load_spec(digits_spec(tmp_path, pruning="channels"))
    assert "'pruning'" in str(raised.value) and "weights" in str(raised.value) and "units" in str(raised.value)


def test_pruned_int8_without_a_calibration_set_is_refused_naming_the_field(tmp_path):
    path = digits_spec(tmp_path, variants=["fp32", "pruned_int8"], calibration=None)
    with pytest.raises(SpecError) as raised:
        load_spec(path)
    assert "'calibration'" in str(raised.value) and "pruned_int8" in str(raised.value)


def dense_net(bias: np.ndarray) -> onnx.ModelProto:
    """x [N, 4] -> MatMul [4, 32] -> Add bias -> Relu -> MatMul [32, 3]; hidden units 16..31 have zero weights in."""
    rng = np.random.default_rng(0)
    w_in = rng.normal(size=(4, 32)).astype(np.float32)
    w_in[:, 16:] = 0
    w_out = rng.normal(size=(32, 3)).astype(np.float32)
    graph = onnx.helper.make_graph(
        [onnx.helper.make_node("MatMul", ["x", "w_in"], ["h"]), onnx.helper.make_node("Add", ["h", "b"], ["hb"]),
         onnx.helper.make_node("Relu", ["hb"], ["a"]), onnx.helper.make_node("MatMul", ["a", "w_out"], ["y"])],
        "dense", [onnx.helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [None, 4])],
        [onnx.helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [None, 3])],
        [numpy_helper.from_array(w_in, "w_in"), numpy_helper.from_array(bias.astype(np.float32), "b"),
         numpy_helper.from_array(w_out, "w_out")])
    return onnx.helper.make_model(graph, opset_imports=[onnx.helper.make_opsetid("", 17)])


def test_removing_dead_units_slices_weights_in_bias_and_weights_out_and_changes_no_output():
    bias = np.concatenate([np.random.default_rng(1).normal(size=16), np.zeros(16)])
    proto = dense_net(bias)
    (chain,) = prune.chains(proto)
    pruned = prune.prune_units(proto, [chain], (16,))
    shapes = {i.name: tuple(i.dims) for i in pruned.graph.initializer}
    assert shapes == {"w_in": (4, 16), "b": (16,), "w_out": (16, 3)}
    x = np.random.default_rng(2).normal(size=(64, 4)).astype(np.float32)
    before, after = (verify.run_onnx(p.SerializeToString(), {"x": x}, 64, None)["y"] for p in (proto, pruned))
    assert np.allclose(before, after, atol=1e-5) and not np.allclose(before, 0)
    assert prune.sparsity(pruned, proto).fraction == pytest.approx(0.5)


def test_a_bias_broadcast_from_one_value_is_no_per_unit_bias_and_the_layer_is_left_whole():
    assert prune.chains(dense_net(np.array([0.5]))) == []


def test_a_model_without_layer_weights_cannot_be_pruned_and_says_so(tmp_path):
    graph = onnx.helper.make_graph(
        [onnx.helper.make_node("Softmax", ["x"], ["y"], axis=1)], "softmax",
        [onnx.helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [None, 10])],
        [onnx.helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [None, 10])])
    proto = onnx.helper.make_model(graph)
    with pytest.raises(IncompatibleModelError, match="digits_pruned: no MatMul, Gemm or Conv weight to prune"):
        prune.search(proto, "weights", lambda blob: None, print, "digits_pruned")


def test_a_real_triton_serves_the_unit_pruned_model_under_its_name_with_the_contract_and_the_gated_answers(
        tmp_path_factory):
    import tritonclient.http as httpclient

    work = tmp_path_factory.mktemp("served")
    spec_path = digits_spec(work, pruning="units", preferred_batch_size=[8, 32])
    repo = work / "model_repository"
    proc = export_cli("--spec", str(spec_path), "--repository", str(repo))
    assert proc.returncode == 0, proc.tail
    model = load_spec(spec_path).models[0]
    heldout = load_npz(model, model.source.onnx.heldout, with_labels=True)
    images = heldout.x["image"]
    expected = verify.run_onnx((repo / "digits_pruned" / "1" / "model.onnx").read_bytes(), {"image": images}, 32,
                               None)["probabilities"]
    with launch_triton(repo, work / "triton") as server, httpclient.InferenceServerClient(server.http_url) as client:
        metadata = client.get_model_metadata("digits_pruned")
        assert [(t["name"], t["shape"]) for t in metadata["inputs"]] == [("image", [-1, 8, 8, 1])], metadata
        assert [(t["name"], t["shape"]) for t in metadata["outputs"]] == [("probabilities", [-1, 10])], metadata
        served = []
        for start in range(0, len(images), 32):
            request = httpclient.InferInput("image", [len(images[start:start + 32]), 8, 8, 1], "FP32")
            request.set_data_from_numpy(images[start:start + 32])
            served.append(client.infer("digits_pruned", [request]).as_numpy("probabilities"))
        request = httpclient.InferInput("image", [1, 8, 8, 1], "FP32")
        request.set_data_from_numpy(images[:1])
        top = client.infer("digits_pruned", [request], outputs=[httpclient.InferRequestedOutput(
            "probabilities", class_count=1)]).as_numpy("probabilities")
    assert np.allclose(np.concatenate(served), expected, atol=1e-5), "Triton answers as the gated file"
    accuracy = float(np.mean(np.concatenate(served).argmax(axis=1) == heldout.y))
    assert accuracy >= card(repo)["source_accuracy"] - model.source.onnx.gate.pruned_max_accuracy_drop / 100
    assert top[0][0].decode().split(":")[2] == str(expected[0].argmax()), "labels served beside it"

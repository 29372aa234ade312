"""What the backend-cost benchmark measures comes from the spec, and its target is judged at the batch a `make bench`
run formed: on recorded numbers, no servers."""

import numpy as np

from bench import backend_cost, cost_results
from bench.cost_results import BatchCost, BatchRound, CostResults, ModelCost
from core.spec import load_spec
from core.measure import payloads
from tests import specs
from tests.conftest import exported_repository

REPOSITORY = payloads.DEFAULT_SPEC.parent / "model_repository"


def _round(infer_us: float, work_us: float) -> BatchRound:
    return BatchRound(executions=100, compute_input_us=10.0, compute_infer_us=infer_us, compute_output_us=20.0,
                      stub_cpu_us=infer_us, work_us=work_us, work_cpu_us=work_us, execute_cpu_us=0.0,
                      execute_work_cpu_us=0.0)


def _model(name: str, per_execute_us: float, per_request_us: float) -> ModelCost:
    """A model whose compute_infer is its own work (100 µs a row) plus an exact per_execute + N × per_request."""
    return ModelCost(name, "recorded", tuple(
        BatchCost(name, n, (_round(100.0 * n + per_execute_us + per_request_us * n, 100.0 * n),))
        for n in backend_cost.BATCHES))


def test_every_exported_onnx_model_and_every_python_model_with_a_timed_helper_is_measured():
    spec = load_spec(payloads.DEFAULT_SPEC)
    onnx = [m.name for m in spec.models if m.kind == "onnx"]
    exported_repository(*(REPOSITORY / name / "config.pbtxt" for name in onnx))

    models, notes = backend_cost.measured_models(spec, REPOSITORY)

    assert [m for m in models if m in onnx] == onnx and "digits" in models
    assert {"sentiment_tokenizer", "digits_image_decode"} <= set(models)
    assert not {m.name for m in spec.models if m.kind == "ensemble"} & set(models)
    assert len(models) + len(notes) == sum(1 for m in spec.models if m.kind in ("onnx", "python"))
    generated = [m.source.onnx.text.tokenizer for m in spec.models if m.source.onnx and m.source.onnx.text]
    assert not set(generated) & set(models)  # a generated HF tokenizer has no in-process equivalent here


def test_a_python_model_without_an_in_process_equivalent_is_named_not_measured(tmp_path):
    (tmp_path / "mine" / "1").mkdir(parents=True)
    (tmp_path / "mine" / "config.pbtxt").write_text('name: "mine"\nbackend: "python"\n')
    (tmp_path / "mine" / "1" / "model.py").write_text("")
    mine = specs.model("mine", "python", code="mine/1/model.py", inputs=[specs.tensor("x", [1])],
                       outputs=[specs.tensor("y", [1])])

    models, notes = backend_cost.measured_models(specs.load(tmp_path, mine), tmp_path)

    assert models == () and len(notes) == 1 and notes[0].startswith("mine: no in-process equivalent")


def test_the_fit_recovers_per_execute_and_per_request_and_the_target_uses_the_batch_formed():
    lean, heavy = _model("lean", 200.0, 30.0), _model("heavy", 200.0, 60.0)
    results = CostResults({}, (lean, heavy), {"lean": 10.0, "heavy": 10.0})

    assert np.allclose(lean.fit("infer_overhead_us"), (200.0, 30.0))
    assert np.isclose(lean.per_request_at(10.0, "infer_overhead_us"), 50.0)  # 200 / 10 + 30: exactly the target
    target = "\n".join(cost_results.format_target(results))
    assert "| lean | 10.00 | 50.0 |" in target and target.count("| yes |") == 1
    assert "| heavy | 10.00 | 80.0 |" in target and "**no** (30.0 µs over)" in target


def test_without_a_bench_run_there_is_no_batch_formed_and_no_verdict():
    text = "\n".join(cost_results.format_target(CostResults({}, (_model("lean", 200.0, 30.0),))))

    assert "No target check" in text and "| yes |" not in text

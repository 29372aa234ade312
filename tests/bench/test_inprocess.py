"""The in-process limit runs any ONNX model on its held-out batches, in a fresh process."""

from bench import inprocess, run
from core.spec import load_spec
from tests.loadtest.user_spec import write_churn_onnx, write_user_spec


def test_the_in_process_limit_of_a_users_two_input_model_is_measured_at_the_batch_asked(tmp_path):
    spec = load_spec(write_user_spec(tmp_path / "spec"))
    (tmp_path / "repository" / "churn" / "1").mkdir(parents=True)
    write_churn_onnx(tmp_path / "repository" / "churn" / "1" / "model.onnx")

    result = inprocess.measure(run.in_process_job(spec, tmp_path / "repository", "churn", 4), seconds=0.2)

    assert result.model == "churn" and result.batch_size == 4
    assert result.samples_per_s > 100 and "ONNX Runtime" in result.what

from core.measure import payloads
from core.measure.triton_metrics import (ModelCounters, activity, batching_model, format_activity, metrics_endpoint,
                                         parse)
from core.spec import load_spec
from tests import specs
from tests.loadtest.user_spec import user_models, write_user_spec

BEFORE = """# HELP nv_inference_count Number of inferences performed
# TYPE nv_inference_count counter
nv_inference_count{model="digits",version="1"} 100
nv_inference_exec_count{model="digits",version="1"} 100
nv_inference_request_success{model="digits",version="1"} 100
nv_inference_queue_duration_us{model="digits",version="1"} 1000
nv_inference_compute_infer_duration_us{model="digits",version="1"} 2000
nv_inference_request_success{model="sentiment",version="1"} 7
nv_cpu_utilization 0.5
"""


def _after():
    return parse("""
nv_inference_count{model="digits",version="1"} 900
nv_inference_exec_count{model="digits",version="1"} 200
nv_inference_request_success{model="digits",version="1"} 900
nv_inference_queue_duration_us{model="digits",version="1"} 81000
nv_inference_compute_infer_duration_us{model="digits",version="1"} 42000
nv_inference_request_success{model="sentiment",version="1"} 7
""")


def test_parse_reads_counters_per_model_and_ignores_other_metrics():
    counters = parse(BEFORE)

    assert counters["digits"] == ModelCounters(100, 0, 100, 100, 1000, 2000)
    assert counters["sentiment"].request_success == 7


def test_activity_gives_average_batch_and_per_request_times_for_models_that_served():
    rows = activity(parse(BEFORE), _after())

    assert [r.model for r in rows] == ["digits"]  # sentiment served nothing in between
    digits = rows[0]
    assert digits.requests == 800 and digits.executions == 100
    assert digits.avg_batch == 8.0
    assert digits.queue_us_per_request == 100.0
    assert digits.compute_us_per_request == 50.0
    assert "| digits | 800 | 0 | 100 | 8.00 | 100 | 50 |" in format_activity(rows)


def test_metrics_endpoint_accepts_host_port_or_full_url():
    assert metrics_endpoint("127.0.0.1:8002") == "http://127.0.0.1:8002/metrics"
    assert metrics_endpoint("http://h:1/metrics") == "http://h:1/metrics"


def test_the_batch_formed_is_read_from_an_ensembles_onnx_step_found_in_its_steps(tmp_path):
    # an ensemble of the user's own naming: nothing about it is known but its [[model.step]] tables
    inputs = {"features": "features", "plan_ids": "plan_ids"}
    churn_api = specs.model("churn_api", "ensemble",
                            inputs=[specs.tensor("features", [3]), specs.tensor("plan_ids", [2], "TYPE_INT64")],
                            outputs=[specs.tensor("spend", [1])],
                            step=[specs.step("churn_fp16", inputs, {"spend": "spend"})])
    spec = load_spec(write_user_spec(tmp_path, *user_models(), churn_api))

    assert batching_model(spec, "churn_api") == "churn_fp16"
    assert batching_model(spec, "churn") == "churn"
    assert batching_model(load_spec(payloads.DEFAULT_SPEC), "sentiment") == "sentiment_classifier"

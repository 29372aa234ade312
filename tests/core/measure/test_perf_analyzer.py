"""perf_analyzer: its CSV and console summary parsed into typed values (recorded output below), its input data, the
bench report beside our generator's figures, and one real short run against the session's Triton on digits."""

from __future__ import annotations

import base64
import struct
from dataclasses import asdict, replace

import numpy as np
import pytest

from bench.results import (BenchResults, Cell, CellResult, PerfAnalyzerCell, Round, format_markdown, from_json,
                           to_json)
from core.measure import perf_analyzer as pa
from core.measure.payloads import Input, Sample

# Recorded from perf_analyzer 2.41.0 -f ... --verbose-csv against `sentiment` (an ensemble) at concurrency 4.
RECORDED_CSV = (
    "Concurrency,Inferences/Second,Client Send,Network+Server Send/Recv,Server Queue,Server Compute Input,"
    "Server Compute Infer,Server Compute Output,Client Recv,p50 latency,p90 latency,p95 latency,p99 latency,"
    "request/response,response wait\n"
    "4,1629.69,35,1412,0,27,880,93,0,1874,3744,5991,10845,35,2410"
)
RECORDED_CONSOLE = """\
Request concurrency: 4
  Client: 
    Request count: 5907
    Throughput: 1629.69 infer/sec
    p99 latency: 10845 usec
  Server: 
    Inference count: 5908
    Avg request latency: 1500 usec (overhead 0 usec + queue 502 usec + compute 1002 usec)

  Composing models: 
  sentiment_classifier, version: 1
      Inference count: 5908
      Execution count: 4403
      Successful request count: 5908
      Avg request latency: 848 usec (overhead 1 usec + queue 289 usec + compute input 13 usec + compute infer 490 usec + compute output 54 usec)

  sentiment_tokenizer, version: 1
      Inference count: 5910
      Execution count: 4789
      Successful request count: 5910
      Avg request latency: 658 usec (overhead 1 usec + queue 213 usec + compute input 13 usec + compute infer 390 usec + compute output 39 usec)

Inferences/Second vs. Client p99 Batch Latency
Concurrency: 4, throughput: 1629.69 infer/sec, latency 10845 usec
"""


def test_csv_rows_become_typed_results_with_latencies_in_ms_and_server_times_in_us():
    [row] = pa.parse_csv(RECORDED_CSV, "sentiment", "http")

    assert (row.concurrency, row.throughput, row.p50_ms, row.p99_ms) == (4, 1629.69, 1.874, 10.845)
    assert (row.client_send_us, row.network_us, row.client_recv_us) == (35, 1412, 0)
    assert row.server == pa.ServerTimes("sentiment", 0, 27, 880, 93)


def test_a_csv_without_the_verbose_columns_is_an_error_naming_the_column():
    plain = RECORDED_CSV.replace("Server Queue", "Something Else")

    with pytest.raises(pa.PerfAnalyzerFailed, match="Server Queue"):
        pa.parse_csv(plain, "sentiment", "http")


def test_an_ensembles_composing_models_are_read_from_the_console_summary():
    composing = pa.parse_composing(RECORDED_CONSOLE)

    assert composing == (pa.ServerTimes("sentiment_classifier", 289, 13, 490, 54),
                         pa.ServerTimes("sentiment_tokenizer", 213, 13, 390, 39))
    assert pa.parse_composing("Request concurrency: 4\n  Server: \n") == ()


def test_input_data_sends_numbers_by_shape_and_bytes_in_tritons_serialized_form():
    image = np.arange(4, dtype=np.float32).reshape(1, 2, 2, 1)
    text = np.array([["héllo".encode()]], dtype=np.object_)
    doc = pa.input_document([Sample("m", (Input("image", "FP32", image), Input("text", "BYTES", text)), ("out",))])

    [entry] = doc["data"]
    assert entry["image"] == {"content": [0.0, 1.0, 2.0, 3.0], "shape": [2, 2, 1]}
    raw = base64.b64decode(entry["text"]["b64"])
    assert struct.unpack("<I", raw[:4])[0] == len("héllo".encode()) and raw[4:] == "héllo".encode()
    assert entry["text"]["shape"] == [1]


def test_input_data_refuses_samples_of_more_than_one_row():
    two_rows = np.zeros((2, 3), dtype=np.float32)

    with pytest.raises(ValueError, match="one row each"):
        pa.input_document([Sample("m", (Input("x", "FP32", two_rows),), ("y",))])


def test_a_run_names_protocol_concurrency_and_window_and_rejects_unknown_protocols(tmp_path):
    argv = pa.Run("digits", "127.0.0.1:9", "grpc", 8, 500).argv(tmp_path / "perf_analyzer", tmp_path / "r.csv")

    assert argv[argv.index("-i") + 1] == "grpc" and argv[argv.index("--concurrency-range") + 1] == "8"
    assert argv[argv.index("-p") + 1] == "500" and "--verbose-csv" in argv
    with pytest.raises(ValueError, match="protocol"):
        pa.Run("digits", "127.0.0.1:9", "websocket", 8, 500)


def test_bench_results_show_perf_analyzer_next_to_our_generator_and_survive_json():
    cell = Cell("sentiment", "triton", "binary", 4)
    ours = CellResult(cell, (Round(1500.0, 2.0, 9.0, 0, 0.3),))
    [row] = pa.parse_csv(RECORDED_CSV, "sentiment", "http")
    measured = PerfAnalyzerCell(cell, replace(row, composing=pa.parse_composing(RECORDED_CONSOLE)))
    results = BenchResults({"duration_s": 5}, None, (ours,), perf_analyzer=(measured,))

    markdown = format_markdown(results)
    assert "## perf_analyzer next to our generator" in markdown
    assert "| sentiment | 4 | 1500 | 1630 | 1.09× | 9.00 | 10.85 | 0 | 27 | 880 | 93 |" in markdown
    assert "| ↳ sentiment_tokenizer |" in markdown and "| 213 | 13 | 390 | 39 |" in markdown
    assert from_json(to_json(results)) == results


def test_provisioning_says_in_one_line_why_it_cannot_download(tmp_path, monkeypatch):
    # pip with no index, no config and an empty folder of wheels: what a machine without the registry sees
    (tmp_path / "no-wheels").mkdir()
    monkeypatch.setenv("PIP_CONFIG_FILE", "/dev/null")
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    monkeypatch.setenv("PIP_FIND_LINKS", str(tmp_path / "no-wheels"))

    with pytest.raises(pa.PerfAnalyzerUnavailable) as error:
        pa.provision(tmp_path / "perf_analyzer")
    assert "could not download tritonclient==2.41.0" in str(error.value) and "\n" not in str(error.value)


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_a_short_real_run_against_triton_reports_throughput_and_tritons_breakdown(triton, tmp_path, protocol):
    from core.spec import load_spec
    from core.measure import payloads
    from tests.conftest import ROOT

    spec = load_spec(ROOT / "models.toml")
    digits = next(t for t in payloads.targets(spec) if t.name == "digits")
    data = pa.write_input_data(payloads.samples(digits)[:16], tmp_path / "digits.json")
    url = triton.http_url if protocol == "http" else triton.grpc_url

    result = pa.measure(pa.provision(), pa.Run("digits", url, protocol, 2, 300, data), tmp_path)

    assert result.model == "digits" and result.protocol == protocol and result.concurrency == 2
    assert result.throughput > 50, result
    assert 0 < result.p50_ms <= result.p99_ms < 1000
    assert result.server.compute_infer_us > 0 and result.server.queue_us >= 0
    assert pa.PerfResult.from_dict(asdict(result)) == result

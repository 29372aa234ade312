"""The backend-cost benchmark's in-process side: what a served model itself does with N rows, timed without serving,
with the code the served model runs (tritonmodels/) and the session its config makes."""

from __future__ import annotations

import statistics
import time
from pathlib import Path

import numpy as np
from google.protobuf import json_format

from bench.cost_repository import FLOOR, kind_of, read_config
from tritonmodels.onnxruntime_session import ort_session


def work_function(model_dir: Path, rows: list[dict[str, np.ndarray]]):
    """(description, fn): fn() does what the model itself does with `rows` (one-row inputs), as the served model
    does it, without serving. `model_dir` is the exported model."""
    proto = read_config(model_dir / "config.pbtxt")
    config = json_format.MessageToDict(proto, preserving_proto_field_name=True)  # as Triton hands it to the model
    version = model_dir / "1"
    kind = kind_of(model_dir)
    if kind == "onnxruntime":
        session = ort_session(config, str(version / (proto.default_model_filename or "model.onnx")))
        feed = {name: np.concatenate([r[name] for r in rows]) for name in rows[0]}
        names = [o.name for o in proto.output]
        threads = session.get_session_options().intra_op_num_threads
        return f"ONNX Runtime session.run, {threads} intra-op thread(s)", lambda: session.run(names, feed)
    if kind == FLOOR:
        return "nothing", lambda: None
    items = [bytes(next(iter(r.values())).reshape(-1)[0]) for r in rows]
    if kind == "text_encoding":
        from tritonmodels import text_encoding

        tokenizer = text_encoding.load_tokenizer(version / "tokenizer.json")
        max_tokens = int(proto.parameters["max_tokens"].string_value)

        def tokenize():
            texts = [text_encoding.decode_text(item) for item in items]
            return text_encoding.encode_texts(tokenizer, texts, max_tokens)

        return "text_encoding: decode_text + encode_texts", tokenize
    from tritonmodels import image_decoding

    return "image_decoding.decode_digit per image", lambda: [image_decoding.decode_digit(item) for item in items]


def time_us(fn, seconds: float) -> tuple[float, float]:
    """Median wall and CPU µs of fn() over repeated calls for `seconds` (medians shrug off a neighbour's burst)."""
    fn()
    walls, cpus, deadline = [], [], time.perf_counter() + seconds
    while time.perf_counter() < deadline or len(walls) < 20:
        wall, cpu = time.perf_counter(), time.process_time()
        fn()
        cpus.append(time.process_time() - cpu)
        walls.append(time.perf_counter() - wall)
    return statistics.median(walls) * 1e6, statistics.median(cpus) * 1e6

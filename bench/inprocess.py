"""The machine's limit: ONNX Runtime in-process, no serving, at the batch size Triton actually formed.

One session with as many intra-op threads as cores, fed ready batches of the benchmark's own payloads in a tight loop.
For an ensemble whose first step is the repository's tokenizer (a python step shipping text_encoding.py, as
`sentiment` does) the loop also does what that step does (UTF-8 check and tokenizing with
tritonmodels/text_encoding.py and the step's tokenizer.json) before the ONNX step, so both sides do the same work.
Runs in a fresh process so nothing else of the benchmark shares its interpreter.
"""

from __future__ import annotations

import multiprocessing
import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from bench.results import InProcess
from tritonmodels.onnxruntime_session import ort_session, threads_config


def _session(path: Path):
    return ort_session(threads_config(os.cpu_count() or 1, 0), str(path))


def _timed(step, seconds: float, batch_size: int) -> float:
    step()  # warm-up: first run allocates
    samples, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        step()
        samples += batch_size
    return samples / (time.perf_counter() - start)


@dataclass(frozen=True, eq=False)
class OnnxJob:
    """An ONNX model fed ready batches: feeds by input name, `batch_size` rows each."""

    model: str  # the results row
    onnx: Path
    batches: tuple[dict[str, np.ndarray], ...]
    batch_size: int

    def run(self, seconds: float) -> InProcess:
        session = _session(self.onnx)
        cursor = iter(range(10**12))
        rate = _timed(lambda: session.run(None, self.batches[next(cursor) % len(self.batches)]), seconds,
                      self.batch_size)
        return InProcess(self.model, self.batch_size, rate, f"ONNX Runtime, {os.cpu_count()} threads")


@dataclass(frozen=True, eq=False)
class TokenizedTextJob:
    """Raw UTF-8 texts through the tokenizer step's text_encoding.py and tokenizer.json, then the ONNX step."""

    model: str
    onnx: Path
    tokenizer_dir: Path  # the python step's version folder in the repository: tokenizer.json
    texts: tuple[bytes, ...]
    batch_size: int

    def run(self, seconds: float) -> InProcess:
        from tritonmodels import text_encoding  # the module the step deploys

        tokenizer_json = next(self.tokenizer_dir.rglob("tokenizer.json"), None)
        if tokenizer_json is None:
            raise FileNotFoundError(f"no tokenizer.json under {self.tokenizer_dir}: run `make export`")
        tokenizer = text_encoding.load_tokenizer(tokenizer_json)
        session = _session(self.onnx)
        model_input = session.get_inputs()[0]
        max_tokens = int(model_input.shape[1])
        size, raw = self.batch_size, list(self.texts)
        batches = [raw[i:i + size] for i in range(0, len(raw) - size + 1, size)] or [raw[:size]]
        cursor = iter(range(10**12))

        def step() -> None:
            texts = [text_encoding.decode_text(t) for t in batches[next(cursor) % len(batches)]]
            session.run(None, {model_input.name: text_encoding.encode_texts(tokenizer, texts, max_tokens)})

        rate = _timed(step, seconds, size)
        return InProcess(self.model, size, rate, f"UTF-8 check + tokenizer + ONNX Runtime, {os.cpu_count()} threads")


def _child(job, seconds: float, pipe) -> None:
    try:
        pipe.send(job.run(seconds))
    except BaseException as error:
        pipe.send(error)


def measure(job: OnnxJob | TokenizedTextJob, seconds: float) -> InProcess:
    context = multiprocessing.get_context("spawn")
    parent, child = context.Pipe(duplex=False)
    process = context.Process(target=_child, args=(job, seconds, child), daemon=True)
    process.start()
    child.close()
    if not parent.poll(seconds + 120):
        process.kill()
        raise TimeoutError(f"in-process measurement of {job.model} did not finish")
    result = parent.recv()
    process.join(5)
    if isinstance(result, BaseException):
        raise result
    return result

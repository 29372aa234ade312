"""The machine's limit: ONNX Runtime in-process, no serving, at the batch size Triton actually formed.

One session with as many intra-op threads as cores, fed ready batches of the benchmark's own payloads in a tight loop.
For `sentiment` the loop also does what the served pipeline does before the classifier (UTF-8 check and tokenizing
with the repository's own text_encoding.py and tokenizer.json), so both sides do the same work. Runs in a fresh
process so nothing else of the benchmark shares its interpreter.
"""

from __future__ import annotations

import importlib.util
import multiprocessing
import os
import time
from pathlib import Path

import numpy as np

from bench.results import InProcess

REPO_ROOT = Path(__file__).resolve().parents[1]


def _session(path: Path):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = os.cpu_count() or 1
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def _timed(step, seconds: float, batch_size: int) -> float:
    step()  # warm-up: first run allocates
    samples, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        step()
        samples += batch_size
    return samples / (time.perf_counter() - start)


def digits(repository: Path, batch_size: int, seconds: float) -> InProcess:
    from loadtest.payloads import digits_samples

    session = _session(repository / "digits" / "1" / "model.onnx")
    images = np.concatenate([s.array for s in digits_samples(batch_size)])
    feed = {session.get_inputs()[0].name: images}
    rate = _timed(lambda: session.run(None, feed), seconds, batch_size)
    return InProcess("digits", batch_size, rate, f"ONNX Runtime, {os.cpu_count()} threads")


def sentiment(repository: Path, batch_size: int, seconds: float) -> InProcess:
    from loadtest.payloads import sentence_samples

    tokenizer_dir = repository / "sentiment_tokenizer" / "1"
    spec = importlib.util.spec_from_file_location("text_encoding", tokenizer_dir / "text_encoding.py")
    text_encoding = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(text_encoding)
    tokenizer_json = next(tokenizer_dir.rglob("tokenizer.json"), None)
    if tokenizer_json is None:
        raise FileNotFoundError(f"no tokenizer.json under {tokenizer_dir}: run `make export`")
    tokenizer = text_encoding.load_tokenizer(tokenizer_json)
    session = _session(repository / "sentiment_classifier" / "1" / "model.onnx")
    model_input = session.get_inputs()[0]
    max_tokens = int(model_input.shape[1])
    raw = [s.array.ravel()[0] for s in sentence_samples(256)]
    batches = [raw[i:i + batch_size] for i in range(0, len(raw) - batch_size + 1, batch_size)] or [raw[:batch_size]]
    cursor = iter(range(10**12))

    def step() -> None:
        texts = [text_encoding.decode_text(t) for t in batches[next(cursor) % len(batches)]]
        session.run(None, {model_input.name: text_encoding.encode_texts(tokenizer, texts, max_tokens)})

    rate = _timed(step, seconds, batch_size)
    return InProcess("sentiment", batch_size, rate, f"UTF-8 check + tokenizer + ONNX Runtime, {os.cpu_count()} threads")


_MEASURES = {"digits": digits, "sentiment": sentiment}


def _child(model: str, repository: Path, batch_size: int, seconds: float, pipe) -> None:
    try:
        pipe.send(_MEASURES[model](repository, batch_size, seconds))
    except BaseException as error:
        pipe.send(error)


def measure(model: str, repository: Path, batch_size: int, seconds: float) -> InProcess:
    context = multiprocessing.get_context("spawn")
    parent, child = context.Pipe(duplex=False)
    process = context.Process(target=_child, args=(model, repository, max(1, batch_size), seconds, child), daemon=True)
    process.start()
    child.close()
    if not parent.poll(seconds + 120):
        process.kill()
        raise TimeoutError(f"in-process measurement of {model} did not finish")
    result = parent.recv()
    process.join(5)
    if isinstance(result, BaseException):
        raise result
    return result

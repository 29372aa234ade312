"""The backend-cost benchmark's repository: one copy of each measured model per batch size N, whose dynamic batcher
executes exactly N requests at a time, plus `stub_floor` copies; every copy is served through the timing wrapper
(bench/stub_models/timing.py). An `onnxruntime`-backend model is served as a python model whose model.py is our
backend's (tritonmodels/onnxruntime_backend.py): the same stub binary runs the same code."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2

from core.triton_install import OUR_BACKENDS, SESSION_MODULE

STUB_MODELS = Path(__file__).resolve().parent / "stub_models"
ONNXRUNTIME_BACKEND = OUR_BACKENDS["onnxruntime"]
FLOOR = "stub_floor"
WAIT_US = 2_000_000  # the batcher waits this long for N requests; N connections send them in well under a millisecond


def copy_name(model: str, batch: int) -> str:
    return f"{model}__b{batch}"


def read_config(path: Path) -> model_config_pb2.ModelConfig:
    return text_format.Parse(path.read_text(), model_config_pb2.ModelConfig())


def wait_for_exactly(config: model_config_pb2.ModelConfig, name: str, batch: int) -> None:
    config.name = name
    del config.instance_group[1:]
    config.instance_group[0].count = 1
    config.dynamic_batching.CopyFrom(model_config_pb2.ModelDynamicBatching(
        preferred_batch_size=[batch], max_queue_delay_microseconds=WAIT_US))


# What the model itself does, by kind: timed in-process (bench/cost_work.py) and inside the stub (the timing wrapper).
IN_STUB_WORK = {
    "onnxruntime": ("session.run",),
    "text_encoding": ("text_encoding.decode_text", "text_encoding.encode_texts"),
    "image_decoding": ("image_decoding.decode_digit",),
    FLOOR: (),
}


def kind_of(model_dir: Path) -> str:
    if model_dir.name.startswith(FLOOR):
        return FLOOR
    if read_config(model_dir / "config.pbtxt").backend == "onnxruntime":
        return "onnxruntime"
    if (model_dir / "1" / "hf_tokenization.py").is_file():
        # a tokenizer generated from [model.text] ships text_encoding.py for its checks only; its work is HF's
        raise ValueError(f"{model_dir.name}: no in-process equivalent (a generated Hugging Face tokenizer)")
    for helper in ("text_encoding", "image_decoding"):
        if (model_dir / "1" / f"{helper}.py").is_file():
            return helper
    raise ValueError(f"{model_dir.name}: no in-process equivalent (an onnxruntime-backend model, or a python model "
                     f"shipping text_encoding.py or image_decoding.py)")


def serve_timed(copy: Path, kind: str) -> None:
    """Serve `copy` through the timing wrapper: its model.py becomes model_impl.py (an onnxruntime-backend model's is
    the backend's, with the session module it imports beside it), the wrapper takes its place."""
    config = read_config(copy / "config.pbtxt")
    model_file = None
    if kind == "onnxruntime":
        impl, model_file = ONNXRUNTIME_BACKEND, config.default_model_filename or "model.onnx"
        config.backend = "python"
        config.ClearField("default_model_filename")  # the python backend would look for its model.py under it
        (copy / "config.pbtxt").write_text(text_format.MessageToString(config))
        shutil.copy2(SESSION_MODULE, copy / "1" / SESSION_MODULE.name)
    else:
        impl = copy / "1" / "model_impl.py"
        (copy / "1" / "model.py").rename(impl)
    shutil.copy2(STUB_MODELS / "timing.py", copy / "1" / "model.py")
    setup = {"impl": str(impl), "model_file": model_file, "work": list(IN_STUB_WORK[kind])}
    (copy / "1" / "timing.json").write_text(json.dumps(setup))


def prepare_repository(source: Path, target: Path, models: tuple[str, ...], batches: tuple[int, ...]) -> Path:
    """A repository holding `model__bN` for each model and N (the exported model, one instance, whose batcher
    executes exactly N requests at a time) and `stub_floor__bN` with the first model's inputs and outputs, each
    served through the timing wrapper."""
    if target.exists():
        shutil.rmtree(target)
    target.mkdir(parents=True)
    for model in models:
        kind = kind_of(source / model)
        for batch in batches:
            copy = target / copy_name(model, batch)
            shutil.copytree(source / model, copy, ignore=shutil.ignore_patterns("__pycache__", "card.*"))
            config = read_config(copy / "config.pbtxt")
            wait_for_exactly(config, copy.name, batch)
            (copy / "config.pbtxt").write_text(text_format.MessageToString(config))
            serve_timed(copy, kind)
    template = read_config(source / models[0] / "config.pbtxt")
    for batch in batches:
        floor = model_config_pb2.ModelConfig(backend="python", max_batch_size=template.max_batch_size)
        floor.input.extend(template.input)
        floor.output.extend(model_config_pb2.ModelOutput(name=o.name, data_type=o.data_type, dims=o.dims)
                            for o in template.output)
        floor.instance_group.add(count=1, kind=model_config_pb2.ModelInstanceGroup.KIND_CPU)
        wait_for_exactly(floor, copy_name(FLOOR, batch), batch)
        (target / floor.name / "1").mkdir(parents=True)
        (target / floor.name / "config.pbtxt").write_text(text_format.MessageToString(floor))
        shutil.copy2(STUB_MODELS / "floor.py", target / floor.name / "1" / "model.py")
        serve_timed(target / floor.name, FLOOR)
    return target

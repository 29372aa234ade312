"""A model config -> an ONNX Runtime session, as Triton's onnxruntime_backend builds it: the one place that does it.

Used by our `onnxruntime` backend inside the stub (deployed beside its model.py), by the export's parity gate and
latency figures, and by the benchmarks' in-process measurements. `config` is the model config as Triton hands it to a
python model (json of ModelConfig, proto field names); the knobs honoured are the real backend's
(https://github.com/triton-inference-server/onnxruntime_backend#model-config-options): parameters
`intra_op_thread_count`, `inter_op_thread_count`, `execution_mode`, `enable_mem_arena`, `enable_mem_pattern`, and
`optimization { graph { level } }`. Imports nothing of ours.
"""

from __future__ import annotations

import onnxruntime as ort

# optimization.graph.level as the real backend maps it: unset/0 = all, -1 = basic, 1 = basic + extended, 2 = none.
GRAPH_LEVELS = {
    0: ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
    -1: ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
    1: ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
    2: ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
}
EXECUTION_MODES = {0: ort.ExecutionMode.ORT_SEQUENTIAL, 1: ort.ExecutionMode.ORT_PARALLEL}


def parameter(config: dict, key: str, default: int) -> int:
    raw = config.get("parameters", {}).get(key, {}).get("string_value", "")
    if raw == "":
        return default
    if raw.lower() in ("true", "false"):
        return int(raw.lower() == "true")
    try:
        return int(raw)
    except ValueError:
        raise ValueError(f"model config parameter {key!r} must be an integer, got {raw!r}") from None


def session_options(config: dict) -> ort.SessionOptions:
    options = ort.SessionOptions()
    options.intra_op_num_threads = parameter(config, "intra_op_thread_count", 0)
    options.inter_op_num_threads = parameter(config, "inter_op_thread_count", 0)
    mode = parameter(config, "execution_mode", 0)
    if mode not in EXECUTION_MODES:
        raise ValueError(f"model config parameter 'execution_mode' must be 0 (sequential) or 1 (parallel), got {mode}")
    options.execution_mode = EXECUTION_MODES[mode]
    level = int(config.get("optimization", {}).get("graph", {}).get("level", 0))
    if level not in GRAPH_LEVELS:
        raise ValueError(f"optimization.graph.level must be one of -1, 0, 1, 2, got {level}")
    options.graph_optimization_level = GRAPH_LEVELS[level]
    options.enable_cpu_mem_arena = bool(parameter(config, "enable_mem_arena", 1))
    options.enable_mem_pattern = bool(parameter(config, "enable_mem_pattern", 1))
    options.log_severity_level = 3  # errors only: the graph optimizer's warnings are noise in every log that shows them
    return options


def ort_session(config: dict, model: str | bytes) -> ort.InferenceSession:
    """A CPU session on `model` (a path or the serialized ONNX model) with the config's settings."""
    return ort.InferenceSession(model, session_options(config), providers=["CPUExecutionProvider"])


def threads_config(intra_op: int, inter_op: int = 1) -> dict:
    """The config fragment that sets only the thread counts (for sessions outside any model config)."""
    return {"parameters": {"intra_op_thread_count": {"string_value": str(intra_op)},
                           "inter_op_thread_count": {"string_value": str(inter_op)}}}

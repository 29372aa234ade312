"""`python -m export.trt`: TensorRT plans (`tensorrt_plan` models) from the exported ONNX variants.

Needs the `tensorrt` Python module and an NVIDIA GPU, as inside the NGC Triton container (triton.Dockerfile). Elsewhere
it exits with status 3 and says what is missing. For each ONNX model with `tensorrt = true`, the fp32 variant becomes
`<name>_trt` (FP32 kernels, the precision the gate verified) and the int8 variant `<name>_int8_trt` (explicit QDQ
quantization). Each plan has one optimization profile over every input (batch x its dims, e.g. batch x sequence for a
text model's input_ids and attention_mask): min batch 1, opt = the largest preferred_batch_size, max = max_batch_size
(repository.trt_profiles, which the ORT TensorRT accelerator parameters use too). These models are generated for the
GPU host and git-ignored.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

from core import cli
from core.errors import IncompatibleModelError, SourceError, TensorRTUnavailable
from core.repository import trt_profiles as profiles
from core.spec import ModelSpec, Spec, load_spec
from export.progress import Log, stdout_log, step

ROOT = Path(__file__).resolve().parents[1]
TRT_VARIANTS = ("fp32", "int8")
WORKSPACE_BYTES = 1 << 30


def require_tensorrt():
    """The tensorrt module, or TensorRTUnavailable saying why not and where it works."""
    where = ("run `make trt` on a host with an NVIDIA GPU inside the image built from triton.Dockerfile "
             "(`make docker-build`; NGC Triton container), where TensorRT and its Python module are present")
    try:
        import tensorrt
    except ImportError:
        raise TensorRTUnavailable(f"no `tensorrt` Python module on this machine: {where}") from None
    try:
        builder = tensorrt.Builder(tensorrt.Logger(tensorrt.Logger.WARNING))
    except Exception as e:  # TensorRT raises plain RuntimeError/TypeError when CUDA finds no device
        raise TensorRTUnavailable(f"TensorRT {tensorrt.__version__} cannot create a builder ({e}): no usable NVIDIA "
                                  f"GPU here; {where}") from None
    if builder is None:
        raise TensorRTUnavailable(f"TensorRT {tensorrt.__version__} found no usable NVIDIA GPU: {where}")
    return tensorrt


def build_plan(trt, onnx_path: Path, model: ModelSpec, variant: str) -> bytes:
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = builder.create_network(0)  # TensorRT 10: explicit batch is the only mode
    parser = trt.OnnxParser(network, logger)
    if not parser.parse(onnx_path.read_bytes()):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise IncompatibleModelError(f"TensorRT cannot parse {onnx_path}: {errors}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, WORKSPACE_BYTES)
    # No FP16 flag: the parity gate verified the fp32 variant in FP32, not FP16 kernels.
    if variant == "int8":
        config.set_flag(trt.BuilderFlag.INT8)  # honours the QDQ scales the export calibrated
    profile = builder.create_optimization_profile()
    for p in profiles(model):
        profile.set_shape(p.input, p.min, p.opt, p.max)
    config.add_optimization_profile(profile)
    plan = builder.build_serialized_network(network, config)
    if plan is None:
        raise IncompatibleModelError(f"TensorRT failed to build a plan from {onnx_path} (see its log above)")
    return bytes(plan)


def build_all(trt, spec: Spec, repo: Path, only: tuple[str, ...], log: Log) -> list[str]:
    from core import repository

    built = []
    for model in spec.models:
        if model.source.onnx is None or not model.source.onnx.tensorrt or (only and model.name not in only):
            continue
        skipped = repository.without_tensorrt(model, repo)
        for variant in (v for v in TRT_VARIANTS if v in repository.served_variants(model, repo)):
            config = repository.trt_config(model, variant)
            if config.name.removesuffix("_trt") in skipped:
                log(f"{config.name}: not built: its ONNX model has ops TensorRT cannot run (see its card)")
                continue
            source_dir = repo / config.name.removesuffix("_trt")
            onnx_path = source_dir / "1" / repository.ONNX_FILENAME
            if not onnx_path.is_file():
                raise SourceError(f"{onnx_path} is missing: run `make export` first")
            shapes = "; ".join(f"{p.input} {'x'.join(map(str, p.min))} / {'x'.join(map(str, p.opt))} / "
                               f"{'x'.join(map(str, p.max))}" for p in profiles(model))
            with step(log, f"{config.name}: TensorRT {trt.__version__} plan, profile min / opt / max: {shapes}"):
                plan = build_plan(trt, onnx_path, model, variant)
            target = repo / config.name
            (target / "1").mkdir(parents=True, exist_ok=True)
            (target / "1" / "model.plan").write_bytes(plan)
            (target / "config.pbtxt").write_text(repository.render(config))
            for label_file in source_dir.glob("*labels.txt"):
                shutil.copy2(label_file, target / label_file.name)
            built.append(config.name)
    return built


@cli.program("export.trt")
def main(argv: list[str] | None = None) -> int:
    p = cli.parser("export.trt", __doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--spec", type=Path, default=ROOT / "models.toml", metavar="PATH")
    p.add_argument("--repository", type=Path, default=ROOT / "model_repository", metavar="PATH")
    p.add_argument("--only", action="append", default=[], metavar="NAME", help="one base model name; repeatable")
    args = p.parse_args(argv)
    trt = require_tensorrt()  # first: on a CPU host this is the answer, whatever the spec says
    built = build_all(trt, load_spec(args.spec), args.repository, tuple(args.only), stdout_log)
    print(f"trt: built {', '.join(built) or 'nothing (no model with tensorrt = true)'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

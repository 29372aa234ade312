"""The export, end to end: spec -> train/load -> convert -> optimize -> verify -> repository -> card.

Everything is built in a staging copy of the repository next to it and swapped in only when every selected model
passed its gate, so a failing export leaves the previous repository as it was. A model whose fingerprint (spec entry,
source and data files, export code) matches the one in its card, and whose files are all in place, is not rebuilt.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path

from export import card as cards
from export import convert, load, optimize, repository, verify
from export.errors import ExportError, IncompatibleModelError, SourceError, SpecError
from export.progress import Log, step
from export.spec import ModelSpec, Spec, variant_model_name

CODE_FILES = ("spec.py", "load.py", "convert.py", "optimize.py", "verify.py", "repository.py", "card.py", "pipeline.py")
GENERATED_SUFFIXES = (".onnx", ".plan")


@dataclass(frozen=True)
class Options:
    repository: Path
    only: tuple[str, ...] = ()
    force: bool = False


@dataclass(frozen=True)
class Outcome:
    built: tuple[str, ...]
    unchanged: tuple[str, ...]
    seconds: float


# ---- fingerprints --------------------------------------------------------------------------------------------------

def code_version() -> str:
    here = Path(__file__).parent
    digest = hashlib.sha256()
    for name in CODE_FILES:
        digest.update((here / name).read_bytes())
    return digest.hexdigest()


def _hash_path(digest: hashlib._Hash, path: Path) -> bool:
    if path.is_file():
        digest.update(path.name.encode())
        digest.update(path.read_bytes())
        return True
    if path.is_dir():
        for f in sorted(p for p in path.rglob("*") if p.is_file()):
            digest.update(str(f.relative_to(path)).encode())
            digest.update(f.read_bytes())
        return True
    return False


def inputs_of(model: ModelSpec) -> list[Path]:
    if model.onnx is not None:
        return [p for p in (model.onnx.source, model.onnx.heldout, model.onnx.calibration) if p is not None]
    if model.python is not None:
        return [model.python.code, *model.python.files]
    return []


def fingerprint(model: ModelSpec) -> str | None:
    """None when an input file is missing: the model then needs work (training, or a clear error)."""
    digest = hashlib.sha256(model.raw.encode())
    digest.update(code_version().encode())
    for path in inputs_of(model):
        if not _hash_path(digest, path):
            return None
    return digest.hexdigest()


def _artifacts(model: ModelSpec) -> list[str]:
    if model.onnx is not None:
        return [f"{n}/1/{repository.ONNX_FILENAME}" for n in model.triton_names]
    if model.python is not None:
        return [f"{model.name}/1/model.py", *(f"{model.name}/1/{p.name}" for p in model.python.files)]
    return []


def is_current(model: ModelSpec, repo: Path) -> bool:
    fp = fingerprint(model)
    if fp is None:
        return False
    if any(cards.read_fingerprint(repo / n) != fp for n in model.triton_names):
        return False
    if any(not (repo / rel).is_file() for rel in _artifacts(model)):
        return False
    return all((repo / rel).is_file() and (repo / rel).read_text() == text
               for rel, text in repository.committed_files(model).items())


# ---- building one model --------------------------------------------------------------------------------------------

def _versions() -> dict[str, str]:
    # Package metadata, not imports: importing tf2onnx would load TensorFlow even for an ONNX-file source.
    return {**{p: version(p) for p in ("tf2onnx", "onnx", "onnxruntime", "onnxconverter-common")},
            "opset": str(convert.OPSET)}


def build_onnx(model: ModelSpec, staging: Path, log: Log) -> None:
    src = model.onnx
    with step(log, f"{model.name}: train or load the source model"):
        trained = load.train_or_check(model, log)
    heldout = load.load_npz(model, src.heldout, with_labels=True)
    with tempfile.TemporaryDirectory(prefix=f"modelport-{model.name}-") as tmp:
        with step(log, f"{model.name}: convert {src.source_format} -> ONNX (tf2onnx, opset {convert.OPSET})"):
            if src.source_format == "onnx":
                raw = convert.load_onnx(src.source)
            else:
                raw = convert.tf2onnx_convert(load.to_saved_model(model, Path(tmp)), Path(tmp, "raw.onnx"))
            fp32 = convert.finalize(model, raw)
        with step(log, f"{model.name}: reference outputs of the source model on {len(heldout)} held-out samples"):
            reference = load.reference_outputs(model, heldout)
    protos = {"fp32": fp32}
    if "int8" in src.variants:
        calibration = load.load_npz(model, src.calibration, with_labels=False)
        with step(log, f"{model.name}: int8 static quantization, calibrating on {len(calibration)} samples"):
            protos["int8"] = optimize.quantize_int8(fp32, calibration)
    if "fp16" in src.variants:
        with step(log, f"{model.name}: fp16 conversion"):
            protos["fp16"] = optimize.convert_fp16(fp32)
    if src.tensorrt:
        for variant, proto in protos.items():
            bad = convert.unsupported_ops(proto)
            if bad:
                raise IncompatibleModelError(f"{variant_model_name(model.name, variant)}: ops TensorRT cannot run: "
                                             f"{', '.join(bad)}; set `tensorrt = false` in models.toml to allow them")
    blobs = {v: p.SerializeToString() for v, p in protos.items()}
    with step(log, f"{model.name}: parity gate on {len(heldout)} held-out samples ({', '.join(blobs)})"):
        reports = verify.gate(model, blobs, heldout, reference)
    for r in reports:
        diffs = ", ".join(f"b{b}={d:.2e}" for b, d in r.max_abs_diff.items())
        log(f"    {r.triton_name}: accuracy {r.accuracy:.2%} (source {r.source_accuracy:.2%}), "
            f"argmax agreement {r.argmax_agreement:.2%}, max |diff| {diffs}")
    with step(log, f"{model.name}: in-process latency per variant and batch size"):
        latency = {v: verify.latency_us(model, b, heldout) for v, b in blobs.items()}

    variants = [cards.VariantCard(r.triton_name, r.variant, len(blobs[r.variant]), convert.op_counts(protos[r.variant]),
                                  r.accuracy, r.max_abs_diff, r.argmax_agreement, latency[r.variant]) for r in reports]
    data = (trained.data_description if trained is not None else
            f"held-out set {src.heldout.name} ({len(heldout)} samples)")
    card = cards.Card(model.name, model.kind, model.description, cards.display_path(src.source), data,
                      reports[0].source_accuracy, len(heldout),
                      {k: v for k, v in src.gate.__dict__.items() if k != "model"},
                      cards.tensor_table(model.inputs), cards.tensor_table(model.outputs), variants,
                      fingerprint(model), _versions())
    for r in reports:
        directory = staging / r.triton_name
        (directory / "1").mkdir(parents=True, exist_ok=True)
        (directory / "1" / repository.ONNX_FILENAME).write_bytes(blobs[r.variant])
        cards.write_card(card, directory)


def build_python(model: ModelSpec, spec: Spec, staging: Path, log: Log) -> None:
    missing = [p for p in model.python.files if not p.exists()]
    for trainer_model in (m for m in spec.models if m.onnx is not None and m.onnx.trainer is not None):
        # A deployed file a trainer writes (the tokenizer) is recreated by running that trainer (cached).
        if any(trainer_model.onnx.source.parent in p.parents for p in missing):
            with step(log, f"{model.name}: recreate files with trainer {trainer_model.onnx.trainer!r}"):
                load.train_or_check(trainer_model, log)
    missing = [p for p in model.python.files if not p.exists()]
    if missing:
        raise SourceError(f"{model.name}: files to deploy are missing: {', '.join(map(str, missing))}")
    version = staging / model.name / "1"
    version.mkdir(parents=True, exist_ok=True)
    if model.python.code.resolve() != (version / "model.py").resolve():
        shutil.copy2(model.python.code, version / "model.py")
    for f in model.python.files:
        if f.resolve() != (version / f.name).resolve():
            shutil.copy2(f, version / f.name)
    cards.write_card(cards.simple_card(model, fingerprint(model), {}), staging / model.name)


def build_ensemble(model: ModelSpec, staging: Path) -> None:
    cards.write_card(cards.simple_card(model, fingerprint(model), {}), staging / model.name)


# ---- the whole export ----------------------------------------------------------------------------------------------

def select(spec: Spec, only: tuple[str, ...]) -> list[ModelSpec]:
    if not only:
        return list(spec.models)
    chosen = []
    for name in only:
        m = spec.model(name)
        if m is None:
            names = sorted(n for x in spec.models for n in x.triton_names)
            raise SpecError(name, "--only", name, ", ".join(names))
        if m not in chosen:
            chosen.append(m)
    return chosen


def _swap(staging: Path, repo: Path) -> None:
    """Two renames on one filesystem: the repository path never points at a half-written tree."""
    old = repo.parent / f".staging-old-{repo.name}-{os.getpid()}"
    if repo.exists():
        os.rename(repo, old)
    os.rename(staging, repo)
    shutil.rmtree(old, ignore_errors=True)


@contextmanager
def _exclusive(repo: Path) -> Iterator[None]:
    """One export per repository at a time: two would race on the staging swap."""
    repo.parent.mkdir(parents=True, exist_ok=True)
    lock = repo.parent / f".export-{repo.name}.lock"
    with open(lock, "w") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise ExportError(f"another export is writing {repo} (it holds {lock}); wait for it to finish") from None
        yield


def run(spec: Spec, options: Options, log: Log) -> Outcome:
    repo = options.repository.resolve()
    with _exclusive(repo):
        return _run(spec, options, repo, log)


def orphans(spec: Spec, repo: Path) -> list[str]:
    """Models the export once wrote (they have a card) that the spec no longer lists, e.g. a dropped variant."""
    names = {n for m in spec.models for n in m.triton_names}
    return sorted(c.parent.name for c in repo.glob("*/card.json") if c.parent.name not in names)


def _run(spec: Spec, options: Options, repo: Path, log: Log) -> Outcome:
    start = time.perf_counter()
    selected = select(spec, options.only)
    stale = [m for m in selected if options.force or not is_current(m, repo)]
    unchanged = tuple(m.name for m in selected if m not in stale)
    removed = [] if options.only else orphans(spec, repo)
    if not stale and not removed:
        log(f"export: nothing to do, {len(selected)} model(s) up to date in {repo} "
            f"(spec, sources and export code unchanged; --force rebuilds)")
        return Outcome((), unchanged, time.perf_counter() - start)
    load.check_trainers(stale)
    if unchanged:
        log(f"export: up to date, skipped: {', '.join(unchanged)}")
    staging = repo.parent / f".staging-{repo.name}-{os.getpid()}"
    shutil.rmtree(staging, ignore_errors=True)
    if repo.exists():
        shutil.copytree(repo, staging, symlinks=True)
    else:
        staging.mkdir(parents=True)
    order = {"onnx": 0, "python": 1, "ensemble": 2}
    try:
        for name in removed:
            log(f"export: removing {name} (no longer in {spec.path.name})")
            shutil.rmtree(staging / name)
        for m in sorted(stale, key=lambda m: order[m.kind]):
            log(f"export: {m.name} ({m.kind})")
            if m.kind == "onnx":
                build_onnx(m, staging, log)
            elif m.kind == "python":
                build_python(m, spec, staging, log)
            else:
                build_ensemble(m, staging)
            repository.write_committed_files(spec, staging, [m])
        _swap(staging, repo)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    seconds = time.perf_counter() - start
    wrote = ", ".join(n for m in stale for n in m.triton_names) or "no model"
    log(f"export: wrote {wrote} into {repo} in {seconds:.1f} s")
    return Outcome(tuple(m.name for m in stale), unchanged, seconds)


def clean(spec: Spec, repo: Path, log: Log) -> list[Path]:
    """Remove what the export generates and git ignores; committed configs, labels, cards and code stay."""
    repo = repo.resolve()
    removed: list[Path] = []
    # Deployed copies of files that live elsewhere (the tokenizer); files already in place are committed code.
    deployed = {(m.name, p.name) for m in spec.models if m.python is not None for p in m.python.files
                if p.resolve() != (repo / m.name / "1" / p.name).resolve()}
    if repo.is_dir():
        for f in sorted(repo.rglob("*")):
            rel = f.relative_to(repo).parts
            if f.is_file() and (f.suffix in GENERATED_SUFFIXES or (rel[0], f.name) in deployed):
                f.unlink()
                removed.append(f)
    for leftover in repo.parent.glob(f".staging*-{repo.name}-*"):
        shutil.rmtree(leftover, ignore_errors=True)
        removed.append(leftover)
    log(f"clean: removed {len(removed)} generated file(s) under {repo}")
    return removed

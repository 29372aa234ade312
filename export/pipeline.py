"""The export, end to end: spec -> train/load -> convert -> optimize -> verify -> repository -> card.

Everything is built in a staging copy of the repository next to it and swapped in only when every selected model
passed its gate, so a failing export leaves the previous repository as it was. A model whose fingerprint (spec entry,
source and data files, export and trainer code, tool versions) matches the one in its state (core/state.py), and
whose files are all in place, is not rebuilt.

An onnx model whose fp32 ONNX differs from its newest version's is written as the next numbered version beside the
old ones, every variant in lockstep (digits/2, digits_int8/2): a candidate that serves no traffic until `python -m
operate rollout` starts it (export/versions.py, docs/lifecycle.md). The same model (the same bytes, or the same
outputs on the held-out set) rewrites the newest version in place.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import math
import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field, replace
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

from core import lifecycle, repository
from core.errors import GateFailure, IncompatibleModelError, ParityError, ServerError, SourceError, SpecError
from core.heldout import Dataset, load_npz
from core.spec import (GATE_TOLERANCES, TORCH_FORMATS, TRITONMODELS, ModelSpec, Spec, install_hint, keras_text_names,
                       variant_model_name)
from core.state import STATE_FILE, ModelState, read_state, write_state
from export import card as cards
from export import convert, load, optimize, prune, reference, verify
from export.progress import Log, step
from export import versions
from export.repository import repository_files, write_committed_files

# Paths from the project root: the export's own code and the core modules it builds on.
CODE_FILES = ("core/spec.py", "core/heldout.py", "core/repository.py", "core/state.py", *(f"export/{name}" for name in (
    "load.py", "convert.py", "reference.py", "torch_source.py", "text_parity.py", "keras_text.py", "optimize.py",
    "prune.py", "verify.py", "repository.py", "versions.py", "card.py", "pipeline.py")))
# What the export runs from the python models' package: the gate's sessions, the generated steps' encodings.
PACKAGE_FILES = ("onnxruntime_session.py", "text_vectorization.py", "hf_tokenization.py")
# The python models' shared config reader, deployed into every python model's version folder (tritonmodels/).
MODEL_CONFIG = TRITONMODELS / "model_config.py"
GENERATED_SUFFIXES = (".onnx", ".plan")
# Packages whose installed version can change what the export of a model produces, by source format.
ONNX_TOOLS = ("onnx", "onnxruntime", "onnxconverter-common", "onnxslim")
TF_TOOLS = ("tensorflow", "keras", "tf2onnx")
TORCH_TOOLS = ("torch", "transformers", "onnxscript")
DISTRIBUTIONS = {"tensorflow": ("tensorflow", "tensorflow-cpu", "tensorflow-macos", "tensorflow-intel")}


@dataclass(frozen=True)
class Options:
    repository: Path
    only: tuple[str, ...] = ()
    force: bool = False
    int8_search_seconds: float = optimize.DEFAULT_SEARCH_SECONDS  # time budget of the INT8 recipe search, per model


@dataclass(frozen=True)
class Outcome:
    built: tuple[str, ...]
    unchanged: tuple[str, ...]
    seconds: float
    candidates: dict[str, int] = field(default_factory=dict)  # model -> the new version written beside stable


# ---- fingerprints --------------------------------------------------------------------------------------------------

def code_version() -> str:
    root = Path(__file__).parents[1]
    digest = hashlib.sha256()
    for path in (*(root / n for n in CODE_FILES), *(TRITONMODELS / n for n in PACKAGE_FILES)):
        digest.update(path.read_bytes())
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
        return [model.python.code, MODEL_CONFIG, *model.python.files]
    return []


def package_version(package: str) -> str:
    """The installed version of a package (under any of the distribution names it ships as)."""
    for name in DISTRIBUTIONS.get(package, (package,)):
        try:
            return version(name)
        except PackageNotFoundError:
            continue
    return "not installed"


def tool_versions(model: ModelSpec) -> dict[str, str]:
    """Versions of the packages that convert, quantize and verify this model (none for python models, ensembles)."""
    if model.onnx is None:
        return {}
    fmt = model.onnx.source_format
    packages = ONNX_TOOLS if fmt == "onnx" else (TORCH_TOOLS if fmt in TORCH_FORMATS else TF_TOOLS) + ONNX_TOOLS
    return {p: package_version(p) for p in packages}


def spec_entry(model: ModelSpec) -> str:
    """The spec entry as the fingerprint sees it: without [model.lifecycle], which changes no file the export writes
    (rollout limits are the gateway's; keep_versions applies at the next export that writes a version)."""
    try:
        table = json.loads(model.raw)
    except ValueError:
        return model.raw
    if not isinstance(table, dict) or "lifecycle" not in table:
        return model.raw
    return json.dumps({k: v for k, v in table.items() if k != "lifecycle"}, sort_keys=True, default=str)


def fingerprint(model: ModelSpec) -> str | None:
    """None when an input file is missing: the model then needs work (training, or a clear error)."""
    digest = hashlib.sha256(spec_entry(model).encode())
    digest.update(code_version().encode())
    digest.update(json.dumps(tool_versions(model), sort_keys=True).encode())
    for path in (*load.trainer_sources(model), *inputs_of(model)):
        if not _hash_path(digest, path):
            return None
    return digest.hexdigest()


def _artifacts(model: ModelSpec, repo: Path) -> list[str]:
    if model.onnx is not None:  # the newest version holds what the current sources give
        return [f"{n}/{(lifecycle.versions_on_disk(repo / n) or (1,))[-1]}/{repository.ONNX_FILENAME}"
                for n in repository.served_names(model, repo)]
    if model.python is not None:
        return [f"{model.name}/1/{p.name}" for p in (Path("model.py"), MODEL_CONFIG, *model.python.files)]
    return []


def is_current(model: ModelSpec, repo: Path) -> bool:
    """Built from exactly this spec entry, sources and code, with every file in place. An optional variant the state
    records as left out (no recipe passed its gate) is not missing: it is retried when the fingerprint changes."""
    fp = fingerprint(model)
    if fp is None:
        return False
    served = repository.served_names(model, repo)
    if any(read_state(repo / n).fingerprint != fp for n in served):
        return False
    if any((repo / n).exists() for n in model.triton_names if n not in served):
        return False
    if any(not (repo / rel).is_file() for rel in _artifacts(model, repo)):
        return False
    return all((repo / rel).is_file() and (repo / rel).read_text() == text
               for rel, text in repository_files(model, repo).items())


# ---- building one model --------------------------------------------------------------------------------------------

def _int8_judge(model: ModelSpec, heldout: Dataset, expected: dict) -> optimize.Judge:
    return _variant_judge(model, "int8", heldout, expected)


def _variant_judge(model: ModelSpec, variant: str, heldout: Dataset, expected: dict) -> optimize.Judge:
    """The parity gate's check of a variant as a search's judge (int8 recipes, pruning): its figure is the worst
    measured / allowed ratio over every output's checks (<= 1 passes), its text the figures or the failures."""

    def judge(blob: bytes) -> optimize.Verdict:
        report, failures = verify.check_variant(model, variant, blob, heldout, expected)
        text = verify.brief(failures) if failures else report.summary()
        return optimize.Verdict(not failures, report.severity, text, report.accuracy_drop)
    return judge


def _recipe_rows(search: optimize.Int8Search) -> list[dict]:
    rows = [{"recipe": a.recipe.name, "description": a.recipe.describe(),
             "result": (f"could not be built: {a.error}" if a.verdict is None
                        else "passes" if a.verdict.passed else "fails"),
             "gate": a.verdict.text if a.verdict is not None else "",
             "accuracy_drop_points": (None if a.verdict is None or a.verdict.accuracy_drop is None
                                      else round(a.verdict.accuracy_drop, 4))}
            for a in search.attempts]
    return rows + [{"recipe": name, "description": "-", "accuracy_drop_points": None,
                    "result": f"not tried: the time budget ({search.budget_seconds:g} s) was spent"}
                   for name in search.skipped]


def _no_recipe_passed(model: ModelSpec, search: optimize.Int8Search) -> str:
    tried = ", ".join(f"{a.recipe.name} {a.verdict.figure:.2f}" if a.verdict else f"{a.recipe.name} (not built)"
                      for a in search.attempts)
    best = search.best
    text = (f"no INT8 recipe passes the gate; the best, {best.recipe.name}: {best.verdict.text}" if best
            else "no INT8 recipe could be built")
    text += f". Worst measured / allowed ratio per recipe (<= 1 passes): {tried}"
    if search.skipped:
        text += f"; not tried (time budget {search.budget_seconds:g} s spent): {', '.join(search.skipped)}"
    return text


def model_data(model: ModelSpec, path: Path, with_labels: bool) -> Dataset:
    """An .npz as the model takes it; for the numeric part of a raw-strings Keras model, the layer's own ids for the
    file's texts (export/keras_text.py)."""
    if model.onnx.keras_text_layer:
        from export import keras_text

        return keras_text.token_dataset(model, path, with_labels)
    return load_npz(model, path, with_labels)


def _gate_record(gate) -> dict:
    """The card's record of the tolerances: every value, and the per-output overrides that differ from them."""
    record = {k: getattr(gate, k) for k in GATE_TOLERANCES}
    for output, sub in gate.outputs:
        record[output] = {k: getattr(sub, k) for k in GATE_TOLERANCES if getattr(sub, k) != record[k]}
    return record


def build_onnx(model: ModelSpec, staging: Path, options: Options, log: Log) -> versions.Written:
    src = model.onnx
    with step(log, f"{model.name}: train or load the source model"):
        trained = load.train_or_check(model, log)
    heldout = model_data(model, src.heldout, with_labels=True)
    from_torch = src.source_format in TORCH_FORMATS
    if from_torch:
        from export import torch_source  # the torch extra: only for PyTorch sources
    tool = f"torch.onnx.export, opset {torch_source.OPSET}" if from_torch else f"tf2onnx, opset {convert.OPSET}"
    with tempfile.TemporaryDirectory(prefix=f"modelport-{model.name}-") as tmp:
        with step(log, f"{model.name}: convert {src.source_format} -> ONNX ({tool})"):
            fp32 = (torch_source.to_onnx(model, heldout, Path(tmp)) if from_torch
                    else convert.to_onnx(model, trained, Path(tmp)))
    with step(log, f"{model.name}: reference outputs of the source model on {len(heldout)} held-out samples"):
        expected = (torch_source.reference_outputs if from_torch else reference.reference_outputs)(model, heldout)
    protos = {"fp32": fp32}
    search = None
    # A variant that cannot be built is a gate failure (one line: variant, step, op), never a traceback:
    # onnxruntime.quantization and onnxconverter-common raise anything on graphs they cannot handle.
    built_failures: list[GateFailure] = []
    if "int8" in src.variants:
        calibration = model_data(model, src.calibration, with_labels=False)
        with step(log, f"{model.name}: int8 static quantization, calibrating on {len(calibration)} samples"):
            try:
                search = optimize.search_int8(fp32, calibration, _int8_judge(model, heldout, expected), log,
                                              options.int8_search_seconds)
            except Exception as e:
                built_failures.append(verify.conversion_failure(model, "int8", "int8 quantization", e))
        if search is not None and search.proto is not None:
            protos["int8"] = search.proto
    pruning = pruned_int8 = None
    if {"pruned", "pruned_int8"} & set(src.variants):
        pruned_name = variant_model_name(model.name, "pruned")
        with step(log, f"{model.name}: pruning ({src.pruning}), up to what the gate passes"):
            try:
                pruning = prune.search(fp32, src.pruning, _variant_judge(model, "pruned", heldout, expected), log,
                                       pruned_name)
            except IncompatibleModelError as e:  # nothing to prune: said in one line, like a variant not built
                built_failures += [GateFailure(v, "", "pruning", math.nan, math.nan, reason=str(e))
                                   for v in ("pruned", "pruned_int8") if v in src.variants]
        if pruning is not None and pruning.proto is not None:
            protos["pruned"] = pruning.proto
        elif pruning is not None:
            built_failures += [GateFailure(v, "", "pruning", math.nan, math.nan,
                                           reason=f"{variant_model_name(model.name, v)}: {pruning.failure()}")
                               for v in ("pruned", "pruned_int8") if v in src.variants]
    if "pruned_int8" in src.variants and "pruned" in protos:
        calibration = model_data(model, src.calibration, with_labels=False)
        with step(log, f"{model.name}: int8 static quantization of the pruned model"):
            try:
                pruned_int8 = optimize.search_int8(protos["pruned"], calibration,
                                                   _variant_judge(model, "pruned_int8", heldout, expected), log,
                                                   options.int8_search_seconds)
            except Exception as e:
                built_failures.append(verify.conversion_failure(model, "pruned_int8", "int8 quantization", e))
        if pruned_int8 is not None and pruned_int8.proto is not None:
            protos["pruned_int8"] = pruned_int8.proto
        elif pruned_int8 is not None:
            built_failures.append(GateFailure("pruned_int8", "", "int8 quantization", math.nan, math.nan, reason=(
                f"{variant_model_name(model.name, 'pruned_int8')}: {_no_recipe_passed(model, pruned_int8)}")))
    if "pruned" not in src.variants:
        protos.pop("pruned", None)  # built for pruned_int8 only
    if "fp16" in src.variants:
        with step(log, f"{model.name}: fp16 conversion"):
            try:
                fp16 = optimize.convert_fp16(fp32)
                verify.session(fp16.SerializeToString())  # ONNX Runtime's type inference is the conversion's check
                protos["fp16"] = fp16
            except Exception as e:
                built_failures.append(verify.conversion_failure(model, "fp16", "fp16 conversion", e))
    no_tensorrt = {variant_model_name(model.name, v): bad for v, proto in protos.items()
                   if (bad := convert.unsupported_ops(proto))} if src.tensorrt else {}
    for name, bad in no_tensorrt.items():
        log(f"  warning: {name}: ops TensorRT cannot run: {', '.join(bad)}; served without the TensorRT "
            f"accelerator (ONNX Runtime's CUDA or CPU provider)")
    blobs = {v: protos[v].SerializeToString() for v in src.variants if v in protos}
    with step(log, f"{model.name}: parity gate on {len(heldout)} held-out samples ({', '.join(blobs)})"):
        reports, failures = verify.check(model, blobs, heldout, expected)
    failures += built_failures
    end_to_end = None
    if src.text is not None:
        from export import text_parity  # the torch extra

        texts = text_parity.heldout_texts(model)
        with step(log, f"{model.name}: end-to-end parity on {len(texts)} held-out texts: {src.text.tokenizer} -> "
                       f"ONNX vs transformers' tokenizer -> PyTorch"):
            end_to_end, e2e_failures = text_parity.check(model, blobs["fp32"], texts)
        failures += e2e_failures
        log(f"    {src.text.ensemble}: tokens identical for {end_to_end.token_agreement:.2%} of texts, argmax "
            f"agreement {end_to_end.argmax_agreement:.2%}, max |diff| {end_to_end.max_abs_diff:.2e}")
    step_settings = None
    if src.keras_text_layer:
        from export import keras_text

        step_name = keras_text_names(model)[1]
        step_settings = keras_text.settings(keras_text.split(model)[1])
        with step(log, f"{model.name}: end-to-end parity on {len(heldout)} held-out texts: {step_name} -> ONNX vs "
                       f"the Keras model with its {src.keras_text_layer!r} layer"):
            end_to_end, e2e_failures = keras_text.check(model, blobs["fp32"], step_settings)
        failures += e2e_failures
        log(f"    {model.name.removesuffix('_numeric')}: tokens identical for {end_to_end.token_agreement:.2%} of "
            f"texts, argmax agreement {end_to_end.argmax_agreement:.2%}, max |diff| {end_to_end.max_abs_diff:.2e}")
    reasons = {v: "fails the gate: " + verify.brief(fs) for v in src.variants
               if (fs := [f for f in failures if f.variant == v])}
    notes: tuple[str, ...] = ()
    if search is not None and search.proto is None:
        reasons["int8"] = _no_recipe_passed(model, search)
        if "int8" not in src.optional_variants:
            if not any(a.verdict is not None for a in search.attempts):
                raise IncompatibleModelError(f"{variant_model_name(model.name, 'int8')}: {reasons['int8']}")
            failures += [GateFailure("int8", "", f"recipe {a.recipe.name}", a.verdict.figure, 1.0,
                                     reason=f"{variant_model_name(model.name, 'int8')}, recipe {a.recipe.name}: "
                                            f"{a.verdict.text}")
                         for a in search.attempts if a.verdict is not None]
            notes = (f"int8: {reasons['int8']}.", 'To export the other variants without it, mark it optional: '
                                                  'optional_variants = ["int8"].')
    left_out = {v: {"triton_name": variant_model_name(model.name, v), "reason": reasons[v]}
                for v in src.optional_variants if v in reasons}
    for record in left_out.values():
        log(f"  warning: {record['triton_name']} is left out (an optional variant): {record['reason']}; "
            f"the other variants are exported")
    failures = [f for f in failures if f.variant not in left_out]
    unbuilt = sorted({f.variant for f in built_failures if f in failures})
    if unbuilt:
        notes += (f"To export the other variants without {', '.join(unbuilt)}, mark it optional: "
                  f"optional_variants = {json.dumps(unbuilt)}.",)
    if failures:
        raise ParityError(model.name, failures, notes)
    reports = [r for r in reports if r.variant not in left_out]
    for r in reports:
        diffs = ", ".join(f"b{b}={d:.2e}" for b, d in r.max_abs_diff.items())
        log(f"    {r.triton_name}: {r.summary()}; max |diff| over every output {diffs}")
    with step(log, f"{model.name}: in-process latency per variant and batch size"):
        latency = {v: verify.latency_us(model, b, heldout) for v, b in blobs.items()}

    recipes = {v: s.winner.recipe.name for v, s in (("int8", search), ("pruned_int8", pruned_int8))
               if s is not None and s.winner is not None}
    variants = [cards.VariantCard(r.triton_name, r.variant, cards.size_kib(len(blobs[r.variant])),
                                  convert.op_counts(protos[r.variant]),
                                  r.accuracy, r.max_abs_diff, r.argmax_agreement, recipes.get(r.variant, ""),
                                  {o.name: {"task": o.task, **{k: float(f"{v:.6g}") for k, v in o.figures.items()}}
                                   for o in r.outputs})
                for r in reports]
    data = (trained.data_description if trained is not None else
            f"held-out set {src.heldout.name} ({len(heldout)} samples)")
    card = cards.Card(model.name, model.kind, model.description, cards.display_path(src.source), data,
                      reports[0].source_accuracy, len(heldout),
                      _gate_record(src.gate),
                      cards.tensor_table(model.inputs), cards.tensor_table(model.outputs), variants,
                      {**tool_versions(model), "opset": str(
                          next(o.version for o in fp32.opset_import if o.domain in ("", "ai.onnx")))},
                      _recipe_rows(search) if search is not None else [], left_out,
                      end_to_end=end_to_end.as_dict() if end_to_end is not None else {},
                      without_tensorrt={n: ops for n, ops in no_tensorrt.items()
                                        if n in {r.triton_name for r in reports}},
                      pruning=prune.card_record(pruning, fp32, {r.variant: blobs[r.variant] for r in reports}, latency)
                      if pruning is not None and pruning.proto is not None else {})
    state = ModelState(fingerprint(model), left_out, card.without_tensorrt,
                       cards.reference_predictions(model, expected),
                       {"latency_us": {r.triton_name: latency[r.variant] for r in reports},
                        "size_bytes": {r.triton_name: len(blobs[r.variant]) for r in reports},
                        "int8_recipe_seconds": {a.recipe.name: round(a.seconds, 2) for a in search.attempts}
                        if search is not None else {}})
    written = versions.write(model, staging, {r.triton_name: blobs[r.variant] for r in reports},
                             {r.triton_name: r.accuracy for r in reports}, cards.reference_predictions(model, expected),
                             heldout)
    for r in reports:
        directory = staging / r.triton_name
        cards.write_card(card, directory)
        write_state(replace(state, versions=written.records[r.triton_name]), directory)
    for record in left_out.values():
        shutil.rmtree(staging / record["triton_name"], ignore_errors=True)  # a model an earlier export wrote
    if step_settings is not None:  # the generated step's settings and vocabulary, from the layer itself
        step_dir = staging / keras_text_names(model)[1] / "1"
        step_dir.mkdir(parents=True, exist_ok=True)
        (step_dir / keras_text.served_encoding().STEP_FILE).write_text(json.dumps(step_settings, ensure_ascii=False),
                                                                       encoding="utf-8")
    return written


def ensure_files(model: ModelSpec, spec: Spec, files: list[Path], what: str, log: Log) -> None:
    """Files a trainer writes (the tokenizer, load-test samples) are recreated by running that trainer (cached)."""
    missing = [p for p in files if not p.exists()]
    for trainer_model in (m for m in spec.models if m.onnx is not None and m.onnx.trainer is not None):
        if any(trainer_model.onnx.source.parent in p.parents for p in missing):
            with step(log, f"{model.name}: recreate files with trainer {trainer_model.onnx.trainer!r}"):
                load.train_or_check(trainer_model, log)
    missing = [p for p in files if not p.exists()]
    if missing:
        raise SourceError(f"{model.name}: {what} missing: {', '.join(map(str, missing))}; put them there or fix "
                          f"the paths in {spec.path.name}")


def build_python(model: ModelSpec, spec: Spec, staging: Path, log: Log) -> None:
    ensure_files(model, spec, list(model.python.files), "files to deploy are", log)
    version = staging / model.name / "1"
    version.mkdir(parents=True, exist_ok=True)
    for source, name in deployed_files(model):
        if source.resolve() != (version / name).resolve():
            shutil.copy2(source, version / name)
    write_simple(model, staging / model.name)


def deployed_files(model: ModelSpec) -> list[tuple[Path, str]]:
    """(source, name in the version folder) of every file a python model's folder holds: self-contained, since the
    stub imports nothing from outside it."""
    return [(model.python.code, "model.py"), (MODEL_CONFIG, MODEL_CONFIG.name),
            *((f, f.name) for f in model.python.files)]


def write_simple(model: ModelSpec, directory: Path) -> None:
    """The card and state of a python model or an ensemble (also the whole build of an ensemble)."""
    cards.write_card(cards.simple_card(model), directory)
    write_state(ModelState(fingerprint(model)), directory)


# ---- the whole export ----------------------------------------------------------------------------------------------

def select(spec: Spec, only: tuple[str, ...]) -> list[ModelSpec]:
    if not only:
        return list(spec.models)
    chosen = []
    for name in only:
        m = spec.model(name)
        skipped = next((x for x in spec.skipped if name in x.triton_names), None)
        if skipped is not None:
            raise SourceError(f"--only {name}: {install_hint(skipped.extra)}")
        if m is None:
            names = sorted(n for x in spec.models for n in x.triton_names)
            raise SpecError(name, "--only", name, ", ".join(names))
        for x in [m, *_generated_with(spec, m)]:
            if x not in chosen:
                chosen.append(x)
    return chosen


def _generated_with(spec: Spec, m: ModelSpec) -> list[ModelSpec]:
    """The models m's [[model]] table stands for beside m, which come with it: a [model.text] table's tokenizer and
    ensemble; a raw-strings Keras model's numeric part and python step (the ensemble has the table's name). A
    generated model named alone rebuilds only itself."""
    names: set[str] = set()
    if m.onnx is not None and m.onnx.text is not None:
        names = {m.onnx.text.tokenizer, m.onnx.text.ensemble}
    for x in spec.models:
        if x.onnx is not None and x.onnx.keras_text_layer and x.name.removesuffix("_numeric") == m.name:
            names |= set(keras_text_names(x))
    return [x for x in spec.models if x.name in names]


def _swap(staging: Path, repo: Path) -> None:
    """Two renames on one filesystem: the repository path never points at a half-written tree. A rollout action
    taken while the export ran is kept: every live lifecycle is held locked across the swap and copied into the
    staging tree first (the export only ever adds a lifecycle where a model had none)."""
    old = repo.parent / f".staging-old-{repo.name}-{os.getpid()}"
    with ExitStack() as held:
        for live in sorted(repo.glob(f"*/{lifecycle.LIFECYCLE_FILE}")):
            staged = staging / live.parent.name
            if not staged.is_dir():
                continue
            held.enter_context(lifecycle.locked(live.parent))
            shutil.copy2(live, staged / lifecycle.LIFECYCLE_FILE)
            lifecycle.apply_version_policy(staged)
            lifecycle.apply_step_versions(staged)
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
            raise ServerError(f"another export is writing {repo} (it holds {lock}); wait for it to finish") from None
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
    for extra in sorted({m.extra for m in spec.skipped}):
        log(f"export: skipped {', '.join(m.name for m in spec.skipped if m.extra == extra)}: {install_hint(extra)}")
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
    written: dict[str, versions.Written] = {}
    try:
        unbuildable = {n for m in spec.skipped for n in m.triton_names}
        for name in removed:
            log(f"export: removing {name} " + ("(skipped: it cannot be rebuilt here)" if name in unbuildable else
                                                f"(no longer in {spec.path.name})"))
            shutil.rmtree(staging / name)
        for m in sorted(stale, key=lambda m: order[m.kind]):
            log(f"export: {m.name} ({m.kind})")
            if m.kind == "onnx":
                written[m.name] = build_onnx(m, staging, options, log)
            elif m.kind == "python":
                build_python(m, spec, staging, log)
            else:
                write_simple(m, staging / m.name)
            if m.samples is not None:
                ensure_files(m, spec, [m.samples], "load-test samples (field `samples`) are", log)
            write_committed_files(spec, staging, [m])
        wrote = ", ".join(n for m in stale for n in repository.served_names(m, staging)) or "no model"
        left_out = [r["triton_name"] for m in stale for r in read_state(staging / m.name).left_out.values()]
        _swap(staging, repo)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    seconds = time.perf_counter() - start
    log(f"export: wrote {wrote} into {repo} in {seconds:.1f} s"
        + (f"; left out (optional, failed their gate; see the card): {', '.join(left_out)}" if left_out else ""))
    for name, w in written.items():
        if w.removed:
            log(f"export: {name}: removed versions beyond keep_versions ([model.lifecycle]): {', '.join(w.removed)}")
        if w.candidate:
            log(candidate_line(spec, name, w, repo))
    return Outcome(tuple(m.name for m in stale), unchanged, seconds,
                   {name: w.version for name, w in written.items() if w.candidate})


def candidate_line(spec: Spec, name: str, w: versions.Written, repo: Path) -> str:
    """What a new version is and the command that moves it."""
    names = ", ".join(f"{n}/{w.version}" for n in w.records)
    flag = "" if repo == (Path(__file__).parents[1] / "model_repository").resolve() else f" --repository {repo}"
    head = (f"export: {name}: version {w.version} written ({names}) beside stable version {w.stable}, which keeps "
            f"all traffic")
    ensembles = [m.name for m in spec.models if m.kind == "ensemble" and any(s.model == name for s in m.steps)]
    through = (f" (requests through the ensemble {', '.join(ensembles)} stay on stable until it is promoted)"
               if ensembles else "")
    return (f"{head}; send it 10 % of requests with `python -m operate rollout start {name} --percent 10{flag}` "
            f"(or --shadow to compare without answering){through}")


def clean(spec: Spec, repo: Path, log: Log) -> list[Path]:
    """Remove what the export generates and git ignores; committed configs, labels, cards and code stay. Versions
    older than a model's newest are kept, with its state and lifecycle: they come from earlier sources, so no export
    can make them again (the log names them and how to remove one)."""
    repo = repo.resolve()
    removed: list[Path] = []
    # Deployed copies of files that live elsewhere (tritonmodels/, the tokenizer); files in place are committed code.
    deployed = {(m.name, name) for m in spec.models if m.python is not None for source, name in deployed_files(m)
                if source.resolve() != (repo / m.name / "1" / name).resolve()}
    older = {d.name: lifecycle.versions_on_disk(d)[:-1] for d in (repo.iterdir() if repo.is_dir() else ())
             if d.is_dir() and len(lifecycle.versions_on_disk(d)) > 1}
    if repo.is_dir():
        for f in sorted(repo.rglob("*")):
            rel = f.relative_to(repo).parts
            if rel[0] in older and (f.name == STATE_FILE or (len(rel) > 2 and rel[1].isdigit()
                                                             and int(rel[1]) in older[rel[0]])):
                continue
            if f.is_file() and (f.suffix in GENERATED_SUFFIXES or f.name == STATE_FILE or (rel[0], f.name) in deployed):
                f.unlink()
                removed.append(f)
    for leftover in repo.parent.glob(f".staging*-{repo.name}-*"):
        shutil.rmtree(leftover, ignore_errors=True)
        removed.append(leftover)
    log(f"clean: removed {len(removed)} generated file(s) under {repo}")
    if older:
        kept = ", ".join(f"{name}/{v}" for name, vs in sorted(older.items()) for v in vs)
        log(f"clean: kept older versions, which the current sources cannot rebuild: {kept} (and those models' "
            f"{STATE_FILE}); remove one that is neither stable nor canary with `rm -r {repo}/<model>/<version>`")
    return removed

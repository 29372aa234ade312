"""The import graph: steps stand on core and never on each other, core stands on no step, the client and
tritonmodels/ on nothing of the project. One failure lists every offending import as `file:line: importer -> imported`."""

from __future__ import annotations

import ast
from pathlib import Path

from tests.conftest import ROOT

STEPS = ("export", "serve", "gateway", "loadtest", "bench", "tune", "operate", "env")
PROJECT = ("core", *STEPS, "tritonmodels", "model_repository", "tests")
# What stands alone: the pip-installable client, and the code Triton's python stub runs (deployed without the project).
STANDALONE = ("client", "tritonmodels")

# Edges allowed across the layers, each with its reason; none today (the test below keeps the list honest).
ALLOWED: set[tuple[str, str]] = set()


def sources() -> list[Path]:
    return sorted(p for top in ("core", *STEPS, *STANDALONE) for p in (ROOT / top).rglob("*.py"))


def imported(path: Path) -> list[tuple[int, str]]:
    """(line, absolute module) of every import in the file, relative ones resolved, lazy ones included."""
    package = path.relative_to(ROOT).with_suffix("").parts[:-1]
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = ".".join(package[:len(package) - node.level + 1]) if node.level else ""
            module = ".".join(part for part in (base, node.module or "") if part)
            # `from bench import loadgen` imports bench.loadgen: name the module, not only the package
            found += [(node.lineno, f"{module}.{alias.name}" if not node.module or module in STEPS else module)
                      for alias in node.names]
    return found


def forbidden(importer: str, module: str) -> bool:
    top = module.split(".")[0]
    if importer in STANDALONE:
        return top in PROJECT and top != importer
    if top not in PROJECT or top == importer:
        return False
    return importer == "core" or top in STEPS or top == "tests"


def edges() -> list[tuple[str, int, str]]:
    return [(str(path.relative_to(ROOT)), line, module) for path in sources()
            for line, module in imported(path)
            if forbidden(path.relative_to(ROOT).parts[0], module)]


def test_steps_import_core_never_each_other_and_core_and_the_client_stand_alone():
    broken = [f"{file}:{line}: {file.split('/')[0]} -> {module}" for file, line, module in edges()
              if (file, module) not in ALLOWED and (file, module.rpartition(".")[0]) not in ALLOWED]
    assert not broken, ("imports across the layers (steps import core, never each other; core imports no step; "
                        "client/ imports nothing of the project):\n" + "\n".join(broken))


def test_every_allowed_edge_still_exists_so_the_list_only_shrinks():
    present = {(file, module) for file, _, module in edges()}
    present |= {(file, module.rpartition(".")[0]) for file, module in present}
    gone = sorted(edge for edge in ALLOWED if edge not in present)
    assert not gone, f"these allowed imports are gone: remove them from ALLOWED in {__file__}: {gone}"


def test_the_walk_sees_relative_lazy_and_from_package_imports(tmp_path, monkeypatch):
    step = tmp_path / "tune"
    step.mkdir()
    (step / "x.py").write_text("from . import y\ndef f():\n    from bench import loadgen\n    import core.spec\n")
    monkeypatch.setattr(f"{__name__}.ROOT", tmp_path)
    assert imported(step / "x.py") == [(1, "tune.y"), (3, "bench.loadgen"), (4, "core.spec")]
    assert forbidden("tune", "bench.loadgen") and not forbidden("tune", "tune.y") and not forbidden("tune", "core.spec")
    assert forbidden("core", "serve.runtime") and forbidden("client", "core.errors")
    assert not forbidden("client", "modelport.errors") and not forbidden("core", "numpy")

"""The export's modules import each other without cycles: one job each, data flowing one way."""

from __future__ import annotations

import ast
from pathlib import Path

EXPORT = Path(__file__).resolve().parents[2] / "export"


def export_imports(path: Path) -> set[str]:
    """The export.* modules a file imports (top level or inside functions), by module name."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "export":
            if node.module == "export":
                names |= {f"export.{a.name}" for a in node.names}
            else:
                names.add(node.module)
        elif isinstance(node, ast.Import):
            names |= {a.name for a in node.names if a.name.split(".")[0] == "export"}
    return names


def test_the_export_modules_import_each_other_without_a_cycle():
    modules = {f"export.{p.stem}": p for p in EXPORT.glob("*.py") if p.stem != "__init__"}
    graph = {name: {m for m in export_imports(path) if m in modules and m != name} for name, path in modules.items()}
    done: set[str] = set()

    def visit(name: str, path: tuple[str, ...]) -> None:
        assert name not in path, f"import cycle: {' -> '.join((*path, name))}"
        if name not in done:
            for dependency in sorted(graph[name]):
                visit(dependency, (*path, name))
            done.add(name)

    for name in sorted(graph):
        visit(name, ())
    assert "export.verify" not in graph["export.load"] and "export.load" not in graph["export.verify"]

"""Import a python model's modules as the Triton stub does: from its version folder, laid out as the export deploys
it (pipeline.deployed_files), with that folder on sys.path."""

import importlib.util
import shutil
import sys
import tempfile
from pathlib import Path

from export import pipeline
from core.spec import load_spec
from tests.conftest import ROOT

_DEPLOYED: dict[str, Path] = {}


def version_dir(model: str) -> Path:
    """`<repository>/<model>/1` holding the model's python files as the export deploys them (no data files)."""
    if model not in _DEPLOYED:
        target = Path(tempfile.mkdtemp(prefix="tritonmodels-")) / model / "1"
        target.mkdir(parents=True)
        for source, name in pipeline.deployed_files(load_spec(ROOT / "models.toml").model(model)):
            if name.endswith(".py"):
                shutil.copy2(source, target / name)
        _DEPLOYED[model] = target
    return _DEPLOYED[model]


def load_helper(model: str, module: str):
    """The module `<module>.py` of the model's deployed version folder, imported once under a unique name."""
    name = f"deployed_{model}_{module}"
    if name not in sys.modules:
        folder = str(version_dir(model))
        sys.path.insert(0, folder)
        try:
            spec = importlib.util.spec_from_file_location(name, Path(folder) / f"{module}.py")
            loaded = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(loaded)
        finally:
            sys.path.remove(folder)
        sys.modules[name] = loaded
    return sys.modules[name]

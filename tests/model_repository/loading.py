"""Import a python model's helper module from its version directory, as the Triton stub does."""

import importlib.util
import sys
from pathlib import Path

REPOSITORY = Path(__file__).resolve().parents[2] / "model_repository"


def load_helper(model: str, module: str):
    """The module `model_repository/<model>/1/<module>.py`, imported once under a unique name."""
    name = f"model_repository_{model}_{module}"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, REPOSITORY / model / "1" / f"{module}.py")
        loaded = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(loaded)
        sys.modules[name] = loaded
    return sys.modules[name]

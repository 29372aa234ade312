from __future__ import annotations

import pytest

from tests.conftest import ROOT


@pytest.fixture
def spec_copy(tmp_path):
    """The project's models.toml in a tmp dir, beside links to what its relative paths name, so that load_spec and
    the payloads accept it; the project's own models.toml is never written by a test."""
    for name in ("models", "model_repository", "tritonmodels"):
        (tmp_path / name).symlink_to(ROOT / name)
    path = tmp_path / "models.toml"
    path.write_text((ROOT / "models.toml").read_text(encoding="utf-8"), encoding="utf-8")
    return path

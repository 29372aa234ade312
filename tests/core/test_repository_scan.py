from pathlib import Path

import pytest

from core.errors import RepositoryError
from core.repository_scan import scan

ONNX_CONFIG = 'name: "m"\nbackend: "onnxruntime"\nmax_batch_size: 4\n'


def write(path: Path, text: str = "") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def test_missing_repository_says_to_run_make_export(tmp_path):
    with pytest.raises(RepositoryError, match=r"does not exist: run `make export`.*--repository"):
        scan(tmp_path / "nowhere")


def test_empty_repository_says_to_run_make_export(tmp_path):
    with pytest.raises(RepositoryError, match="holds no models.*make export"):
        scan(tmp_path)


def test_config_without_its_onnx_file_names_the_file_and_says_to_run_make_export(tmp_path):
    write(tmp_path / "m" / "config.pbtxt", ONNX_CONFIG)
    (tmp_path / "m" / "1").mkdir()
    with pytest.raises(RepositoryError) as error:
        scan(tmp_path)
    assert "missing m/1/model.onnx" in str(error.value) and "make export" in str(error.value)


def test_default_model_filename_is_the_file_looked_for(tmp_path):
    write(tmp_path / "m" / "config.pbtxt", ONNX_CONFIG + 'default_model_filename: "net.onnx"\n')
    write(tmp_path / "m" / "1" / "model.onnx")
    with pytest.raises(RepositoryError, match="missing m/1/net.onnx"):
        scan(tmp_path)


def test_ensemble_needs_an_empty_version_directory(tmp_path):
    write(tmp_path / "e" / "config.pbtxt", 'name: "e"\nplatform: "ensemble"\n')
    with pytest.raises(RepositoryError, match="missing e/1/"):
        scan(tmp_path)
    (tmp_path / "e" / "1").mkdir()
    assert [model.name for model in scan(tmp_path)] == ["e"]


def test_unparsable_config_names_the_file(tmp_path):
    write(tmp_path / "m" / "config.pbtxt", "name: [broken")
    with pytest.raises(RepositoryError, match=r"m/config.pbtxt is not a valid Triton model config"):
        scan(tmp_path)


def test_exported_repository_lists_its_models(tmp_path):
    write(tmp_path / "m" / "config.pbtxt", ONNX_CONFIG)
    write(tmp_path / "m" / "1" / "model.onnx")
    write(tmp_path / "p" / "config.pbtxt", 'name: "p"\nbackend: "python"\n')
    write(tmp_path / "p" / "1" / "model.py")
    assert [model.name for model in scan(tmp_path)] == ["m", "p"]

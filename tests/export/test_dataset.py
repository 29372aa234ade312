"""Held-out and calibration data: bad data is named clearly."""

from __future__ import annotations

import numpy as np
import pytest

from export.dataset import load_npz
from export.errors import SourceError
from export.spec import load_spec
from tests.export.conftest import tiny_spec, write_spec


def test_held_out_data_of_the_wrong_shape_names_the_file_the_input_and_the_expected_shape(tmp_path, tiny_model):
    model = load_spec(write_spec(tmp_path, tiny_spec(tiny_model))).models[0]
    bad = tmp_path / "bad.npz"
    np.savez(bad, x=np.zeros((5, 8, 8, 1), np.float32), y=np.zeros(5, np.int64))
    with pytest.raises(SourceError, match=r"bad\.npz: input 'pixels' has shape \[5, 8, 8, 1\].*\[N, 6, 6, 1\]"):
        load_npz(model, bad, with_labels=True)


def test_a_multi_input_model_reads_one_array_per_input_name(tmp_path, tiny_model):
    model = load_spec(write_spec(tmp_path, tiny_spec(tiny_model))).models[0]
    path = tmp_path / "named.npz"
    np.savez(path, pixels=np.ones((3, 6, 6, 1), np.float64), y=np.array([0, 1, 2]))
    data = load_npz(model, path, with_labels=True)
    assert data.x["pixels"].dtype == np.float32 and len(data) == 3 and data.y.tolist() == [0, 1, 2]

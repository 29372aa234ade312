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


def test_targets_are_read_per_output_as_class_ids_or_floats_and_y_stays_the_first_outputs(tmp_path, tiny_model):
    model = load_spec(write_spec(tmp_path, tiny_spec(tiny_model))).models[0]
    path = tmp_path / "targets.npz"
    np.savez(path, x=np.ones((3, 6, 6, 1), np.float32), y_scores=np.array([2, 0, 1]))
    data = load_npz(model, path, with_labels=True)
    assert data.y.tolist() == [2, 0, 1] and data.targets["scores"].dtype == np.int64
    np.savez(path, x=np.ones((3, 6, 6, 1), np.float32), y=np.array([0.5, 1.5, 2.5]))
    assert load_npz(model, path, with_labels=True).targets["scores"].dtype == np.float64, "regression targets"


@pytest.mark.parametrize(("arrays", "message"), [
    ({"y": np.zeros(3), "y_scores": np.zeros(3)}, r"both `y` and `y_scores` hold targets of output 'scores'"),
    ({"y_logits": np.zeros(3)}, r"y_logits name no output of model 'tiny'.*y_<output> for scores"),
    ({"y": np.zeros(2)}, r"2 rows in `y` for 3 inputs"),
    ({"y": np.array(["cat", "dog", "owl"])}, r"`y` is <U3; targets are numbers"),
])
def test_targets_that_do_not_fit_the_outputs_are_named_with_the_fix(tmp_path, tiny_model, arrays, message):
    model = load_spec(write_spec(tmp_path, tiny_spec(tiny_model))).models[0]
    path = tmp_path / "bad.npz"
    np.savez(path, x=np.ones((3, 6, 6, 1), np.float32), **arrays)
    with pytest.raises(SourceError, match=message):
        load_npz(model, path, with_labels=True)

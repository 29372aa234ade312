"""Held-out and calibration data: bad data is named clearly."""

from __future__ import annotations

import numpy as np
import pytest

from core.heldout import load_npz
from core.errors import SourceError
from tests import specs
from tests.export.conftest import tiny_spec


def test_held_out_data_of_the_wrong_shape_names_the_file_the_input_and_the_expected_shape(tmp_path, tiny_model):
    model = specs.load(tmp_path, tiny_spec(tiny_model)).models[0]
    bad = tmp_path / "bad.npz"
    np.savez(bad, x=np.zeros((5, 8, 8, 1), np.float32), y=np.zeros(5, np.int64))
    with pytest.raises(SourceError, match=r"bad\.npz: input 'pixels' has shape \[5, 8, 8, 1\].*\[N, 6, 6, 1\]"):
        load_npz(model, bad, with_labels=True)


def test_a_multi_input_model_reads_one_array_per_input_name(tmp_path, tiny_model):
    model = specs.load(tmp_path, tiny_spec(tiny_model)).models[0]
    path = tmp_path / "named.npz"
    np.savez(path, pixels=np.ones((3, 6, 6, 1), np.float64), y=np.array([0, 1, 2]))
    data = load_npz(model, path, with_labels=True)
    assert data.x["pixels"].dtype == np.float32 and len(data) == 3 and data.y.tolist() == [0, 1, 2]


def variable_model():
    from core.spec import Batching, ModelSpec, Tensor

    return ModelSpec("m", "onnx", (Tensor("m", "tokens", "TYPE_INT64", (-1,)),),
                     (Tensor("m", "p", "TYPE_FP32", (2,)),), Batching(4))


def test_padded_rows_with_lengths_run_in_groups_of_equal_length_and_come_back_in_order(tmp_path):
    path = tmp_path / "heldout.npz"
    padded = np.array([[1, 2, 0], [3, 0, 0], [4, 5, 6], [7, 8, 0]])
    np.savez(path, x=padded, x_lengths=np.array([2, 1, 3, 2]), y=np.zeros(4, np.int64))
    data = load_npz(variable_model(), path, with_labels=True)
    seen = []
    sums = data.map(lambda x: seen.append(x["tokens"].shape) or {"s": x["tokens"].sum(axis=1)})
    assert sorted(seen) == [(1, 1), (1, 3), (2, 2)]  # no group sees padding
    assert sums["s"].tolist() == [3, 3, 15, 15]
    assert data.row(1)["tokens"].tolist() == [[3]]
    assert data.shape_range(variable_model().inputs[0]) == ((1,), (2,), (3,))


def test_lengths_beyond_the_padded_size_name_the_array_and_the_allowed_sizes(tmp_path):
    path = tmp_path / "heldout.npz"
    np.savez(path, x=np.zeros((2, 3), np.int64), x_lengths=np.array([2, 4]))
    with pytest.raises(SourceError, match=r"`x_lengths` must hold.*between 1 and the padded size \[3\].*from 2 to 4"):
        load_npz(variable_model(), path, with_labels=False)


def test_a_declared_bound_beyond_the_held_out_sizes_fails_naming_the_missing_one(tmp_path):
    from dataclasses import replace

    from core.errors import SpecError
    from core.repository import shape_ranges
    from core.spec import Gate, OnnxSource, Source

    np.savez(tmp_path / "heldout.npz", x=np.zeros((2, 3), np.int64), x_lengths=np.array([2, 3]))
    model = variable_model()
    source = OnnxSource(tmp_path / "m.keras", tmp_path / "heldout.npz", None, None, ("fp32",), Gate("m"), False)
    model = replace(model, source=Source(onnx=source))
    assert (shape_ranges(model)["tokens"].min, shape_ranges(model)["tokens"].max) == ((2,), (3,))
    model = replace(model, inputs=(replace(model.inputs[0], min_dims=(8,)),))
    with pytest.raises(SpecError, match=r"field 'tokens\.max_dims'.*min \[8\] > max \[3\]"):
        shape_ranges(model)


def test_targets_are_read_per_output_as_class_ids_or_floats_and_y_stays_the_first_outputs(tmp_path, tiny_model):
    model = specs.load(tmp_path, tiny_spec(tiny_model)).models[0]
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
    model = specs.load(tmp_path, tiny_spec(tiny_model)).models[0]
    path = tmp_path / "bad.npz"
    np.savez(path, x=np.ones((3, 6, 6, 1), np.float32), **arrays)
    with pytest.raises(SourceError, match=message):
        load_npz(model, path, with_labels=True)


def test_targets_per_output_stay_one_row_per_sample_beside_padded_inputs(tmp_path):
    path = tmp_path / "heldout.npz"
    np.savez(path, x=np.array([[1, 2, 0], [3, 0, 0], [4, 5, 6]]), x_lengths=np.array([2, 1, 3]),
             y_p=np.array([[0.5, 1.0], [1.5, 2.0], [2.5, 3.0]]))
    data = load_npz(variable_model(), path, with_labels=True)
    assert data.targets["p"].tolist() == [[0.5, 1.0], [1.5, 2.0], [2.5, 3.0]] and data.y is data.targets["p"]
    assert data.map(lambda x: {"n": np.full(len(x["tokens"]), x["tokens"].shape[1])})["n"].tolist() == [2, 1, 3]
    np.savez(path, x=np.zeros((3, 3), np.int64), x_lengths=np.array([2, 1, 3]), y_q=np.zeros(3))
    with pytest.raises(SourceError, match=r"y_q name no output of model 'm'"):
        load_npz(variable_model(), path, with_labels=True)


def test_an_input_named_like_a_target_is_read_as_the_input_with_its_lengths(tmp_path):
    from dataclasses import replace

    model = variable_model()
    model = replace(model, inputs=(replace(model.inputs[0], name="y_ids"),))
    path = tmp_path / "heldout.npz"
    np.savez(path, y_ids=np.array([[1, 2], [3, 0]]), y_ids_lengths=np.array([2, 1]), y=np.array([1, 0]))
    data = load_npz(model, path, with_labels=True)
    assert data.row(1)["y_ids"].tolist() == [[3]] and data.targets == {"p": data.y} and data.y.tolist() == [1, 0]

"""Loading sources and data: every source format gives the same reference outputs; bad data is named clearly."""

from __future__ import annotations

import numpy as np
import pytest

from export.errors import SourceError
from export.load import load_npz, reference_outputs
from export.spec import load_spec
from tests.export.conftest import tiny_spec, write_spec


def test_a_saved_model_source_gives_the_same_reference_outputs_as_its_keras_file(tmp_path, tiny_model):
    import keras

    saved = tmp_path / "saved_model"
    keras.saving.load_model(tiny_model.keras_path).export(str(saved), verbose=False)
    from_keras = load_spec(write_spec(tmp_path, tiny_spec(tiny_model))).models[0]
    from_saved = load_spec(write_spec(tmp_path, tiny_spec(tiny_model, source=saved))).models[0]
    assert from_saved.onnx.source_format == "savedmodel"
    data = load_npz(from_keras, tiny_model.heldout, with_labels=True)
    a, b = reference_outputs(from_keras, data)["scores"], reference_outputs(from_saved, data)["scores"]
    assert a.shape == (40, 3) and np.max(np.abs(a - b)) <= 1e-6


def test_held_out_data_of_the_wrong_shape_names_the_file_the_input_and_the_expected_shape(tmp_path, tiny_model):
    model = load_spec(write_spec(tmp_path, tiny_spec(tiny_model))).models[0]
    bad = tmp_path / "bad.npz"
    np.savez(bad, x=np.zeros((5, 8, 8, 1), np.float32), y=np.zeros(5, np.int64))
    with pytest.raises(SourceError, match=r"bad\.npz: input 'pixels' has shape \[5, 8, 8, 1\].*\[N, 6, 6, 1\]"):
        load_npz(model, bad, with_labels=True)

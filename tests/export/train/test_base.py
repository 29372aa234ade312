import json

import numpy as np
import pytest

from export.train import TRAINERS, base


class FakeFit:
    """Writes every file a trainer must produce, cheaply, and counts its calls."""

    def __init__(self, fail=False):
        self.calls = 0
        self.fail = fail

    def __call__(self, out_dir, seed, progress):
        self.calls += 1
        paths = base.artifact_paths(out_dir, "fake")
        paths["keras_path"].write_bytes(b"keras")
        paths["saved_model_dir"].mkdir(exist_ok=True)
        (paths["saved_model_dir"] / "saved_model.pb").write_bytes(b"pb")
        base.save_arrays(out_dir, "fake", np.zeros((4, 2), np.float32), np.arange(4), np.ones((500, 2)), seed)
        (out_dir / "vocab.txt").write_text("a\n")
        if self.fail:
            raise RuntimeError("interrupted")
        return 0.5 + seed / 100, f"fake data, seed {seed}", {"vocab.txt": "vocab.txt"}


@pytest.fixture
def source(tmp_path):
    path = tmp_path / "trainer_source.py"
    path.write_text("EPOCHS = 1\n")
    return path


def make_run(source, fit):
    return base.TrainingRun(name="fake", sources=(source,), fit=fit)


def test_a_second_call_with_the_same_seed_and_code_reuses_the_recorded_model(tmp_path, source):
    fit, lines = FakeFit(), []
    first = base.train_cached(make_run(source, fit), tmp_path / "out", seed=1, progress=lines.append)
    second = base.train_cached(make_run(source, fit), tmp_path / "out", seed=1, progress=lines.append)
    assert fit.calls == 1
    assert (first.reused, second.reused) == (False, True)
    assert second.heldout_accuracy == first.heldout_accuracy == 0.51
    assert second.artifacts == first.artifacts == {"vocab.txt": tmp_path / "out" / "vocab.txt"}
    assert second.keras_path == tmp_path / "out" / "fake.keras"
    assert any("reusing" in line for line in lines)


@pytest.mark.parametrize("change", ["seed", "source", "missing file", "damaged record"])
def test_the_model_is_trained_again_when_anything_it_depends_on_changed(tmp_path, source, change):
    fit = FakeFit()
    out_dir = tmp_path / "out"
    base.train_cached(make_run(source, fit), out_dir, seed=1, progress=lambda line: None)
    seed = 1
    if change == "seed":
        seed = 2
    elif change == "source":
        source.write_text("EPOCHS = 2\n")
    elif change == "missing file":
        (out_dir / "heldout.npz").unlink()
    else:
        (out_dir / base.FINGERPRINT_NAME).write_text("{not json")
    again = base.train_cached(make_run(source, fit), out_dir, seed=seed, progress=lambda line: None)
    assert fit.calls == 2
    assert again.reused is False


def test_an_interrupted_training_leaves_nothing_that_looks_reusable(tmp_path, source):
    out_dir = tmp_path / "out"
    base.train_cached(make_run(source, FakeFit()), out_dir, seed=0, progress=lambda line: None)
    source.write_text("EPOCHS = 3\n")
    with pytest.raises(RuntimeError, match="interrupted"):
        base.train_cached(make_run(source, FakeFit(fail=True)), out_dir, seed=0, progress=lambda line: None)
    assert not (out_dir / base.FINGERPRINT_NAME).exists()


def test_the_record_states_the_accuracy_seed_and_data(tmp_path, source):
    base.train_cached(make_run(source, FakeFit()), tmp_path, seed=3, progress=lambda line: None)
    record = json.loads((tmp_path / base.FINGERPRINT_NAME).read_text())
    assert record["seed"] == 3
    assert record["heldout_accuracy"] == 0.53
    assert record["data_description"] == "fake data, seed 3"


def test_calibration_holds_a_seeded_sample_of_300_training_inputs(tmp_path):
    train_inputs = np.arange(1000, dtype=np.float32).reshape(500, 2)
    base.save_arrays(tmp_path, "fake", train_inputs[:3], np.arange(3), train_inputs, seed=0)
    calibration = np.load(tmp_path / "calibration.npz")["x"]
    assert calibration.shape == (base.CALIBRATION_SIZE, 2)
    assert all(row.tolist() in train_inputs.tolist() for row in calibration)
    heldout = np.load(tmp_path / "heldout.npz")
    assert heldout["y"].dtype == np.int64 and heldout["x"].shape == (3, 2)


def test_every_registered_trainer_has_a_fingerprinted_run_whose_sources_exist():
    from export.train import RUNS, digits, digits_mobilenet, sentiment, sentiment_bert
    assert set(TRAINERS) == set(RUNS) == {"digits", "digits_mobilenet", "sentiment", "sentiment_bert"}
    for run in (digits.RUN, digits_mobilenet.RUN, sentiment.RUN, sentiment_bert.RUN):
        assert all(path.is_file() for path in run.sources), run.name
        assert RUNS[run.name] is run

import io

import numpy as np
import pytest

from modelport.errors import InvalidInput, ServerError
from modelport.inputs import image_batch, text_batch
from modelport.metadata import parse_config, parse_metadata
from modelport.predictions import ModelOutput, Prediction, label_candidates, parse_labels, to_outputs
from tests.client.fakes import TAGGER_CONFIG, TAGGER_METADATA

NEG_POS = ("negative", "positive")


def test_probabilities_become_predictions_with_every_labels_score_in_label_order():
    found = to_outputs("m", {"p": np.array([[0.2, 0.8], [0.9, 0.1]], np.float32)}, {"p": NEG_POS}, single=False,
                       batched=True)
    assert [(item["p"].label, round(item["p"].score, 6)) for item in found] == [("positive", 0.8), ("negative", 0.9)]
    assert list(found[0]["p"].scores) == ["negative", "positive"]
    assert found[0]["p"].scores == pytest.approx({"negative": 0.2, "positive": 0.8})


def test_top_keeps_the_k_best_best_first_and_no_more_than_there_are():
    row = np.array([[0.1, 0.5, 0.15, 0.25]], np.float32)
    labels = ("a", "b", "c", "d")
    top2 = to_outputs("m", {"p": row}, {"p": labels}, single=True, batched=True, top=2)["p"]
    assert list(top2.scores) == ["b", "d"] and top2.label == "b"
    assert list(to_outputs("m", {"p": row}, {"p": labels}, single=True, batched=True, top=9)["p"].scores) == \
        ["b", "d", "c", "a"]


def test_outputs_without_labels_stay_arrays_one_row_per_item():
    found = to_outputs("m", {"p": np.eye(2, dtype=np.float32), "e": np.array([[1, 2], [3, 4]])}, {"p": NEG_POS},
                       single=False, batched=True)
    assert isinstance(found[1]["p"], Prediction) and found[1]["e"].tolist() == [3, 4]
    assert found[1].prediction.label == "positive"


def test_a_model_without_batching_gives_one_output_for_the_whole_tensor():
    found = to_outputs("m", {"p": np.array([0.3, 0.7])}, {"p": NEG_POS}, single=True, batched=False)
    assert isinstance(found, ModelOutput) and found.prediction.label == "positive"


def test_the_prediction_shortcut_needs_exactly_one_labelled_output():
    none = ModelOutput("m", {"e": np.zeros(2)})
    with pytest.raises(InvalidInput, match=r"m: no output has labels.*result\['e'\]"):
        none.prediction
    two = ModelOutput("m", {"a": Prediction("x", 1.0, {"x": 1.0}), "b": Prediction("y", 1.0, {"y": 1.0})})
    with pytest.raises(InvalidInput, match="outputs a, b have labels"):
        two.prediction


def test_more_labels_than_values_is_a_server_error_not_a_wrong_answer():
    with pytest.raises(ServerError, match="output 'p' has 2 values per item but the server names 3 classes"):
        to_outputs("m", {"p": np.zeros((1, 2))}, {"p": ("a", "b", "c")}, single=True, batched=True)


def test_labels_are_read_by_index_from_the_classification_strings():
    entries = np.array([b"0.700000:2:bird", b"0.200000:1:dog: or wolf", b"0.100000:0:cat"], dtype=object)
    assert parse_labels(entries, 3) == ("cat", "dog: or wolf", "bird")


def test_classes_past_the_end_of_the_label_file_keep_their_index_and_no_label_file_means_no_labels():
    assert parse_labels(np.array([b"0.9:1:dog", b"0.1:0"], dtype=object), 2) == ("0", "dog")
    assert parse_labels(np.array([b"0.9:1", b"0.1:0"], dtype=object), 2) is None


def test_label_candidates_are_the_outputs_whose_config_names_a_label_file():
    metadata, config = parse_metadata(TAGGER_METADATA), parse_config(TAGGER_CONFIG)
    assert label_candidates(metadata, config, batched=True) == {"kind": 3}
    assert label_candidates(metadata, None, batched=True) == {}


def test_texts_are_sent_as_utf8_bytes_one_per_row():
    batch, single = text_batch(["a moving film", "ça va"])
    assert not single and batch.shape == (2, 1) and batch[1, 0] == "ça va".encode()
    assert text_batch("one")[1] is True


@pytest.mark.parametrize("texts, message", [([], "no texts given"), (["ok", 3], "got int at position 1")])
def test_texts_that_cannot_be_sent_are_refused(texts, message):
    with pytest.raises(InvalidInput, match=message):
        text_batch(texts)


def test_images_are_read_from_paths_bytes_and_pil_images(tmp_path):
    from PIL import Image

    path = tmp_path / "seven.png"
    Image.new("L", (16, 16), color=255).save(path)
    batch, single = image_batch([str(path), path, path.read_bytes(), Image.new("L", (8, 8))])
    assert not single and batch.shape == (4, 1)
    assert batch[0, 0] == batch[1, 0] == batch[2, 0] == path.read_bytes()
    assert Image.open(io.BytesIO(batch[3, 0])).size == (8, 8)
    assert image_batch(path.read_bytes())[1] is True


def test_a_missing_image_file_is_named():
    with pytest.raises(InvalidInput, match="cannot read image file '/nonexistent/a.png'"):
        image_batch("/nonexistent/a.png")

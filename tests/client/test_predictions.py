import io

import numpy as np
import pytest

from modelport.errors import InvalidInput
from modelport.predictions import DIGIT_LABELS, image_batch, text_batch, to_predictions


def test_probabilities_become_predictions_with_every_labels_score():
    found = to_predictions(np.array([[0.2, 0.8], [0.9, 0.1]], np.float32), ("negative", "positive"), single=False)
    assert [(p.label, round(p.score, 6)) for p in found] == [("positive", 0.8), ("negative", 0.9)]
    assert found[0].scores == pytest.approx({"negative": 0.2, "positive": 0.8})


def test_a_single_input_gives_a_single_prediction():
    assert to_predictions(np.eye(10, dtype=np.float32)[[3]], DIGIT_LABELS, single=True).label == "3"


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

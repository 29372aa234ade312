"""Client.predict and AsyncClient.predict over a fake transport: inputs in any form, labels from the server."""

from pathlib import Path

import numpy as np
import pytest

import modelport
from modelport.errors import AccessDenied, InvalidInput
from tests.client.fakes import DIGIT_NAMES, DIGITS_CONFIG, AsyncFakeTransport, FakeTransport

FAST = modelport.RetryPolicy(retries=0)


def client_with(fake=None):
    return modelport.Client("127.0.0.1:8000", retries=FAST, transport=fake or FakeTransport())


def numbered_images(n):
    images = np.zeros((n, 8, 8, 1), np.float32)
    images[:, 0, 0, 0] = np.arange(n)
    return images


def test_predict_names_classes_with_the_labels_the_server_reports():
    found = client_with().predict("digits", numbered_images(3))
    assert [item.prediction.label for item in found] == ["zero", "one", "two"]
    assert tuple(found[0]["probabilities"].scores) == DIGIT_NAMES


def test_labels_are_asked_once_per_client_on_one_item_with_class_count_equal_to_the_number_of_classes():
    fake = FakeTransport()
    client = client_with(fake)
    client.predict("digits", numbered_images(6))
    client.predict("digits", numbered_images(2))
    [asked] = fake.label_requests
    assert (asked.class_count, asked.outputs, len(asked.inputs["image"])) == (10, ("probabilities",), 1)
    assert [len(r.inputs["image"]) for r in fake.sent if not r.class_count] == [4, 2, 2]  # max_batch_size 4


def test_new_labels_on_the_server_need_a_new_client():
    fake = FakeTransport()
    client_with(fake).predict("digits", numbered_images(1))
    fake.labels[("digits", "probabilities")] = tuple(f"d{i}" for i in range(10))
    assert client_with(fake).predict("digits", numbered_images(2))[1].prediction.label == "d1"


@pytest.mark.parametrize("images, single", [
    (np.zeros((8, 8, 1)), True),                # the model's dims: one item
    (np.zeros((1, 8, 8, 1)), False),            # a batch of one
    (np.zeros((3, 8, 8, 1)).tolist(), False),   # nested lists
])
def test_one_item_gives_one_model_output_and_a_batch_a_list(images, single):
    found = client_with().predict("digits", images)
    if single:
        assert isinstance(found, modelport.ModelOutput) and found.prediction.label == "zero"
    else:
        assert isinstance(found, list) and len(found) == len(images)


def test_top_keeps_the_k_best_best_first():
    fake = FakeTransport()
    item = client_with(fake).predict("tagger", {"ids": [1, 0, 0], "text": "a"}, top=2)  # kind: 0.1, 0.7, 0.0
    assert item["kind"].scores == {"dog": pytest.approx(0.7), "cat": pytest.approx(0.1)}
    assert list(item["kind"].scores) == ["dog", "cat"] and item["kind"].label == "dog"
    everything = client_with(fake).predict("tagger", {"ids": [1, 0, 0], "text": "a"})["kind"]
    assert list(everything.scores) == ["cat", "dog", "bird"]  # without top: every label, in the model's order


@pytest.mark.parametrize("top", [0, -1, 2.5, True])
def test_top_must_be_a_positive_integer_and_nothing_is_sent_otherwise(top):
    fake = FakeTransport()
    with pytest.raises(InvalidInput, match=f"digits: top must be a positive integer.*got {top!r}"):
        client_with(fake).predict("digits", numbered_images(1), top=top)
    assert fake.sent == []


def test_a_multi_input_model_gives_predictions_for_labelled_outputs_and_arrays_for_the_others():
    fake = FakeTransport()
    found = client_with(fake).predict("tagger", {"ids": [[2, 5, 5], [4, 0, 0]], "text": ["a", "bcd"]})
    assert [item["kind"].label for item in found] == ["bird", "dog"]
    assert [item.prediction.label for item in found] == ["bird", "dog"]  # kind is the only labelled output
    assert [item["embedding"].tolist() for item in found] == [[1.0, 12.0], [3.0, 4.0]]
    assert [r.outputs for r in fake.label_requests] == [("kind",)]  # embedding has no label file: not asked


def test_one_item_for_each_input_of_a_multi_input_model_is_one_item():
    item = client_with().predict("tagger", {"ids": np.array([1, 0, 0]), "text": "hello"})
    assert isinstance(item, modelport.ModelOutput) and item["embedding"].tolist() == [5.0, 1.0]


def test_one_item_for_one_input_and_a_batch_for_another_is_refused():
    with pytest.raises(InvalidInput, match=r"tagger: some inputs are one item and others a batch \('ids' one item, "
                                           r"'text' a batch of 2\)"):
        client_with().predict("tagger", {"ids": [1, 2, 3], "text": ["a", "b"]})


def test_a_bare_value_for_a_multi_input_model_names_its_inputs():
    with pytest.raises(InvalidInput, match=r"tagger: has inputs ids, text; pass a dict by input name: "
                                           r"\{'ids': \.\.\., 'text': \.\.\.\}"):
        client_with().predict("tagger", [1, 2, 3])


def test_a_shape_that_is_neither_an_item_nor_a_batch_says_both_and_the_fix():
    with pytest.raises(InvalidInput, match=r"digits: input 'image' takes one item of shape \[8,8,1\] or a batch of "
                                           r"them \[N,8,8,1\], got \[8, 8\]; add a channel axis: x\[\.\.\., None\]"):
        client_with().predict("digits", np.zeros((8, 8)))


def test_a_value_changing_cast_is_refused_before_labels_or_inference_are_asked():
    fake = FakeTransport()
    with pytest.raises(InvalidInput, match=r"tagger: input 'ids' expects INT64.*got 0.5 at \[0, 1\]"):
        client_with(fake).predict("tagger", {"ids": [[1, 0.5, 0]], "text": ["a"]})
    assert fake.sent == []


def test_strings_paths_bytes_and_pil_images_are_encoded_for_bytes_inputs(tmp_path):
    from PIL import Image

    path = tmp_path / "blob.bin"
    path.write_bytes(b"\x00file")
    fake = FakeTransport()
    client_with(fake).predict("tagger", {"ids": np.zeros((4, 3), np.int64),
                                         "text": ["héllo", b"raw", Path(path), Image.new("L", (2, 2))]})
    sent = fake.sent[-1].inputs["text"]
    assert sent.shape == (4, 1) and sent[0, 0] == "héllo".encode() and sent[1, 0] == b"raw"
    assert sent[2, 0] == b"\x00file" and sent[3, 0].startswith(b"\x89PNG")


def test_an_output_without_a_label_file_comes_back_as_an_array_and_nothing_is_asked():
    config = {**DIGITS_CONFIG, "output": [{"name": "probabilities", "data_type": "TYPE_FP32", "dims": [10]}]}
    fake = FakeTransport(configs={"digits": config})
    found = client_with(fake).predict("digits", numbered_images(2))
    assert found[1]["probabilities"].tolist() == np.eye(10)[1].tolist() and fake.label_requests == []
    with pytest.raises(InvalidInput, match="digits: no output has labels"):
        found[0].prediction
    with pytest.raises(InvalidInput, match="output 'probabilities' has no labels on the server"):
        client_with(fake).classify_digits(np.zeros((8, 8)))


def test_an_unreadable_config_gives_arrays_not_guessed_labels():
    fake = FakeTransport(configs={"digits": AccessDenied("This API is restricted")})
    found = client_with(fake).predict("digits", numbered_images(1))
    assert isinstance(found[0]["probabilities"], np.ndarray) and fake.label_requests == []


def test_outputs_selects_what_is_requested_and_labelled():
    fake = FakeTransport()
    item = client_with(fake).predict("tagger", {"ids": [0, 0, 0], "text": "a"}, outputs=["embedding"])
    assert list(item) == ["embedding"] and fake.label_requests == []


async def test_the_async_client_predicts_and_asks_for_labels_the_same_way():
    fake = FakeTransport()
    client = modelport.AsyncClient("127.0.0.1:8000", retries=FAST, transport=AsyncFakeTransport(fake))
    found = await client.predict("digits", numbered_images(3), top=1)
    assert [item.prediction.label for item in found] == ["zero", "one", "two"]
    assert list(found[2].prediction.scores) == ["two"]
    assert (await client.predict("tagger", {"ids": [1, 0, 0], "text": "a"})).prediction.label == "dog"
    assert [r.class_count for r in fake.label_requests] == [10, 3]
    await client.predict("digits", numbered_images(1))
    assert len(fake.label_requests) == 2

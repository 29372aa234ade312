"""Client and AsyncClient over a fake transport: what they send, and what they make of the answers."""

import numpy as np
import pytest

import modelport
from modelport.errors import AccessDenied, InvalidInput, ModelNotFound, ServerUnavailable
from modelport.metadata import parse_config, parse_repository_index
from modelport.predictions import Prediction
from tests.client.fakes import DIGIT_NAMES, DIGITS_CONFIG, AsyncFakeTransport, FakeTransport

FAST = modelport.RetryPolicy(retries=2, base_delay_s=0.0, max_delay_s=0.0)


def numbered_images(n):
    """Image i has first pixel i, which the fake transport echoes as the argmax of row i."""
    images = np.zeros((n, 8, 8, 1), np.float32)
    images[:, 0, 0, 0] = np.arange(n)
    return images


def client_with(fake, retries=FAST):
    return modelport.Client("127.0.0.1:8000", retries=retries, transport=fake)


def test_a_batch_larger_than_max_batch_size_is_sent_in_chunks_and_reassembled_in_order():
    fake = FakeTransport()
    result = client_with(fake).infer("digits", numbered_images(10))
    assert [len(r.inputs["image"]) for r in fake.sent] == [4, 4, 2]
    assert result["probabilities"].argmax(axis=1).tolist() == [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]


def test_metadata_and_config_are_fetched_once_per_client():
    fake = FakeTransport()
    client = client_with(fake)
    for _ in range(3):
        client.infer("digits", numbered_images(1))
    assert fake.metadata_calls == 1 and client.config("digits").max_batch_size == 4


def test_a_chunk_that_failed_for_a_passing_reason_is_resent_alone():
    fake = FakeTransport(failures=[ServerUnavailable("connection reset")])
    result = client_with(fake).infer("digits", numbered_images(6))
    assert [len(r.inputs["image"]) for r in fake.sent] == [4, 2, 4]
    assert result["probabilities"].argmax(axis=1).tolist() == [0, 1, 2, 3, 4, 5]


def test_without_retries_the_first_failure_is_raised():
    fake = FakeTransport(failures=[ServerUnavailable("connection reset")])
    with pytest.raises(ServerUnavailable):
        client_with(fake, retries=0).infer("digits", numbered_images(1))


def test_an_unreadable_config_keeps_the_batch_whole():
    fake = FakeTransport(configs={"digits": AccessDenied("This API is restricted")})
    client_with(fake).infer("digits", numbered_images(10))
    assert [len(r.inputs["image"]) for r in fake.sent] == [10]


def test_an_unknown_model_raises_model_not_found_before_any_inference():
    fake = FakeTransport()
    with pytest.raises(ModelNotFound, match="nope"):
        client_with(fake).infer("nope", numbered_images(1))
    assert fake.sent == []


def test_invalid_input_is_refused_before_anything_is_sent():
    fake = FakeTransport()
    with pytest.raises(InvalidInput, match=r"add a batch axis: x\[None\]"):
        client_with(fake).infer("digits", np.zeros((8, 8, 1), np.float32))
    assert fake.sent == []


def test_class_count_and_outputs_are_passed_on():
    fake = FakeTransport()
    client_with(fake).infer("digits", numbered_images(1), outputs=["probabilities"], class_count=3, version=1)
    assert (fake.sent[0].class_count, fake.sent[0].outputs, fake.sent[0].version) == (3, ("probabilities",), "1")


@pytest.mark.parametrize("shape, single", [((8, 8), True), ((8, 8, 1), True), ((3, 8, 8), False),
                                           ((3, 8, 8, 1), False)])
def test_classify_digits_accepts_single_images_and_batches_and_labels_them_as_the_server_does(shape, single):
    images = np.zeros(shape, np.uint8)
    found = client_with(FakeTransport()).classify_digits(images)
    if single:
        assert isinstance(found, Prediction) and found.label == "zero" and found.score == 1.0
        assert tuple(found.scores) == DIGIT_NAMES
    else:
        assert [p.label for p in found] == ["zero", "zero", "zero"]


@pytest.mark.parametrize("images, message", [
    (np.zeros((2, 28, 28)), r"expected one 8x8 image"),
    (np.full((8, 8), 300.0), r"must be within 0..255.*got 300..300"),
    (np.full((8, 8), -1.0), r"must be within 0..255"),
])
def test_classify_digits_refuses_images_it_cannot_send(images, message):
    with pytest.raises(InvalidInput, match=message):
        client_with(FakeTransport()).classify_digits(images)


def test_config_reads_the_same_from_http_and_grpc_json():
    grpc_json = {"config": {"name": "digits", "max_batch_size": 4,
                            "input": [{"name": "image", "data_type": "TYPE_FP32", "dims": ["8", "8", "1"]}],
                            "output": [{"name": "probabilities", "data_type": "TYPE_FP32", "dims": ["10"],
                                        "label_filename": "labels.txt"}]}}
    assert parse_config(DIGITS_CONFIG) == parse_config(grpc_json)
    assert list(parse_config(grpc_json).input[0].dims) == [8, 8, 1]


def test_models_groups_the_repository_index_by_name():
    index = [{"name": "b", "version": "2", "state": "READY"}, {"name": "b", "version": "1", "state": "UNAVAILABLE",
                                                               "reason": "unloaded"},
             {"name": "a", "state": "UNAVAILABLE", "reason": "not loaded"}]
    assert parse_repository_index(index) == (
        modelport.ModelInfo("a", (), "UNAVAILABLE", "not loaded"),
        modelport.ModelInfo("b", ("1", "2"), "READY", "unloaded"),
    )


@pytest.mark.parametrize("kwargs, message", [
    ({"url": "http://127.0.0.1:8000"}, "without a scheme"),
    ({"url": "127.0.0.1:8000", "protocol": "grpcs"}, "protocol must be one of"),
    ({"url": "127.0.0.1:8000", "timeout": 0}, "timeout must be a positive"),
    ({"url": "127.0.0.1:8000", "retries": -1}, "retries takes a count >= 0"),
])
def test_bad_client_options_fail_at_construction_naming_the_option(kwargs, message):
    with pytest.raises(ValueError, match=message):
        modelport.Client(transport=FakeTransport(), **kwargs)


async def test_async_client_chunks_and_retries_like_the_sync_one():
    fake = FakeTransport(failures=[ServerUnavailable("connection reset")])
    client = modelport.AsyncClient("127.0.0.1:8000", retries=FAST, transport=AsyncFakeTransport(fake))
    result = await client.infer("digits", numbered_images(6))
    assert [len(r.inputs["image"]) for r in fake.sent] == [4, 2, 4]
    assert result["probabilities"].argmax(axis=1).tolist() == [0, 1, 2, 3, 4, 5]
    assert (await client.classify_digits(np.zeros((8, 8)))).label == "zero"

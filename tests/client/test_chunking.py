import numpy as np

from modelport import chunking


def test_a_batch_within_the_limit_is_sent_whole():
    arrays = {"x": np.arange(4)}
    assert len(chunking.split(arrays, 4, max_batch_size=4)) == 1


def test_a_large_batch_is_cut_into_consecutive_chunks_no_larger_than_the_limit():
    arrays = {"x": np.arange(10), "y": np.arange(10) * 2}
    chunks = chunking.split(arrays, 10, max_batch_size=4)
    assert [c["x"].tolist() for c in chunks] == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]
    assert [c["y"].tolist() for c in chunks] == [[0, 2, 4, 6], [8, 10, 12, 14], [16, 18]]


def test_nothing_is_cut_when_the_limit_is_unknown_or_the_model_does_not_batch():
    arrays = {"x": np.arange(10)}
    assert len(chunking.split(arrays, 10, max_batch_size=None)) == 1
    assert len(chunking.split(arrays, None, max_batch_size=4)) == 1


def test_joined_outputs_follow_the_order_of_the_chunks():
    parts = [{"y": np.array([[0], [1]])}, {"y": np.array([[2]])}, {"y": np.array([[3], [4]])}]
    assert chunking.join(parts)["y"].ravel().tolist() == [0, 1, 2, 3, 4]

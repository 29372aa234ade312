import numpy as np
import pytest

from export.data.split import stratified_split

LABELS = np.repeat(np.arange(4), [50, 30, 20, 100])


def test_split_is_a_partition_of_all_indices():
    train, heldout = stratified_split(LABELS, 0.2, seed=0)
    assert np.intersect1d(train, heldout).size == 0
    np.testing.assert_array_equal(np.sort(np.concatenate([train, heldout])), np.arange(len(LABELS)))


def test_split_keeps_each_class_in_proportion():
    _, heldout = stratified_split(LABELS, 0.2, seed=0)
    assert np.bincount(LABELS[heldout]).tolist() == [10, 6, 4, 20]


def test_same_seed_gives_the_same_split_and_another_seed_a_different_one():
    first = stratified_split(LABELS, 0.2, seed=3)
    again = stratified_split(LABELS, 0.2, seed=3)
    other = stratified_split(LABELS, 0.2, seed=4)
    np.testing.assert_array_equal(first[1], again[1])
    assert not np.array_equal(first[1], other[1])


@pytest.mark.parametrize("fraction", [0.0, 1.0, -0.1])
def test_split_rejects_a_heldout_fraction_outside_zero_one(fraction):
    with pytest.raises(ValueError, match="heldout_fraction"):
        stratified_split(LABELS, fraction)

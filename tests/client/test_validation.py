import numpy as np
import pytest

from modelport.errors import InvalidInput
from modelport.metadata import parse_metadata
from modelport.validation import Signature, check_outputs, prepare_inputs
from tests.client.fakes import DIGITS_METADATA, PAIR_METADATA

DIGITS = Signature(parse_metadata(DIGITS_METADATA), max_batch_size=4)
PAIR = Signature(parse_metadata(PAIR_METADATA), max_batch_size=8)


def invalid(signature, inputs) -> str:
    with pytest.raises(InvalidInput) as caught:
        prepare_inputs(signature, inputs)
    return str(caught.value)


def test_a_single_array_is_taken_as_the_only_input():
    prepared = prepare_inputs(DIGITS, np.zeros((2, 8, 8, 1), np.float32))
    assert list(prepared.arrays) == ["image"] and prepared.batch_size == 2


def test_float64_and_integer_pixels_are_converted_to_fp32():
    assert prepare_inputs(DIGITS, np.zeros((1, 8, 8, 1))).arrays["image"].dtype == np.float32
    assert prepare_inputs(DIGITS, np.zeros((1, 8, 8, 1), np.uint8)).arrays["image"].dtype == np.float32


def test_a_missing_batch_axis_names_model_tensor_shapes_and_the_fix():
    message = invalid(DIGITS, np.zeros((8, 8, 1), np.float32))
    assert message == ("digits: input 'image' expects shape [N,8,8,1] (N = batch size), got [8, 8, 1]; "
                       "add a batch axis: x[None]")


def test_a_missing_channel_axis_suggests_adding_it():
    assert invalid(DIGITS, np.zeros((3, 8, 8), np.float32)).endswith("add a channel axis: x[..., None]")


def test_a_single_8x8_image_suggests_both_axes():
    assert invalid(DIGITS, np.zeros((8, 8), np.float32)).endswith("add a batch and a channel axis: x[None, ..., None]")


def test_a_wrong_shape_without_an_obvious_fix_says_expected_and_got():
    assert invalid(DIGITS, np.zeros((2, 7, 7, 1), np.float32)) == (
        "digits: input 'image' expects shape [N,8,8,1] (N = batch size), got [2, 7, 7, 1]")


def one_input(datatype: str) -> Signature:
    return Signature(parse_metadata({"name": "m", "inputs": [{"name": "x", "datatype": datatype, "shape": [-1, 2]}],
                                     "outputs": []}), max_batch_size=4)


def test_int64_300_for_an_int8_tensor_is_refused_not_wrapped():
    message = invalid(one_input("INT8"), np.array([[1, 300]]))
    assert message == ("m: input 'x' expects INT8 (numpy int8); got 300 at [0, 1] (numpy int64): it is outside int8's "
                       "range -128..127, so sending it would change the value; fix the data, or "
                       "np.clip(x, -128, 127).astype(np.int8)")


@pytest.mark.parametrize("datatype, value, why", [
    ("INT8", np.array([[200, 0]], np.uint8), "got 200 at [0, 0] (numpy uint8): it is outside int8's range"),
    ("UINT8", np.array([[0, -1]]), "got -1 at [0, 1] (numpy int64): it is outside uint8's range 0..255"),
    ("INT64", np.array([[1, 0.5]]), "got 0.5 at [0, 1] (numpy float64): it is not a whole number"),
    ("INT32", np.array([[np.nan, 1]], np.float32), "got nan at [0, 0] (numpy float32): int32 has no NaN or inf"),
    ("INT64", np.array([[2.0 ** 63, 1]]), "got 9.223372036854776e+18 at [0, 0] (numpy float64): it is outside int64"),
    ("INT64", np.array([[2 ** 63, 1]], np.uint64), "got 9223372036854775808 at [0, 0] (numpy uint64)"),
    ("FP16", np.array([[70000, 1]]), "got 70000 at [0, 0] (numpy int64): it would overflow to inf"),
    ("FP32", np.array([[0.1, 1e39]]), "got 1e+39 at [0, 1] (numpy float64): it would overflow to inf"),
    ("BOOL", np.array([[1, 2]]), "got 2 at [0, 1] (numpy int64): only 0 and 1 convert to BOOL"),
])
def test_a_cast_that_would_change_a_value_is_refused_naming_the_value_and_where_it_is(datatype, value, why):
    message = invalid(one_input(datatype), value)
    assert message.startswith(f"m: input 'x' expects {datatype}") and why in message
    assert "so sending it would change the value; " in message


@pytest.mark.parametrize("datatype, value", [
    ("INT8", np.array([[-128, 127]])),
    ("INT64", np.array([[3.0, -2.0]], np.float32)),
    ("UINT64", np.array([[2 ** 64 - 1, 0]], np.uint64)),
    ("BOOL", np.array([[0, 1]])),
    ("FP32", np.array([[np.inf, np.nan]])),  # inf and NaN stay what they are
])
def test_casts_that_keep_every_value_are_made(datatype, value):
    array = prepare_inputs(one_input(datatype), value).arrays["x"]
    assert array.dtype == np.dtype(np.bool_ if datatype == "BOOL" else datatype.replace("FP", "float").lower())
    np.testing.assert_array_equal(array.astype(np.float64), value.astype(np.float64))


def test_float64_to_fp32_rounds_to_the_nearest_float32_which_is_not_lossless():
    array = prepare_inputs(one_input("FP32"), np.array([[0.1, 1 / 3]])).arrays["x"]
    assert array.dtype == np.float32 and array[0, 0] != 0.1 and array[0, 0] == np.float32(0.1)


def test_non_numeric_input_for_an_integer_tensor_is_refused_with_the_cast_to_apply():
    message = invalid(PAIR, {"ids": np.array([["1", "2", "3"]]), "text": ["a"]})
    assert "pair: input 'ids' expects INT64 (numpy int64), got numpy <U1; convert it: x.astype(np.int64)" in message


def test_complex_input_for_a_float_tensor_is_refused():
    assert "expects FP32" in invalid(DIGITS, np.zeros((1, 8, 8, 1), np.complex64))


def test_unknown_input_names_list_the_models_inputs():
    message = invalid(DIGITS, {"img": np.zeros((1, 8, 8, 1), np.float32)})
    assert message == "digits: has no input 'img'; its inputs are: image"


def test_missing_inputs_are_named_with_their_type_and_shape():
    message = invalid(PAIR, {"ids": np.zeros((1, 3), np.int64)})
    assert message == "pair: missing input 'text' (BYTES [N,1])"


def test_a_bare_array_for_a_multi_input_model_asks_for_a_mapping():
    assert "takes 2 inputs (ids, text); pass a mapping" in invalid(PAIR, np.zeros((1, 3), np.int64))


def test_inputs_with_different_batch_sizes_are_refused():
    message = invalid(PAIR, {"ids": np.zeros((2, 3), np.int64), "text": np.array([["a"]], dtype=object)})
    assert "inputs disagree on the batch size" in message and "'ids': 2" in message and "'text': 1" in message


def test_an_empty_batch_is_refused():
    assert "empty batch" in invalid(DIGITS, np.zeros((0, 8, 8, 1), np.float32))


def test_strings_become_utf8_bytes_for_bytes_tensors():
    prepared = prepare_inputs(PAIR, {"ids": np.zeros((1, 3), np.int64), "text": np.array([["héllo"]])})
    assert prepared.arrays["text"].dtype == object and prepared.arrays["text"][0, 0] == "héllo".encode()


def test_non_string_elements_for_bytes_tensors_are_refused():
    assert "got an element of type int" in invalid(PAIR, {"ids": np.zeros((1, 3), np.int64),
                                                          "text": np.array([[5]], dtype=object)})


def test_a_model_without_batching_checks_the_exact_shape():
    metadata = parse_metadata({"name": "fixed", "inputs": [{"name": "x", "datatype": "FP32", "shape": [3]}],
                               "outputs": [{"name": "y", "datatype": "FP32", "shape": [3]}]})
    prepared = prepare_inputs(Signature(metadata, max_batch_size=0), np.zeros(3, np.float32))
    assert prepared.batch_size is None
    with pytest.raises(InvalidInput, match=r"fixed: input 'x' expects shape \[3\], got \[1, 3\]"):
        prepare_inputs(Signature(metadata, max_batch_size=0), np.zeros((1, 3), np.float32))


def test_outputs_default_to_all_and_unknown_ones_are_listed():
    metadata = parse_metadata(DIGITS_METADATA)
    assert check_outputs(metadata, None, None) == ("probabilities",)
    with pytest.raises(InvalidInput, match="digits: has no output 'probs'; its outputs are: probabilities"):
        check_outputs(metadata, ["probs"], None)


@pytest.mark.parametrize("class_count", [0, -1, 2.5, True])
def test_class_count_must_be_a_positive_integer(class_count):
    with pytest.raises(InvalidInput, match="class_count must be a positive integer"):
        check_outputs(parse_metadata(DIGITS_METADATA), None, class_count)

"""Proto and JSON conversion rules, checked against TensorFlow's own where it has one."""
import numpy as np
import pytest
import tensorflow as tf
from tensorflow.core.framework import types_pb2

from serving.errors import ServingError
from serving.tensors import array_to_json, format_float, json_to_array, to_ndarray, to_proto


@pytest.mark.parametrize("array", [
    np.arange(6, dtype=np.float32).reshape(2, 3), np.array([1.5, -2], np.float64), np.array([[7]], np.int64),
    np.array([1, 2], np.int32), np.array([True, False]), np.array([b"a", b"bc"], dtype=object),
    np.array([0.5, 2], np.float16), np.zeros((0, 4), np.float32), np.array(3.0, np.float32)])
@pytest.mark.parametrize("as_content", [False, True])
def test_protos_round_trip_and_agree_with_tensorflow(array, as_content):
    proto = to_proto(array, as_content)
    np.testing.assert_array_equal(tf.make_ndarray(proto), array)
    np.testing.assert_array_equal(to_ndarray(proto, "x"), array)
    np.testing.assert_array_equal(to_ndarray(tf.make_tensor_proto(array), "x"), array)


def test_fewer_typed_values_repeat_the_last_one():
    proto = tf.make_tensor_proto(np.zeros((2, 3), np.float32))
    proto.ClearField("tensor_content")
    proto.float_val.extend([1.0, 2.0])
    np.testing.assert_array_equal(to_ndarray(proto, "x"), [[1, 2, 2], [2, 2, 2]])
    proto.float_val.extend([0.0] * 5)
    with pytest.raises(ServingError, match="tensor parsing error: x"):
        to_ndarray(proto, "x")


@pytest.mark.parametrize("value, bits, text", [
    (0.1, 32, "0.1"), (1.0, 32, "1.0"), (1e6, 32, "1e+06"), (0.123456789, 32, "0.123456791"),
    (float("nan"), 32, "NaN"), (float("-inf"), 64, "-Infinity"), (0.1, 64, "0.1"),
    (0.12345678901234566, 64, "0.12345678901234566"), (3.0, 64, "3.0")])
def test_floats_print_as_the_real_server_prints_them(value, bits, text):
    value = float(np.float32(value)) if bits == 32 else value
    assert format_float(value, bits) == text


def test_json_values_are_typed_by_the_signature():
    np.testing.assert_array_equal(json_to_array([[1, 2.5]], types_pb2.DT_FLOAT), np.array([[1, 2.5]], np.float32))
    assert json_to_array([{"b64": "YWJj"}, "d"], types_pb2.DT_STRING).tolist() == [b"abc", b"d"]
    for value, dtype, message in [
        ([1.5], types_pb2.DT_INT32, "JSON Value: 1.5 Type: Number is not of expected type: int32"),
        ([True], types_pb2.DT_FLOAT, "JSON Value: true Type: True is not of expected type: float"),
        ([2**40], types_pb2.DT_INT32, "is not of expected type: int32"),
        ([[1, 2], [3]], types_pb2.DT_FLOAT, "Encountered list at unexpected size: 1 at level: 1 expected size: 2"),
        ([[1, 2], 3], types_pb2.DT_FLOAT, "found at incorrect level: 2"),
    ]:
        with pytest.raises(ServingError) as caught:
            json_to_array(value, dtype)
        assert message in caught.value.message
    assert array_to_json(np.array([[1, 2]], np.float32)) == "[[1.0,2.0]]"
    assert array_to_json(np.array([b"\x00\xff"], dtype=object), "raw_bytes") == '[{"b64": "AP8="}]'


def test_an_empty_tensor_with_huge_dimensions_is_a_parsing_error():
    """Found by benchmarks/serving_faults.py (it was UNKNOWN: numpy's "array is too big")."""
    proto = tf.make_tensor_proto(np.zeros(0, np.float16))
    proto.tensor_shape.Clear()
    for size in (16, 2**40, 0, 2**31):
        proto.tensor_shape.dim.add().size = size
    with pytest.raises(ServingError, match="tensor parsing error: x"):
        to_ndarray(proto, "x")

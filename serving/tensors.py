"""TensorProto and JSON to numpy and back, with TensorFlow Serving's rules and messages.

Protos follow `Tensor::FromProto` / `AsProtoField`: `tensor_content` or the typed repeated
field, fewer typed values than elements repeat the last one. JSON follows
`util/json_tensor.cc`: values are typed by the signature's dtype, lists must be dense, and
floats are written in the shortest form that reads back to the same number.
"""
from __future__ import annotations

import base64
import json
import math

import grpc
import numpy as np
import orjson
from tensorflow.core.example import example_pb2
from tensorflow.core.framework import tensor_pb2, types_pb2
from tensorflow_serving.apis import input_pb2

from serving.errors import ServingError, invalid

# dtype enum -> (numpy dtype, typed field of TensorProto, DataTypeString spelling)
DTYPES = {
    types_pb2.DT_FLOAT: (np.float32, "float_val", "float"),
    types_pb2.DT_DOUBLE: (np.float64, "double_val", "double"),
    types_pb2.DT_HALF: (np.float16, "half_val", "half"),
    types_pb2.DT_INT8: (np.int8, "int_val", "int8"),
    types_pb2.DT_INT16: (np.int16, "int_val", "int16"),
    types_pb2.DT_INT32: (np.int32, "int_val", "int32"),
    types_pb2.DT_INT64: (np.int64, "int64_val", "int64"),
    types_pb2.DT_UINT8: (np.uint8, "int_val", "uint8"),
    types_pb2.DT_UINT16: (np.uint16, "int_val", "uint16"),
    types_pb2.DT_UINT32: (np.uint32, "uint32_val", "uint32"),
    types_pb2.DT_UINT64: (np.uint64, "uint64_val", "uint64"),
    types_pb2.DT_BOOL: (np.bool_, "bool_val", "bool"),
    types_pb2.DT_STRING: (np.object_, "string_val", "string"),
}
DTYPE_OF_NUMPY = {np.dtype(numpy): enum for enum, (numpy, _, _) in DTYPES.items() if numpy is not np.object_}
MAX_TENSOR_BYTES = 2**31 - 1  # what one gRPC message can carry
MAX_DIMS = 64  # TensorShape::kMaxDimensions: TensorFlow refuses more


def dtype_name(enum: int) -> str:
    """TensorFlow's DataTypeString (`float`, `int64`, ...) for a DataType enum."""
    if enum in DTYPES:
        return DTYPES[enum][2]
    return types_pb2.DataType.Name(enum)[3:].lower() if enum in types_pb2.DataType.values() else str(enum)


def proto_shape(proto: tensor_pb2.TensorProto, alias: str) -> tuple[list[int], int]:
    """(shape, bytes per element) of the array a TensorProto describes, without building it;
    INVALID_ARGUMENT `tensor parsing error: ALIAS` if it describes none."""
    if proto.dtype not in DTYPES or proto.tensor_shape.unknown_rank:
        raise invalid(f"tensor parsing error: {alias}")
    shape = [d.size for d in proto.tensor_shape.dim]
    # numpy refuses a shape whose dimensions multiply past 2**63 even when one of them is 0
    if any(d < 0 for d in shape) or len(shape) > MAX_DIMS or math.prod(d for d in shape if d) >= 2**63:
        raise invalid(f"tensor parsing error: {alias}")
    numpy_dtype = DTYPES[proto.dtype][0]
    return shape, np.dtype(numpy_dtype).itemsize  # an object array holds 8-byte pointers


def to_ndarray(proto: tensor_pb2.TensorProto, alias: str) -> np.ndarray:
    """The array a TensorProto holds; INVALID_ARGUMENT `tensor parsing error: ALIAS` if none."""
    error = invalid(f"tensor parsing error: {alias}")
    shape, _ = proto_shape(proto, alias)
    numpy_dtype, field, _ = DTYPES[proto.dtype]
    count = math.prod(shape)
    if count * np.dtype(numpy_dtype).itemsize > MAX_TENSOR_BYTES:
        raise error
    if proto.tensor_content and proto.dtype != types_pb2.DT_STRING:
        if len(proto.tensor_content) != count * np.dtype(numpy_dtype).itemsize:
            raise error
        return np.frombuffer(proto.tensor_content, dtype=numpy_dtype).reshape(shape)
    values = getattr(proto, field)
    if len(values) > count:
        raise error
    if proto.dtype == types_pb2.DT_HALF:  # half_val holds the float16 bit patterns
        values = np.asarray(values, dtype=np.uint16).view(np.float16)
    array = np.asarray(values, dtype=numpy_dtype) if len(values) else np.zeros(0, numpy_dtype)
    if len(values) == count:
        return array.reshape(shape)
    out = np.empty(count, dtype=numpy_dtype)
    out[:len(values)] = array
    out[len(values):] = array[-1] if len(values) else (b"" if proto.dtype == types_pb2.DT_STRING else 0)
    return out.reshape(shape)


def to_proto(array: np.ndarray, as_content: bool = False) -> tensor_pb2.TensorProto:
    """A TensorProto in the typed repeated field (TensorFlow Serving's default) or `tensor_content`."""
    array = np.asarray(array)
    proto = tensor_pb2.TensorProto()
    if array.dtype.kind in "OSU":
        proto.dtype = types_pb2.DT_STRING
        proto.string_val.extend(v if isinstance(v, bytes) else str(v).encode() for v in array.ravel())
    else:
        proto.dtype = DTYPE_OF_NUMPY[array.dtype]
        if as_content:
            proto.tensor_content = np.ascontiguousarray(array).tobytes()
        elif array.dtype in (np.float32, np.float64) and array.size:
            # the packed repeated field's wire bytes, parsed in C: no Python float per value
            field = 5 if array.dtype == np.float32 else 6  # float_val, double_val
            data = np.ascontiguousarray(array, dtype=array.dtype.newbyteorder("<")).tobytes()
            proto.MergeFromString(_varint(field << 3 | 2) + _varint(len(data)) + data)
        else:
            values = array.view(np.uint16) if array.dtype == np.float16 else array
            getattr(proto, DTYPES[proto.dtype][1]).extend(values.ravel().tolist())
    proto.tensor_shape.SetInParent()  # a scalar still carries `tensor_shape {}`, as AsProtoField writes it
    for size in array.shape:
        proto.tensor_shape.dim.add().size = size
    return proto


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte, value = value & 0x7F, value >> 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


# ---------------------------------------------------------------- JSON (REST API)

def _debug(value) -> str:
    """rapidjson's compact rendering of a value, cut at 256 bytes like JsonValueToDebugString."""
    return json.dumps(value, separators=(",", ":"))[:256]


def _json_type(value) -> str:
    if value is None:
        return "Null"
    if isinstance(value, bool):
        return "True" if value else "False"
    return {dict: "Object", list: "Array", str: "String"}.get(type(value), "Number")


def _is_b64(value) -> bool:
    return isinstance(value, dict) and len(value) == 1 and isinstance(value.get("b64"), str)


def _dense_shape(value) -> list[int]:
    shape = []
    while isinstance(value, list):
        shape.append(len(value))
        if not value:
            break
        value = value[0]
    return shape


def _scalar(value, dtype: int):
    """One JSON leaf as a value of `dtype`, or the checklist's type error."""
    name = dtype_name(dtype)
    error = invalid(f"JSON Value: {_debug(value)} Type: {_json_type(value)} is not of expected type: {name}")
    if dtype == types_pb2.DT_STRING:
        if isinstance(value, str):
            return value.encode()
        if isinstance(value, dict):
            if not _is_b64(value):
                raise invalid(f"JSON Value: {_debug(value)} not formatted correctly for base64 data")
            try:
                return base64.b64decode(value["b64"], validate=True)
            except ValueError:
                raise invalid("Unable to base64 decode") from None
        raise error
    if dtype == types_pb2.DT_BOOL:
        if isinstance(value, bool):
            return value
        raise error
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise error
    if dtype in (types_pb2.DT_FLOAT, types_pb2.DT_DOUBLE):
        return value
    if dtype not in DTYPES or dtype == types_pb2.DT_HALF:
        raise ServingError(grpc.StatusCode.UNIMPLEMENTED,
                           f"Conversion of JSON Value: {_debug(value)} to type: {name}")
    # rapidjson's IsInt / IsInt64 / IsUint / IsUint64: integers in range, never 1.5 or 1e3
    bounds = {types_pb2.DT_INT64: (-2**63, 2**63 - 1), types_pb2.DT_UINT32: (0, 2**32 - 1),
              types_pb2.DT_UINT64: (0, 2**64 - 1)}.get(dtype, (-2**31, 2**31 - 1))
    if not isinstance(value, int) or not bounds[0] <= value <= bounds[1]:
        raise error
    return value


def _fill(value, level: int, shape: list[int], dtype: int, out: list) -> None:
    if not isinstance(value, list):
        if level != len(shape):
            raise invalid(f"JSON Value: {_debug(value)} found at incorrect level: {level + 1} "
                          f"in the JSON DOM. Expected at level: {len(shape)}")
        if isinstance(value, dict) and dtype != types_pb2.DT_STRING:
            raise invalid(f"JSON Value: {_debug(value)} Type: Object is not of expected type: {dtype_name(dtype)}")
        out.append(_scalar(value, dtype))
        return
    if level >= len(shape):
        raise invalid(f"Encountered list at unexpected level: {level} expected < {len(shape)}")
    if len(value) != shape[level]:
        raise invalid(f"Encountered list at unexpected size: {len(value)} at level: {level} "
                      f"expected size: {shape[level]}")
    for item in value:
        _fill(item, level + 1, shape, dtype, out)


def _fast_array(value, dtype: int) -> np.ndarray | None:
    """The array of a dense nested list of numbers, converted by numpy in C; None when anything is
    off (ragged, a bool or string among numbers, out of range), for json_to_array's checks to
    find and word."""
    numpy_dtype = DTYPES.get(dtype, (None,))[0]
    if not isinstance(value, list) or numpy_dtype in (None, np.object_, np.bool_, np.float16):
        return None
    shape = tuple(_dense_shape(value))
    if len(shape) > MAX_DIMS:
        return None
    try:
        cells = np.array(value, dtype=object)
    except (ValueError, IndexError):
        return None
    if cells.shape != shape:
        return None
    kinds = np.frompyfunc(type, 1, 1)(cells)
    floating = numpy_dtype in (np.float32, np.float64)
    if not ((kinds == int) | (kinds == float) if floating else kinds == int).all():
        return None
    try:
        if floating:
            with np.errstate(over="ignore"):  # beyond float32 becomes inf, as GetFloat() does
                return cells.astype(numpy_dtype)
        ints = cells.astype(np.int64)
    except (OverflowError, ValueError, TypeError):
        return None
    info = np.iinfo(numpy_dtype)
    if ints.size and (ints.min() < max(info.min, -2**31 if numpy_dtype != np.int64 and info.min < 0 else info.min)
                      or ints.max() > info.max):
        return None
    return ints.astype(numpy_dtype)


def json_to_array(value, dtype: int) -> np.ndarray:
    """A dense JSON value (scalar or nested lists) as an array of the signature's dtype."""
    fast = _fast_array(value, dtype)
    if fast is not None:
        return fast
    shape = _dense_shape(value)
    if len(shape) > MAX_DIMS:
        raise invalid(f"JSON Value: {_debug(value)} has {len(shape)} levels of lists; a tensor has at most "
                      f"{MAX_DIMS} dimensions")
    values: list = []
    _fill(value, 0, shape, dtype, values)
    numpy_dtype = DTYPES[dtype][0]
    if numpy_dtype is np.object_:
        array = np.empty(len(values), dtype=object)
        array[:] = values
        return array.reshape(shape)
    with np.errstate(over="ignore"):  # a float beyond float32 becomes inf, as GetFloat() does
        return np.asarray(values, dtype=numpy_dtype).reshape(shape)


# Python's json messages -> rapidjson's GetParseError_En texts, which the real server reports
_RAPIDJSON = [("Expecting value", "Invalid value."),
              ("Expecting property name", "Missing a name for object member."),
              ("Expecting ':' delimiter", "Missing a colon after a name of object member."),
              ("Unterminated string", "Missing a closing quotation mark in string."),
              ("Invalid control character", "Invalid encoding in string."),
              ("Invalid \\escape", "Invalid escape character in string."),
              ("Invalid \\u", "Incorrect hex digit after \\u escape in string."),
              ("Extra data", "The document root must not be followed by other values.")]


def parse_json(body: bytes):
    """The JSON document of a request body, or `JSON Parse error: <rapidjson's text> at offset: N`.

    orjson parses (4x faster than json); what it refuses (NaN and Infinity, which the real
    server accepts, integers beyond 64 bits, deep nesting, mistakes) goes to json, whose
    errors are worded as rapidjson's."""
    if not body.strip():
        raise invalid("JSON Parse error: The document is empty")
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError:
        pass
    try:
        return json.loads(body)
    except RecursionError:
        raise invalid("JSON Parse error: nested too deeply (more than about 1,000 levels)") from None
    except UnicodeDecodeError as error:
        raise invalid(f"JSON Parse error: Invalid encoding in string. at offset: {error.start}") from None
    except json.JSONDecodeError as error:
        text = next((ours for theirs, ours in _RAPIDJSON if error.msg.startswith(theirs)), None)
        if text is None and error.msg.startswith("Expecting ',' delimiter"):
            text = ("Missing a comma or ']' after an array element." if _innermost(error.doc, error.pos) == "["
                    else "Missing a comma or '}' after an object member.")
        raise invalid(f"JSON Parse error: {text or error.msg} at offset: {error.pos}") from None


def _innermost(text: str, pos: int) -> str:
    """The innermost bracket open at `pos` ("[" or "{"), skipping strings."""
    stack, in_string, escaped = [], False, False
    for char in text[:pos]:
        if in_string:
            in_string, escaped = (char != '"' or escaped), (char == "\\" and not escaped)
        elif char == '"':
            in_string = True
        elif char in "[{":
            stack.append(char)
        elif char in "]}" and stack:
            stack.pop()
    return stack[-1] if stack else ""


def parse_predict_body(body: bytes, signature_of) -> tuple[str, dict[str, np.ndarray], bool]:
    """(signature name, inputs, row format?) of a REST predict body.

    `signature_of(name)` returns the SignatureDef (raising if there is none), so inputs are
    typed by it, as FillPredictRequestFromJson does.
    """
    doc = parse_json(body)
    if not isinstance(doc, dict):
        raise invalid(f"JSON Value: {_debug(doc)} Is not object")
    name = doc.get("signature_name", "")
    if not isinstance(name, str):
        raise invalid(f"JSON Value: {_debug(doc)} not formatted correctly. "
                      "'signature_name' key must be a string value.")
    signature = signature_of(name)
    specs = {alias: info.dtype for alias, info in sorted(signature.inputs.items())}
    if not specs:
        raise invalid(f"Failed to get input map for signature: {name or 'DEFAULT'}")
    if "instances" in doc and "inputs" in doc:
        raise invalid(f"JSON Value: {_debug(doc)} Not formatted correctly expecting only one of "
                      "'inputs' or 'instances' keys to exist ")
    if "instances" in doc:
        return name, _rows(doc, doc["instances"], specs), True
    if "inputs" in doc:
        return name, _columns(doc["inputs"], specs), False
    raise invalid("Missing 'inputs' or 'instances' key")


def _rows(doc: dict, instances, specs: dict[str, int]) -> dict[str, np.ndarray]:
    if not isinstance(instances, list):
        raise invalid(f"JSON Value: {_debug(doc)} Expecting 'instances' to be an list/array")
    if not instances:
        raise invalid(f"JSON Value: {_debug(doc)} No values in 'instances' array")

    def is_object(value) -> bool:
        return isinstance(value, dict) and not _is_b64(value)

    if not is_object(instances[0]) and len(specs) > 1:
        raise invalid("instances is a plain list, but expecting list of objects as multiple "
                      "input tensors required as per tensorinfo_map")
    objects = is_object(instances[0])
    rows: dict[str, list[np.ndarray]] = {alias: [] for alias in specs}
    for index, item in enumerate(instances):
        if objects != is_object(item):
            raise invalid(f"Expecting object but got list at item {index} of input list" if objects
                          else f"Expecting value/list but got object at item {index} of input list")
        pairs = item.items() if objects else [(next(iter(specs)), item)]
        for alias, value in pairs:
            where = f"{index} key: {alias}" if objects else f"{index}"
            try:
                if alias not in specs:
                    raise invalid(f"JSON object: does not have named input: {alias}")
                row = json_to_array(value, specs[alias])
                if row.ndim >= MAX_DIMS:  # the batch dimension makes one more
                    raise invalid(f"JSON Value: {_debug(value)} has {row.ndim} levels of lists; with the batch "
                                  f"dimension a tensor has at most {MAX_DIMS}")
                if rows[alias] and rows[alias][0].shape != row.shape:
                    first, this = rows[alias][0], row
                    if first.size != this.size:
                        raise invalid(f"Expecting tensor size: {first.size} but got: {this.size}")
                    raise invalid(f"Expecting shape {_shape(first.shape)} but got: {_shape(this.shape)}")
            except ServingError as error:
                raise invalid(f"Failed to process element: {where} of 'instances' list. "
                              f"Error: {_status_string(error)}") from None
            rows[alias].append(row)
        if objects and set(item) != set(specs):
            raise invalid(f"Failed to process element: {index} of 'instances' list. JSON object: "
                          f"{_debug(item)} keys must be equal to: {','.join(specs)}")
    return {alias: np.stack(values) for alias, values in rows.items()}


def _columns(inputs, specs: dict[str, int]) -> dict[str, np.ndarray]:
    if not isinstance(inputs, dict) or _is_b64(inputs):
        if len(specs) > 1:
            raise invalid("inputs is a plain value/list, but expecting an object as multiple "
                          "input tensors required as per tensorinfo_map")
        alias, dtype = next(iter(specs.items()))
        return {alias: json_to_array(inputs, dtype)}
    arrays = {}
    for alias, dtype in specs.items():
        if alias not in inputs:
            raise invalid(f"Missing named input: {alias} in 'inputs' object.")
        arrays[alias] = json_to_array(inputs[alias], dtype)
    return arrays


def _shape(shape) -> str:
    return "[" + ",".join(str(d) for d in shape) + "]"


def _status_string(error: ServingError) -> str:
    """absl::Status::ToString() of a nested error: `INVALID_ARGUMENT: message`."""
    return f"{error.code.name}: {error.message}"


def format_float(value: float, bits: int) -> str:
    """WriteDecimal: `%g` if it reads back exactly, else 9 (float) or 17 (double) digits."""
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "-Infinity" if value < 0 else "Infinity"
    text = "%g" % value
    same = np.float32(float(text)) == np.float32(value) if bits == 32 else float(text) == value
    if not same:
        text = "%.*g" % (9 if bits == 32 else 17, value)
    if "." not in text and "e" not in text:
        text += ".0"
    return text


def _float_texts(array: np.ndarray) -> list[str]:
    """format_float over a whole array: `%g` where it reads back to the same value (checked with
    numpy), else 9 or 17 digits; `.0` where there is no point or exponent; NaN and Infinity."""
    bits = 64 if array.dtype == np.float64 else 32
    values = array.ravel().astype(np.float64)
    texts = ["%g" % v for v in values.tolist()]
    with np.errstate(all="ignore"):
        back = np.array([float(t) for t in texts])
        same = ((back.astype(np.float32) == values.astype(np.float32)) if bits == 32 else back == values) \
            & np.isfinite(values)
    long = "%.9g" if bits == 32 else "%.17g"
    for i in np.flatnonzero(~same).tolist():
        value = values[i]
        texts[i] = long % value if math.isfinite(value) else format_float(value, bits)
    return [t if ("." in t or "e" in t or "N" in t or "I" in t) else t + ".0" for t in texts]


def array_to_json(array: np.ndarray, alias: str = "") -> str:
    """One tensor as JSON text: nested lists, floats per WriteDecimal, `_bytes` strings as b64."""
    if array.dtype.kind == "f":
        return _nest(_float_texts(array), array.shape)
    elif array.dtype.kind == "b":
        leaf = lambda v: "true" if v else "false"  # noqa: E731
    elif array.dtype.kind in "iu":
        leaf = str
    elif alias.endswith("_bytes"):
        leaf = lambda v: '{"b64": "%s"}' % base64.b64encode(v).decode()  # noqa: E731
    else:
        leaf = lambda v: json.dumps(v.decode("utf-8", "replace") if isinstance(v, bytes) else str(v))  # noqa: E731
    return _nest([leaf(v) for v in array.ravel().tolist()], array.shape)


def _nest(flat: list[str], shape: tuple[int, ...]) -> str:
    if not shape:
        return flat[0]
    if len(shape) == 1:
        return "[" + ",".join(flat) + "]"
    step = math.prod(shape[1:])
    return "[" + ",".join(_nest(flat[i * step:(i + 1) * step], shape[1:]) for i in range(shape[0])) + "]"


def predict_reply_json(outputs: dict[str, np.ndarray], rows: bool) -> str:
    """`{"predictions": ...}` for a row request, `{"outputs": ...}` for a columnar one."""
    if not rows:
        if len(outputs) == 1:
            (alias, value), = outputs.items()
            return '{"outputs": ' + array_to_json(value, alias) + "}"
        return '{"outputs": {' + ",".join(f"{json.dumps(a)}: {array_to_json(v, a)}"
                                          for a, v in sorted(outputs.items())) + "}}"
    sizes = {alias: (v.shape[0] if v.ndim else None) for alias, v in outputs.items()}
    batch = next(iter(sizes.values()))
    for alias, size in sorted(sizes.items()):
        if size is None or size != batch:
            raise invalid(f"Tensor name: {alias} has inconsistent batch size: {size} "
                          f"expecting: {batch}" if size is not None else
                          f"Tensor name: {alias} has no shape information ")
    if len(outputs) == 1:
        (alias, value), = outputs.items()
        return '{"predictions": [' + ",".join(array_to_json(row, alias) for row in value) + "]}"
    items = sorted(outputs.items())
    rows_json = ("{" + ",".join(f"{json.dumps(a)}: {array_to_json(v[i], a)}" for a, v in items) + "}"
                 for i in range(batch))
    return '{"predictions": [' + ",".join(rows_json) + "]}"


def _feature(value, feature) -> None:
    """One JSON feature value (a value or a list of them) into a tf.train.Feature."""
    values = value if isinstance(value, list) else [value]
    if all(isinstance(v, bool) or not isinstance(v, (int, float, str, dict)) for v in values) and values:
        raise invalid(f"Unexpected element type in feature: {_debug(value)}")
    if all(isinstance(v, int) and not isinstance(v, bool) for v in values):
        feature.int64_list.value.extend(values)
    elif all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
        feature.float_list.value.extend(values)
    elif all(isinstance(v, str) or _is_b64(v) for v in values):
        feature.bytes_list.value.extend(v.encode() if isinstance(v, str) else _scalar(v, types_pb2.DT_STRING)
                                        for v in values)
    else:
        raise invalid(f"Feature values of mixed types: {_debug(value)}")


def parse_infer_body(body: bytes):
    """(signature name, Input proto) of a REST classify or regress body."""
    doc = parse_json(body)
    if not isinstance(doc, dict):
        raise invalid(f"JSON Value: {_debug(doc)} Is not object")
    examples = doc.get("examples")
    if not isinstance(examples, list):
        raise invalid(f"JSON Value: {_debug(doc)} Expecting 'examples' to be an list/array")
    request_input = input_pb2.Input()
    target = request_input.example_list_with_context if "context" in doc else request_input.example_list
    for source, example in [(doc["context"], target.context)] if "context" in doc else []:
        if not isinstance(source, dict):
            raise invalid(f"Example must be JSON object but got JSON {_json_type(source)}")
        for key, value in source.items():
            _feature(value, example.features.feature[key])
    for item in examples:
        if not isinstance(item, dict):
            raise invalid(f"Example must be JSON object but got JSON {_json_type(item)}")
        example = example_pb2.Example()
        for key, value in item.items():
            _feature(value, example.features.feature[key])
        target.examples.append(example)
    name = doc.get("signature_name", "")
    if not isinstance(name, str):
        raise invalid(f"JSON Value: {_debug(doc)} not formatted correctly. "
                      "'signature_name' key must be a string value.")
    return name, request_input

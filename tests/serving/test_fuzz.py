"""Malformed requests never crash or hang the server, nor get a server-side error code.

Hypothesis sends tensors with wrong, odd and invalid dtypes, shapes (up to 70 dimensions),
sizes and contents over gRPC, undecodable request bytes to every method, MultiInference
requests with no or odd tasks, the `__saved_model_init_op` signature; and arbitrary JSON,
JSON nested up to 1,200 levels and `Content-Encoding: gzip` on bodies that are not gzip over
REST. Every reply must be OK or a client-error code (never UNKNOWN, INTERNAL or HTTP 500),
and the server must answer a good request afterwards.
"""
import gzip
import json

import grpc
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tensorflow.core.framework import tensor_pb2, types_pb2
from tensorflow_serving.apis import inference_pb2, predict_pb2


CLIENT_ERRORS = {grpc.StatusCode.OK, grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.NOT_FOUND,
                 grpc.StatusCode.FAILED_PRECONDITION, grpc.StatusCode.OUT_OF_RANGE,
                 grpc.StatusCode.RESOURCE_EXHAUSTED,  # beyond --max_request_rows / --max_request_bytes
                 grpc.StatusCode.UNIMPLEMENTED}  # a MultiInference method_name the real server does not run
SETTINGS = settings(max_examples=150, deadline=None, database=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


@pytest.fixture
def server(shared_server):
    return shared_server


DTYPES = [types_pb2.DT_FLOAT, types_pb2.DT_DOUBLE, types_pb2.DT_INT64, types_pb2.DT_INT32, types_pb2.DT_STRING,
          types_pb2.DT_BOOL, types_pb2.DT_HALF, types_pb2.DT_UINT8, types_pb2.DT_RESOURCE, types_pb2.DT_VARIANT,
          types_pb2.DT_INVALID, 999]
DIMS = st.one_of(st.integers(0, 6), st.sampled_from([-1, -7, 28, 2**31, 2**40, 2**62]))


@st.composite
def tensors(draw):
    proto = tensor_pb2.TensorProto()
    proto.dtype = draw(st.sampled_from(DTYPES))
    if draw(st.booleans()):
        proto.tensor_shape.unknown_rank = draw(st.booleans())
    if draw(st.integers(0, 9)) == 0:  # past TensorFlow's 64 dimensions
        for _ in range(draw(st.integers(60, 70))):
            proto.tensor_shape.dim.add().size = 1
    for size in draw(st.lists(DIMS, max_size=5)):
        proto.tensor_shape.dim.add().size = size
    kind = draw(st.sampled_from(["content", "float", "int64", "string", "none"]))
    if kind == "content":
        proto.tensor_content = draw(st.binary(max_size=64))
    elif kind == "float":
        proto.float_val.extend(draw(st.lists(st.floats(width=32), max_size=40)))
    elif kind == "int64":
        proto.int64_val.extend(draw(st.lists(st.integers(-2**63, 2**63 - 1), max_size=40)))
    elif kind == "string":
        proto.string_val.extend(draw(st.lists(st.binary(max_size=8), max_size=8)))
    return proto


@st.composite
def predict_requests(draw):
    request = predict_pb2.PredictRequest()
    request.model_spec.name = draw(st.sampled_from(["cartpole", "vae", "vae", "missing", ""]))
    request.model_spec.signature_name = draw(st.sampled_from(["", "sample", "decode", "encode", "elbo", "x",
                                                              "__saved_model_init_op"]))
    if draw(st.booleans()):
        request.model_spec.version.value = draw(st.sampled_from([1, 0, -1, 2**62]))
    aliases = draw(st.lists(st.sampled_from(["observation", "seed", "z", "images", "bogus"]), max_size=3, unique=True))
    for alias in aliases:
        request.inputs[alias].CopyFrom(draw(tensors()))
    request.output_filter.extend(draw(st.lists(st.sampled_from(["action", "images", "mean", "nope"]), max_size=2)))
    return request


def check_alive(server):
    request = predict_pb2.PredictRequest()
    request.model_spec.name = "cartpole"
    request.inputs["observation"].float_val.extend([0.0] * 4)
    request.inputs["observation"].dtype = types_pb2.DT_FLOAT
    request.inputs["observation"].tensor_shape.dim.add().size = 1
    request.inputs["observation"].tensor_shape.dim.add().size = 4
    assert server.stub.Predict(request, timeout=30).outputs["action"]


@SETTINGS
@given(request=predict_requests())
def test_malformed_tensors_get_client_errors(server, request):
    try:
        server.stub.Predict(request, timeout=30)
        code = grpc.StatusCode.OK
    except grpc.RpcError as error:
        code = error.code()
        assert code in CLIENT_ERRORS, (code, error.details())
        assert error.details()


@st.composite
def multi_inference_requests(draw):
    request = inference_pb2.MultiInferenceRequest()
    for _ in range(draw(st.integers(0, 3))):
        task = request.tasks.add(method_name=draw(st.sampled_from(
            ["tensorflow/serving/classify", "tensorflow/serving/regress", "tensorflow/serving/predict", "", "x"])))
        task.model_spec.name = draw(st.sampled_from(["cartpole", "vae", "", "missing"]))
        task.model_spec.signature_name = draw(st.sampled_from(["", "sample", "__saved_model_init_op"]))
    if draw(st.booleans()):
        request.input.example_list.examples.add()
    return request


@SETTINGS
@given(request=multi_inference_requests())
def test_multi_inference_mistakes_get_client_errors(server, request):
    try:
        server.stub.MultiInference(request, timeout=30)
    except grpc.RpcError as error:
        assert error.code() in CLIENT_ERRORS, (error.code(), error.details())


METHODS = ["/tensorflow.serving.PredictionService/" + m for m in
           ("Predict", "Classify", "Regress", "MultiInference", "GetModelMetadata")] + \
          ["/tensorflow.serving.ModelService/" + m for m in ("GetModelStatus", "HandleReloadConfigRequest")]


@SETTINGS
@given(method=st.sampled_from(METHODS), data=st.one_of(
    st.binary(min_size=1, max_size=64),
    predict_requests().map(lambda r: r.SerializeToString()).flatmap(
        lambda b: st.integers(0, max(0, len(b) - 1)).map(lambda cut: b[:cut] + b"\xff\xff\xff"))))
def test_undecodable_request_bytes_get_invalid_argument(server, method, data):
    call = server.channel.unary_unary(method, request_serializer=None, response_deserializer=None)
    try:
        call(data, timeout=30)
    except grpc.RpcError as error:
        assert error.code() in CLIENT_ERRORS, (error.code(), error.details())


JSON = st.recursive(st.none() | st.booleans() | st.integers(-2**70, 2**70) | st.floats() | st.text(max_size=5),
                    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(
                        st.sampled_from(["instances", "inputs", "signature_name", "observation", "seed", "z",
                                         "b64", "x"]), inner, max_size=3),
                    max_leaves=30)


@st.composite
def bodies(draw):
    kind = draw(st.sampled_from(["json", "shaped", "bytes", "deep"]))
    if kind == "bytes":
        return draw(st.binary(max_size=40))
    if kind == "deep":  # nested past TensorFlow's 64 dimensions, and past Python's recursion limit
        depth = draw(st.sampled_from([63, 64, 65, 100, 899, 1200]))
        return json.dumps({draw(st.sampled_from(["instances", "inputs"])): "x"}).replace(
            '"x"', "[" * depth + "1" + "]" * depth).encode()
    if kind == "shaped":
        key = draw(st.sampled_from(["instances", "inputs"]))
        value = draw(st.lists(st.lists(st.one_of(st.floats(), st.integers(-5, 5), st.text(max_size=2)),
                                       min_size=0, max_size=5), max_size=3))
        body = {key: value}
        if draw(st.booleans()):
            body["signature_name"] = draw(st.sampled_from(["sample", "decode", "encode", ""]))
        return json.dumps(body).encode()
    return json.dumps(draw(JSON)).encode()


@SETTINGS
@given(path=st.sampled_from(["/v1/models/cartpole:predict", "/v1/models/vae:predict",
                             "/v1/models/vae/versions/1:predict", "/v1/models/cartpole:classify",
                             "/v1/models/cartpole:regress"]),
       body=bodies(), gzipped=st.sampled_from(["no", "no", "claimed", "real"]))
def test_malformed_json_gets_4xx(server, path, body, gzipped):
    headers = {"Content-Encoding": "gzip"} if gzipped != "no" else {}
    status, reply, headers = server.rest(path, gzip.compress(body) if gzipped == "real" else body, "POST",
                                         headers=headers)
    assert status == 200 or 400 <= status < 500, (status, reply)
    if status != 200:
        assert isinstance(reply, dict) and reply["error"]


def test_server_still_answers(server):
    check_alive(server)

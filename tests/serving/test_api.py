"""Every gRPC method and REST route of one running server, and the status-code table.

The server (conftest's shared_server) serves the smoke VAE export and the small CartPole
test policy, among others, from one model config file, with a version label, REST and
Prometheus monitoring on.
"""
import base64
import re

import grpc
import numpy as np
import pytest
import tensorflow as tf
from tensorflow.core.framework import tensor_pb2
from tensorflow_serving.apis import (classification_pb2, get_model_metadata_pb2, get_model_status_pb2,
                                     inference_pb2, model_management_pb2, predict_pb2, regression_pb2)

from serving.tensors import to_proto


@pytest.fixture
def server(shared_server):
    return shared_server


def predict_request(model="cartpole", signature="", version=None, label=None, output_filter=(), **inputs):
    request = predict_pb2.PredictRequest()
    request.model_spec.name = model
    request.model_spec.signature_name = signature
    if version is not None:
        request.model_spec.version.value = version
    if label is not None:
        request.model_spec.version_label = label
    for alias, value in inputs.items():
        request.inputs[alias].CopyFrom(value if isinstance(value, tensor_pb2.TensorProto) else to_proto(value))
    request.output_filter.extend(output_filter)
    return request


OBS = np.array([[0.0, 0.0, 0.1, 0.2], [0.0, 0.0, -0.1, -0.3]], np.float32)


def rpc_error(call, request, **kwargs) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as caught:
        call(request, timeout=30, **kwargs)
    return caught.value


# ------------------------------------------------------------------------------------------ Predict
def test_predict_answers_like_the_model_in_process(server, smoke_export):
    reply = server.stub.Predict(predict_request("vae", "sample", seed=np.array([3, 4], np.int64)), timeout=30)
    assert reply.model_spec.name == "vae" and reply.model_spec.version.value == 1
    assert reply.model_spec.signature_name == "sample"
    images = tf.make_ndarray(reply.outputs["images"])
    assert images.shape == (2, 28, 28, 1)
    # the real server's default reply format: typed repeated fields, not tensor_content
    assert reply.outputs["images"].float_val and not reply.outputs["images"].tensor_content
    expected = tf.saved_model.load(str(smoke_export)).signatures["sample"](seed=tf.constant([3, 4], tf.int64))
    np.testing.assert_allclose(images, expected["images"].numpy(), atol=1e-6)


def test_default_signature_and_output_filter(server):
    reply = server.stub.Predict(predict_request(observation=OBS), timeout=30)
    assert reply.model_spec.signature_name == "serving_default"
    assert set(reply.outputs) == {"action", "q_values"}
    np.testing.assert_array_equal(tf.make_ndarray(reply.outputs["action"]), [1, 0])
    np.testing.assert_allclose(tf.make_ndarray(reply.outputs["q_values"]), [[-0.3, 0.3], [0.4, -0.4]], atol=1e-6)
    filtered = server.stub.Predict(predict_request(observation=OBS, output_filter=["action"]), timeout=30)
    assert set(filtered.outputs) == {"action"}


def test_inputs_in_typed_fields_are_accepted(server):
    proto = to_proto(OBS)
    assert proto.float_val and not proto.tensor_content
    reply = server.stub.Predict(predict_request(observation=proto), timeout=30)
    np.testing.assert_array_equal(tf.make_ndarray(reply.outputs["action"]), [1, 0])


def test_version_and_label(server):
    for request in (predict_request(version=1, observation=OBS), predict_request(label="stable", observation=OBS)):
        assert server.stub.Predict(request, timeout=30).model_spec.version.value == 1


def proto_with(**changes):
    proto = to_proto(OBS, as_content=True)
    for key, value in changes.items():
        setattr(proto, key, value)
    return proto


STATUS_TABLE = [
    ("no model spec", predict_pb2.PredictRequest(), grpc.StatusCode.INVALID_ARGUMENT, "Missing ModelSpec"),
    ("empty name", predict_request("", observation=OBS), grpc.StatusCode.INVALID_ARGUMENT,
     "ModelSpec has no name specified."),
    ("unknown model", predict_request("nope", observation=OBS), grpc.StatusCode.NOT_FOUND,
     "Servable not found for request: Latest(nope)"),
    ("unknown version", predict_request(version=7, observation=OBS), grpc.StatusCode.NOT_FOUND,
     "Servable not found for request: Specific(cartpole, 7)"),
    ("unknown label", predict_request(label="canary", observation=OBS), grpc.StatusCode.INVALID_ARGUMENT,
     "Unrecognized servable version label: canary"),
    ("unknown signature", predict_request(signature="nope", observation=OBS), grpc.StatusCode.FAILED_PRECONDITION,
     'Serving signature key "nope" not found.'),
    ("missing input", predict_request(), grpc.StatusCode.INVALID_ARGUMENT,
     "input size does not match signature: 0!=1 len({}) != len({observation}). Sent extra: {}. "
     "Missing but required: {observation}."),
    ("extra input", predict_request(observation=OBS, other=OBS), grpc.StatusCode.INVALID_ARGUMENT,
     "input size does not match signature: 2!=1 len({observation,other}) != len({observation}). "
     "Sent extra: {other}. Missing but required: {}."),
    ("wrong alias", predict_request(obs=OBS), grpc.StatusCode.INVALID_ARGUMENT,
     "Signature input alias: observation(feed name: serving_default_observation:0) not found in request and no "
     "default value provided. Inputs expected to be in the request {obs}, or default input alias set: "),
    ("wrong dtype", predict_request(observation=OBS.astype(np.float64)), grpc.StatusCode.INVALID_ARGUMENT,
     "Expects arg[0] to be float but double is provided"),
    ("wrong shape", predict_request(observation=np.zeros((2, 5), np.float32)), grpc.StatusCode.INVALID_ARGUMENT,
     "Matrix size-incompatible"),
    ("short tensor_content", predict_request(observation=proto_with(tensor_content=b"\0" * 7)),
     grpc.StatusCode.INVALID_ARGUMENT, "tensor parsing error: observation"),
    ("unknown output", predict_request(observation=OBS, output_filter=["nope"]), grpc.StatusCode.INVALID_ARGUMENT,
     "output tensor alias not found in signature: nope Outputs expected to be in the set {action,q_values}."),
    ("repeated output", predict_request(observation=OBS, output_filter=["action", "action"]),
     grpc.StatusCode.INVALID_ARGUMENT, "duplicate output tensor alias: action"),
]


@pytest.mark.parametrize("request_, code, message", [row[1:] for row in STATUS_TABLE],
                         ids=[row[0] for row in STATUS_TABLE])
def test_status_codes(server, request_, code, message):
    error = rpc_error(server.stub.Predict, request_)
    assert error.code() == code
    assert error.details() == message if not message.endswith("incompatible") else message in error.details()


def test_deadline_is_honoured_and_stops_the_run(server):
    request = predict_request("spin", steps=np.array([10**9], np.int64))  # hours of work
    with pytest.raises(grpc.RpcError) as caught:
        server.stub.Predict(request, timeout=0.5)
    assert caught.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    # spin runs one request at a time: this one is served only once the timed-out run stopped
    # (the deadline became the session run's RunOptions.timeout_in_ms)
    request = predict_request("spin", steps=np.array([10], np.int64))
    assert server.stub.Predict(request, timeout=60).outputs


def test_messages_beyond_4_mib_pass_both_ways(server):
    images = np.random.default_rng(0).random((1500, 28, 28, 1), dtype=np.float32)  # 4.7 MB request
    reply = server.stub.Predict(predict_request("vae", "reconstruct", images=images), timeout=60)
    assert tf.make_ndarray(reply.outputs["images"]).shape == images.shape  # and a 4.7 MB reply


# ------------------------------------------------------------------------------ metadata and status
def test_metadata_equals_what_the_session_loader_reads(server, smoke_export):
    request = get_model_metadata_pb2.GetModelMetadataRequest(metadata_field=["signature_def"])
    request.model_spec.name = "vae"
    reply = server.stub.GetModelMetadata(request, timeout=30)
    assert reply.model_spec.name == "vae" and reply.model_spec.version.value == 1
    served = get_model_metadata_pb2.SignatureDefMap()
    reply.metadata["signature_def"].Unpack(served)
    with tf.Graph().as_default(), tf.compat.v1.Session() as session:
        meta = tf.compat.v1.saved_model.loader.load(session, ["serve"], str(smoke_export))
    assert dict(served.signature_def) == dict(meta.signature_def)
    assert "__saved_model_init_op" in served.signature_def


@pytest.mark.parametrize("fields, message", [
    ([], "GetModelMetadataRequest must specify at least one metadata_field"),
    (["signature_def", "graph"], "Metadata field graph is not supported"),
])
def test_metadata_errors(server, fields, message):
    request = get_model_metadata_pb2.GetModelMetadataRequest(metadata_field=fields)
    request.model_spec.name = "vae"
    error = rpc_error(server.stub.GetModelMetadata, request)
    assert (error.code(), error.details()) == (grpc.StatusCode.INVALID_ARGUMENT, message)


def test_model_status(server):
    request = get_model_status_pb2.GetModelStatusRequest()
    request.model_spec.name = "cartpole"
    reply = server.models.GetModelStatus(request, timeout=30)
    assert [(s.version, s.state, s.status.error_code) for s in reply.model_version_status] == [(1, 30, 0)]
    request.model_spec.version.value = 3
    error = rpc_error(server.models.GetModelStatus, request)
    assert (error.code(), error.details()) == (grpc.StatusCode.NOT_FOUND, "Could not find version 3 of model cartpole")
    request = get_model_status_pb2.GetModelStatusRequest()
    request.model_spec.name = "nope"
    error = rpc_error(server.models.GetModelStatus, request)
    assert (error.code(), error.details()) == (grpc.StatusCode.NOT_FOUND, "Could not find any versions of model nope")


def test_reload_rejects_anything_but_a_model_config_list(server):
    request = model_management_pb2.ReloadConfigRequest()
    request.config.custom_model_config.Pack(get_model_status_pb2.GetModelStatusRequest())
    error = rpc_error(server.models.HandleReloadConfigRequest, request)
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error.details().startswith("ServerModelConfig type not supported by HandleReloadConfigRequest.")


# ---------------------------------------------------------------- Classify / Regress / MultiInference
def test_classify_and_regress_refuse_predict_signatures(server):
    for call, message_class in ((server.stub.Classify, classification_pb2.ClassificationRequest),
                                (server.stub.Regress, regression_pb2.RegressionRequest)):
        request = message_class()
        request.model_spec.name = "cartpole"
        request.input.example_list.examples.add()
        error = rpc_error(call, request)
        assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
        # the policy has two outputs: regression wants exactly one; classification wants alias "inputs"
        assert error.details().startswith("No classification inputs found in SignatureDef: "
                                          if call == server.stub.Classify else "Expected one output Tensor.")
        request.model_spec.signature_name = "nope"
        error = rpc_error(call, request)
        assert error.details() == "No signature was found with the name: nope"


def test_multi_inference_errors(server):
    request = inference_pb2.MultiInferenceRequest()
    for name in ("cartpole", "vae"):
        task = request.tasks.add(method_name="tensorflow/serving/classify")
        task.model_spec.name = name
    error = rpc_error(server.stub.MultiInference, request)
    assert error.details() == "All ModelSpecs in a MultiInferenceRequest must access the same model name."
    request.tasks[1].model_spec.name = "cartpole"
    error = rpc_error(server.stub.MultiInference, request)
    assert error.details() == "Duplicate evaluation of signature: serving_default"
    del request.tasks[1:]
    request.tasks[0].method_name = "tensorflow/serving/predict"
    error = rpc_error(server.stub.MultiInference, request)
    assert (error.code(), error.details()) == (grpc.StatusCode.UNIMPLEMENTED,
                                               "Unsupported signature method_name: tensorflow/serving/predict")


# ---------------------------------------------------------------------------------------- REST
def test_rest_status_and_metadata(server):
    status, body, headers = server.rest("/v1/models/cartpole")
    assert status == 200 and headers["Content-Type"] == "application/json"
    assert body == {"model_version_status": [{"version": "1", "state": "AVAILABLE",
                                              "status": {"error_code": "OK", "error_message": ""}}]}
    for path in ("/v1/models/cartpole/versions/1", "/v1/models/cartpole/labels/stable"):
        assert server.rest(path)[0] == 200
    status, body, _ = server.rest("/v1/models/cartpole/metadata")
    assert status == 200
    assert body["model_spec"] == {"name": "cartpole", "signature_name": "", "version": "1"}
    observation = body["metadata"]["signature_def"]["signature_def"]["serving_default"]["inputs"]["observation"]
    assert observation == {"dtype": "DT_FLOAT", "name": "serving_default_observation:0", "tensor_shape": {
        "dim": [{"size": "-1", "name": ""}, {"size": "4", "name": ""}], "unknown_rank": False}}


def test_rest_predict_row_and_columnar(server):
    status, body, _ = server.rest("/v1/models/cartpole:predict", {"instances": OBS.tolist()})
    assert status == 200
    assert [row["action"] for row in body["predictions"]] == [1, 0]
    np.testing.assert_allclose([row["q_values"] for row in body["predictions"]], [[-0.3, 0.3], [0.4, -0.4]], atol=1e-6)
    status, body, _ = server.rest("/v1/models/cartpole/versions/1:predict", {"inputs": {"observation": OBS.tolist()}})
    assert status == 200 and body["outputs"]["action"] == [1, 0]
    status, body, _ = server.rest("/v1/models/vae:predict", {"signature_name": "sample", "instances": [1, 2]})
    assert status == 200 and np.asarray(body["predictions"]).shape == (2, 28, 28, 1)
    status, body, _ = server.rest("/v1/models/vae:predict",
                                  {"signature_name": "encode", "inputs": np.zeros((1, 28, 28, 1)).tolist()})
    assert status == 200 and set(body["outputs"]) == {"mean", "stddev"}


REST_ERRORS = [
    ("GET", "/v1/models", None, 400, "Missing model name in request."),
    ("GET", "/v1/models/nope", None, 404, "Could not find any versions of model nope"),
    ("POST", "/v1/models/nope:predict", {"instances": [1]}, 404, "Servable not found for request: Latest(nope)"),
    ("GET", "/v1/foo", None, 400, "Malformed request: GET /v1/foo"),
    ("POST", "/v1/models/cartpole", {"instances": [1]}, 400, "Malformed request: POST /v1/models/cartpole"),
    ("POST", "/v1/models/cartpole:predict", {"signature_name": "x", "instances": [1]}, 400,
     'Serving signature name: "x" not found in signature def'),
    ("POST", "/v1/models/cartpole:predict", {}, 400, "Missing 'inputs' or 'instances' key"),
    ("POST", "/v1/models/cartpole:predict", b"", 400, "JSON Parse error: The document is empty"),
    ("POST", "/v1/models/cartpole:predict", {"instances": []}, 400, "No values in 'instances' array"),
    ("POST", "/v1/models/cartpole:predict", {"instances": [[1, 2, 3, 4]], "inputs": [[1, 2, 3, 4]]}, 400,
     "expecting only one of 'inputs' or 'instances' keys to exist"),
    ("POST", "/v1/models/cartpole:predict", {"instances": [[1, 2, 3, 4], [1, 2]]}, 400,
     "Failed to process element: 1 of 'instances' list. Error: INVALID_ARGUMENT: Expecting tensor size: 4 but got: 2"),
    ("POST", "/v1/models/vae:predict", {"instances": [1.5]}, 400,
     "Failed to process element: 0 of 'instances' list. Error: INVALID_ARGUMENT: JSON Value: 1.5 Type: Number is "
     "not of expected type: int64"),
    ("POST", "/v1/models/cartpole:predict", {"inputs": {"obs": [[1, 2, 3, 4]]}}, 400,
     "Missing named input: observation in 'inputs' object."),
    ("POST", "/v1/models/cartpole/versions/99999999999999999999:predict", {"instances": [1]}, 400,
     "Failed to convert version: 99999999999999999999 to numeric."),
    ("POST", "/v1/models/cartpole/labels/canary:predict", {"instances": [1]}, 400,
     "Unrecognized servable version label: canary"),
]


@pytest.mark.parametrize("method, path, body, status, message", REST_ERRORS,
                         ids=[f"{m} {p} {s}" for m, p, _, s, _ in REST_ERRORS])
def test_rest_errors(server, method, path, body, status, message):
    got, reply, headers = server.rest(path, body, method)
    assert got == status
    assert headers["Content-Type"] == "application/json"
    assert message in reply["error"]


def test_rest_b64_strings_are_decoded(server):
    # no export here takes strings, so the b64 value reaches the dtype check of a float input
    status, reply, _ = server.rest("/v1/models/cartpole:predict",
                                   {"instances": [{"b64": base64.b64encode(b"abc").decode()}]})
    assert status == 400 and "is not of expected type: float" in reply["error"]


def test_prometheus_page(server):
    server.stub.Predict(predict_request(observation=OBS), timeout=30)
    rpc_error(server.stub.Predict, predict_request("unserved", observation=OBS))
    server.rest("/v1/models/cartpole:predict", {"instances": OBS.tolist()})
    status, page, headers = server.rest("/monitoring/prometheus/metrics")
    assert status == 200 and headers["Content-Type"].startswith("text/plain")
    assert "# TYPE :tensorflow:serving:request_count counter" in page
    # a name the server does not serve is counted without its name (clients cannot grow the label set)
    assert re.search(r'^:tensorflow:serving:request_count\{model_name="",status="NOT_FOUND"\} \d+$', page, re.M)
    assert 'unserved' not in page
    assert ':tensorflow:serving:request_latency_bucket{model_name="cartpole",API="Predict",entrypoint="GRPC",le="10"}' \
        in page
    assert 'API="predict",entrypoint="REST"' in page
    assert ':tensorflow:serving:request_latency_count{model_name="cartpole",API="Predict",entrypoint="GRPC"}' in page
    # the VAE export's warm-up records were replayed when it loaded
    assert re.search(r':tensorflow:serving:model_warmup_latency_count\{model_path="[^"]*/vae/1",status="OK"\} 1', page)
    status, text, _ = server.rest("/monitoring/prometheus/other")
    assert status == 400 and text == "Unexpected path: /monitoring/prometheus/other. Should be /monitoring/prometheus/metrics"


def test_cors(server):
    status, _, headers = server.rest("/v1/models/cartpole")
    assert headers["Access-Control-Allow-Origin"] == "*"
    assert headers["Access-Control-Allow-Methods"] == "POST, GET"
    status, reply, _ = server.rest("/v1/models/cartpole:predict", method="OPTIONS")
    assert status == 400 and reply["error"] == "Origin header is missing in CORS preflight"

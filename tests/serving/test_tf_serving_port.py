"""TensorFlow Serving's own tests (tensorflow_model_server_test.py, the REST handler, warm-up
and server-core tests), ported to this server (issue 17).

The testdata model they use, saved_model_half_plus_two (y = 0.5 x + 2, with Predict,
Classify and Regress signatures), is regenerated with TensorFlow (conftest.py), in the
zero-padded version directory upstream keeps it in (`00000123/`). Most checks run
in-process (the model manager, the core, the flag parser); the end-to-end ones use the
shared server.
"""
import logging
import shutil

import grpc
import numpy as np
import pytest
import tensorflow as tf
from google.protobuf import text_format
from tensorflow.core.example import example_pb2
from tensorflow_serving.apis import prediction_log_pb2

from serving.core import ServerCore
from serving.errors import ServingError
from serving.manager import ModelManager, model_config_list
from serving.metrics import Metrics
from serving.protos import ConfigError, ModelServerConfig, read_text_proto
from serving.tensors import parse_json, to_proto


def predict_y(servable, x):
    signature = servable.signature("serving_default")
    return servable.run(signature, {"x": np.asarray(x, np.float32)}, ["y"])["y"]


# ------------------------------------------------------------------ version directories
def test_zero_padded_version_directory_is_served_from_where_it_was_found(half_plus_two):
    manager = ModelManager(model_config_list("half_plus_two", str(half_plus_two)))
    manager.start(0)
    servable = manager.acquire("half_plus_two")
    try:
        assert servable.version == 123 and servable.path.name == "00000123"
        np.testing.assert_allclose(predict_y(servable, [1.0, 2.0, 5.0]), [2.5, 3.0, 4.5])
    finally:
        servable.release()
        manager.stop()


def test_duplicate_version_directories_load_the_last_by_name(half_plus_two, tmp_path, caplog):
    shutil.copytree(half_plus_two / "00000123", tmp_path / "00000123")
    shutil.copytree(half_plus_two / "00000123", tmp_path / "123")
    manager = ModelManager(model_config_list("half_plus_two", str(tmp_path)))
    with caplog.at_level(logging.WARNING, "serving"):
        manager.start(0)
    assert manager.acquire("half_plus_two").path.name == "123"
    assert ("Duplicate version directories detected. Version 123 will be loaded from 123, 00000123 will be ignored."
            in caplog.text)
    manager.stop()


# ------------------------------------------------------------------ labels (server_core.cc)
def test_labels_in_the_initial_config_need_the_allow_flag(half_plus_two):
    configs = model_config_list("half_plus_two", str(half_plus_two))
    configs.config[0].version_labels["stable"] = 123
    with pytest.raises(ServingError) as caught:
        ModelManager(configs).start(0)
    assert caught.value.code == grpc.StatusCode.FAILED_PRECONDITION
    assert caught.value.message == ("Request to assign label to version 123 of model half_plus_two, which is not "
                                    "currently available for inference")
    manager = ModelManager(configs, allow_labels_for_unavailable=True)
    manager.start(0)
    assert manager.acquire("half_plus_two", label="stable").version == 123
    manager.stop()


# ------------------------------------------------------------------ texts compared as protos
def test_scalar_outputs_carry_an_empty_tensor_shape():
    assert text_format.MessageToString(to_proto(np.float32(3.0))) == "dtype: DT_FLOAT\ntensor_shape {\n}\nfloat_val: 3.0\n"


def test_bad_config_file_error_text(tmp_path):
    config = tmp_path / "bad.config"
    config.write_text("model_config_list { config { name: 3 } bogus: 1 }")
    with pytest.raises(ConfigError) as caught:
        read_text_proto(str(config), ModelServerConfig)
    assert str(caught.value).startswith("Error parsing text-format tensorflow.serving.ModelServerConfig: ")


@pytest.mark.parametrize("body, text", [
    (b"", "JSON Parse error: The document is empty"),
    (b"instances = [1, 2]", "JSON Parse error: Invalid value. at offset: 0"),  # http_rest_api_handler_test
    (b'{"instances": [1 2]}', "JSON Parse error: Missing a comma or ']' after an array element. at offset: 17"),
])
def test_json_parse_error_texts(body, text):
    with pytest.raises(ServingError) as caught:
        parse_json(body)
    assert caught.value.message == text


# ------------------------------------------------------------------ warm-up (saved_model_warmup_test)
def example_input(request_input, *values):
    for value in values:
        example = example_pb2.Example()
        example.features.feature["x"].float_list.value.append(value)
        request_input.example_list.examples.append(example)


def test_mixed_warmup_data_is_replayed_with_the_real_log_lines(half_plus_two, tmp_path, caplog):
    version = tmp_path / "00000123"
    shutil.copytree(half_plus_two / "00000123", version)
    records = []
    log = prediction_log_pb2.PredictionLog()
    log.predict_log.request.inputs["x"].CopyFrom(to_proto(np.array([1.0, 2.0], np.float32)))
    records.append(log)
    log = prediction_log_pb2.PredictionLog()
    log.classify_log.request.model_spec.signature_name = "classify_x_to_y"
    example_input(log.classify_log.request.input, 1.0)
    records.append(log)
    log = prediction_log_pb2.PredictionLog()
    log.regress_log.request.model_spec.signature_name = "regress_x_to_y"
    example_input(log.regress_log.request.input, 1.0, 2.0)
    records.append(log)
    log = prediction_log_pb2.PredictionLog()
    for method, signature in (("classify", "classify_x_to_y"), ("regress", "regress_x_to_y")):
        task = log.multi_inference_log.request.tasks.add(method_name=f"tensorflow/serving/{method}")
        task.model_spec.name, task.model_spec.signature_name = "half_plus_two", signature
    example_input(log.multi_inference_log.request.input, 3.0)
    records.append(log)
    (version / "assets.extra").mkdir()
    warmup_file = version / "assets.extra" / "tf_serving_warmup_requests"
    with tf.io.TFRecordWriter(str(warmup_file)) as writer:
        for record in records:
            writer.write(record.SerializeToString())

    manager = ModelManager(model_config_list("half_plus_two", str(tmp_path)), max_load_retries=0)
    core = ServerCore(manager, Metrics(), warmup_iterations=2)
    manager.warmup = core.warmup
    with caplog.at_level(logging.INFO, "serving"):
        manager.start(0)
    assert f"Starting to read warmup data for model at {warmup_file} with model-warmup-options " in caplog.text
    assert (f"Finished reading warmup data for model at {warmup_file}. Number of warmup records read: 4. "
            "Elapsed time (microseconds): ") in caplog.text
    assert 'model_path="' + str(version) + '",status="OK"} 1' in core.metrics.page()
    manager.stop()


# ------------------------------------------------------------------ main.cc's 48 flags
def flag_value(name: str, default) -> str:
    return {"grpc_channel_arguments": "grpc.so_reuseaddr=1", "saved_model_tags": "serve", "model_name": "m",
            "per_process_gpu_memory_fraction": "0.5", "mixed_precision": "bfloat16",
            "model_base_path": "/m"}.get(name, "true" if isinstance(default, bool) else
                                                "7" if isinstance(default, int) else "/no/such/file")


# Upstream's flag list (model_servers/main.cc), and what becomes of each here.
REFUSED = {"use_alts_credentials", "platform_config_file", "prefer_tflite_model", "thread_pool_factory_config_file",
           "mixed_precision", "enable_per_model_batching_parameters"}
MAIN_CC_FLAGS = [
    "port", "grpc_socket_path", "rest_api_port", "rest_api_num_threads", "rest_api_timeout_in_ms",
    "rest_api_enable_cors_support", "enable_batching", "allow_version_labels_for_unavailable_models",
    "batching_parameters_file", "enable_per_model_batching_parameters", "model_config_file",
    "model_config_file_poll_wait_seconds", "model_name", "model_base_path", "num_load_threads", "num_unload_threads",
    "max_num_load_retries", "load_retry_interval_micros", "file_system_poll_wait_seconds", "flush_filesystem_caches",
    "tensorflow_session_parallelism", "tensorflow_session_config_file", "tensorflow_intra_op_parallelism",
    "tensorflow_inter_op_parallelism", "use_alts_credentials", "ssl_config_file", "platform_config_file",
    "per_process_gpu_memory_fraction", "saved_model_tags", "grpc_channel_arguments", "grpc_max_threads",
    "enable_model_warmup", "num_request_iterations_for_warmup", "version", "monitoring_config_file",
    "remove_unused_fields_from_bundle_metagraph", "prefer_tflite_model", "num_tflite_pools",
    "num_tflite_interpreters_per_pool", "enable_signature_method_name_check", "xla_cpu_compilation_enabled",
    "xla_gpu_compilation_enabled", "enable_profiler", "thread_pool_factory_config_file", "mixed_precision",
    "skip_initialize_tpu", "enable_grpc_healthcheck_service", "enable_serialization_as_tensor_content"]


def test_every_flag_of_the_real_server_is_known():
    from serving.server import flag_parser

    assert len(MAIN_CC_FLAGS) == 48
    defaults = vars(flag_parser().parse_args([]))
    assert set(MAIN_CC_FLAGS) <= set(defaults)  # none is an "unrecognized argument"


@pytest.mark.parametrize("name", sorted(set(MAIN_CC_FLAGS) - {"version", "model_config_file", "model_base_path",
                                                                 "batching_parameters_file", "monitoring_config_file",
                                                                 "ssl_config_file", "tensorflow_session_config_file"}))
def test_each_flag_is_applied_or_refused_by_name(name, capsys):
    from serving.server import flag_parser, parse_flags

    default = vars(flag_parser().parse_args([]))[name]
    argv = [f"--{name}={flag_value(name, default)}", "--model_base_path=/m", "--port=8500", "--rest_api_port=8501"]
    if name == "enable_batching":
        argv.append("--enable_batching")
    if name in REFUSED:
        with pytest.raises(SystemExit) as caught:
            parse_flags(argv)
        assert caught.value.code == 2
        assert f"--{name} is not supported here: " in capsys.readouterr().err
    else:
        parse_flags(argv)  # accepted (docs/serving.md says which are applied and which ignored, and why)


def test_signature_method_name_check(half_plus_two):
    """--enable_signature_method_name_check: Predict refuses a signature whose method_name is not
    predict, classify or regress, with predict_util.cc's INTERNAL error (__saved_model_init_op's is
    empty); off (the default), the init op gets a client error."""
    import asyncio

    from tensorflow_serving.apis import model_pb2

    manager = ModelManager(model_config_list("half_plus_two", str(half_plus_two)))
    manager.start(0)
    spec = model_pb2.ModelSpec(name="half_plus_two", signature_name="__saved_model_init_op")
    for check, code in ((True, grpc.StatusCode.INTERNAL), (False, grpc.StatusCode.INVALID_ARGUMENT)):
        with pytest.raises(ServingError) as caught:
            asyncio.run(ServerCore(manager, Metrics(), method_name_check=check).predict(spec, {}))
        assert caught.value.code == code
    assert caught.value.message == ("Tensor NoOp, specified in either feed_devices or fetch_devices was not found in "
                                    "the Graph")
    with pytest.raises(ServingError) as caught:
        asyncio.run(ServerCore(manager, Metrics(), method_name_check=True).predict(spec, {}))
    assert caught.value.message == ("Expected prediction signature method_name to be one of "
                                    "{tensorflow/serving/predict, tensorflow/serving/classify, "
                                    "tensorflow/serving/regress}. Was: ")
    manager.stop()


def test_session_parallelism_flags_are_exclusive_as_in_server_cc(capsys):
    from serving.server import parse_flags

    with pytest.raises(SystemExit):
        parse_flags(["--model_base_path=/m", "--tensorflow_session_parallelism=2",
                     "--tensorflow_intra_op_parallelism=1", "--tensorflow_inter_op_parallelism=1"])
    assert "You cannot configure all." in capsys.readouterr().err
    args = parse_flags(["--model_base_path=/m", "--tensorflow_session_parallelism=3"])
    assert (args.session_config.intra_op_parallelism_threads, args.session_config.inter_op_parallelism_threads) == (3, 3)


def test_version(capsys):
    from serving.server import serve

    assert serve(["--version"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("TensorFlow ModelServer: ") and out[1] == f"TensorFlow Library: {tf.__version__}"


# ------------------------------------------------------------------ one server, real flags
@pytest.fixture
def server(shared_server):
    """The shared server runs half_plus_two with the flags TF Serving's test harness passes
    (--grpc_channel_arguments), the health service and thread counts."""
    return shared_server


def test_served_with_the_test_harness_flags(server):
    from grpc_health.v1 import health_pb2, health_pb2_grpc
    from tensorflow_serving.apis import predict_pb2

    health = health_pb2_grpc.HealthStub(server.channel)
    for service in ("ModelService", "PredictionService"):
        reply = health.Check(health_pb2.HealthCheckRequest(service=service), timeout=30)
        assert reply.status == health_pb2.HealthCheckResponse.SERVING
    request = predict_pb2.PredictRequest()
    request.model_spec.name = "half_plus_two"
    request.inputs["x"].CopyFrom(to_proto(np.array([1.0, 2.0, 5.0], np.float32)))
    reply = server.stub.Predict(request, timeout=30)
    assert reply.model_spec.version.value == 123
    np.testing.assert_allclose(tf.make_ndarray(reply.outputs["y"]), [2.5, 3.0, 4.5])
    status, body, _ = server.rest("/v1/models/half_plus_two:predict", b"instances = [1, 2]")
    assert status == 400 and body["error"] == "JSON Parse error: Invalid value. at offset: 0"


def test_profiler_answers_tensorboards_capture(server, tmp_path):
    """What TensorBoard's "Capture profile" calls (tf.profiler.experimental.client.trace)."""
    import threading

    from tensorflow.python.profiler.internal import _pywrap_profiler_plugin
    from tensorflow_serving.apis import predict_pb2

    request = predict_pb2.PredictRequest()
    request.model_spec.name = "half_plus_two"
    request.inputs["x"].CopyFrom(to_proto(np.array([1.0], np.float32)))
    stop = threading.Event()

    def traffic():
        while not stop.is_set():
            server.stub.Predict(request, timeout=30)
    thread = threading.Thread(target=traffic)
    thread.start()
    try:
        _pywrap_profiler_plugin.trace(server.target, str(tmp_path), "", True, 1000, 3, {})
    finally:
        stop.set()
        thread.join()
    traces = list((tmp_path / "plugins" / "profile").glob("*/*.xplane.pb"))
    assert len(traces) == 1 and traces[0].stat().st_size > 0


# ------------------------------------------------------------------ PolicySaver's signatures
def test_policy_exports_have_policysavers_four_signatures(dqn_export, dqn_run):
    """A genuine PolicySaver export has action, get_initial_state, get_metadata, get_train_step;
    each runs through the session loader (the server's path)."""
    from serving.servable import Servable

    servable = Servable("cartpole_dqn", 1, dqn_export)
    assert {"action", "get_initial_state", "get_metadata", "get_train_step"} <= set(servable.signatures)
    metadata = servable.run(servable.signature("get_metadata"), {}, ["train_step"])
    train_step = servable.run(servable.signature("get_train_step"), {}, ["int64"])
    assert metadata["train_step"] == train_step["int64"] > 0
    servable.unload()

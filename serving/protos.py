"""The config protos tensorflow-serving-api leaves out, and text-format parsing of config files.

`BatchingParameters` (servables/tensorflow/session_bundle_config.proto), `MonitoringConfig`
(config/monitoring_config.proto) and `SSLConfig` (config/ssl_config.proto) are declared here
with the upstream names and field numbers, so a file written for tensorflow_model_server
parses the same.
"""
from __future__ import annotations

from pathlib import Path

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory, text_format, wrappers_pb2
from tensorflow_serving.config import model_server_config_pb2

_F = descriptor_pb2.FieldDescriptorProto


def _build():
    file = descriptor_pb2.FileDescriptorProto(
        name="serving_bundle/server_configs.proto", package="tensorflow.serving", syntax="proto3",
        dependency=["google/protobuf/wrappers.proto"])
    batching = file.message_type.add(name="BatchingParameters")
    for name, number, wrapper in [("max_batch_size", 1, "Int64Value"), ("batch_timeout_micros", 2, "Int64Value"),
                                  ("max_enqueued_batches", 3, "Int64Value"), ("num_batch_threads", 4, "Int64Value"),
                                  ("thread_pool_name", 5, "StringValue"),
                                  ("enable_large_batch_splitting", 8, "BoolValue"),
                                  ("max_execution_batch_size", 9, "Int64Value")]:
        batching.field.add(name=name, number=number, type=_F.TYPE_MESSAGE, label=_F.LABEL_OPTIONAL,
                           type_name=f".google.protobuf.{wrapper}")
    batching.field.add(name="allowed_batch_sizes", number=6, type=_F.TYPE_INT64, label=_F.LABEL_REPEATED)
    batching.field.add(name="pad_variable_length_inputs", number=7, type=_F.TYPE_BOOL, label=_F.LABEL_OPTIONAL)
    prometheus = file.message_type.add(name="PrometheusConfig")
    prometheus.field.add(name="enable", number=1, type=_F.TYPE_BOOL, label=_F.LABEL_OPTIONAL)
    prometheus.field.add(name="path", number=2, type=_F.TYPE_STRING, label=_F.LABEL_OPTIONAL)
    monitoring = file.message_type.add(name="MonitoringConfig")
    monitoring.field.add(name="prometheus_config", number=1, type=_F.TYPE_MESSAGE, label=_F.LABEL_OPTIONAL,
                         type_name=".tensorflow.serving.PrometheusConfig")
    ssl = file.message_type.add(name="SSLConfig")
    for name, number in [("server_key", 1), ("server_cert", 2), ("custom_ca", 3)]:
        ssl.field.add(name=name, number=number, type=_F.TYPE_STRING, label=_F.LABEL_OPTIONAL)
    ssl.field.add(name="client_verify", number=4, type=_F.TYPE_BOOL, label=_F.LABEL_OPTIONAL)
    return message_classes(file, [wrappers_pb2.DESCRIPTOR], ["BatchingParameters", "MonitoringConfig", "SSLConfig"])


def message_classes(file: descriptor_pb2.FileDescriptorProto, dependencies: list, names: list[str]) -> list:
    """Python classes of the messages `names` declared in `file` (which imports `dependencies`,
    FileDescriptors), in a pool of their own."""
    pool = descriptor_pool.DescriptorPool()
    for dependency in dependencies:
        pool.AddSerializedFile(dependency.serialized_pb)
    pool.Add(file)
    return [message_factory.GetMessageClass(pool.FindMessageTypeByName(f"{file.package}.{name}")) for name in names]


BatchingParameters, MonitoringConfig, SSLConfig = _build()
ModelServerConfig = model_server_config_pb2.ModelServerConfig


class ConfigError(ValueError):
    """A config file that cannot be read or parsed; the message names the file."""


def read_text_proto(path: str, message_class):
    """Parse a text-format proto file into `message_class`, or raise ConfigError naming the file."""
    try:
        text = Path(path).read_text()
    except OSError as error:
        raise ConfigError(f"cannot read {path}: {error.strerror}") from None
    try:
        return text_format.Parse(text, message_class())
    except text_format.ParseError as error:  # the real server's two lines: protobuf's, then its own
        raise ConfigError(f"Error parsing text-format {message_class.DESCRIPTOR.full_name}: {error}; "
                          f"Invalid protobuf file: '{path}'") from None

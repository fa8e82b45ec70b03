"""`tensorflow.serving.PredictionService` and `ModelService` over grpc.aio, with the official protos.

Handlers take and return raw bytes: a request is parsed here (on a codec thread when it is
large, and undecodable bytes get INVALID_ARGUMENT), and the reply is built and serialized
the same way, so no large payload is converted on the event loop.
"""
from __future__ import annotations

import functools
import logging
import time

import grpc
from google.protobuf import any_pb2
from google.protobuf.message import DecodeError
from tensorflow_serving.apis import (classification_pb2, get_model_metadata_pb2, get_model_status_pb2,
                                     inference_pb2, model_management_pb2, predict_pb2, regression_pb2)

from serving.core import CLASSIFY, REGRESS, ServerCore, spec_choice
from serving.errors import ServingError, describe, invalid
from serving.tensors import to_proto

log = logging.getLogger("serving")


def _parse(message_class, data: bytes):
    try:
        return message_class.FromString(data)
    except DecodeError:
        raise invalid(f"Could not parse the request bytes as a {message_class.DESCRIPTOR.full_name}") from None


def _answer(request_class, api: str | None = None):
    """Parse the request bytes, run the handler, serialize its reply; any failure becomes the
    status the real server gives (never a Python traceback).

    With `api`, the request is counted in request_count and request_latency under that name.
    """
    def decorate(handler):
        @functools.wraps(handler)
        async def wrapper(self, data: bytes, context):
            try:
                request = await self.core.offload(len(data), _parse, request_class, data)
                if api is None:
                    response = await handler(self, request, context)
                else:
                    spec = (request.tasks[0].model_spec if api == "MultiInference" and request.tasks
                            else getattr(request, "model_spec", None))
                    with self.core.counted(spec.name if spec is not None else "", api, "GRPC"):
                        response = await handler(self, request, context)
                return await self.core.offload(response.ByteSize(), response.SerializeToString)
            except Exception as error:
                code, message = describe(error)
                await context.abort(code, message)
        return wrapper
    return decorate


def _deadline(context) -> float | None:
    remaining = context.time_remaining()
    return None if remaining is None else time.perf_counter() + remaining


def _require_spec(request) -> None:
    if not request.HasField("model_spec"):
        raise invalid("Missing ModelSpec")


class PredictionService:
    """tensorflow.serving.PredictionService."""

    def __init__(self, core: ServerCore, tensor_content: bool = False):
        self.core = core
        self.tensor_content = tensor_content

    @_answer(predict_pb2.PredictRequest, "Predict")
    async def Predict(self, request: predict_pb2.PredictRequest, context) -> predict_pb2.PredictResponse:
        _require_spec(request)
        version, name, outputs = await self.core.predict(request.model_spec, dict(request.inputs),
                                                         request.output_filter, deadline=_deadline(context),
                                                         payload_bytes=request.ByteSize())
        return await self.core.offload(sum(v.nbytes for v in outputs.values()), self._response,
                                       request.model_spec.name, name, version, outputs)

    def _response(self, model: str, signature_name: str, version: int, outputs) -> predict_pb2.PredictResponse:
        response = predict_pb2.PredictResponse()
        _fill_spec(response.model_spec, model, signature_name, version)
        for alias, value in outputs.items():
            response.outputs[alias].CopyFrom(to_proto(value, self.tensor_content))
        return response

    @_answer(classification_pb2.ClassificationRequest, "Classify")
    async def Classify(self, request, context) -> classification_pb2.ClassificationResponse:
        return await self._infer(CLASSIFY, request, context, classification_pb2.ClassificationResponse())

    @_answer(regression_pb2.RegressionRequest, "Regress")
    async def Regress(self, request, context) -> regression_pb2.RegressionResponse:
        return await self._infer(REGRESS, request, context, regression_pb2.RegressionResponse())

    async def _infer(self, method: str, request, context, response):
        """Classify and Regress: the same request shape, the result in `response.result`."""
        _require_spec(request)
        version, name, result = await self.core.infer(method, request.model_spec, request.input,
                                                      deadline=_deadline(context))
        response.result.CopyFrom(result)
        _fill_spec(response.model_spec, request.model_spec.name, name, version)
        return response

    @_answer(inference_pb2.MultiInferenceRequest, "MultiInference")
    async def MultiInference(self, request, context):
        return await self.core.multi_inference(request, deadline=_deadline(context))

    @_answer(get_model_metadata_pb2.GetModelMetadataRequest)
    async def GetModelMetadata(self, request: get_model_metadata_pb2.GetModelMetadataRequest, context):
        _require_spec(request)
        if not request.metadata_field:
            raise invalid("GetModelMetadataRequest must specify at least one metadata_field")
        for field in request.metadata_field:
            if field != "signature_def":
                raise invalid(f"Metadata field {field} is not supported")
        with self.core.servable(request.model_spec) as servable:
            response = get_model_metadata_pb2.GetModelMetadataResponse()
            response.model_spec.name = request.model_spec.name
            response.model_spec.version.value = servable.version
            packed = any_pb2.Any()
            packed.Pack(servable.signature_map())
            response.metadata["signature_def"].CopyFrom(packed)
            return response


def _fill_spec(spec, name: str, signature_name: str, version: int) -> None:
    spec.name, spec.signature_name = name, signature_name
    spec.version.value = version


def model_status(core: ServerCore, request: get_model_status_pb2.GetModelStatusRequest):
    """GetModelStatusResponse for a request (shared by gRPC and REST)."""
    _require_spec(request)
    version, label = spec_choice(request.model_spec)
    if label is not None:
        servable = core.manager.acquire(request.model_spec.name, label=label)
        servable.release()
        version = servable.version
    response = get_model_status_pb2.GetModelStatusResponse()
    for entry in core.manager.status(request.model_spec.name, version):
        status = response.model_version_status.add(version=entry.number, state=entry.state)
        status.status.error_code = entry.error_code.value[0]
        status.status.error_message = entry.error_message
    return response


class ModelService:
    """tensorflow.serving.ModelService."""

    def __init__(self, core: ServerCore, reload):
        self.core = core
        self.reload = reload

    @_answer(get_model_status_pb2.GetModelStatusRequest)
    async def GetModelStatus(self, request, context):
        return model_status(self.core, request)

    @_answer(model_management_pb2.ReloadConfigRequest)
    async def HandleReloadConfigRequest(self, request: model_management_pb2.ReloadConfigRequest, context):
        if self.reload is None:
            raise ServingError(grpc.StatusCode.PERMISSION_DENIED, "HandleReloadConfigRequest is turned off on this "
                               "server (--allow_reload_config_rpc=false)")
        if request.config.WhichOneof("config") != "model_config_list":
            raise invalid("ServerModelConfig type not supported by HandleReloadConfigRequest. Only "
                          "ModelConfigList is currently supported")
        await self.reload(request.config.model_config_list)
        return model_management_pb2.ReloadConfigResponse()


async def start_grpc(core: ServerCore, reload, addresses: list[str], tensor_content: bool,
                     options: list[tuple[str, object]] = (), health: bool = False, profiler: bool = True,
                     ssl=None) -> grpc.aio.Server:
    """Start the gRPC server on every address, with the real server's unlimited message sizes, its
    channel arguments (--grpc_channel_arguments, after ours, so they win), the standard health
    service, TensorFlow's profiler service, and TLS from an SSLConfig."""
    server = grpc.aio.server(options=[("grpc.max_receive_message_length", 2**31 - 1),
                                      ("grpc.max_send_message_length", 2**31 - 1),
                                      ("grpc.so_reuseport", 0),  # a taken port is an error, not a silent share
                                      *options])
    rpc_handlers = [
        _handlers("tensorflow.serving.PredictionService", PredictionService(core, tensor_content),
                  ["Classify", "Regress", "Predict", "MultiInference", "GetModelMetadata"]),
        _handlers("tensorflow.serving.ModelService", ModelService(core, reload),
                  ["GetModelStatus", "HandleReloadConfigRequest"])]
    if profiler:
        from serving import profiler as profiler_service
        rpc_handlers.append(profiler_service.handlers(core.codec))
        log.info("Profiler service is enabled")
    server.add_generic_rpc_handlers(rpc_handlers)
    if health:
        from grpc_health.v1 import health as grpc_health, health_pb2, health_pb2_grpc

        servicer = grpc_health.aio.HealthServicer()
        for service in ("ModelService", "PredictionService"):  # the names server.cc marks SERVING
            await servicer.set(service, health_pb2.HealthCheckResponse.SERVING)
        health_pb2_grpc.add_HealthServicer_to_server(servicer, server)
    credentials = None
    if ssl is not None:
        credentials = grpc.ssl_server_credentials([(ssl.server_key.encode(), ssl.server_cert.encode())],
                                                  root_certificates=ssl.custom_ca.encode() or None,
                                                  require_client_auth=ssl.client_verify)
    for address in addresses:
        try:
            if credentials is None:
                server.add_insecure_port(address)
            else:
                server.add_secure_port(address, credentials)
        except RuntimeError as error:
            raise OSError(f"cannot listen for gRPC on {address}: {error}") from None
    await server.start()
    return server


def _handlers(service: str, servicer, methods: list[str]) -> grpc.GenericRpcHandler:
    """Unary handlers that see raw bytes (no deserializer, no serializer)."""
    return grpc.method_handlers_generic_handler(
        service, {name: grpc.unary_unary_rpc_method_handler(getattr(servicer, name)) for name in methods})

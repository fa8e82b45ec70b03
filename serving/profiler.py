"""TensorFlow's profiler service (`tensorflow.ProfilerService`) on the gRPC port (`--enable_profiler`).

TensorBoard's "Capture profile" (and `tf.profiler.experimental.client.trace`) call
`Profile` with a duration, a repository root (LOGDIR/plugins/profile), a session id and a
host name; the server profiles itself for that long with TensorFlow's own ProfilerSession
and writes the XSpace to REPOSITORY_ROOT/SESSION_ID/HOST.xplane.pb, as the C++ service does
(xla/tsl/profiler/rpc/profiler_service_impl.cc). `Terminate` ends a session early; `Monitor`
is unimplemented there too. The protos are declared from tsl/profiler/protobuf/profiler_service.proto
(field numbers kept); ProfileOptions is TensorFlow's own.
"""
from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path

import grpc
from google.protobuf import descriptor_pb2
from tensorflow.tsl.profiler.protobuf import profiler_options_pb2

from serving.errors import ServingError, describe
from serving.protos import message_classes

_F = descriptor_pb2.FieldDescriptorProto


def _build():
    file = descriptor_pb2.FileDescriptorProto(name="serving_bundle/profiler_service.proto", package="tensorflow",
                                              syntax="proto3", dependency=[profiler_options_pb2.DESCRIPTOR.name])
    request = file.message_type.add(name="ProfileRequest")
    for name, number, kind in [("duration_ms", 1, _F.TYPE_UINT64), ("max_events", 2, _F.TYPE_UINT64),
                               ("repository_root", 5, _F.TYPE_STRING), ("session_id", 6, _F.TYPE_STRING),
                               ("host_name", 7, _F.TYPE_STRING)]:
        request.field.add(name=name, number=number, type=kind, label=_F.LABEL_OPTIONAL)
    request.field.add(name="tools", number=3, type=_F.TYPE_STRING, label=_F.LABEL_REPEATED)
    request.field.add(name="opts", number=4, type=_F.TYPE_MESSAGE, label=_F.LABEL_OPTIONAL,
                      type_name=".tensorflow.ProfileOptions")
    tool_data = file.message_type.add(name="ProfileToolData")
    tool_data.field.add(name="name", number=1, type=_F.TYPE_STRING, label=_F.LABEL_OPTIONAL)
    tool_data.field.add(name="data", number=2, type=_F.TYPE_BYTES, label=_F.LABEL_OPTIONAL)
    response = file.message_type.add(name="ProfileResponse")
    response.field.add(name="tool_data", number=6, type=_F.TYPE_MESSAGE, label=_F.LABEL_REPEATED,
                       type_name=".tensorflow.ProfileToolData")
    response.field.add(name="empty_trace", number=7, type=_F.TYPE_BOOL, label=_F.LABEL_OPTIONAL)
    terminate = file.message_type.add(name="TerminateRequest")
    terminate.field.add(name="session_id", number=1, type=_F.TYPE_STRING, label=_F.LABEL_OPTIONAL)
    file.message_type.add(name="TerminateResponse")
    return message_classes(file, [profiler_options_pb2.DESCRIPTOR],
                           ["ProfileRequest", "ProfileResponse", "TerminateRequest", "TerminateResponse"])


ProfileRequest, ProfileResponse, TerminateRequest, TerminateResponse = _build()


class ProfilerService:
    """Profile / Terminate / Monitor on raw bytes, one profiling session at a time (as TensorFlow allows)."""

    def __init__(self, executor):
        self.executor = executor
        self.busy = threading.Lock()
        self.stopped: set[str] = set()

    async def Profile(self, data: bytes, context) -> bytes:
        try:
            request = ProfileRequest.FromString(data)
            return (await self.profile(request)).SerializeToString()
        except Exception as error:
            code, message = describe(error)
            await context.abort(code, message)

    async def profile(self, request) -> ProfileResponse:
        from tensorflow.python.profiler.internal import _pywrap_profiler

        if not self.busy.acquire(blocking=False):
            raise ServingError(grpc.StatusCode.UNAVAILABLE, "Another profiling session is active.")
        loop = asyncio.get_running_loop()
        try:
            opts = request.opts
            session = _pywrap_profiler.ProfilerSession()
            options = {"host_tracer_level": opts.host_tracer_level or 2,
                       "device_tracer_level": opts.device_tracer_level or 1,
                       "python_tracer_level": opts.python_tracer_level}
            await loop.run_in_executor(self.executor, session.start, request.repository_root, options)
            duration = (opts.duration_ms or request.duration_ms) / 1000
            end = time.monotonic() + duration
            try:
                while time.monotonic() < end and request.session_id not in self.stopped:
                    await asyncio.sleep(min(0.01, max(0.0, end - time.monotonic())))
            finally:
                self.stopped.discard(request.session_id)
                space = await loop.run_in_executor(self.executor, session.stop)
        finally:
            self.busy.release()
        response = ProfileResponse()
        # (not parsed: TensorFlow's XSpace strings need not be UTF-8, which Python's protobuf refuses)
        response.empty_trace = not space
        host = opts.override_hostname or request.host_name or "localhost"
        if request.repository_root:
            folder = Path(request.repository_root) / request.session_id
            await loop.run_in_executor(self.executor, _write, folder / f"{host}.xplane.pb", space)
        return response

    async def Terminate(self, data: bytes, context) -> bytes:
        self.stopped.add(TerminateRequest.FromString(data).session_id)
        return TerminateResponse().SerializeToString()

    async def Monitor(self, data: bytes, context) -> bytes:
        await context.abort(grpc.StatusCode.UNIMPLEMENTED, "unimplemented.")


def _write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


def handlers(executor) -> grpc.GenericRpcHandler:
    service = ProfilerService(executor)
    return grpc.method_handlers_generic_handler("tensorflow.ProfilerService", {
        name: grpc.unary_unary_rpc_method_handler(getattr(service, name)) for name in ("Profile", "Terminate",
                                                                                          "Monitor")})

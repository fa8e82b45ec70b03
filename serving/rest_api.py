"""The REST API (`--rest_api_port`) on aiohttp, with the real server's paths, bodies and codes.

Paths are matched with the regexes of http_rest_api_util.cc on the raw (still
percent-encoded) path; the JSON body becomes the same inputs the gRPC Predict gets, typed by
the signature, and goes through the same core, so both APIs answer alike.
"""
from __future__ import annotations

import json
import re
import time
from urllib.parse import unquote

import grpc
from aiohttp import web
from google.protobuf import json_format
from tensorflow_serving.apis import get_model_status_pb2, model_pb2

from serving.core import CLASSIFY, REGRESS, ServerCore
from serving.errors import HTTP_STATUS, ServingError, describe, invalid
from serving.grpc_api import model_status
from serving.tensors import parse_infer_body, parse_predict_body, predict_reply_json

PREDICTION_PATH = re.compile(
    r"(?i)/v1/models/([^/:]+)(?:(?:/versions/(\d+))|(?:/labels/([^/:]+)))?:(classify|regress|predict)")
STATUS_PATH = re.compile(
    r"(?i)/v1/models(?:/([^/:]+))?(?:(?:/versions/(\d+))|(?:/labels/([^/:]+)))?(?:/(metadata))?")
API_PATH = re.compile(r"(?i)/v1/.*")
DEFAULT_PROMETHEUS_PATH = "/monitoring/prometheus/metrics"


def _error_body(message: str) -> str:
    return json.dumps({"error": message}, indent=4)


class RestApi:
    def __init__(self, core: ServerCore, *, timeout_ms: int, cors: bool, prometheus_path: str | None,
                 playground: bool = False):
        self.core = core
        self.playground = playground
        self.timeout = timeout_ms / 1000 if timeout_ms > 0 else None
        self.cors = cors
        self.prometheus_path = prometheus_path

    def app(self) -> web.Application:
        app = web.Application(client_max_size=2**31 - 1)
        app.router.add_route("*", "/{tail:.*}", self.dispatch)
        if self.playground:
            from serving.playground import add_playground
            add_playground(app)
        return app

    async def dispatch(self, request: web.Request) -> web.Response:
        path = request.rel_url.raw_path
        if self.prometheus_path and path.startswith("/monitoring/"):
            return self.prometheus(path)
        if not API_PATH.fullmatch(path):
            return web.Response(status=404, text="Not Found")
        start = time.perf_counter()
        model, api, headers = "", "", {"Content-Type": "application/json"}
        if self.cors:
            headers.update({"Access-Control-Allow-Origin": "*", "Access-Control-Allow-Methods": "POST, GET",
                            "Access-Control-Allow-Headers": "Content-Type"})
        try:
            if request.method == "OPTIONS":
                if not re.search(r"https?://", request.headers.get("Origin", "")):
                    raise ServingError(grpc.StatusCode.FAILED_PRECONDITION, "Origin header is missing in CORS preflight")
                body = ""
            else:
                model, api, body = await self.process(request, path)
            status = 200
        except Exception as error:
            code, message = describe(error)
            status, body = HTTP_STATUS.get(code, 500), _error_body(message)
            self.core.metrics.request_count.inc(self.core.metric_label(model), code.name)
        else:
            model = self.core.metric_label(model)
            self.core.metrics.request_count.inc(model, "OK")
            self.core.metrics.request_latency.observe((time.perf_counter() - start) * 1e6, model, api, "REST")
        body = await self.core.offload(len(body), str.encode, body)
        return web.Response(status=status, body=body, headers=headers)

    async def process(self, request: web.Request, path: str) -> tuple[str, str, str]:
        """(model name, API name, JSON reply) for one /v1 request, or a ServingError."""
        malformed = invalid(f"Malformed request: {request.method} {path}")
        match = (PREDICTION_PATH.fullmatch(path) if request.method == "POST"
                 else STATUS_PATH.fullmatch(path) if request.method == "GET" else None)
        if match is None:
            raise malformed
        name, version, label, verb = match.groups()
        name = unquote(name) if name else ""
        spec = model_pb2.ModelSpec(name=name)
        if version is not None:
            if int(version) >= 2**63:
                raise invalid(f"Failed to convert version: {version} to numeric.")
            spec.version.value = int(version)
        elif label is not None:
            spec.version_label = unquote(label)
        if request.method == "GET":
            if not name:
                raise invalid("Missing model name in request.")
            if verb:  # metadata
                return name, "metadata", self.metadata(spec)
            response = model_status(self.core, get_model_status_pb2.GetModelStatusRequest(model_spec=spec))
            return name, "status", json_format.MessageToJson(response, always_print_fields_with_no_presence=True)
        verb = verb.lower()
        try:
            body = await request.read()
        except Exception as error:  # a body aiohttp cannot decode (e.g. Content-Encoding: gzip, not gzip)
            raise invalid(f"Could not read the request body (Content-Encoding: "
                          f"{request.headers.get('Content-Encoding', 'identity')}): {error}") from None
        deadline = None if self.timeout is None else time.perf_counter() + self.timeout
        if verb == "predict":
            return name, verb, await self.predict(spec, body, deadline)
        return name, verb, await self.infer(CLASSIFY if verb == "classify" else REGRESS, spec, body, deadline)

    async def predict(self, spec: model_pb2.ModelSpec, body: bytes, deadline: float | None) -> str:
        with self.core.servable(spec) as servable:
            def signature_of(name: str):
                name = name or "serving_default"
                if name not in servable.signatures:
                    raise invalid(f'Serving signature name: "{name}" not found in signature def')
                return servable.signatures[name]
            signature_name, inputs, rows = await self.core.offload(len(body), parse_predict_body, body, signature_of)
        spec.signature_name = signature_name
        _, _, outputs = await self.core.predict(spec, inputs, deadline=deadline)
        return await self.core.offload(sum(v.nbytes for v in outputs.values()), predict_reply_json, outputs, rows)

    async def infer(self, method: str, spec: model_pb2.ModelSpec, body: bytes, deadline: float | None) -> str:
        signature_name, request_input = await self.core.offload(len(body), parse_infer_body, body)
        spec.signature_name = signature_name
        _, _, result = await self.core.infer(method, spec, request_input, deadline=deadline)
        if method == REGRESS:
            return json.dumps({"results": [r.value for r in result.regressions]})
        return json.dumps({"results": [[[c.label, c.score] for c in row.classes] for row in result.classifications]})

    def metadata(self, spec: model_pb2.ModelSpec) -> str:
        with self.core.servable(spec) as servable:
            spec_json = json_format.MessageToJson(
                model_pb2.ModelSpec(name=spec.name, version={"value": servable.version}),
                always_print_fields_with_no_presence=True, preserving_proto_field_name=True)
            signature_json = json_format.MessageToJson(servable.signature_map(),
                                                       always_print_fields_with_no_presence=True,
                                                       preserving_proto_field_name=True)
        return f'{{\n"model_spec":{spec_json},\n"metadata": {{"signature_def": {signature_json}}}\n}}\n'

    def prometheus(self, path: str) -> web.Response:
        if path != self.prometheus_path:
            return web.Response(status=400, text=f"Unexpected path: {path}. Should be {self.prometheus_path}",
                                content_type="text/plain")
        return web.Response(text=self.core.metrics.page(), content_type="text/plain")

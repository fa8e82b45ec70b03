"""What both front ends (gRPC and REST) call: resolve the model, check the request, run it.

The order of the checks is predict_util.cc's: the signature, the input count, each input
alias and tensor, the output filter, then one session run (through the batcher when
batching is on). Every outcome is counted in the real server's metrics.
"""
from __future__ import annotations

import asyncio
import contextlib
import logging
import dataclasses
import math
import time
from concurrent.futures import ThreadPoolExecutor

import grpc
import numpy as np
from tensorflow.core.example import example_pb2
from tensorflow_serving.apis import classification_pb2, inference_pb2, model_pb2, regression_pb2

from serving.batching import Batcher, BatchOptions
from serving.errors import ServingError, describe, invalid
from serving.manager import ModelManager
from serving.metrics import Metrics
from serving.servable import DEFAULT_SIGNATURE, WARMUP_FILE, Servable, Ticket, warmup_records
from serving.tensors import DTYPES, proto_shape, to_ndarray

log = logging.getLogger("serving")
CLASSIFY, REGRESS, PREDICT = ("tensorflow/serving/classify", "tensorflow/serving/regress",
                              "tensorflow/serving/predict")
# Payloads at least this big are parsed, converted and encoded on a worker thread: about
# 0.1 ms of Python work, less than a hand-off to a thread costs.
OFFLOAD_BYTES = 64 * 1024


def spec_choice(spec: model_pb2.ModelSpec) -> tuple[int | None, str | None]:
    """(version, label) of a ModelSpec's version_choice."""
    which = spec.WhichOneof("version_choice")
    return (spec.version.value if which == "version" else None,
            spec.version_label if which == "version_label" else None)


@dataclasses.dataclass(frozen=True)
class Limits:
    """What one request may ask of the server (ours: the real server bounds only message sizes)."""
    max_rows: int = 10_000
    """rows (dimension 0 of the inputs) of one request"""
    max_bytes: int = 512 * 2**20
    """bytes of the decoded inputs, and of the outputs, of one request (at most a gRPC message, 2 GiB)"""

    def refuse(self, what: str) -> ServingError:
        return ServingError(grpc.StatusCode.RESOURCE_EXHAUSTED, f"{what}; this server answers at most "
                            f"{self.max_rows} rows and {self.max_bytes} bytes of inputs or outputs per request "
                            "(--max_request_rows, --max_request_bytes)")

    def check_inputs(self, shapes: dict[str, tuple[list[int], int]]) -> int:
        """Refuse inputs ({alias: (shape, bytes per element)}) beyond the bounds before they are
        built; the request's rows."""
        rows = max((shape[0] for shape, _ in shapes.values() if shape), default=1)
        if rows > self.max_rows:
            raise self.refuse(f"The request has {rows} rows")
        size = sum(math.prod(shape) * itemsize for shape, itemsize in shapes.values())
        if size > self.max_bytes:
            raise self.refuse(f"The request's inputs take {size} bytes")
        return rows

    def check_outputs(self, signature, aliases: list[str], rows: int) -> None:
        """Refuse before the run when the outputs' static shapes (batch dimension = rows) already
        exceed the byte bound."""
        size = 0
        for alias in aliases:
            info = signature.outputs[alias]
            dims = [d.size for d in info.tensor_shape.dim]
            if info.tensor_shape.unknown_rank or any(d < 0 for d in dims[1:]) or info.dtype not in DTYPES \
                    or DTYPES[info.dtype][0] is np.object_:
                continue
            if dims and dims[0] < 0:
                dims[0] = rows
            size += math.prod(dims) * np.dtype(DTYPES[info.dtype][0]).itemsize
        if size > self.max_bytes:
            raise self.refuse(f"The request's outputs would take {size} bytes")

    def check_result(self, outputs: dict[str, np.ndarray]) -> None:
        size = sum(v.nbytes for v in outputs.values())
        if size > self.max_bytes:
            raise self.refuse(f"The request's outputs take {size} bytes")


def prepare(servable: Servable, signature_name: str, inputs: dict, output_filter=(), limits: Limits = Limits()):
    """The checked (signature, input arrays, output aliases) of a Predict, or the real server's error;
    the request's size is checked against `limits` before its arrays are built."""
    signature = servable.signature(signature_name)
    servable.check_inputs(signature, inputs)
    aliases = servable.output_aliases(signature, output_filter)
    shapes = {alias: (list(value.shape), value.itemsize) if isinstance(value, np.ndarray) else proto_shape(value, alias)
              for alias, value in inputs.items()}
    rows = limits.check_inputs(shapes)
    limits.check_outputs(signature, aliases, rows)
    arrays = {alias: value if isinstance(value, np.ndarray) else to_ndarray(value, alias)
              for alias, value in inputs.items()}
    return signature, arrays, aliases


class ServerCore:
    """The model manager, the threads that run sessions and convert payloads, the batcher, the metrics.

    Nothing that can block runs on the event loop: every session run goes to `executor`,
    admitted per servable (at most `Servable.max_sessions` running, the rest wait in FIFO
    order), so a flood of slow requests to one model leaves threads for the others; large
    payloads are parsed and encoded on `codec`.
    """

    def __init__(self, manager: ModelManager, metrics: Metrics, *, batching: BatchOptions | None = None,
                 threads: int = 16, limits: Limits = Limits(), warmup_iterations: int = 1,
                 codec_threads: int = 2, method_name_check: bool = False):
        self.manager = manager
        self.method_name_check = method_name_check
        self.warmup_iterations = max(1, warmup_iterations)
        self.limits = limits
        self.metrics = metrics
        self.executor = ThreadPoolExecutor(threads, thread_name_prefix="session-run")
        self.codec = ThreadPoolExecutor(codec_threads, thread_name_prefix="codec")
        self.batching = batching
        self.batcher: Batcher | None = None  # made on the event loop, which its queues belong to

    @contextlib.contextmanager
    def servable(self, spec: model_pb2.ModelSpec):
        version, label = spec_choice(spec)
        servable = self.manager.acquire(spec.name, version, label)
        try:
            yield servable
        finally:
            servable.release()

    def metric_label(self, model: str) -> str:
        """The model_name label of a request: the name if the server is configured with it, else ""
        (so names made up by clients cannot grow the metrics without bound)."""
        return model if model in self.manager.models else ""

    @contextlib.contextmanager
    def counted(self, model: str, api: str, entrypoint: str):
        """Record request_count by status and, for successes, request_latency (front ends call this)."""
        model = self.metric_label(model)
        start = time.perf_counter()
        try:
            yield
        except Exception as error:
            self.metrics.request_count.inc(model, describe(error)[0].name)
            raise
        self.metrics.request_count.inc(model, "OK")
        self.metrics.request_latency.observe((time.perf_counter() - start) * 1e6, model, api, entrypoint)

    async def offload(self, size: int, function, *args):
        """`function(*args)` in place for a small payload, else on a codec thread."""
        if size < OFFLOAD_BYTES:
            return function(*args)
        return await asyncio.get_running_loop().run_in_executor(self.codec, function, *args)

    async def run(self, servable: Servable, signature, inputs: dict, aliases: list[str], deadline: float | None):
        """One session run on a worker thread, once the servable admits it.

        If the request is cancelled (gRPC cancel, REST client gone) the run is stopped (see
        Ticket) and its place is given up only when the step has ended.
        """
        loop = asyncio.get_running_loop()
        if servable.admission is None:
            servable.admission = asyncio.Semaphore(servable.max_sessions)
        async with servable.admission:
            timeout = None if deadline is None else deadline - time.perf_counter()
            ticket = Ticket()
            future = loop.run_in_executor(self.executor, servable.run, signature, inputs, aliases, timeout, ticket)
            try:
                return await asyncio.shield(future)
            except asyncio.CancelledError:
                ticket.cancel()
                await asyncio.wait([future])
                raise

    async def predict(self, spec: model_pb2.ModelSpec, inputs: dict, output_filter=(), *,
                      deadline: float | None = None, payload_bytes: int = 0):
        """(version served, signature name, outputs) of one Predict; `inputs` are TensorProtos
        (of `payload_bytes` in all) or arrays."""
        with self.servable(spec) as servable:
            name = spec.signature_name or DEFAULT_SIGNATURE
            method = servable.signature(name).method_name
            if self.method_name_check and method not in (PREDICT, CLASSIFY, REGRESS):
                raise ServingError(grpc.StatusCode.INTERNAL, "Expected prediction signature method_name to be one of "
                                   f"{{{PREDICT}, {CLASSIFY}, {REGRESS}}}. Was: {method}")
            signature, arrays, aliases = await self.offload(payload_bytes, prepare, servable, name, inputs,
                                                            output_filter, self.limits)
            start = time.perf_counter()
            if self.batching is not None:
                if self.batcher is None:
                    self.batcher = Batcher(self.batching, self.run, self.metrics)
                outputs = await self.batcher.run(servable, name, signature, arrays, aliases, deadline)
            else:
                outputs = await self.run(servable, signature, arrays, aliases, deadline)
            self.limits.check_result(outputs)
            self.metrics.runtime_latency.observe((time.perf_counter() - start) * 1e6, spec.name, "Predict", "TF1")
            return servable.version, name, outputs

    # ---------------------------------------------------------------- classify / regress
    async def infer(self, method: str, spec: model_pb2.ModelSpec, request_input, *,
                    deadline: float | None = None):
        """Classify or Regress: only signatures built for them answer, as in classifier.cc."""
        with self.servable(spec) as servable:
            name = spec.signature_name or DEFAULT_SIGNATURE
            if name not in servable.signatures:
                raise invalid(f"No signature was found with the name: {name}")
            return servable.version, name, await self._infer(servable, method, name, request_input, deadline)

    async def _infer(self, servable: Servable, method: str, name: str, request_input, deadline: float | None,
                     run=None):
        signature = servable.signatures[name]
        feed, outputs = check_inference_signature(method, signature)
        examples = serialized_examples(request_input)
        self.limits.check_inputs({feed: ([len(examples)], 0)})
        values = await (run or self.run)(servable, signature, {feed: examples}, outputs, deadline)
        return inference_result(method, values, len(examples))

    async def multi_inference(self, request: inference_pb2.MultiInferenceRequest, *, deadline=None):
        model, names = self._task_names(request)
        with self.servable(request.tasks[0].model_spec) as servable:
            return await self._multi_inference(servable, request, model, names, deadline)

    @staticmethod
    def _task_names(request: inference_pb2.MultiInferenceRequest) -> tuple[str, list[str]]:
        """The model and the signature name of every task, checked as multi_inference.cc does."""
        model = ""
        names: list[str] = []
        for task in request.tasks:
            if not task.model_spec.name:
                raise invalid("Found ModelSpec with an empty model name.")
            if model and task.model_spec.name != model:
                raise invalid("All ModelSpecs in a MultiInferenceRequest must access the same model name.")
            model = task.model_spec.name
            name = task.model_spec.signature_name or DEFAULT_SIGNATURE
            if name in names:
                raise invalid(f"Duplicate evaluation of signature: {name}")
            names.append(name)
        if not request.tasks:
            raise invalid("MultiInferenceRequest must contain at least one task")
        return model, names

    async def _multi_inference(self, servable: Servable, request, model: str, names: list[str],
                               deadline: float | None, run=None) -> inference_pb2.MultiInferenceResponse:
        response = inference_pb2.MultiInferenceResponse()
        for task, name in zip(request.tasks, names):
            if name not in servable.signatures:
                raise invalid(f"Requested signature not found in model graph: {name}")
            if task.method_name not in (CLASSIFY, REGRESS):
                raise ServingError(grpc.StatusCode.UNIMPLEMENTED,
                                   f"Unsupported signature method_name: {task.method_name}")
            check_inference_signature(task.method_name, servable.signatures[name])
        for task, name in zip(request.tasks, names):
            result = await self._infer(servable, task.method_name, name, request.input, deadline, run)
            out = response.results.add()
            out.model_spec.name, out.model_spec.signature_name = model, task.model_spec.signature_name
            out.model_spec.version.value = servable.version
            if task.method_name == CLASSIFY:
                out.classification_result.CopyFrom(result)
            else:
                out.regression_result.CopyFrom(result)
        return response

    # ---------------------------------------------------------------- warm-up
    def warmup(self, servable: Servable) -> None:
        """Replay the version's warm-up records (all four kinds, each `warmup_iterations` times) before
        it takes traffic, with saved_model_warmup_util.cc's log lines; any failure fails the load."""
        file = servable.path / WARMUP_FILE
        if not file.exists():
            log.info("No warmup data file found at %s", file)
            return
        log.info("Starting to read warmup data for model at %s with model-warmup-options %s", file,
                 f"num_request_iterations {{ value: {self.warmup_iterations} }}" if self.warmup_iterations > 1 else "")
        start = time.perf_counter()
        status, count = "OK", 0
        try:
            for record in warmup_records(file):
                for _ in range(self.warmup_iterations):
                    asyncio.run(self._replay(servable, record))
                count += 1
        except Exception as error:
            status = describe(error)[0].name
            raise
        finally:
            self.metrics.warmup_latency.observe((time.perf_counter() - start) * 1e6, str(servable.path), status)
        log.info("Finished reading warmup data for model at %s. Number of warmup records read: %d. "
                 "Elapsed time (microseconds): %d.", file, count, (time.perf_counter() - start) * 1e6)

    async def _replay(self, servable: Servable, record) -> None:
        """One PredictionLog, run on this thread (the version is not serving yet) as RunWarmupRequest does."""
        async def run(servable, signature, inputs, aliases, deadline):
            return servable.run(signature, inputs, aliases)
        kind = record.WhichOneof("log_type")
        if kind == "predict_log":
            request = record.predict_log.request
            name = request.model_spec.signature_name or DEFAULT_SIGNATURE
            signature, arrays, aliases = prepare(servable, name, dict(request.inputs), request.output_filter)
            servable.run(signature, arrays, aliases)
        elif kind in ("classify_log", "regress_log"):
            request = getattr(record, kind).request
            name = request.model_spec.signature_name or DEFAULT_SIGNATURE
            if name not in servable.signatures:
                raise invalid(f"No signature was found with the name: {name}")
            await self._infer(servable, CLASSIFY if kind == "classify_log" else REGRESS, name, request.input,
                              None, run)
        elif kind == "multi_inference_log":
            request = record.multi_inference_log.request
            model, names = self._task_names(request)
            await self._multi_inference(servable, request, model, names, None, run)
        else:
            raise ServingError(grpc.StatusCode.UNIMPLEMENTED, f"Unsupported log_type for warmup: {kind}")


def check_inference_signature(method: str, signature) -> tuple[str, list[str]]:
    """PreProcessClassification / PreProcessRegression: (input alias, output aliases) or the error."""
    kind = "classification" if method == CLASSIFY else "regression"
    if len(signature.inputs) != 1:
        raise invalid("Expected one input Tensor.")
    if method == CLASSIFY and len(signature.outputs) not in (1, 2):
        raise invalid(f"Expected one or two output Tensors, found {len(signature.outputs)}")
    if method == REGRESS and len(signature.outputs) != 1:
        raise invalid("Expected one output Tensor.")
    if "inputs" not in signature.inputs:
        raise invalid(f"No {kind} inputs found in SignatureDef: {signature}")
    wanted = ["classes", "scores"] if method == CLASSIFY else ["outputs"]
    outputs = [a for a in wanted if a in signature.outputs]
    if not outputs:
        if method == CLASSIFY:
            raise invalid(f'Expected classification signature outputs to contain at least one of "classes" or '
                          f'"scores". Signature was: {signature}')
        raise invalid(f"No regression outputs found in SignatureDef: {signature}")
    return "inputs", outputs


def serialized_examples(request_input) -> np.ndarray:
    """The request's tf.Examples, serialized, with the context merged into each (ExampleListWithContext)."""
    kind = request_input.WhichOneof("kind")
    if kind == "example_list":
        examples = list(request_input.example_list.examples)
    elif kind == "example_list_with_context":
        context = request_input.example_list_with_context.context
        examples = []
        for example in request_input.example_list_with_context.examples:
            merged = example_pb2.Example()
            merged.CopyFrom(context)
            merged.MergeFrom(example)
            examples.append(merged)
    else:
        raise invalid("Input is empty.")
    if not examples:
        raise invalid("Input is empty.")
    out = np.empty(len(examples), dtype=object)
    out[:] = [e.SerializeToString() for e in examples]
    return out


def inference_result(method: str, values: dict[str, np.ndarray], count: int):
    """ClassificationResult or RegressionResult from the fetched tensors."""
    if method == REGRESS:
        result = regression_pb2.RegressionResult()
        flat = values["outputs"].reshape(-1)
        if flat.shape[0] != count:
            raise invalid(f"Expected output batch size to be {count}.  Got: {flat.shape[0]}")
        for value in flat:
            result.regressions.add(value=float(value))
        return result
    result = classification_pb2.ClassificationResult()
    classes, scores = values.get("classes"), values.get("scores")
    for row in range(count):
        out = result.classifications.add()
        width = (classes if classes is not None else scores).shape[1]
        for column in range(width):
            item = out.classes.add()
            if classes is not None:
                item.label = classes[row, column].decode() if isinstance(classes[row, column], bytes) \
                    else str(classes[row, column])
            if scores is not None:
                item.score = float(scores[row, column])
    return result


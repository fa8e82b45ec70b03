"""One loaded model version, run the way tensorflow_model_server runs it.

The C++ server loads the MetaGraphDef tagged `serve` into a Session, runs the restore and
init ops, keeps only the SignatureDefs, and answers Predict with one Session::Run on the
signature's tensor names. `tf.compat.v1.saved_model.loader.load` takes the same steps, and
the raw session call below skips the Python-only feed checks, so loads, results and errors
(`Expects arg[0] to be float but double is provided`) are the server's.
"""
from __future__ import annotations

import threading
from pathlib import Path

import grpc
import numpy as np
from google.protobuf.message import DecodeError
import tensorflow as tf
from tensorflow.core.protobuf import config_pb2, meta_graph_pb2
from tensorflow.python.client import pywrap_tf_session as tf_session
from tensorflow.python.saved_model.loader_impl import SavedModelLoader
from tensorflow_serving.apis import get_model_metadata_pb2, prediction_log_pb2

from serving.errors import CODES, ServingError, invalid

tf1 = tf.compat.v1
DEFAULT_SIGNATURE = "serving_default"
WARMUP_FILE = "assets.extra/tf_serving_warmup_requests"
MAX_WARMUP_RECORDS = 1000


class Ticket:
    """One request's claim on a session run, so that the request can cancel it.

    TensorFlow's session API has no per-step cancellation (RunOptions offers only
    `timeout_in_ms`; DirectSession cancels a running step only when its timeout fires or
    when the session is closed). So each running request has a session of its own from
    the servable's pool, and cancelling the request closes that session: the step stops
    at its next op with CANCELLED, and the pool makes a fresh session for later requests.
    """

    def __init__(self):
        self.lock = threading.Lock()
        self.cancelled = False
        self.session = None

    def cancel(self) -> None:
        with self.lock:
            self.cancelled = True
            session, self.session = self.session, None
        if session is not None:
            session.close()  # StartCancel on the running step; the run returns CANCELLED


class Servable:
    """A SavedModel version: one graph, and a pool of sessions over it (one per running request).

    Every session restores the same variables from the version directory (the C++ loader's
    steps: restore op, then the init op), so runs on any of them give the same results.
    """

    def __init__(self, name: str, version: int, path: Path, tags: list[str] = ("serve",),
                 config: config_pb2.ConfigProto | None = None, max_sessions: int = 2):
        self.name, self.version, self.path = name, version, path
        self.tags = list(tags)
        self.graph = tf.Graph()
        self.config = config or config_pb2.ConfigProto()
        self.max_sessions = max(1, max_sessions)
        self._loader = SavedModelLoader(str(path))
        with self.graph.as_default():
            self._saver, _ = self._loader.load_graph(self.graph, self.tags)
        meta = self._loader.get_meta_graph_def_from_tags(self.tags)
        self.signatures: dict[str, meta_graph_pb2.SignatureDef] = dict(meta.signature_def)
        self._tensors: dict[str, object] = {}
        self._pool_lock = threading.Lock()
        self._free = [self._new_session()]
        self._sessions = list(self._free)  # made and not closed, running or free
        self._inflight = 0
        self._idle = threading.Condition()
        self.admission = None  # an asyncio.Semaphore(max_sessions), made by the core on its loop

    def _new_session(self) -> tf1.Session:
        """A session over the graph with the variables restored and the init op run."""
        session = tf1.Session(graph=self.graph, config=self.config)
        with self.graph.as_default():
            self._loader.restore_variables(session, self._saver)
            self._loader.run_init_ops(session, self.tags)
        return session

    def _checkout(self) -> tf1.Session:
        with self._pool_lock:
            if self._free:
                return self._free.pop()
        session = self._new_session()
        with self._pool_lock:
            self._sessions.append(session)
        return session

    def _checkin(self, session: tf1.Session, closed: bool) -> None:
        with self._pool_lock:
            if closed:
                self._sessions.remove(session)
            else:
                self._free.append(session)

    def signature(self, name: str) -> meta_graph_pb2.SignatureDef:
        """The SignatureDef called `name` ("" = serving_default), else FAILED_PRECONDITION."""
        name = name or DEFAULT_SIGNATURE
        if name not in self.signatures:
            raise ServingError(grpc.StatusCode.FAILED_PRECONDITION, f'Serving signature key "{name}" not found.')
        return self.signatures[name]

    def signature_map(self):
        """Every SignatureDef (with `__saved_model_init_op`), as GetModelMetadata returns them."""
        signatures = get_model_metadata_pb2.SignatureDefMap()
        for key, signature in self.signatures.items():
            signatures.signature_def[key].CopyFrom(signature)
        return signatures

    def _output(self, tensor_name: str):
        if tensor_name not in self._tensors:
            try:
                self._tensors[tensor_name] = self.graph.get_tensor_by_name(tensor_name)._as_tf_output()
            except (KeyError, ValueError):  # e.g. __saved_model_init_op's "NoOp", an operation
                raise invalid(f"Tensor {tensor_name}, specified in either feed_devices or fetch_devices "
                              "was not found in the Graph") from None
        return self._tensors[tensor_name]

    def check_inputs(self, signature: meta_graph_pb2.SignatureDef, inputs: dict) -> None:
        """PreProcessPrediction's input checks: the count, then every alias."""
        sent, wanted = set(inputs), set(signature.inputs)
        if len(sent) > len(wanted) or (len(sent) < len(wanted) and not signature.defaults):
            raise invalid(
                f"input size does not match signature: {len(sent)}!={len(wanted)} "
                f"len({{{','.join(sorted(sent))}}}) != len({{{','.join(sorted(wanted))}}}). "
                f"Sent extra: {{{','.join(sorted(sent - wanted))}}}. "
                f"Missing but required: {{{','.join(sorted(wanted - sent))}}}.")
        for alias, info in sorted(signature.inputs.items()):
            if alias not in inputs:
                raise invalid(
                    f"Signature input alias: {alias}(feed name: {info.name}) not found in request and no "
                    f"default value provided. Inputs expected to be in the request "
                    f"{{{','.join(sorted(inputs))}}}, or default input alias set: ")

    @staticmethod
    def output_aliases(signature: meta_graph_pb2.SignatureDef, output_filter) -> list[str]:
        """The outputs to fetch: the filter's, checked, or all of the signature's."""
        seen: list[str] = []
        for alias in output_filter:
            if alias not in signature.outputs:
                raise invalid(f"output tensor alias not found in signature: {alias} Outputs expected to be "
                              f"in the set {{{','.join(sorted(signature.outputs))}}}.")
            if alias in seen:
                raise invalid(f"duplicate output tensor alias: {alias}")
            seen.append(alias)
        return seen or sorted(signature.outputs)

    def run(self, signature: meta_graph_pb2.SignatureDef, inputs: dict[str, np.ndarray],
            aliases: list[str], timeout: float | None = None, ticket: Ticket | None = None) -> dict[str, np.ndarray]:
        """One Session run of checked inputs on a session of the pool; TF errors become their gRPC codes.

        Blocks: call it on a worker thread. `ticket.cancel()` from another thread stops it.
        """
        ticket = ticket or Ticket()
        session = self._checkout()
        with ticket.lock:
            cancelled = ticket.cancelled
            ticket.session = None if cancelled else session
        try:
            if cancelled:
                raise ServingError(grpc.StatusCode.CANCELLED, "Cancelled")
            return self._run(session, signature, inputs, aliases, timeout)
        finally:
            with ticket.lock:
                closed = ticket.session is None and not cancelled
                ticket.session = None
            self._checkin(session, closed)

    def _run(self, session: tf1.Session, signature: meta_graph_pb2.SignatureDef, inputs: dict[str, np.ndarray],
             aliases: list[str], timeout: float | None) -> dict[str, np.ndarray]:
        feed = {self._output(signature.inputs[a].name): v for a, v in inputs.items()}
        fetch = [self._output(signature.outputs[a].name) for a in aliases]
        options = None
        if timeout is not None:  # the request's deadline, as RunOptions.timeout_in_ms like the real server
            if timeout <= 0:
                raise ServingError(grpc.StatusCode.DEADLINE_EXCEEDED, "Deadline Exceeded")
            options = tf_session.TF_NewBufferFromString(
                config_pb2.RunOptions(timeout_in_ms=max(1, int(timeout * 1000))).SerializeToString())
        try:
            values = tf_session.TF_SessionRun_wrapper(session._session, options, feed, fetch, [], None)
        except tf.errors.OpError as error:
            raise ServingError(CODES.get(error.error_code, grpc.StatusCode.UNKNOWN), error.message) from None
        except (TypeError, ValueError) as error:  # numpy could not be fed at all (e.g. a ragged object array)
            raise invalid(str(error)) from None
        finally:
            if options is not None:
                tf_session.TF_DeleteBuffer(options)
        return dict(zip(aliases, values))

    def acquire(self) -> None:
        """Hold the session open for one request (the manager calls this while routing)."""
        with self._idle:
            self._inflight += 1

    def release(self) -> None:
        with self._idle:
            self._inflight -= 1
            self._idle.notify_all()

    def unload(self, timeout: float = 60.0) -> None:
        """Close the sessions once the requests already running on them are done, or after `timeout`
        seconds (closing a session cancels the step running on it)."""
        with self._idle:
            self._idle.wait_for(lambda: self._inflight == 0, timeout)
        with self._pool_lock:
            sessions, self._free = list(self._sessions), []
        for session in sessions:
            session.close()


def warmup_records(file: Path):
    """The PredictionLog records of a warm-up file, as RunSavedModelWarmup reads them (at most 1000)."""
    count = 0
    try:
        for record in tf.data.TFRecordDataset(str(file)):
            count += 1
            if count > MAX_WARMUP_RECORDS:
                raise invalid(f"Number of warmup records exceeds the maximum ({MAX_WARMUP_RECORDS}) at {file}")
            try:
                yield prediction_log_pb2.PredictionLog.FromString(record.numpy())
            except DecodeError:
                raise invalid(f"Failed to parse warmup record: {record.numpy()[:64]!r} from {file}") from None
    except tf.errors.DataLossError as error:
        raise ServingError(grpc.StatusCode.DATA_LOSS, f"{error.message}. Please verify your warmup data is in "
                           "TFRecord format.") from None

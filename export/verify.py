"""Check an export the way tensorflow_model_server loads it, before any server sees it.

The server's C++ loader never runs Python: it reads the MetaGraphDef tagged 'serve' into a
Session, runs the saver's restore op and the init op, then answers each request with a
Session run on the signature's tensor names. tf.compat.v1.saved_model.loader.load takes
the same steps, so an export that passes here loads in the server; eager
tf.saved_model.load is no such test (it restores through the Python object graph).

Each signature runs on its warm-up request (assets.extra/tf_serving_warmup_requests), or on
inputs made from its specs when there is none, and its outputs are checked against the
model card's expectations: shape (-1 is the request's batch), value range, finiteness.
"""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import tensorflow as tf

from export.savedmodel import CARD, WARMUP, ExportError, filler_inputs, version_numbers

tf1 = tf.compat.v1


@dataclasses.dataclass
class SignatureResult:
    name: str
    ok: bool
    detail: str


def resolve_version(path: Path) -> Path:
    """MODELS/NAME/VERSION as given, or the highest version under MODELS/NAME."""
    if (path / "saved_model.pb").exists():
        return path
    if not path.exists():
        raise ExportError(f"{path} does not exist; expected MODELS/NAME or MODELS/NAME/VERSION")
    versions = version_numbers(path)
    if not versions:
        raise ExportError(f"{path} holds no SavedModel and no integer version directories")
    return path / str(versions[-1])


def read_warmup(version_dir: Path) -> dict[str, dict[str, np.ndarray]]:
    """Signature name -> {alias: array} from the warm-up PredictionLog records."""
    from tensorflow_serving.apis import prediction_log_pb2

    path = version_dir / "assets.extra" / WARMUP
    requests: dict[str, dict[str, np.ndarray]] = {}
    if not path.exists():
        return requests
    for record in tf.data.TFRecordDataset(str(path)):
        log = prediction_log_pb2.PredictionLog.FromString(record.numpy())
        if log.WhichOneof("log_type") == "predict_log":
            request = log.predict_log.request
            requests.setdefault(request.model_spec.signature_name or "serving_default",
                                {alias: tf.make_ndarray(t) for alias, t in request.inputs.items()})
    return requests


def input_specs(signature) -> list[tuple[str, tf.DType, list[int | None]]]:
    """(alias, dtype, dims with None for unknown) of a SignatureDef's inputs."""
    return [(alias, tf.dtypes.as_dtype(info.dtype), [None if d.size < 0 else d.size for d in info.tensor_shape.dim])
            for alias, info in signature.inputs.items()]


def check_output(alias: str, value: np.ndarray, expected: dict, batch: int) -> str | None:
    """A sentence saying what is wrong with one output, or None."""
    if "shape" in expected:
        want = [batch if d == -1 else d for d in expected["shape"]]
        if list(value.shape) != want:
            return f"output {alias} has shape {list(value.shape)}, expected {want}"
    if np.issubdtype(value.dtype, np.floating) and not np.all(np.isfinite(value)):
        return f"output {alias} has non-finite values"
    if np.issubdtype(value.dtype, np.number) and value.size:
        if "min" in expected and value.min() < expected["min"]:
            return f"output {alias} has values down to {value.min():.4g}, expected >= {expected['min']}"
        if "max" in expected and value.max() > expected["max"]:
            return f"output {alias} has values up to {value.max():.4g}, expected <= {expected['max']}"
    return None


def verify(path: Path) -> tuple[Path, list[SignatureResult]]:
    """Load `path` through the session-based loader and run every signature.

    Raises ExportError when the version does not load at all (the server would refuse it).
    """
    version_dir = resolve_version(path)
    card_path = version_dir / "assets.extra" / CARD
    card = json.loads(card_path.read_text()) if card_path.exists() else {}
    expectations = {name: entry.get("outputs", {}) for name, entry in card.get("signatures", {}).items()}
    warmup = read_warmup(version_dir)
    results = []
    graph = tf.Graph()
    with graph.as_default(), tf1.Session(graph=graph) as session:
        try:
            meta = tf1.saved_model.loader.load(session, ["serve"], str(version_dir))
        except Exception as error:  # whatever stops the loader stops the server
            raise ExportError(f"{version_dir} does not load as the server loads it: "
                              f"{type(error).__name__}: {str(error).splitlines()[0][:300]}") from None
        names = sorted(n for n in meta.signature_def if not n.startswith("__"))
        for missing in sorted(set(expectations) - set(names)):
            results.append(SignatureResult(missing, False, "listed in the model card but not in the SavedModel"))
        for name in names:
            signature = meta.signature_def[name]
            inputs = warmup.get(name) or filler_inputs(input_specs(signature))
            source = "warm-up" if name in warmup else "spec"
            aliases = sorted(signature.outputs)
            try:
                feed = {signature.inputs[alias].name: value for alias, value in inputs.items()}
                values = session.run([signature.outputs[a].name for a in aliases], feed_dict=feed)
            except Exception as error:
                message = str(error).splitlines()[0][:300]
                results.append(SignatureResult(name, False, f"failed to run: {type(error).__name__}: {message}"))
                continue
            first = next(iter(inputs.values()), None)
            batch = len(first) if first is not None and first.ndim else None  # None: no batched input
            problems = [p for alias, value in zip(aliases, values)
                        if (p := check_output(alias, value, expectations.get(name, {}).get(alias, {}), batch))]
            shapes = ", ".join(f"{a}{list(v.shape)}" for a, v in zip(aliases, values))
            results.append(SignatureResult(name, not problems, "; ".join(problems) or f"{shapes} ({source} inputs)"))
    return version_dir, results

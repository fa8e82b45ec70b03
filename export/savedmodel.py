"""Write a trained run as the next version of a model, the way TensorFlow Serving expects it.

    MODELS/NAME/VERSION/saved_model.pb, variables/, assets/, assets.extra/
        assets.extra/model_card.json            what it is, config, metrics, data, steps
        assets.extra/tf_serving_warmup_requests one PredictionLog per signature
    MODELS/models.config                         ModelServerConfig text, one entry per model

The version is written in a hidden temporary directory beside the others and renamed into
place when complete, so a server polling MODELS/NAME never sees half a model.
"""
from __future__ import annotations

import datetime
import json
import os
import shutil
import tempfile
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf
from google.protobuf import text_format
from tensorflow_serving.apis import model_pb2, predict_pb2, prediction_log_pb2
from tensorflow_serving.config import model_server_config_pb2

import zoo
from export.policy import write_policy
from rundir import Run, UserError, config_from_json

CARD = "model_card.json"
WARMUP = "tf_serving_warmup_requests"


class ExportError(Exception):
    """A run that cannot be exported, or an export that fails verification; one sentence."""


def version_numbers(model_dir: Path) -> list[int]:
    """Version directories under `model_dir`, as TensorFlow Serving reads them (integer names)."""
    if not model_dir.is_dir():
        return []
    return sorted(int(p.name) for p in model_dir.iterdir() if p.is_dir() and p.name.isdigit())


def load_run(run_dir: Path) -> tuple[keras.Model, dict]:
    """Rebuild the model of a training run from its model.json and restore its latest intact
    checkpoint: (model, what the run declares: family, kind, config, and the checkpoint)."""
    try:
        run = Run.read(run_dir)
        if run.kind not in WRITERS:
            raise ExportError(f"{run_dir} holds a run of kind {run.kind} ({run.family}), which has no model to "
                              f"serve; export a run of kind {' or '.join(WRITERS)}")
        if run.family not in zoo.MODEL_FAMILIES:
            raise ExportError(f"{run_dir / 'model.json'} names an unknown family {run.family!r}")
        config_type, model_type = zoo.MODEL_FAMILIES[run.family]
        model = model_type(config_from_json(config_type, run.model_config))
        checkpoint = run.restore_model(model)
    except UserError as error:
        raise ExportError(str(error)) from None
    return model, {"family": run.family, "kind": run.kind, "config": run.model_config, "checkpoint": checkpoint,
                   "train_step": int(checkpoint.parent.name), "run": run}


def write_image_model(model: keras.Model, path: Path, signatures: dict, train_step: int) -> None:
    """An image model's SavedModel: its signatures through keras.export.ExportArchive.

    Signatures that are the same function (serving_default is another signature's) share one
    tf.function, traced once rather than once per name: the samplers of the pixel models are the
    longest traces (an 8x8 PixelCNN's export here: 3.2 s before, 2.3 s after)."""
    archive = keras.export.ExportArchive()
    archive.track(model)
    traced = {}
    for signature, (function, specs) in signatures.items():
        key = (function, tuple(specs))
        if key not in traced:
            traced[key] = tf.function(function, input_signature=specs, autograph=False)  # as add_endpoint wraps it
            traced[key].get_concrete_function()
        archive.add_endpoint(signature, traced[key])
    archive.write_out(str(path), verbose=False)


WRITERS = {"image_model": write_image_model, "policy": write_policy}
"""How each kind of run a training run declares becomes a SavedModel (policies add what
tf-agents programs load)."""


def filler_inputs(specs: list[tuple[str, tf.DType, list[int | None]]],
                  examples: dict[str, np.ndarray] | None = None) -> dict[str, np.ndarray]:
    """A batch of 2 for a signature's (alias, dtype, dims) inputs: the example rows given for
    an alias (real held-out images and labels), else integers 1..n (so seeds differ), b'' for
    strings, zeros for floats. An unknown dimension is 2 for the batch and 1 elsewhere."""
    examples = examples or {}
    inputs = {}
    for alias, dtype, dims in specs:
        shape = [(2 if i == 0 else 1) if d is None else d for i, d in enumerate(dims)]
        if alias in examples:
            inputs[alias] = examples[alias][:shape[0]].astype(dtype.as_numpy_dtype)
        elif dtype.is_integer:
            inputs[alias] = np.arange(1, 1 + int(np.prod(shape))).reshape(shape).astype(dtype.as_numpy_dtype)
        elif dtype == tf.string:
            inputs[alias] = np.full(shape, b"", dtype=object)
        else:
            inputs[alias] = np.zeros(shape, dtype.as_numpy_dtype)
    return inputs


def write_warmup(path: Path, name: str, requests: dict[str, dict[str, np.ndarray]]) -> None:
    """A TFRecord of PredictionLog records, one PredictRequest per signature."""
    with tf.io.TFRecordWriter(str(path)) as writer:
        for signature, inputs in requests.items():
            request = predict_pb2.PredictRequest(model_spec=model_pb2.ModelSpec(name=name, signature_name=signature))
            for alias, value in inputs.items():
                request.inputs[alias].CopyFrom(tf.make_tensor_proto(value))
            log = prediction_log_pb2.PredictionLog(predict_log=prediction_log_pb2.PredictLog(request=request))
            writer.write(log.SerializeToString())


def update_models_config(models_dir: Path, name: str) -> Path:
    """Add or refresh NAME in MODELS/models.config (absolute base path), atomically."""
    path = models_dir / "models.config"
    config = model_server_config_pb2.ModelServerConfig()
    if path.exists():
        text_format.Parse(path.read_text(), config)
    entries = config.model_config_list.config
    entry = next((c for c in entries if c.name == name), None) or entries.add(name=name)
    entry.base_path = str((models_dir / name).resolve())
    entry.model_platform = "tensorflow"
    handle, temporary = tempfile.mkstemp(dir=models_dir, prefix=".models.config.")
    with os.fdopen(handle, "w") as f:
        f.write(text_format.MessageToString(config))
    os.replace(temporary, path)
    return path


def export_run(run_dir: Path, models_dir: Path, name: str) -> Path:
    """Export the run's last checkpoint as MODELS/NAME/<next version>; return that directory."""
    model, info = load_run(run_dir)
    signatures = model.serving_signatures()
    examples = info["run"].examples()

    model_dir = models_dir / name
    model_dir.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=model_dir, prefix=".staging-"))
    try:
        version_dir = staging / "saved_model"
        WRITERS[info["kind"]](model, version_dir, signatures, train_step=info["train_step"])
        extra = version_dir / "assets.extra"
        extra.mkdir(exist_ok=True)
        requests = {signature: filler_inputs([(s.name, s.dtype, list(s.shape)) for s in specs], examples)
                    for signature, (_, specs) in signatures.items() if specs}
        write_warmup(extra / WARMUP, name, requests)
        card = model_card(model, info, run_dir, name, signatures)
        (extra / CARD).write_text(json.dumps(card, indent=2, default=str) + "\n")
        while True:  # another exporter may take a number first: then take the next one
            version = max(version_numbers(model_dir), default=0) + 1
            target = model_dir / str(version)
            try:
                os.rename(version_dir, target)
                break
            except OSError:
                if not target.exists():
                    raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    update_models_config(models_dir, name)
    return target


def model_card(model: keras.Model, info: dict, run_dir: Path, name: str, signatures: dict) -> dict:
    """What the export is, how it was trained, how well it does, and what each signature gives."""
    run = info["run"]
    metrics = run.metrics
    expectations = model.signature_expectations()
    return {
        "name": name,
        "family": info["family"],
        "kind": info["kind"],
        "model_config": info["config"],
        "training_config": run.config,
        "metrics": metrics,
        "data": metrics.get("data"),
        "train_steps": metrics.get("steps"),
        "checkpoint": str(info["checkpoint"]),
        "exported_at": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "versions": {"tensorflow": tf.__version__, "keras": keras.__version__},
        "signatures": {
            signature: {
                "inputs": {s.name: {"dtype": s.dtype.name, "shape": [-1 if d is None else d for d in s.shape]}
                           for s in specs},
                "outputs": expectations[signature],
            }
            for signature, (_, specs) in signatures.items()
        },
    }

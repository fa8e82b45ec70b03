"""Write a trained run as the next version of a model, the way TensorFlow Serving expects it.

    MODELS/NAME/VERSION/saved_model.pb, variables/, assets/, assets.extra/
        assets.extra/model_card.json            what it is, config, metrics, data, steps
        assets.extra/tf_serving_warmup_requests one PredictionLog per signature
    MODELS/models.config                         ModelServerConfig text, one entry per model

The version is written in a hidden temporary directory beside the others and renamed into
place when complete, so a server polling MODELS/NAME never sees half a model.
"""
from __future__ import annotations

import dataclasses
import datetime
import json
import os
import shutil
import tempfile
import typing
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf
from google.protobuf import text_format
from tensorflow_serving.apis import model_pb2, predict_pb2, prediction_log_pb2
from tensorflow_serving.config import model_server_config_pb2

import zoo
from export.policy import write_policy

CARD = "model_card.json"
WARMUP = "tf_serving_warmup_requests"


class ExportError(Exception):
    """A run that cannot be exported, or an export that fails verification; one sentence."""


def version_numbers(model_dir: Path) -> list[int]:
    """Version directories under `model_dir`, as TensorFlow Serving reads them (integer names)."""
    if not model_dir.is_dir():
        return []
    return sorted(int(p.name) for p in model_dir.iterdir() if p.is_dir() and p.name.isdigit())


def _config_from_json(config_type: type, values: dict):
    """Rebuild a config dataclass from JSON (lists back to tuples where the field is a tuple)."""
    hints = typing.get_type_hints(config_type)
    fields = {}
    for field in dataclasses.fields(config_type):
        if field.name in values:
            value = values[field.name]
            fields[field.name] = tuple(value) if typing.get_origin(hints[field.name]) is tuple else value
    return config_type(**fields)


def load_run(run_dir: Path) -> tuple[keras.Model, dict]:
    """Rebuild the model of a training run from model.json and restore its last checkpoint."""
    description = run_dir / "model.json"
    if not description.exists():
        raise ExportError(f"{run_dir} is not a training run directory (no model.json); "
                          f"train one with 'python -m training FAMILY --out {run_dir}'")
    with open(description) as f:
        info = json.load(f)
    if info["family"] not in zoo.FAMILIES:
        raise ExportError(f"{description} names an unknown family {info['family']!r}")
    config_type, model_type = zoo.FAMILIES[info["family"]]
    model = model_type(_config_from_json(config_type, info["config"]))
    latest = tf.train.latest_checkpoint(str(run_dir / "checkpoints"))
    if latest is None:
        raise ExportError(f"{run_dir} has no checkpoint to export; train it first "
                          f"(the run directory must hold checkpoints/)")
    try:
        tf.train.Checkpoint(**zoo.checkpointed(model)).restore(latest).expect_partial().assert_existing_objects_matched()
    except AssertionError:
        raise ExportError(f"{latest} does not hold this model's variables (checkpoints written before they "
                          f"were listed as model_variables reach them only through the optimizer); "
                          f"train the run again to export it") from None
    info["checkpoint"] = latest
    return model, info


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
    examples_path = run_dir / "examples.npz"
    examples = {}
    if examples_path.exists():
        with np.load(examples_path) as f:
            examples = {"images": f["images"], "label": f["labels"]}

    model_dir = models_dir / name
    model_dir.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=model_dir, prefix=".staging-"))
    try:
        version_dir = staging / "saved_model"
        if hasattr(model, "greedy_action"):  # a policy: add what tf-agents programs load
            metrics_path = run_dir / "metrics.json"
            steps = json.loads(metrics_path.read_text()).get("steps", 0) if metrics_path.exists() else 0
            write_policy(model, version_dir, signatures, train_step=steps)
        else:
            archive = keras.export.ExportArchive()
            archive.track(model)
            for signature, (function, specs) in signatures.items():
                archive.add_endpoint(signature, function, input_signature=specs)
            archive.write_out(str(version_dir), verbose=False)
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
    def read(file: str) -> dict:
        path = run_dir / file
        return json.loads(path.read_text()) if path.exists() else {}

    metrics = read("metrics.json")
    expectations = model.signature_expectations()
    return {
        "name": name,
        "family": info["family"],
        "model_config": info["config"],
        "training_config": read("config.json"),
        "metrics": metrics,
        "data": metrics.get("data"),
        "train_steps": metrics.get("steps"),
        "checkpoint": info["checkpoint"],
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

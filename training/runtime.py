"""Plumbing shared by every training script: strategy, chief, run directory, JSON files."""
from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

import tensorflow as tf

STRATEGIES = ("default", "mirrored", "multi_worker")


class UserError(ValueError):
    """A problem with what the user asked for (data, flags, run directory): the command line
    prints its message as one sentence and exits with status 2."""


def make_strategy(name: str) -> tf.distribute.Strategy:
    """The tf.distribute strategy `name`: the default (one device), MirroredStrategy over the
    local GPUs (or logical CPUs), or MultiWorkerMirroredStrategy configured by TF_CONFIG."""
    if name == "default":
        return tf.distribute.get_strategy()
    if name == "mirrored":  # every GPU; without GPUs, every logical CPU device
        devices = tf.config.list_logical_devices("GPU") or tf.config.list_logical_devices("CPU")
        return tf.distribute.MirroredStrategy([d.name for d in devices])
    if name == "multi_worker":
        return tf.distribute.MultiWorkerMirroredStrategy()
    raise UserError(f"unknown strategy {name!r}; expected one of {', '.join(STRATEGIES)}")


def is_chief(strategy: tf.distribute.Strategy) -> bool:
    """Whether this process logs, writes pictures and exports (worker 0, or the only one)."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not resolver.task_type:
        return True
    return resolver.task_type == "chief" or (resolver.task_type == "worker" and resolver.task_id == 0
                                             and "chief" not in resolver.cluster_spec().as_dict())


def checkpoint_dir(run_dir: Path, strategy: tf.distribute.Strategy) -> Path:
    """Where this process saves checkpoints: every multi-worker process must save, but only the
    chief's copy is kept; the others write to a scratch directory."""
    if is_chief(strategy):
        return run_dir / "checkpoints"
    return Path(tempfile.mkdtemp(prefix="worker-checkpoints-"))


def write_json(path: Path, value: Any) -> None:
    """Write JSON atomically: a reader never sees half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    with os.fdopen(handle, "w") as f:
        json.dump(value, f, indent=2, default=str)
        f.write("\n")
    os.replace(temporary, path)


def read_json(path: Path) -> Any:
    with open(path) as f:
        return json.load(f)

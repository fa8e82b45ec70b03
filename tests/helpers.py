"""Helpers for the tests: make a trained run once for the whole suite, run a module in a
subprocess, train a preset in-process, check an autoregressive model's causality by gradients,
export a model and load it as the server does."""
import dataclasses
import itertools
import os
import pickle
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Callable, TypeVar

import numpy as np
import pytest
import tensorflow as tf
from filelock import FileLock

ROOT = Path(__file__).resolve().parents[1]
T = TypeVar("T")


def suite_temp(tmp_path_factory) -> Path:
    """The suite's temporary directory: pytest-N/, shared by the processes of `pytest -n 2` (each
    of which has its own pytest-N/popen-gwK)."""
    base = tmp_path_factory.getbasetemp()
    return base.parent if "PYTEST_XDIST_WORKER" in os.environ else base


def once_per_suite(name: str, tmp_path_factory, make: Callable[[Path], T]) -> T:
    """make(a fresh directory), done once for the whole suite even when it runs in two processes.

    Under pytest-xdist the first process to ask makes it in the processes' common temporary
    directory, holding a file lock; the other waits for the lock and reads the pickled result.
    What is made this way is read, never changed, by the tests (as any session fixture's is).
    """
    if "PYTEST_XDIST_WORKER" not in os.environ:
        return make(tmp_path_factory.mktemp(name))
    common = suite_temp(tmp_path_factory)
    directory, result = common / name, common / f"{name}.pickle"
    with FileLock(common / f"{name}.lock"):
        if result.exists():
            return pickle.loads(result.read_bytes())
        shutil.rmtree(directory, ignore_errors=True)  # what a failed attempt left
        directory.mkdir()
        made = make(directory)
        result.write_bytes(pickle.dumps(made))
        return made


def run_main(main: Callable[[list[str]], int], argv: list[str], capsys) -> tuple[int, str, str]:
    """(exit status, stdout, stderr) of a command's main called in-process, whether it returns
    its status or exits with it."""
    try:
        status = main(argv)
    except SystemExit as exit_info:
        status = exit_info.code
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def exits_2(command: Callable[[], object], capsys) -> str:
    """Run a command's main in-process, check it exits with status 2 (a usage error), and return
    what it wrote to stderr, stripped."""
    with pytest.raises(SystemExit) as exit_info:
        command()
    assert exit_info.value.code == 2
    return capsys.readouterr().err.strip()


def run_module(*args: str, cwd: Path = ROOT, timeout: float = 300, **kwargs):
    """Run `python -m ...` from the project's venv in a subprocess; returns CompletedProcess."""
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, *args], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=timeout, **kwargs)


def train_run(run_dir: Path, preset: str = "smoke", **overrides):
    """Train in-process with a preset and overrides; returns (config, metrics)."""
    from training import vae

    config = vae.PRESETS[preset]()
    model_fields = {f.name for f in dataclasses.fields(config.model)}
    config = dataclasses.replace(
        config, model=dataclasses.replace(config.model, **{k: v for k, v in overrides.items() if k in model_fields}),
        **{k: v for k, v in overrides.items() if k not in model_fields})
    return config, vae.train(config, run_dir, progress=False)


def raster_dependence(height, width, channels, strict_channels: bool) -> np.ndarray:
    """allowed[y, x, c, y', x', c']: may output (y, x, c) depend on input (y', x', c')?"""
    allowed = np.zeros((height, width, channels) * 2, dtype=bool)
    for y, x, c, y2, x2, c2 in itertools.product(range(height), range(width), range(channels), repeat=2):
        before = (y2, x2) < (y, x)
        same = (y2, x2) == (y, x) and (c2 < c if strict_channels else c2 <= c)
        allowed[y, x, c, y2, x2, c2] = before or same
    return allowed


def jacobian(function, height, width, channels) -> np.ndarray:
    """d out[y, x, c] / d in[y', x', c'] at a random input, logits projected to one number per value.

    One backward pass: the input repeated once per output value, and row i keeps only its own
    output value i (the models treat the rows of a batch independently).
    """
    count = height * width * channels
    images = tf.repeat(tf.random.uniform((1, height, width, channels), seed=1), count, axis=0)
    with tf.GradientTape() as tape:
        tape.watch(images)
        out = function(images)
        if out.shape.rank == 5:  # [b, H, W, C, 256] -> a random projection per channel value
            out = tf.reduce_sum(out * tf.random.normal(out.shape[-1:], seed=2), axis=-1)
        own = tf.reduce_sum(tf.reshape(out, [count, count]) * tf.eye(count))
    return tape.gradient(own, images).numpy().reshape((height, width, channels) * 2)


def exported(model, directory: Path):
    """Write `model.serving_signatures()` in `directory` as export does (write_image_model) and load it
    with the session-based loader (serving.servable.Servable, as TensorFlow Serving loads it: the meta graph
    tagged 'serve', restore and init ops, a raw Session run on the signature's tensor names).

    Returns run(signature, **inputs) -> {output alias: array}; run.signatures lists the signature
    names."""
    from export.savedmodel import write_image_model
    from serving.servable import Servable

    write_image_model(model, directory, model.serving_signatures(), train_step=0)
    servable = Servable(directory.parent.name, 1, directory)

    def run(signature: str, **inputs) -> dict:
        definition = servable.signature(signature)
        return servable.run(definition, inputs, sorted(definition.outputs))

    run.signatures = sorted(n for n in servable.signatures if not n.startswith("__"))
    return run

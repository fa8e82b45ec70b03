"""What the export tests share: the VAE exports, an export the server cannot load, and the
reference checker's verdict on each export, taken in one process."""
import json
import os
import shutil
from pathlib import Path

import pytest
import tensorflow as tf

from export import savedmodel
from tests.helpers import ROOT, once_per_suite, run_module, train_run

# A second opinion on the exports, when one is at hand: a script that loads a version
# directory the way tensorflow_model_server does and runs every signature.
_CHECKER = os.environ.get("REFERENCE_LOAD_CHECKER")
REFERENCE_CHECKER = Path(_CHECKER) if _CHECKER else None


@pytest.fixture(scope="session")
def exports(smoke_run, tmp_path_factory):
    """mlp (the smoke run), conv and conditional models (on the 8x8 digits, for speed), each
    exported once per suite to one MODELS dir: (models, {name: run_dir}, {name: version_dir})."""
    def make(directory: Path):
        models, runs = directory / "models", {"mlp": smoke_run[0]}
        for name, overrides in {"conv": dict(architecture="conv", epochs=1, data="digits", batch_size=64),
                                "conditional": dict(conditional=True, epochs=1, data="digits",
                                                    batch_size=64)}.items():
            runs[name] = directory / name / "run"
            train_run(runs[name], **overrides)
        return models, runs, {name: savedmodel.export_run(run, models, name) for name, run in runs.items()}
    return once_per_suite("vae-exports", tmp_path_factory, make)


@pytest.fixture(scope="session")
def broken_export(tmp_path_factory):
    """A Keras 3 model inside a bare tf.Module, saved with tf.saved_model.save: eager loading
    works, the session-based loader fails with "Could not find variable" (DESIGN.md)."""
    import keras

    network = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)])
    module = tf.Module()
    module.network = network
    module.serve = tf.function(lambda x: {"y": network(x)}, input_signature=[tf.TensorSpec([None, 4], tf.float32)])
    version_dir = tmp_path_factory.mktemp("broken") / "broken" / "1"
    tf.saved_model.save(module, str(version_dir), signatures={"serving_default": module.serve})
    return version_dir


@pytest.fixture(scope="session")
def reference_verdicts(exports, dqn_export, pg_export, pendulum_export, pixelrnn_export, broken_export,
                       tmp_path_factory):
    """What the reference checker ($REFERENCE_LOAD_CHECKER) says of each export: {version_dir: (ok, output)},
    empty when no checker is set (the tests then rely on `python -m export verify` alone).

    The checker iterates the warm-up TFRecord inside a graph context, which raises for any
    export that has warm-up records, so it gets copies without them (it then uses spec inputs).
    """
    if REFERENCE_CHECKER is None or not REFERENCE_CHECKER.exists():
        return {}
    versions = [*exports[2].values(), dqn_export, pg_export[1], pendulum_export[1], pixelrnn_export, broken_export]
    copies = tmp_path_factory.mktemp("reference-copies")
    copied = {}
    for index, version_dir in enumerate(versions):
        copied[version_dir] = copies / str(index)
        shutil.copytree(version_dir, copied[version_dir], ignore=shutil.ignore_patterns(savedmodel.WARMUP))
    result = run_module(str(ROOT / "tests" / "export" / "reference_checks.py"), str(REFERENCE_CHECKER),
                        *map(str, copied.values()))
    assert result.returncode == 0, result.stderr[-3000:]
    verdicts = json.loads(result.stdout.strip().splitlines()[-1])
    return {version_dir: tuple(verdicts[str(copy)]) for version_dir, copy in copied.items()}

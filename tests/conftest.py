"""Shared set-up: quiet TensorFlow, two logical CPU devices (for MirroredStrategy tests), and
the trained runs and exports that several test files read, each trained once per session."""
import os
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
if "PYTEST_XDIST_WORKER" in os.environ:
    # `make test`'s two processes on two cores: one thread per op in each (the tests' ops are
    # small; two pools of two threads would contend for the cores). Servers started here inherit it.
    os.environ.setdefault("TF_NUM_INTRAOP_THREADS", "1")
import pytest  # noqa: E402
import tensorflow as tf  # noqa: E402

from tests.helpers import ROOT, once_per_suite, train_run  # noqa: E402

CPUS = tf.config.list_physical_devices("CPU")
tf.config.set_logical_device_configuration(
    CPUS[0], [tf.config.LogicalDeviceConfiguration(), tf.config.LogicalDeviceConfiguration()])


# `make test` runs the suite in parallel processes (`pytest -n 2 --dist loadgroup`). A test file
# stays in one process (its module-scoped servers and browser start once), and the files whose
# tests use the shared server stay together (it starts once). Trained runs and exports are made
# once for the whole suite whichever process asks first (`once_per_suite`). A plain `pytest`
# ignores the groups. The marks must be on the items before xdist reads them into the test IDs, in
# its own pytest_collection_modifyitems (registered after this file, so called first unless told).
@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config, items):
    files = {item.path: item.path.relative_to(ROOT / "tests").as_posix() for item in items}
    shared = {item.path for item in items if "shared_server" in item.fixturenames}
    for item in items:
        item.add_marker(pytest.mark.xdist_group("shared_server" if item.path in shared else files[item.path]))


def smoke_trained(family: str, tmp_path_factory):
    """training/FAMILY.py's `smoke` preset trained once per suite: (run_dir, metrics)."""
    import importlib

    def train(directory: Path):
        module = importlib.import_module(f"training.{family}")
        return directory / "run", module.train(module.smoke(), directory / "run", progress=False)
    return once_per_suite(f"{family}-smoke", tmp_path_factory, train)


def exported_once(run_dir, name: str, tmp_path_factory):
    """A run exported once per suite to a MODELS directory of its own: MODELS/NAME/1."""
    from export.savedmodel import export_run

    return once_per_suite(f"{name}-models", tmp_path_factory, lambda models: export_run(run_dir, models, name))


@pytest.fixture(scope="session")
def smoke_run(tmp_path_factory):
    """The `smoke` preset with no overrides, trained once: (run_dir, metrics)."""
    return once_per_suite("smoke", tmp_path_factory, lambda directory: (directory / "run",
                                                                       train_run(directory / "run")[1]))


@pytest.fixture(scope="session")
def smoke_export(smoke_run, tmp_path_factory):
    """The smoke run exported once: MODELS/vae/1."""
    return exported_once(smoke_run[0], "vae", tmp_path_factory)


@pytest.fixture(scope="session")
def pixelcnn_run(tmp_path_factory):
    """The PixelCNN `smoke` preset trained once: (run_dir, metrics)."""
    return smoke_trained("pixelcnn", tmp_path_factory)


@pytest.fixture(scope="session")
def pixelcnn_export(pixelcnn_run, tmp_path_factory):
    """The PixelCNN smoke run exported once: MODELS/pixelcnn/1."""
    return exported_once(pixelcnn_run[0], "pixelcnn", tmp_path_factory)


@pytest.fixture(scope="session")
def pixelrnn_run(tmp_path_factory):
    """The PixelRNN `smoke` preset (a Diagonal BiLSTM on the binarized 8x8 digits) trained once: (run_dir, metrics)."""
    return smoke_trained("pixelrnn", tmp_path_factory)


@pytest.fixture(scope="session")
def pixelrnn_row_run(tmp_path_factory):
    """`python -m training pixelrnn --preset smoke --layer row` (in-process) run once: (run_dir, metrics)."""
    import json

    from training.__main__ import main

    def train(directory: Path):
        run_dir = directory / "run"
        assert main(["pixelrnn", "--preset", "smoke", "--layer", "row", "--no_progress", f"--out={run_dir}"]) == 0
        return run_dir, json.loads((run_dir / "metrics.json").read_text())
    return once_per_suite("pixelrnn-row", tmp_path_factory, train)


@pytest.fixture(scope="session")
def pixelrnn_export(pixelrnn_run, tmp_path_factory):
    """The PixelRNN smoke run exported once: MODELS/pixelrnn/1."""
    return exported_once(pixelrnn_run[0], "pixelrnn", tmp_path_factory)


@pytest.fixture(scope="session")
def dqn_run(tmp_path_factory):
    """The DQN `smoke` preset (CartPole-v1) trained once: (run_dir, metrics)."""
    return smoke_trained("dqn", tmp_path_factory)


@pytest.fixture(scope="session")
def dqn_export(dqn_run, tmp_path_factory):
    """The DQN smoke run exported once: MODELS/cartpole_dqn/1."""
    return exported_once(dqn_run[0], "cartpole_dqn", tmp_path_factory)


@pytest.fixture(scope="session")
def pg_smoke_runs(tmp_path_factory):
    """Each policy-gradient algorithm's `smoke` run on CartPole, trained once when first asked
    for: a function algorithm -> (run_dir, metrics)."""
    from training import pg

    def run(algorithm: str):
        def train(directory: Path):
            return directory / "run", pg.train(pg.smoke(algorithm), directory / "run", progress=False)
        return once_per_suite(f"pg-{algorithm}", tmp_path_factory, train)
    return run


@pytest.fixture(scope="session")
def pg_export(pg_smoke_runs, tmp_path_factory):
    """The REINFORCE-with-baseline smoke run on CartPole, exported: (run_dir, version_dir)."""
    run_dir, _ = pg_smoke_runs("reinforce_baseline")
    return run_dir, exported_once(run_dir, "cartpole_pg", tmp_path_factory)


@pytest.fixture(scope="session")
def ppo_run(tmp_path_factory):
    """PPO's `smoke` preset (CartPole-v1) trained once: (run_dir, metrics)."""
    return smoke_trained("ppo", tmp_path_factory)


@pytest.fixture(scope="session")
def ppo_export(ppo_run, tmp_path_factory):
    """The PPO smoke run exported once: (run_dir, MODELS/cartpole_ppo/1)."""
    return ppo_run[0], exported_once(ppo_run[0], "cartpole_ppo", tmp_path_factory)


@pytest.fixture(scope="session")
def pendulum_export(tmp_path_factory):
    """A short A2C run on Pendulum-v1 (a Gaussian policy), exported: (run_dir, version_dir)."""
    from training import pg

    def train(directory: Path):
        config = pg.TrainConfig(algorithm="a2c", env="Pendulum-v1", total_steps=400, eval_episodes=1,
                                final_eval_episodes=1)
        pg.train(config, directory / "run", progress=False)
        return directory / "run"
    run_dir = once_per_suite("pendulum", tmp_path_factory, train)
    return run_dir, exported_once(run_dir, "pendulum_a2c", tmp_path_factory)


@pytest.fixture(scope="session")
def nas_run(tmp_path_factory):
    """The architecture search's `smoke` preset run once: (run_dir, metrics)."""
    from training import nas

    return once_per_suite("nas", tmp_path_factory, lambda directory: (
        directory / "run", nas.search(nas.PRESETS["smoke"](), directory / "run", progress=False)))


@pytest.fixture(scope="session")
def grey_vae_run(tmp_path_factory):
    """The `grey` preset (the Gaussian decoder on the 8x8 grey digits) for 20 epochs, with an
    `encode_refined` signature of 4 steps: (run_dir, metrics)."""
    return once_per_suite("grey-vae", tmp_path_factory, lambda directory: (
        directory / "run", train_run(directory / "run", preset="grey", epochs=20, iw_samples=8, refine_steps=4)[1]))


@pytest.fixture(scope="session")
def cvae_run(tmp_path_factory):
    """The completion model's `smoke` preset (8x8 digits) trained once: (run_dir, metrics)."""
    return smoke_trained("cvae", tmp_path_factory)


@pytest.fixture(scope="session")
def classifier_runs(smoke_run, tmp_path_factory):
    """`ae_classifier` on the smoke VAE's encoder, 10 labels per class, one seed, short phases:
    (comparison run_dir, its metrics); the classifiers are in run_dir/pretrained-0 and scratch-0."""
    from training import classifier

    config = classifier.CompareConfig(encoder_from=str(smoke_run[0]), seeds=(0,),
                                      schedule=classifier.Schedule(head_steps=100, finetune_steps=20))
    return once_per_suite("ae-classifier", tmp_path_factory, lambda directory: (
        directory / "run", classifier.compare(config, directory / "run")))

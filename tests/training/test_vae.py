"""Training for real on small presets: the loss falls, beta acts, runs resume, strategies run."""
import dataclasses
import json
import os
import signal
import subprocess
import sys
import time

import pytest

from tests.helpers import ROOT, exits_2, train_run
from training import vae
from training.data import load_images


def test_smoke_preset_lowers_heldout_loss_and_writes_everything(smoke_run):
    run_dir, metrics = smoke_run
    history = json.loads((run_dir / "history.json").read_text())
    assert history[0]["step"] == 0 and history[-1]["step"] == metrics["steps"] == 80
    assert history[-1]["test_loss"] < history[0]["test_loss"] - 100  # 543 nats untrained
    assert metrics["test_iw_nll"] <= metrics["test_negative_elbo"] + 1.0
    for name in ("samples.png", "reconstructions.png", "latent.png", "learning_curves.png",
                 "metrics.json", "config.json", "model.json", "examples.npz"):
        assert (run_dir / name).stat().st_size > 0, name
    assert list((run_dir / "tensorboard").iterdir())


def test_raising_beta_lowers_the_kl(smoke_run, tmp_path):
    _, beta_1 = smoke_run
    _, beta_4 = train_run(tmp_path / "beta4", beta=4.0)
    assert beta_4["test_rate"] < 0.7 * beta_1["test_rate"], (beta_4["test_rate"], beta_1["test_rate"])
    assert beta_4["test_distortion"] > beta_1["test_distortion"]


def test_mirrored_strategy_on_two_logical_cpus(tmp_path):
    config, metrics = train_run(tmp_path / "mirrored", strategy="mirrored", batch_size=50, epochs=1, data="digits")
    history = json.loads((tmp_path / "mirrored" / "history.json").read_text())
    assert metrics["steps"] == len(load_images("digits").train_images) // 100  # 2 replicas x 50 = a global batch of 100
    assert history[-1]["test_loss"] < history[0]["test_loss"]


def test_a_killed_run_resumes_to_the_uninterrupted_runs_figures(smoke_run, tmp_path, capsys):
    """SIGKILL just after the first checkpoint (step 10, mid-epoch), then the same command: the
    run ends with the figures of the uninterrupted smoke run (checkpoints do not change the
    numbers), all but the wall-clock speeds."""
    run_dir = tmp_path / "run"
    command = [sys.executable, "-m", "training", "vae", "--preset=smoke", "--checkpoint_every=10", "--no_progress",
               f"--out={run_dir}"]
    process = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               env={**os.environ, "PYTHONPATH": str(ROOT)})
    deadline = time.monotonic() + 120
    while not list(run_dir.glob("checkpoints/[0-9]*")) and time.monotonic() < deadline:
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait()
    saved = sorted(int(p.name) for p in run_dir.glob("checkpoints/[0-9]*"))
    assert saved and saved[-1] < 80, "the run should have been killed mid-way"

    vae.train(dataclasses.replace(vae.smoke(), checkpoint_every=10), run_dir, progress=False)  # the same command
    resumed_from = int(capsys.readouterr().out.split("resuming from step ")[1].split()[0])
    assert resumed_from >= saved[-1] > 0
    speeds = {"images_per_second", "images_per_second_median", "train_seconds"}  # wall-clock fields
    history, whole = (json.loads((d / "history.json").read_text()) for d in (run_dir, smoke_run[0]))
    assert [r["step"] for r in history] == [0, 40, 80]
    assert [{k: v for k, v in r.items() if k not in speeds} for r in history] == \
        [{k: v for k, v in r.items() if k not in speeds} for r in whole]
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert {k: v for k, v in metrics.items() if k not in speeds} == \
        {k: v for k, v in smoke_run[1].items() if k not in speeds}


def test_missing_data_folder_exits_2(tmp_path, capsys):
    err = exits_2(lambda: vae.main(["--preset=smoke", f"--data={tmp_path / 'nothing'}", f"--out={tmp_path / 'run'}"]),
                  capsys)
    assert err.endswith("is neither 'mnist', 'digits' nor an existing folder of images") and "\n" not in err
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("overrides", [
    dict(data="digits", architecture="conv", likelihood="continuous_bernoulli", binarize=False,
         posterior_scale="exp", epochs=2, batch_size=64),
    dict(data="digits", kind="dae", architecture="conv", epochs=2, batch_size=64, conditional=True),
    dict(data="digits", kind="ae", epochs=2, batch_size=64, latent_dim=5, jit_compile=True),
    dict(data="digits", gradient_estimator="score_function", estimator_samples=4, epochs=2, batch_size=64),
])
def test_non_default_combinations_train(tmp_path, overrides):
    run_dir = tmp_path / "run"
    _, metrics = train_run(run_dir, **overrides)
    history = json.loads((run_dir / "history.json").read_text())
    assert history[-1]["test_loss"] < history[0]["test_loss"]
    assert (run_dir / "latent.png").exists()
    if overrides.get("kind", "vae") == "vae":
        assert "test_iw_nll" in metrics


def test_two_workers_train_one_model_and_only_the_chief_writes(tmp_path):
    import socket

    ports = []
    for _ in range(2):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            ports.append(s.getsockname()[1])
    cluster = {"worker": [f"127.0.0.1:{port}" for port in ports]}
    run_dir = tmp_path / "run"
    workers = [subprocess.Popen(
        [sys.executable, "-m", "training", "vae", "--preset=smoke", "--strategy=multi_worker", "--epochs=1",
         "--data=digits", "--batch_size=50", "--no_progress", f"--out={run_dir}"],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT),
             "TF_CONFIG": json.dumps({"cluster": cluster, "task": {"type": "worker", "index": index}})})
        for index in range(2)]
    outputs = [worker.communicate(timeout=300) for worker in workers]
    assert [w.returncode for w in workers] == [0, 0], [err[-2000:] for _, err in outputs]
    steps = len(load_images("digits").train_images) // 100  # 2 workers x 50
    assert json.loads((run_dir / "metrics.json").read_text())["steps"] == steps
    figures = [[line for line in out.splitlines() if line.startswith("test_")] for out, _ in outputs]
    assert figures[0] and figures[0] == figures[1]  # the same weights on both workers
    assert sorted(p.name for p in (run_dir / "checkpoints").iterdir()) == [str(steps)]  # the chief's, no scratch


def test_the_gaussian_decoder_reports_nats_and_bits_per_dim_of_the_8_bit_values(grey_vae_run, tmp_path, capsys):
    import math

    _, metrics = grey_vae_run
    assert metrics["likelihood"] == "gaussian"
    # bits/dim = NLL / (D ln 2) with D = 64 values: the same bound in other units.
    assert metrics["test_bits_per_dim"] == pytest.approx(metrics["test_iw_nll"] / (64 * math.log(2)))
    assert metrics["test_bits_per_dim"] < 8  # the uniform over 256 levels: 8 bits/dim
    err = exits_2(lambda: vae.main(["--preset=smoke", "--likelihood=gaussian", f"--out={tmp_path / 'run'}"]), capsys)
    assert "--likelihood: likelihood=gaussian models grey levels: set binarize=false" in err

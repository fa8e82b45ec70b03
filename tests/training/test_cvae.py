"""The completion model's command: it trains for real, keeps the given rows, and draws its
completions beside another model's."""
import json

import numpy as np

from tests.helpers import exits_2
from training.__main__ import main


def test_smoke_preset_learns_and_writes_everything(cvae_run):
    run_dir, metrics = cvae_run
    history = json.loads((run_dir / "history.json").read_text())
    assert history[-1]["test_loss"] < 0.7 * history[0]["test_loss"], (history[0], history[-1])
    assert metrics["known_rows_evaluated"] == 4
    assert metrics["test_conditional_iw_nll"] <= metrics["test_conditional_negative_elbo"] + 0.5
    for name in ("completions.png", "samples.png", "learning_curves.png", "examples.npz", "metrics.json"):
        assert (run_dir / name).stat().st_size > 0, name
    assert list(np.load(run_dir / "examples.npz")["known_rows"]) == [4] * 8  # export's warm-up split


def test_completions_of_several_runs_in_one_picture(cvae_run, pixelcnn_run, tmp_path, capsys):
    out = tmp_path / "completions.png"
    assert main(["completions", "--runs", str(cvae_run[0]), str(cvae_run[0]), f"--out={out}", "--known_rows=4",
                 "--images=3", "--completions=2"]) == 0
    assert out.stat().st_size > 0
    err = exits_2(lambda: main(["completions", "--runs", str(cvae_run[0]), str(pixelcnn_run[0]), f"--out={out}"]),
                  capsys)  # 8x8 digits against 28x28 ones
    assert "take images of different shapes ([(8, 8, 1), (28, 28, 1)])" in err


def test_the_command_refuses_a_label(tmp_path, capsys):
    err = exits_2(lambda: main(["cvae", "--preset=smoke", "--conditional=true", f"--out={tmp_path / 'run'}"]), capsys)
    assert "conditioned on the known rows, not on a label" in err

"""The generative comparison: every model scored again on the same held-out digits gives its own
run's figure (the VAE's importance-weighted bound, marked as a bound; the pixel models' exact
NLL), one picture, and runs that cannot be compared refused in one sentence."""
import dataclasses
import json
import math
import shutil
from pathlib import Path

import pytest

from tests.helpers import train_run
from tests.training.test_commands import refusal
from training.__main__ import main


@pytest.fixture(scope="module")
def digit_runs(pixelrnn_run, pixelrnn_row_run, tmp_path_factory) -> dict[str, Path]:
    """A VAE and a Gated PixelCNN on the binarized 8x8 digits beside both smoke PixelRNNs: {name: run_dir}."""
    from training import pixelcnn

    root = tmp_path_factory.mktemp("digit-runs")
    train_run(root / "vae", data="digits", batch_size=64)  # the VAE's smoke preset: k = 8 for its bound
    pixelcnn.train(dataclasses.replace(pixelcnn.smoke(), data="digits"), root / "pixelcnn", progress=False)
    return {"vae": root / "vae", "pixelcnn": root / "pixelcnn", "row": pixelrnn_row_run[0],
            "diagonal": pixelrnn_run[0]}


def test_every_model_is_scored_on_the_same_held_out_digits(digit_runs, tmp_path, capsys):
    out = tmp_path / "compare"
    runs = ",".join(map(str, digit_runs.values()))
    assert main(["compare_generative", f"--runs={runs}", "--iw_samples=8", "--samples=3", "--completions=2",
                 f"--out={out}"]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["test_images"] == 359 and metrics["split"] == {"data": "digits", "binarize": True, "seed": 0}
    rows = {Path(row["run"]): row for row in metrics["models"]}
    for name, run_dir in digit_runs.items():
        row, trained = rows[run_dir], json.loads((run_dir / "metrics.json").read_text())
        # the same images (and for the VAE the same k and draws): each run's own held-out figure again
        assert row["test_nll"] == pytest.approx(trained["test_iw_nll" if name == "vae" else "test_nll"], rel=1e-5)
        assert row["bound"] == (name == "vae") and row["iw_samples"] == (8 if name == "vae" else None)
        assert row["test_bits_per_dim"] == pytest.approx(row["test_nll"] / (64 * math.log(2)))  # 8x8 values
        assert row["train_seconds"] == trained["train_seconds"] > 0 and row["sample_seconds"] > 0
    assert [rows[digit_runs[name]]["title"] for name in digit_runs] == [
        "VAE", "Gated PixelCNN, 3 x 16", "Row LSTM, 1 x 16", "Diagonal BiLSTM, 1 x 16"]
    assert (out / "comparison.png").stat().st_size > 5000
    table = capsys.readouterr().out
    assert f"| VAE | {digit_runs['vae']} |" in table and "(bound, k = 8)" in table
    # a finished comparison stands: the same command prints its table again without scoring
    assert main(["compare_generative", f"--runs={runs}", "--iw_samples=8", "--samples=3", "--completions=2",
                 f"--out={out}"]) == 0
    assert "already trained" in capsys.readouterr().out


@pytest.mark.parametrize("damage, message", [
    ("seed", "{run} was trained with other held-out images than {first} (data, binarize and seed must agree: "
             "{{'data': 'digits', 'binarize': True, 'seed': 0}} there)"),
    ("unfinished", "{run} has not finished training (no metrics.json); finish it with its own command"),
    ("no run", "{run} is not a training run directory (no model.json); train one with "
               "'python -m training FAMILY --out {run}'"),
])
def test_runs_that_cannot_be_compared_are_refused(damage, message, digit_runs, tmp_path, capsys):
    run = tmp_path / "run"
    shutil.copytree(digit_runs["pixelcnn"], run)
    if damage == "seed":
        config = json.loads((run / "config.json").read_text())
        (run / "config.json").write_text(json.dumps({**config, "seed": 1}))
    elif damage == "unfinished":
        (run / "metrics.json").unlink()
    else:
        (run / "model.json").unlink()
    first = digit_runs["diagonal"]
    error = refusal(["compare_generative", f"--runs={first},{run}", f"--out={tmp_path / 'out'}"], capsys)
    assert error.endswith(message.format(run=run, first=first))
    assert not (tmp_path / "out").exists()

"""PixelRNN training (the PixelCNN's run with another network): both layers lower the held-out
NLL and leave their pictures and metrics, a stopped run resumes to the uninterrupted run's
figures, and the presets build the networks their figures were measured with."""
import dataclasses
import json
import math
import shutil

import pytest

from training import pixelrnn
from zoo.pixelrnn import PixelRNN

WALL_CLOCK = {"images_per_second", "images_per_second_median", "train_seconds"}


def without_wall_clock(record: dict) -> dict:
    return {key: value for key, value in record.items() if key not in WALL_CLOCK}


@pytest.mark.parametrize("fixture, layer", [("pixelrnn_run", "diagonal"), ("pixelrnn_row_run", "row")])
def test_smoke_training_lowers_held_out_nll(fixture, layer, request):
    run_dir, metrics = request.getfixturevalue(fixture)
    history = json.loads((run_dir / "history.json").read_text())
    declared = json.loads((run_dir / "model.json").read_text())
    assert declared["family"] == "pixelrnn" and declared["config"]["layer"] == layer
    assert [r["epoch"] for r in history] == [0, 1, 2] and metrics["test_images"] == 359  # 20% of each digit of the 1,797
    # untrained: about 64 ln 2 = 44.4 nats (8x8 pixels, each a fair coin); the digits' mean is near 29
    assert metrics["test_nll"] < history[0]["test_loss"] - 10
    assert metrics["test_bits_per_dim"] == pytest.approx(metrics["test_nll"] / (64 * math.log(2)))
    assert metrics["train_seconds"] > 0
    for picture in ("samples.png", "completions.png", "learning_curves.png"):
        assert (run_dir / picture).stat().st_size > 1000
    assert any((run_dir / "tensorboard").iterdir())


def test_a_resumed_run_ends_as_the_uninterrupted_one(pixelrnn_run, tmp_path, capsys):
    """Stopped after its first epoch's checkpoint, the run resumes to the same history and metrics, all but the
    wall-clock fields; a finished run is not trained again."""
    whole_dir, whole = pixelrnn_run
    run_dir = tmp_path / "run"
    shutil.copytree(whole_dir, run_dir)
    first, last = sorted(int(p.name) for p in (run_dir / "checkpoints").iterdir())
    shutil.rmtree(run_dir / "checkpoints" / str(last))
    (run_dir / "metrics.json").unlink()

    resumed = pixelrnn.train(pixelrnn.smoke(), run_dir, progress=False)
    assert f"resuming from step {first}" in capsys.readouterr().out
    assert without_wall_clock(resumed) == without_wall_clock(whole)
    history, again = (json.loads((d / "history.json").read_text()) for d in (whole_dir, run_dir))
    assert [without_wall_clock(r) for r in again] == [without_wall_clock(r) for r in history]
    assert pixelrnn.train(pixelrnn.smoke(), run_dir, progress=False) == resumed
    assert "already trained" in capsys.readouterr().out


@pytest.mark.parametrize("preset, layer, parameters", [
    ("smoke", "diagonal", 10_305), ("demo", "diagonal", 20_545), ("mnist", "diagonal", 65_185),
    ("mnist", "row", 57_121), ("grey", "diagonal", 37_120), ("demo", "row", 18_241)])
def test_presets_build_the_networks_their_figures_were_measured_with(preset, layer, parameters):
    """The parameter counts of the networks docs/pixelrnn.md's figures came from (demo and mnist: 28x28
    digits; smoke and grey: 8x8)."""
    config = pixelrnn.PRESETS[preset]()
    shape = (8, 8, 1) if config.data == "digits" else (28, 28, 1)
    model = PixelRNN(dataclasses.replace(config.model, image_shape=shape, layer=layer))
    assert model.count_params() == parameters

"""PixelCNN training: the held-out likelihood improves, and the run has its pictures and metrics."""
import json

import pytest

from export.verify import verify
from training import pixelcnn


def test_smoke_training_lowers_held_out_nll(pixelcnn_run):
    run_dir, metrics = pixelcnn_run
    history = json.loads((run_dir / "history.json").read_text())
    assert history[0]["step"] == 0
    assert metrics["test_nll"] < history[0]["test_loss"] - 100  # untrained: ~544 nats (784 x ln 2)
    assert 0 < metrics["test_bits_per_dim"] < 0.5
    for picture in ("samples.png", "completions.png", "learning_curves.png"):
        assert (run_dir / picture).stat().st_size > 1000
    assert json.loads((run_dir / "model.json").read_text())["family"] == "pixelcnn"


def test_export_verifies(pixelcnn_export):
    checked, results = verify(pixelcnn_export)
    assert {r.name for r in results} == {"serving_default", "sample", "log_prob", "complete"}
    assert all(r.ok for r in results), [r for r in results if not r.ok]


@pytest.mark.parametrize("overrides, message", [
    (dict(binarize=False), "binarize=true goes with output=bernoulli"),
    (dict(completions=0), "completions must be at least 1"),
])
def test_bad_configs_are_refused(overrides, message):
    import dataclasses

    with pytest.raises(ValueError, match=message):
        dataclasses.replace(pixelcnn.smoke(), **overrides)


@pytest.mark.parametrize("preset, architecture, parameters, masked_layers", [
    ("smoke", "gated", 13_681, 3), ("demo", "gated", 95_393, 5), ("mnist", "gated", 461_569, 6),
    ("grey", "gated", 102_912, 5), ("smoke", "pixelcnn", 8_929, 3)])
def test_presets_build_the_networks_their_figures_were_measured_with(preset, architecture, parameters,
                                                                     masked_layers):
    """`layers` counts the masked layers with the first: demo's 5 are 5 gated layers (the plain
    model: a first convolution and 2 residual blocks for smoke's 3). The parameter counts are
    those of the networks docs/pixelcnn.md's figures came from."""
    import dataclasses

    from zoo.pixelcnn import PixelCNN

    config = pixelcnn.PRESETS[preset]().model
    shape = (8, 8, 1) if preset == "grey" else config.image_shape  # grey's digits are 8x8
    model = PixelCNN(dataclasses.replace(config, image_shape=shape, architecture=architecture))
    assert config.layers == masked_layers
    assert (len(model.gated) if architecture == "gated" else 1 + len(model.blocks)) == masked_layers
    assert model.count_params() == parameters

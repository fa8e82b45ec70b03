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

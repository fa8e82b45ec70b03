"""`ae_classifier`: both networks see the same labels, the pretrained one starts from the
autoencoder's encoder, and every classifier is an exportable run."""
import json

import numpy as np

from tests.helpers import exits_2
from training.__main__ import main
from training.classifier import labelled_subset


def test_labelled_subset_takes_k_of_every_class_by_seed():
    labels = np.repeat(np.arange(3), 5)  # 5 images of each of 3 classes
    chosen = labelled_subset(labels, 2, seed=0)
    assert sorted(np.bincount(labels[chosen])) == [2, 2, 2] and len(set(chosen)) == 6
    np.testing.assert_array_equal(chosen, labelled_subset(labels, 2, seed=0))
    assert not np.array_equal(chosen, labelled_subset(labels, 2, seed=1))


def test_pretrained_and_scratch_runs(classifier_runs, smoke_run):
    from export.savedmodel import load_run

    run_dir, summary = classifier_runs
    assert summary["labels_per_class"] == 10 and summary["seeds"] == [0]
    for variant in ("pretrained", "scratch"):
        metrics = json.loads((run_dir / f"{variant}-0" / "metrics.json").read_text())
        assert metrics["labelled_images"] == 100 and metrics["steps"] == 120
        assert metrics["test_accuracy"] == summary["accuracy"][variant][0]
    assert summary["accuracy"]["scratch"][0] > 0.3  # 0.1 by chance; 0.44 measured
    # Fine-tuning moves the encoder: above the head alone on the frozen 2-D code of the smoke
    # VAE (0.205 against 0.148 measured: that code is too poor for the pretrained network to win).
    assert summary["accuracy"]["pretrained"][0] > summary["median_head_only"]
    classifier, info = load_run(run_dir / "pretrained-0")
    vae, _ = load_run(smoke_run[0])
    assert info["family"] == "classifier" and classifier.config.latent_dim == vae.config.latent_dim


def test_an_encoder_run_that_is_not_an_autoencoders_is_refused(cvae_run, tmp_path, capsys):
    err = exits_2(lambda: main(["ae_classifier", f"--encoder_from={cvae_run[0]}", f"--out={tmp_path / 'run'}"]),
                  capsys)
    assert err.endswith(f"{cvae_run[0]} holds a cvae run; expected a VAE or autoencoder run")

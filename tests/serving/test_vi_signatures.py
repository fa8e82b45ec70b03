"""The VI lecture's signatures end to end: trained runs exported by `python -m export`, checked
by `python -m export verify` (the session-based loader, as TensorFlow Serving loads them),
served by `python -m serving serve` in a subprocess (the suite's shared server) and answered
over gRPC, by the client library and by `python -m serving query` (in-process): the
Gaussian-decoder VAE (`log_prob`, `encode_refined`), the completion model (`complete`, `elbo`,
`sample`) and the classifier (`classify`).
"""
import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from export.__main__ import main as export_main
from serving.client import Client
from serving.query import query
from tests.helpers import exits_2

SIGNATURES = {
    "vae_grey": {"serving_default", "sample", "decode", "encode", "reconstruct", "elbo", "log_prob", "encode_refined"},
    "cvae": {"serving_default", "complete", "elbo", "sample"},
    "classifier": {"serving_default", "classify"},
}


@pytest.fixture(scope="module")
def served(shared_server, vi_models):
    """(server, models dir, {name: run_dir}): the three runs exported to one models dir, served."""
    return shared_server, *vi_models


def test_every_signature_loads_through_the_session_based_loader(served, capsys):
    _, models, _ = served
    for name, signatures in SIGNATURES.items():
        assert export_main(["verify", str(models / name)]) == 0
        printed = capsys.readouterr().out.splitlines()
        assert {line.split(":")[0] for line in printed[:-1]} == signatures, printed
        assert all(": OK: " in line for line in printed[:-1]) and printed[-1].endswith(
            f"all {len(signatures)} signatures run")


def test_the_gaussian_vaes_log_prob_and_refined_posterior_over_grpc(served):
    from export.savedmodel import load_run
    from zoo.vae import LOG_PROB_SAMPLES, refine_posterior

    server, _, runs = served
    model, _ = load_run(runs["vae_grey"])
    images = np.load(runs["vae_grey"] / "examples.npz")["images"][:3]
    seeds = np.array([4, 5, 6], np.int64)
    with Client(server.target) as client:
        assert set(client.metadata("vae_grey")) - {"__saved_model_init_op"} == SIGNATURES["vae_grey"]
        scored = client.predict("vae_grey", {"images": images}, signature="log_prob")
        refined = client.predict("vae_grey", {"images": images, "seed": seeds}, signature="encode_refined")
    bound = model.importance_weighted_log_likelihood(tf.constant(images), None, LOG_PROB_SAMPLES,
                                                     tf.constant([0, 0], tf.int64)).numpy()
    np.testing.assert_allclose(scored["log_prob"], bound, rtol=1e-4)
    np.testing.assert_allclose(scored["bits_per_dim"], -bound / (64 * np.log(2)), rtol=1e-4)
    assert np.all(scored["bits_per_dim"] < 8)  # better than the uniform over 256 levels after 20 epochs
    mean, stddev = model.encode(images)
    expected = refine_posterior(model, tf.constant(images), None, mean, stddev, tf.constant(seeds), 4)
    np.testing.assert_allclose(refined["mean"], expected["mean"].numpy(), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(refined["stddev"], expected["stddev"].numpy(), rtol=1e-4, atol=1e-5)


def test_query_complete_serves_the_completion_model_as_it_serves_pixelcnn(served, tmp_path, capsys):
    server, _, _ = served
    digit = np.zeros((8, 8), np.uint8)
    digit[1:7, 3:5] = 255  # a "1"
    Image.fromarray(digit).save(tmp_path / "one.png")
    out = tmp_path / "completed.png"
    assert query([f"--server={server.target}", "complete", "--model=cvae", f"--image={tmp_path / 'one.png'}",
                  "--known_rows=4", "-n", "3", "--scale=1", f"--out={out}"]) == 0
    grid = np.asarray(Image.open(out))
    assert grid.shape == (8 + 2, 4 * 9 + 1)
    for i in range(4):  # the original, then every completion keeps the 4 given rows exactly
        np.testing.assert_array_equal(grid[1:5, 1 + 9 * i:9 + 9 * i], digit[:4])
    completions = [grid[5:9, 1 + 9 * i:9 + 9 * i] for i in range(1, 4)]
    assert not np.array_equal(completions[0], completions[1])  # another seed, another completion
    with Client(server.target) as client:
        images = np.repeat(np.asarray(digit, np.float32)[None, :, :, None] / 255, 2, axis=0)
        first = client.complete_images("cvae", images, [4, 4], [1, 2])
        again = client.complete_images("cvae", images, [4, 4], [1, 3])
    np.testing.assert_array_equal(first[:, :4], images[:, :4])
    np.testing.assert_array_equal(first[0], again[0])  # the same seed: the same completion
    assert np.abs(first[1, 4:] - again[1, 4:]).max() > 1e-3


def test_query_classify_and_the_classify_signature(served, tmp_path, capsys):
    from export.savedmodel import load_run

    server, _, runs = served
    images = np.load(runs["classifier"] / "examples.npz")["images"][:2]
    paths = []
    for index, image in enumerate(images):
        paths.append(tmp_path / f"digit{index}.png")
        Image.fromarray((image[..., 0] * 255).astype(np.uint8)).save(paths[-1])
    assert query([f"--server={server.target}", "classify", "--model=classifier",
                  "--image", *map(str, paths)]) == 0
    printed = capsys.readouterr().out.splitlines()
    model, _ = load_run(runs["classifier"])
    probabilities = tf.nn.softmax(model(images)).numpy()  # binarized digits: the PNG holds them exactly
    for path, line, expected in zip(paths, printed, probabilities):
        predicted = int(expected.argmax())
        assert line.startswith(f"{path}: class {predicted} (probability {expected[predicted]:.3f})"), line
    with Client(server.target) as client:
        got = client.predict("classifier", {"images": images}, signature="classify")
    np.testing.assert_allclose(got["probabilities"], probabilities, rtol=1e-4, atol=1e-6)
    np.testing.assert_array_equal(got["classes"], probabilities.argmax(axis=1))
    err = exits_2(lambda: query([f"--server={server.target}", "classify", "--model=cvae", f"--image={paths[0]}"]),
                  capsys)
    assert "cvae has no signature 'classify'; it has complete, elbo, sample, serving_default" in err

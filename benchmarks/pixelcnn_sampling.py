"""Seconds to sample 16 images of 28x28 with the naive and the fast sampler, in one run.

The naive sampler runs the whole Gated PixelCNN once per pixel (784 passes); the fast one
runs only the horizontal stack at the new pixel and the vertical stack once per row
(zoo/pixelcnn.py, `complete_fast`). Both are `tf.function`s, traced before timing, and draw
the same samples from the same seeds (checked here too). Also: training images per second
of a plain `tf.function` step (Adam, batch 64) on the same model, the demo preset's. Aim
(issue 4): fast >= 20x.

    .venv/bin/python -m benchmarks.pixelcnn_sampling [--quick]
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def adam_train_step(model):
    """A `tf.function` step of Adam (step size 1e-3) on -mean log p(x) of a batch of images; returns the loss."""
    import keras
    import tensorflow as tf

    optimizer = keras.optimizers.Adam(1e-3)

    @tf.function
    def train_step(images):
        with tf.GradientTape() as tape:
            loss = -tf.reduce_mean(model.log_prob(images))
        optimizer.apply_gradients(zip(tape.gradient(loss, model.trainable_variables), model.trainable_variables))
        return loss
    return train_step


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="one timing of each, a smaller model")
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    from quiet import quiet_tensorflow
    quiet_tensorflow()
    import keras
    import numpy as np
    import tensorflow as tf

    from training.pixelcnn import demo
    from zoo.pixelcnn import PixelCNN, PixelCNNConfig

    # the demo preset's model (32 filters, 5 gated layers); --quick: 16 filters, 3 layers
    config = PixelCNNConfig(filters=16, layers=3) if args.quick else demo().model
    rounds = 1 if args.quick else args.rounds
    keras.utils.set_random_seed(0)
    model = PixelCNN(config)
    model.build_all()
    seeds = tf.range(16, dtype=tf.int64)
    naive = tf.function(lambda s: model.sample(s, fast=False))
    fast = tf.function(lambda s: model.sample(s, fast=True))
    same = np.array_equal(naive(seeds).numpy(), fast(seeds).numpy())  # traces both

    def timed(function) -> float:
        start = time.perf_counter()
        function(seeds).numpy()
        return time.perf_counter() - start
    naive_s, fast_s = [], []
    for _ in range(rounds):
        naive_s.append(timed(naive))
        fast_s.append(timed(fast))

    images = tf.cast(tf.random.uniform((64, 28, 28, 1), seed=0) < 0.3, tf.float32)
    train_step = adam_train_step(model)
    train_step(images)
    steps = 5 if args.quick else 20
    start = time.perf_counter()
    for _ in range(steps):
        loss = train_step(images)
    float(loss)
    train_rate = steps * 64 / (time.perf_counter() - start)

    naive_m, fast_m = statistics.median(naive_s), statistics.median(fast_s)
    print(f"Gated PixelCNN, {config.filters} filters, {config.layers + 1} gated layers, 16 images of 28x28x1, "
          f"median of {rounds}")
    print("| sampler | seconds | per image |")
    print("|---|---|---|")
    print(f"| naive (784 full passes) | {naive_m:.2f} | {naive_m / 16:.3f} |")
    print(f"| fast (cached) | {fast_m:.2f} | {fast_m / 16:.3f} |")
    print(f"speed-up: {naive_m / fast_m:.1f}x (aim >= 20x); same samples: {same}")
    print(f"training: {train_rate:,.0f} images/s (batch 64, Adam)")


if __name__ == "__main__":
    main()

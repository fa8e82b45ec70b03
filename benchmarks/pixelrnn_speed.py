"""PixelRNN speed, in one run: training images/s beside the Gated PixelCNN, and its two samplers.

Training: a plain `tf.function` step (Adam, -mean log p(x)) at batch 64 on 28x28 binarized
images, for the Gated PixelCNN's demo preset (32 filters, 5 gated layers), the paper's
PixelRNNs (7 layers of h = 16: van den Oord et al., 2016, binarized MNIST) and smaller ones;
the models take turns, `--rounds` times, and the table gives the median. Sampling: images/s
of the naive sampler (the whole network once per value: 784 passes) and the fast one
(zoo/pixelrnn.py, `complete_fast`), both `tf.function`s traced before timing, on the same
seeds (the samples are checked to be the same).

    .venv/bin/python -m benchmarks.pixelrnn_speed [--quick]
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="one round, fewer models, 8x8 sampling")
    parser.add_argument("--rounds", type=int, default=3, help="turns of every model's training steps")
    parser.add_argument("--sample_batch", type=int, default=4, help="images per sampling call")
    args = parser.parse_args()
    from quiet import quiet_tensorflow
    quiet_tensorflow()
    import keras
    import numpy as np
    import tensorflow as tf

    from benchmarks.pixelcnn_sampling import adam_train_step
    from training.pixelcnn import demo
    from zoo.pixelcnn import PixelCNN
    from zoo.pixelrnn import PixelRNN, PixelRNNConfig

    def pixelrnn(layer: str, layers: int, units: int, shape=(28, 28, 1)):
        return lambda: PixelRNN(PixelRNNConfig(image_shape=shape, layer=layer, recurrent_layers=layers,
                                               hidden_units=units))

    models = {"Gated PixelCNN, demo preset (5 layers x 32)": lambda: PixelCNN(demo().model),
              "Diagonal BiLSTM, 7 x 16 (paper)": pixelrnn("diagonal", 7, 16),
              "Row LSTM, 7 x 16 (paper)": pixelrnn("row", 7, 16),
              "Diagonal BiLSTM, 2 x 16": pixelrnn("diagonal", 2, 16),
              "Diagonal BiLSTM, 1 x 32": pixelrnn("diagonal", 1, 32),
              "Row LSTM, 3 x 16": pixelrnn("row", 3, 16)}
    if args.quick:
        models = dict(list(models.items())[:3])
    rounds = 1 if args.quick else args.rounds
    batch, steps = 64, 3
    images = tf.cast(tf.random.uniform((batch, 28, 28, 1), seed=0) < 0.3, tf.float32)

    keras.utils.set_random_seed(0)
    built = {name: make() for name, make in models.items()}
    train_steps = {name: adam_train_step(model) for name, model in built.items()}
    for step in train_steps.values():
        float(step(images))  # trace
    rates: dict[str, list[float]] = {name: [] for name in models}
    for _ in range(rounds):
        for name, step in train_steps.items():
            start = time.perf_counter()
            for _ in range(steps):
                loss = step(images)
            float(loss)
            rates[name].append(steps * batch / (time.perf_counter() - start))

    load = os.getloadavg()
    print(f"training, batch {batch}, 28x28x1, Adam; median of {rounds} rounds of {steps} steps "
          f"(load average: {load[0]:.1f}, {load[1]:.1f}, {load[2]:.1f} on {os.cpu_count()} cores)")
    print("| model | parameters | images/s | vs Gated PixelCNN |")
    print("|---|---|---|---|")
    reference = statistics.median(next(iter(rates.values())))
    for name, rate in rates.items():
        median = statistics.median(rate)
        print(f"| {name} | {built[name].count_params():,} | {median:.0f} | {median / reference:.2f}x |", flush=True)

    def samplers(model):
        """(naive, fast) sampling functions of seeds [None]."""
        spec = [tf.TensorSpec([None], tf.int64)]
        naive = tf.function(lambda seeds: model.sample(seeds, fast=False), input_signature=spec)
        fast = tf.function(lambda seeds: model.sample(seeds, fast=True), input_signature=spec)
        return naive.get_concrete_function(), fast.get_concrete_function()

    # sampling: the paper's sizes on 28x28 (--quick: 2 x 16 on 8x8)
    shape = (8, 8, 1) if args.quick else (28, 28, 1)
    layers = 2 if args.quick else 7
    seeds = tf.range(args.sample_batch, dtype=tf.int64)
    sampling = {}
    for layer in ("diagonal", "row"):
        naive, fast = samplers(pixelrnn(layer, layers, 16, shape)())
        naive(seeds[:1]), fast(seeds[:1])  # the first call of each also optimizes its graph
        start = time.perf_counter()
        fast_images = fast(seeds).numpy()
        fast_seconds = time.perf_counter() - start
        start = time.perf_counter()
        naive_images = naive(seeds).numpy()
        naive_seconds = time.perf_counter() - start
        sampling[layer] = (naive_seconds, fast_seconds, np.array_equal(naive_images, fast_images))

    load = os.getloadavg()
    print(f"\nsampling {args.sample_batch} images of {'x'.join(map(str, shape))}, {layers} layers x 16 "
          f"(load average: {load[0]:.1f}, {load[1]:.1f}, {load[2]:.1f})")
    print("| layer | naive s | fast s | naive images/s | fast images/s | speed-up | same samples |")
    print("|---|---|---|---|---|---|---|")
    for layer, (naive_seconds, fast_seconds, same) in sampling.items():
        print(f"| {layer} | {naive_seconds:.1f} | {fast_seconds:.1f} | {args.sample_batch / naive_seconds:.3f} | "
              f"{args.sample_batch / fast_seconds:.2f} | {naive_seconds / fast_seconds:.0f}x | {same} |")


if __name__ == "__main__":
    main()

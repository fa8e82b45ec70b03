"""The autoregressive image models' speed, in one run: training images/s, and the naive sampler
against the state-reusing one (images/s, same samples).

Models: the Gated PixelCNN's demo preset and the PixelRNN's demo and mnist presets (the
paper's 7 layers of h = 16), each with both layers (`--layer=row`), built as their presets
build them on 28x28 images. Training: a plain `tf.function` step (Adam, -mean log p(x)) at
batch 64 on binarized images; the models take turns, `--rounds` times; medians. Sampling:
the naive sampler runs the whole network once per value (784 passes for a 28x28 digit); the
fast one (`complete_fast`) reuses what earlier values computed (the PixelCNN's layer caches,
the PixelRNNs' recurrent states: see zoo/pixelcnn.py and zoo/pixelrnn.py). Both are
`tf.function`s, called once on one seed before they are timed on `--sample_batch` seeds, and
must draw the same images. Aim (issues 4 and 13): fast >= 20x naive.

    .venv/bin/python -m benchmarks.generative_sampling [--quick]     # about 6 minutes; --quick: 1
"""
from __future__ import annotations

import argparse
import dataclasses
import os
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


def contenders(shape: tuple[int, int, int], quick: bool) -> dict:
    """Label -> a function building the model of a training command's preset on images of `shape`."""
    from training import pixelcnn, pixelrnn
    from zoo.pixelcnn import PixelCNN
    from zoo.pixelrnn import PixelRNN

    def row(config):
        return dataclasses.replace(config, layer="row")
    commands = [("pixelcnn --preset demo", PixelCNN, pixelcnn.demo().model),
                ("pixelrnn --preset demo", PixelRNN, pixelrnn.demo().model),
                ("pixelrnn --preset demo --layer=row", PixelRNN, row(pixelrnn.demo().model)),
                ("pixelrnn --preset mnist", PixelRNN, pixelrnn.mnist().model),
                ("pixelrnn --preset mnist --layer=row", PixelRNN, row(pixelrnn.mnist().model))]
    return {f"{config.title} (`{command}`)": (lambda cls=cls, config=config: cls(dataclasses.replace(
                config, image_shape=shape)))
            for command, cls, config in commands[:3 if quick else None]}


def load() -> str:
    one, five, fifteen = os.getloadavg()
    return f"load average: {one:.1f}, {five:.1f}, {fifteen:.1f} on {os.cpu_count()} cores"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="one round, the demo presets only, 8x8 images")
    parser.add_argument("--rounds", type=int, default=3, help="turns of every model's training steps")
    parser.add_argument("--sample_batch", type=int, default=4, help="images per sampling call")
    args = parser.parse_args()
    from quiet import quiet_tensorflow
    quiet_tensorflow()
    import keras
    import numpy as np
    import tensorflow as tf

    shape = (8, 8, 1) if args.quick else (28, 28, 1)
    rounds = 1 if args.quick else args.rounds
    keras.utils.set_random_seed(0)
    models = {label: build() for label, build in contenders(shape, args.quick).items()}

    # training: the models take turns, so a change in the machine's load reaches them all
    batch, steps = 64, 3
    images = tf.cast(tf.random.uniform((batch, *shape), seed=0) < 0.3, tf.float32)
    train_steps = {label: adam_train_step(model) for label, model in models.items()}
    for step in train_steps.values():
        float(step(images))  # trace
    rates: dict[str, list[float]] = {label: [] for label in models}
    for _ in range(rounds):
        for label, step in train_steps.items():
            start = time.perf_counter()
            for _ in range(steps):
                loss = step(images)
            float(loss)
            rates[label].append(steps * batch / (time.perf_counter() - start))
    print(f"training, batch {batch}, {'x'.join(map(str, shape))}, Adam; median of {rounds} rounds of {steps} steps "
          f"({load()})")
    print("| model | parameters | images/s | vs the Gated PixelCNN |")
    print("|---|---|---|---|")
    reference = statistics.median(next(iter(rates.values())))
    for label, rate in rates.items():
        median = statistics.median(rate)
        print(f"| {label} | {models[label].count_params():,} | {median:.0f} | {median / reference:.2f}x |", flush=True)

    # sampling: each model's two samplers on the same seeds
    seeds = tf.range(args.sample_batch, dtype=tf.int64)
    spec = tf.TensorSpec([None], tf.int64)
    print(f"\nsampling {args.sample_batch} images of {'x'.join(map(str, shape))}, seeds 0..{args.sample_batch - 1}")
    print("| model | naive images/s | fast images/s | speed-up | same samples |")
    print("|---|---|---|---|---|")
    for label, model in models.items():
        timings, drawn = {}, {}
        for fast in (True, False):
            sample = tf.function(lambda s, fast=fast: model.sample(s, fast=fast)).get_concrete_function(spec)
            sample(seeds[:1])  # the first call also optimizes the graph
            start = time.perf_counter()
            drawn[fast] = sample(seeds).numpy()
            timings[fast] = time.perf_counter() - start
        naive, fast = (args.sample_batch / timings[kind] for kind in (False, True))
        print(f"| {label} | {naive:.3f} | {fast:.2f} | {fast / naive:.0f}x | "
              f"{'yes' if np.array_equal(drawn[True], drawn[False]) else 'NO'} |", flush=True)
    print(f"({load()})")


if __name__ == "__main__":
    main()

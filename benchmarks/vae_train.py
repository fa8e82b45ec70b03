"""Training throughput of our VAE step against keras.io's VAE example, side by side.

    .venv/bin/python -m benchmarks.vae_train            # full run: 4 minutes idle, up to 8 busy
    .venv/bin/python -m benchmarks.vae_train --quick    # about a minute, to check it works

Three contenders train the same network, keras.io's conv VAE (Conv2D 32/64 stride 2,
Dense 16, latent 2; decoder Dense 7*7*64, Conv2DTranspose 64/32 stride 2 and 1 filter),
on the same grey-level MNIST digits at batch 128:

- ``ours``: `training.vae.make_train_step`, driven like `training.vae.train` drives it
  (a shuffled tf.data pipeline, one call per batch, the step's metrics read back as floats);
- ``ours (XLA)``: the same step with ``jit_compile=True``;
- ``keras.io fit``: keras.io's example as written (a `Sampling` layer, functional encoder
  and decoder, a `keras.Model` subclass whose `train_step` uses a GradientTape and the
  sum-over-pixels binary cross-entropy plus KL), trained with plain `model.fit`
  (``verbose=0``: no progress bar, which only makes fit faster).

Each contender first trains one warm-up epoch (tracing, and for XLA compiling; its time is
printed but not counted). Then, round after round, each trains a few timed epochs, in a
rotating order, so that slow spells of this shared 2-core machine hit all three alike.
Every timed epoch gives one images/s figure; the table shows their median and the best.

How to read it:
- "% of peak" is images/s times the training FLOPs of one image (3x the forward
  multiply-adds, counted analytically from the layer shapes, printed), divided by this
  machine's float32 matmul peak through TensorFlow (the median of 2048x2048 tf.matmuls
  timed before, during (once per round) and after the rounds). It is the share of the
  arithmetic the machine could do that the training step actually uses.
- The ratios compare medians from this one run; compare ratios, not absolute numbers,
  between runs (DESIGN.md: identical epochs here run on either about 2 or about 1 core).
- "per-round" ratios divide medians taken within each round, which cancels slow spells
  that last a whole round; if they disagree with the overall ratios, trust neither much.
- "last loss" is each contender's mean training loss (nats per image) over its last epoch:
  a check that all three optimise the same objective on the same scale, not a contest
  (initialisation, posterior scale and noise draws differ).
"""
from __future__ import annotations

import argparse
import dataclasses
import math
import statistics
import time
from typing import Protocol

import quiet

quiet.quiet_tensorflow()  # before anything imports TensorFlow

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from keras import layers, ops  # noqa: E402

import training.vae  # noqa: E402
import zoo.vae  # noqa: E402
from training.data import load_images  # noqa: E402

BATCH = 128
MAX_IMAGES = 4000  # the shipped MNIST digits; caps the full 60,000 if Keras' copy exists
KERNEL = 3  # zoo.vae's convolutions are all 3x3
LEARNING_RATE = 1e-3  # ours and keras.io's (Adam's default)
MODEL_CONFIG = zoo.vae.VAEConfig(architecture="conv", latent_dim=2, hidden_units=(16,), conv_filters=(32, 64))


@dataclasses.dataclass(frozen=True)
class Settings:
    rounds: int
    epochs_per_round: int
    peak_repeats: int


FULL = Settings(rounds=10, epochs_per_round=2, peak_repeats=6)
QUICK = Settings(rounds=2, epochs_per_round=1, peak_repeats=3)


# Arithmetic: how much work one image is, and how fast this machine can do arithmetic.


def forward_flops(config: zoo.vae.VAEConfig) -> dict[str, int]:
    """FLOPs (2 per multiply-add) of one image's forward pass, per layer; conv architecture."""
    height, width, channels = config.image_shape
    flops: dict[str, int] = {}
    h, w, c = height, width, channels
    for i, filters in enumerate(config.conv_filters, 1):
        h, w = math.ceil(h / 2), math.ceil(w / 2)  # stride 2, "same" padding
        flops[f"encoder conv {i} ({c}->{filters}, out {h}x{w})"] = 2 * h * w * KERNEL * KERNEL * c * filters
        c = filters
    units = h * w * c
    for i, hidden in enumerate(config.hidden_units, 1):
        flops[f"encoder dense {i} ({units}->{hidden})"] = 2 * units * hidden
        units = hidden
    flops[f"encoder dense out ({units}->{2 * config.latent_dim})"] = 2 * units * 2 * config.latent_dim
    flops[f"decoder dense ({config.latent_dim}->{h * w * c})"] = 2 * config.latent_dim * h * w * c
    for i, filters in enumerate(reversed(config.conv_filters), 1):
        flops[f"decoder conv^T {i} ({c}->{filters}, in {h}x{w})"] = 2 * h * w * KERNEL * KERNEL * c * filters
        h, w, c = 2 * h, 2 * w, filters
    flops[f"decoder conv^T out ({c}->{channels}, in {h}x{w})"] = 2 * h * w * KERNEL * KERNEL * c * channels
    return flops


class MatmulPeak:
    """GFLOP/s of one float32 n x n tf.matmul inside a tf.function, probed now and then."""

    def __init__(self, n: int = 2048):
        self.flops = 2 * n**3
        self.a, self.b = tf.random.normal([n, n]), tf.random.normal([n, n])
        self.matmul = tf.function(lambda a, b: tf.matmul(a, b)[0, 0])  # reading the scalar waits for it
        float(self.matmul(self.a, self.b))  # trace and warm up
        self.rates: list[float] = []

    def probe(self, repeats: int) -> list[float]:
        """Time `repeats` matmuls; keep and return their rates."""
        rates = []
        for _ in range(repeats):
            start = time.perf_counter()
            float(self.matmul(self.a, self.b))
            rates.append(self.flops / (time.perf_counter() - start) / 1e9)
        self.rates += rates
        return rates


# The contenders: each trains one epoch at a time and reports its duration.


class Contender(Protocol):
    name: str
    last_loss: float

    def train_epochs(self, epochs: int) -> list[float]:
        """Train `epochs` epochs; return the seconds each took."""


class OurStep:
    """training.vae.make_train_step, fed and called the way training.vae.train does."""

    def __init__(self, name: str, jit_compile: bool, images: np.ndarray, labels: np.ndarray):
        self.name = name
        self.last_loss = math.nan
        config = training.vae.TrainConfig(model=MODEL_CONFIG, batch_size=BATCH, binarize=False,
                                          learning_rate=LEARNING_RATE)
        config = dataclasses.replace(config, jit_compile=jit_compile)
        strategy = tf.distribute.get_strategy()
        self.model = zoo.vae.VAE(config.model)
        optimizer = keras.optimizers.Adam(config.learning_rate)
        optimizer.build(self.model.trainable_variables)
        self.step = tf.Variable(0, dtype=tf.int64)
        self.train_step = training.vae.make_train_step(self.model, optimizer, strategy, config, BATCH)
        self.dataset = (tf.data.Dataset.from_tensor_slices((images, labels))
                        .shuffle(len(images), seed=0, reshuffle_each_iteration=True)
                        .batch(BATCH, drop_remainder=True).prefetch(tf.data.AUTOTUNE))

    def train_epochs(self, epochs: int) -> list[float]:
        return [self._epoch() for _ in range(epochs)]

    def _epoch(self) -> float:
        start = time.perf_counter()
        sums: dict[str, float] = {}
        count = 0
        for images, labels in self.dataset:
            metrics = self.train_step(images, labels, self.step)
            self.step.assign_add(1)
            count += 1
            for name, value in metrics.items():
                sums[name] = sums.get(name, 0.0) + float(value)
        seconds = time.perf_counter() - start
        self.last_loss = sums["loss"] / count
        return seconds


# keras.io's VAE example (https://keras.io/examples/generative/vae/), written out here.


class Sampling(layers.Layer):
    """z = mean + exp(log_var / 2) * epsilon, epsilon ~ N(0, I)."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.seed_generator = keras.random.SeedGenerator(1337)

    def call(self, inputs):
        z_mean, z_log_var = inputs
        epsilon = keras.random.normal(ops.shape(z_mean), seed=self.seed_generator)
        return z_mean + ops.exp(0.5 * z_log_var) * epsilon


def keras_io_encoder(latent_dim: int = 2) -> keras.Model:
    inputs = keras.Input(shape=(28, 28, 1))
    x = layers.Conv2D(32, 3, activation="relu", strides=2, padding="same")(inputs)
    x = layers.Conv2D(64, 3, activation="relu", strides=2, padding="same")(x)
    x = layers.Flatten()(x)
    x = layers.Dense(16, activation="relu")(x)
    z_mean = layers.Dense(latent_dim, name="z_mean")(x)
    z_log_var = layers.Dense(latent_dim, name="z_log_var")(x)
    z = Sampling()([z_mean, z_log_var])
    return keras.Model(inputs, [z_mean, z_log_var, z], name="encoder")


def keras_io_decoder(latent_dim: int = 2) -> keras.Model:
    inputs = keras.Input(shape=(latent_dim,))
    x = layers.Dense(7 * 7 * 64, activation="relu")(inputs)
    x = layers.Reshape((7, 7, 64))(x)
    x = layers.Conv2DTranspose(64, 3, activation="relu", strides=2, padding="same")(x)
    x = layers.Conv2DTranspose(32, 3, activation="relu", strides=2, padding="same")(x)
    outputs = layers.Conv2DTranspose(1, 3, activation="sigmoid", padding="same")(x)
    return keras.Model(inputs, outputs, name="decoder")


class KerasIoVAE(keras.Model):
    """keras.io's VAE: a custom train_step over an encoder and a decoder."""

    def __init__(self, encoder: keras.Model, decoder: keras.Model, **kwargs):
        super().__init__(**kwargs)
        self.encoder = encoder
        self.decoder = decoder
        self.total_loss_tracker = keras.metrics.Mean(name="total_loss")
        self.reconstruction_loss_tracker = keras.metrics.Mean(name="reconstruction_loss")
        self.kl_loss_tracker = keras.metrics.Mean(name="kl_loss")

    @property
    def metrics(self):
        return [self.total_loss_tracker, self.reconstruction_loss_tracker, self.kl_loss_tracker]

    def train_step(self, data):
        with tf.GradientTape() as tape:
            z_mean, z_log_var, z = self.encoder(data)
            reconstruction = self.decoder(z)
            reconstruction_loss = ops.mean(ops.sum(
                keras.losses.binary_crossentropy(data, reconstruction), axis=(1, 2)))
            kl_loss = -0.5 * (1 + z_log_var - ops.square(z_mean) - ops.exp(z_log_var))
            kl_loss = ops.mean(ops.sum(kl_loss, axis=1))
            total_loss = reconstruction_loss + kl_loss
        grads = tape.gradient(total_loss, self.trainable_weights)
        self.optimizer.apply_gradients(zip(grads, self.trainable_weights))
        self.total_loss_tracker.update_state(total_loss)
        self.reconstruction_loss_tracker.update_state(reconstruction_loss)
        self.kl_loss_tracker.update_state(kl_loss)
        return {"loss": self.total_loss_tracker.result(),
                "reconstruction_loss": self.reconstruction_loss_tracker.result(),
                "kl_loss": self.kl_loss_tracker.result()}


class EpochTimer(keras.callbacks.Callback):
    """Seconds of each epoch of a fit, and its last logs."""

    def __init__(self):
        super().__init__()
        self.seconds: list[float] = []
        self.logs: dict = {}
        self._start = 0.0

    def on_epoch_begin(self, epoch, logs=None):
        self._start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        self.seconds.append(time.perf_counter() - self._start)
        self.logs = dict(logs or {})


class KerasIoFit:
    """keras.io's example trained with model.fit(x, epochs=..., batch_size=128)."""

    def __init__(self, name: str, images: np.ndarray):
        self.name = name
        self.last_loss = math.nan
        self.images = images
        self.model = KerasIoVAE(keras_io_encoder(), keras_io_decoder())
        self.model.compile(optimizer=keras.optimizers.Adam(LEARNING_RATE))

    def train_epochs(self, epochs: int) -> list[float]:
        timer = EpochTimer()
        self.model.fit(self.images, epochs=epochs, batch_size=BATCH, verbose=0, callbacks=[timer])
        self.last_loss = float(timer.logs["loss"])
        return timer.seconds


# The measurement and the report.


@dataclasses.dataclass
class Samples:
    """images/s of every timed epoch of one contender, grouped by round."""

    warm_up_seconds: float
    by_round: list[list[float]] = dataclasses.field(default_factory=list)

    @property
    def all(self) -> list[float]:
        return [rate for rates in self.by_round for rate in rates]


def measure(contenders: list[Contender], images_per_epoch: int, settings: Settings,
            peak: MatmulPeak) -> dict[str, Samples]:
    """Warm each contender up, then time epochs round-robin in a rotating order; probe the
    matmul peak at the start of every round."""
    samples: dict[str, Samples] = {}
    for contender in contenders:
        start = time.perf_counter()
        contender.train_epochs(1)
        samples[contender.name] = Samples(warm_up_seconds=time.perf_counter() - start)
        print(f"  warm-up {contender.name}: {samples[contender.name].warm_up_seconds:.1f} s", flush=True)
    for round_index in range(settings.rounds):
        shift = round_index % len(contenders)
        order = contenders[shift:] + contenders[:shift]
        rates = peak.probe(settings.peak_repeats)
        for contender in order:
            seconds = contender.train_epochs(settings.epochs_per_round)
            samples[contender.name].by_round.append([images_per_epoch / s for s in seconds])
        summary = ", ".join(f"{c.name} {statistics.median(samples[c.name].by_round[-1]):,.0f}" for c in order)
        print(f"  round {round_index + 1}/{settings.rounds} (images/s): {summary}; "
              f"matmul {statistics.median(rates):.0f} GFLOP/s", flush=True)
    return samples


def per_round_ratio(numerator: Samples, denominator: Samples) -> float:
    """Median over rounds of the ratio of the two contenders' medians in that round."""
    return statistics.median(statistics.median(a) / statistics.median(b)
                             for a, b in zip(numerator.by_round, denominator.by_round))


def report(samples: dict[str, Samples], losses: dict[str, float], train_flops: int, peak: float) -> None:
    print(f"\n{'contender':<16} {'images/s (median)':>17} {'% of peak':>9} {'best':>7} {'% of peak':>9}"
          f" {'epochs':>6} {'warm-up s':>9} {'last loss':>9}")
    for name, s in samples.items():
        median, best = statistics.median(s.all), max(s.all)
        print(f"{name:<16} {median:>17,.0f} {100 * median * train_flops / peak:>8.0f}%"
              f" {best:>7,.0f} {100 * best * train_flops / peak:>8.0f}% {len(s.all):>6}"
              f" {s.warm_up_seconds:>9.1f} {losses[name]:>9.1f}")
    fit = samples["keras.io fit"]
    for name in ("ours", "ours (XLA)"):
        overall = statistics.median(samples[name].all) / statistics.median(fit.all)
        print(f"ratio {name} / fit: {overall:.2f}  (per-round: {per_round_ratio(samples[name], fit):.2f})")


def parse_args(argv: list[str] | None) -> Settings:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.vae_train", description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="a short run (about a minute) to check it works")
    return QUICK if parser.parse_args(argv).quick else FULL


def main(argv: list[str] | None = None) -> int:
    settings = parse_args(argv)
    keras.utils.set_random_seed(0)
    data = load_images("mnist")
    count = min(len(data.train_images), MAX_IMAGES) // BATCH * BATCH  # whole batches only, for all three
    images, labels = data.train_images[:count], data.train_labels[:count]
    print(f"data: {count} of {data.source}, batch {BATCH}, {count // BATCH} steps per epoch")
    print(f"TensorFlow {tf.__version__}, Keras {keras.__version__}, "
          f"intra/inter-op threads {tf.config.threading.get_intra_op_parallelism_threads()}/"
          f"{tf.config.threading.get_inter_op_parallelism_threads()} (0 = one per core)")

    flops = forward_flops(MODEL_CONFIG)
    forward = sum(flops.values())
    print("\nforward FLOPs per image:")
    for layer, value in flops.items():
        print(f"  {layer:<40} {value / 1e6:7.2f} M  {100 * value / forward:4.1f}%")
    train_flops = 3 * forward
    print(f"  {'total':<40} {forward / 1e6:7.2f} M; one training step = 3x = {train_flops / 1e6:.1f} MFLOP per image")

    peak = MatmulPeak()
    rates = peak.probe(2 * settings.peak_repeats)
    print(f"\nfloat32 matmul peak (2048x2048): median {statistics.median(rates):.0f} GFLOP/s, "
          f"best {max(rates):.0f}")

    contenders: list[Contender] = [OurStep("ours", False, images, labels),
                                   OurStep("ours (XLA)", True, images, labels),
                                   KerasIoFit("keras.io fit", images)]
    params = {c.name: sum(int(np.prod(v.shape)) for v in c.model.trainable_variables) for c in contenders}
    print(f"trainable parameters: {params}")
    print(f"keras.io fit: jit_compile={contenders[2].model.jit_compile} (Keras' 'auto': off on CPU)")
    print(f"\n{settings.rounds} rounds x {settings.epochs_per_round} timed epochs per contender:")
    samples = measure(contenders, count, settings, peak)

    rates = peak.probe(2 * settings.peak_repeats)
    print(f"float32 matmul peak after the rounds: median {statistics.median(rates):.0f} GFLOP/s; "
          f"over the whole run: median {statistics.median(peak.rates):.0f}, best {max(peak.rates):.0f} "
          f"(% of peak below uses the median)")
    report(samples, {c.name: c.last_loss for c in contenders}, train_flops, statistics.median(peak.rates) * 1e9)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

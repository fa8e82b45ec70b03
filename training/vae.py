"""Train a VAE, autoencoder or denoising autoencoder on images.

    python -m training vae --preset demo --out runs/vae-demo [--key=value ...]

Order of work: config -> seed -> data -> model and optimizer under the strategy's scope ->
loop (update -> log -> evaluate -> checkpoint) -> final evaluation and pictures. Started
again with the same command, a run resumes from its last checkpoint, at the same batch.
"""
from __future__ import annotations

import dataclasses
import shutil
import time
from pathlib import Path
from typing import Literal

import keras
import numpy as np
import tensorflow as tf
from tqdm import tqdm

from training import plots
from training.config import flat_dict, parse_config
from training.data import ImageData, load_images
from training.runtime import UserError, checkpoint_dir, is_chief, make_strategy, read_json, write_json
from zoo.vae import VAE, VAEConfig


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Everything that defines a VAE training run; the model's own fields are nested."""

    model: VAEConfig = dataclasses.field(default_factory=VAEConfig)
    """Architecture and objective (its fields are options too: --latent_dim=2, --beta=4, ...)."""
    data: str = "mnist"
    """'mnist' (full if ~/.keras/datasets/mnist.npz exists, else 5,000 shipped digits), 'digits', or a folder."""
    binarize: bool = True
    """Binarize pixels: a fresh Bernoulli draw per epoch for training, one fixed draw for held-out."""
    conditional: bool = False
    """Condition encoder and decoder on the class label."""
    epochs: int = 30
    """Passes over the training images."""
    batch_size: int = 128
    """Images per replica per step (the global batch is this times the number of replicas)."""
    learning_rate: float = 1e-3
    """Adam step size."""
    seed: int = 0
    """Seed of initialisation, shuffling, binarization and posterior draws."""
    iw_samples: int = 100
    """k of the importance-weighted NLL bound computed on the held-out images at the end."""
    checkpoint_every: int = 200
    """Steps between checkpoints (one is also written at the end of every epoch)."""
    strategy: Literal["default", "mirrored", "multi_worker"] = "default"
    """tf.distribute strategy: one device, all local devices, or workers from TF_CONFIG."""
    jit_compile: bool = False
    """Compile the train step with XLA (for GPU/TPU; about 0.6x the speed on a 2-core CPU)."""

    def __post_init__(self):
        for name in ("epochs", "batch_size", "iw_samples", "checkpoint_every"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")
        if self.learning_rate <= 0:
            raise ValueError(f"learning_rate must be positive, got {self.learning_rate}")


# Presets: with no overrides, each reproduces the figures in its docstring (README table;
# held-out, shipped MNIST digits, nats per image, on a 2-core CPU).


def smoke() -> TrainConfig:
    """For tests: a small MLP VAE, 2 epochs. -ELBO 238.47, NLL <= 233.57 (k=8), 16 s."""
    return TrainConfig(model=VAEConfig(architecture="mlp", latent_dim=2, hidden_units=(64,)),
                       epochs=2, batch_size=100, iw_samples=8)


def demo() -> TrainConfig:
    """keras.io's conv VAE layout (encoder dense 64 where keras.io has 16) with a 2-D latent,
    so the latent map shows. -ELBO 164.73, NLL <= 162.26 (k=100), 1 min 56 s."""
    return TrainConfig(model=VAEConfig(architecture="conv", latent_dim=2, hidden_units=(64,)),
                       epochs=30, batch_size=128, iw_samples=100)


def mnist() -> TrainConfig:
    """The best held-out NLL we reached on the shipped digits within 15 minutes: -ELBO 102.44,
    NLL <= 94.77 (k=1000), 9 min 14 s. Past 100 epochs the held-out loss stops falling."""
    return TrainConfig(model=VAEConfig(architecture="conv", latent_dim=16, hidden_units=(256,)),
                       epochs=100, batch_size=64, iw_samples=1000)


PRESETS = {"smoke": smoke, "demo": demo, "mnist": mnist}
DERIVED = frozenset({"image_shape", "num_classes"})  # set from the data, not the command line


def prepare(config: TrainConfig, data: ImageData) -> TrainConfig:
    """Fill in what the data decides: image shape and number of classes."""
    model = dataclasses.replace(config.model, image_shape=data.image_shape,
                                num_classes=data.num_classes if config.conditional else 0)
    return dataclasses.replace(config, model=model)


def binarized(images: np.ndarray, seed: int) -> np.ndarray:
    """One fixed stochastic binarization (the held-out convention of Burda et al., 2016)."""
    return (np.random.default_rng(seed).random(images.shape) < images).astype(np.float32)


def check_resumable(run_dir: Path, config: TrainConfig) -> None:
    """Refuse to continue a run directory that holds a run with another config."""
    saved = run_dir / "config.json"
    if not saved.exists():
        return
    before, now = read_json(saved), flat_dict(config)
    differs = sorted(k for k in now if json_value(before.get(k)) != json_value(now[k]))
    if differs:
        raise UserError(f"{run_dir} holds a run with a different config (differs in: "
                         f"{', '.join(differs)}); use another --out, or the same options to resume")


def json_value(value):
    """A config value as it reads back from JSON (tuples become lists)."""
    return list(value) if isinstance(value, tuple) else value


def make_train_step(model: VAE, optimizer: keras.optimizers.Optimizer, strategy: tf.distribute.Strategy,
                    config: TrainConfig, global_batch: int):
    """A tf.function (images, labels, step) -> mean loss terms over the global batch.

    Each replica computes its share of the mean of D + beta * R over the global batch; the
    optimizer sums the replicas' gradients. `step` makes the posterior draws reproducible.
    """
    conditional = config.model.conditional

    # ALGO LOGIC: one gradient step on the mean of D + beta * R.
    def replica_step(images, labels, step):
        replica = tf.distribute.get_replica_context().replica_id_in_sync_group
        seed = tf.stack([step, tf.cast(config.seed * 1024 + replica, tf.int64)])  # a fresh draw per replica
        with tf.GradientTape() as tape:
            terms = model.loss_terms(images, labels if conditional else None, seed)
            loss = tf.nn.compute_average_loss(terms["loss"], global_batch_size=global_batch)
        gradients = tape.gradient(loss, model.trainable_variables)
        optimizer.apply_gradients(zip(gradients, model.trainable_variables))
        return {name: tf.reduce_sum(value) for name, value in terms.items()}

    replica_step = tf.function(replica_step, jit_compile=config.jit_compile)

    @tf.function
    def train_step(images, labels, step):
        sums = strategy.run(replica_step, args=(images, labels, step))
        return {name: strategy.reduce(tf.distribute.ReduceOp.SUM, value, axis=None) / global_batch
                for name, value in sums.items()}

    return train_step


def train(config: TrainConfig, run_dir: Path, *, progress: bool = True) -> dict:
    """Train (or resume) into `run_dir`; return the final metrics, also written to metrics.json."""
    # Strategy first: multi-worker collectives must be configured before any op runs.
    strategy = make_strategy(config.strategy)
    # Seed and data.
    keras.utils.set_random_seed(config.seed)
    data = load_images(config.data)
    config = prepare(config, data)
    check_resumable(run_dir, config)
    chief = is_chief(strategy)
    global_batch = config.batch_size * strategy.num_replicas_in_sync
    steps_per_epoch = len(data.train_images) // global_batch
    if steps_per_epoch == 0:
        raise UserError(f"the global batch ({global_batch}) is larger than the "
                         f"{len(data.train_images)} training images")
    total_steps = steps_per_epoch * config.epochs
    test_images = binarized(data.test_images, config.seed + 1) if config.binarize else data.test_images
    conditional = config.model.conditional

    def epoch_dataset(epoch: int, skip: int) -> tf.data.Dataset:
        """The epoch's shuffled, binarized batches, starting after `skip` batches (for resume)."""
        dataset = (tf.data.Dataset.from_tensor_slices((data.train_images, data.train_labels))
                   .shuffle(len(data.train_labels), seed=config.seed + epoch, reshuffle_each_iteration=False)
                   .batch(global_batch, drop_remainder=True).enumerate().skip(skip))
        if config.binarize:
            def draw(index, batch):
                images, labels = batch
                seed = tf.stack([tf.cast(config.seed, tf.int64), epoch * steps_per_epoch + index])
                return tf.cast(tf.random.stateless_uniform(tf.shape(images), seed) < images, tf.float32), labels
        else:
            def draw(index, batch):
                return batch
        return strategy.experimental_distribute_dataset(dataset.map(draw).prefetch(tf.data.AUTOTUNE))

    # Model and optimizer under the strategy's scope.
    with strategy.scope():
        model = VAE(config.model)
        optimizer = keras.optimizers.Adam(config.learning_rate)
        optimizer.build(model.trainable_variables)
        step = tf.Variable(0, dtype=tf.int64, trainable=False, name="step")
    checkpoint = tf.train.Checkpoint(model=model, optimizer=optimizer, step=step)
    manager = tf.train.CheckpointManager(checkpoint, checkpoint_dir(run_dir, strategy), max_to_keep=3)
    if manager.latest_checkpoint:
        checkpoint.restore(manager.latest_checkpoint).assert_existing_objects_matched()

    train_step = make_train_step(model, optimizer, strategy, config, global_batch)

    @tf.function(reduce_retracing=True)
    def evaluate_batch(images, labels):
        terms = model.loss_terms(images, labels if conditional else None, tf.constant([7, 7]))
        return {name: tf.reduce_sum(value) for name, value in terms.items()}

    def evaluate() -> dict[str, float]:
        """Mean held-out loss terms (one posterior draw per image, fixed seed)."""
        totals: dict[str, float] = {}
        for start in range(0, len(test_images), 500):
            sums = evaluate_batch(test_images[start:start + 500], data.test_labels[start:start + 500])
            for name, value in sums.items():
                totals[name] = totals.get(name, 0.0) + float(value)
        return {f"test_{name}": value / len(test_images) for name, value in totals.items()}

    # Training loop.
    done = int(step.numpy())  # steps taken so far, mirrored in Python
    metrics_path = run_dir / "metrics.json"
    if done == total_steps and metrics_path.exists():  # finished before: nothing to redo
        print(f"{run_dir} is already trained ({done} steps); its metrics.json and pictures stand")
        return read_json(metrics_path)
    history_path = run_dir / "history.json"
    history = [r for r in read_json(history_path) if r["step"] <= done] if history_path.exists() else []
    if chief:
        write_json(run_dir / "config.json", flat_dict(config))
        write_json(run_dir / "model.json", {"family": "vae", "config": dataclasses.asdict(config.model)})
        writer = tf.summary.create_file_writer(str(run_dir / "tensorboard"))
        with writer.as_default(step=done):
            tf.summary.text("config", "\n".join(f"    {k} = {v}" for k, v in flat_dict(config).items()))
    else:
        writer = tf.summary.create_noop_writer()
    if done == 0:
        history = [{"step": 0, "epoch": 0, **evaluate()}]
    bar = tqdm(total=total_steps, initial=done, unit="step", disable=not (progress and chief),
               dynamic_ncols=True, desc="vae")
    if manager.latest_checkpoint and chief:
        bar.write(f"resuming from step {done} ({manager.latest_checkpoint})")
    while done < total_steps:
        epoch, skip = divmod(done, steps_per_epoch)
        sums, count, started = {}, 0, time.perf_counter()
        for images, labels in epoch_dataset(epoch, skip):
            metrics = train_step(images, labels, step)
            step.assign_add(1)
            done += 1
            count += 1
            for name, value in metrics.items():
                sums[name] = sums.get(name, 0.0) + float(value)
            if done % 20 == 0:
                with writer.as_default(step=done):
                    for name, value in metrics.items():
                        tf.summary.scalar(f"train/{name}", value)
                bar.set_postfix(loss=f"{float(metrics['loss']):.2f}", epoch=epoch + 1)
            bar.update(1)
            if done % config.checkpoint_every == 0:
                manager.save(checkpoint_number=done)
        seconds = time.perf_counter() - started
        record = {"step": done, "epoch": epoch + 1, **{f"train_{k}": v / count for k, v in sums.items()},
                  "images_per_second": count * global_batch / seconds, **evaluate()}
        history.append(record)
        if done % config.checkpoint_every:  # else the loop has just saved this step
            manager.save(checkpoint_number=done)
        if chief:
            write_json(history_path, history)
            with writer.as_default(step=done):
                for name, value in record.items():
                    if name.startswith("test_") or name == "images_per_second":
                        tf.summary.scalar(name.replace("test_", "test/"), value)
    bar.close()

    # Final evaluation and pictures.
    metrics = final_metrics(model, config, data, test_images, history)
    if not chief:
        shutil.rmtree(manager.directory, ignore_errors=True)  # this worker's scratch checkpoints
    if chief:
        write_json(metrics_path, metrics)
        np.savez_compressed(run_dir / "examples.npz", images=test_images[:8], labels=data.test_labels[:8])
        draw_pictures(model, config, data, test_images, history, run_dir)
        writer.flush()
    return metrics


def final_metrics(model: VAE, config: TrainConfig, data: ImageData, test_images: np.ndarray,
                  history: list[dict]) -> dict:
    """Held-out ELBO terms and, for a VAE, the importance-weighted NLL bound."""
    last = history[-1] if history else {}
    speeds = [r["images_per_second"] for r in history if "images_per_second" in r]
    metrics = {
        "data": data.source, "train_images": len(data.train_images), "test_images": len(test_images),
        "steps": last.get("step", 0), "epochs": last.get("epoch", 0),
        "images_per_second_median": float(np.median(speeds)) if speeds else None,
        **{k: v for k, v in last.items() if k.startswith("test_")},
    }
    if config.model.kind == "vae":
        k = config.iw_samples
        rows = max(1, 8192 // k)  # keep k * rows decoder inputs per call

        @tf.function(reduce_retracing=True)
        def bound(images, labels, seed):
            return model.importance_weighted_log_likelihood(
                images, labels if config.model.conditional else None, k, seed)

        total = 0.0
        for start in range(0, len(test_images), rows):
            seed = tf.constant([config.seed + 11, start], tf.int64)
            total += float(tf.reduce_sum(bound(test_images[start:start + rows],
                                               data.test_labels[start:start + rows], seed)))
        metrics["test_iw_nll"] = -total / len(test_images)
        metrics["iw_samples"] = k
        metrics["test_negative_elbo"] = -metrics["test_elbo"]
    return metrics


def draw_pictures(model: VAE, config: TrainConfig, data: ImageData, test_images: np.ndarray,
                  history: list[dict], run_dir: Path) -> None:
    """samples.png, reconstructions.png, latent.png, learning_curves.png in the run directory."""
    conditional = config.model.conditional
    labels = np.arange(64) % data.num_classes if conditional else None
    title = f"{config.model.kind} samples" + (" (row-wise labels 0..)" if conditional else "")
    plots.image_grid(model.sample(tf.range(64, dtype=tf.int64), labels).numpy(), run_dir / "samples.png", title)
    originals, originals_labels = test_images[:32], data.test_labels[:32]
    reconstructed = model.decode(model.encode(originals, originals_labels if conditional else None)[0],
                                 originals_labels if conditional else None).numpy()
    plots.reconstructions(originals, reconstructed, run_dir / "reconstructions.png",
                          "held-out originals | reconstructions")
    if config.model.latent_dim == 2 and not conditional:
        plots.latent_map(lambda z: model.decode(z).numpy(), run_dir / "latent.png",
                         "decoded 2-D latent grid (Gaussian quantiles)")
    else:
        means = np.concatenate([model.encode(test_images[i:i + 500],
                                             data.test_labels[i:i + 500] if conditional else None)[0].numpy()
                                for i in range(0, len(test_images), 500)])
        plots.latent_scatter(means, data.test_labels, run_dir / "latent.png", "held-out posterior means")
    plots.learning_curves(history, ["train_loss", "test_loss"], run_dir / "learning_curves.png",
                          "loss (nats per image)")


def main(argv: list[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(prog="python -m training vae", description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, required=True, help="run directory (created; resumed if it exists)")
    parser.add_argument("--no_progress", action="store_true", help="hide the progress bar")
    config, args = parse_config(argv, parser, PRESETS, "demo", hidden=DERIVED)
    try:
        metrics = train(config, args.out, progress=not args.no_progress)
    except UserError as error:
        parser.exit(2, f"{parser.prog}: error: {error}\n")
    keys = ("test_negative_elbo", "test_iw_nll", "test_rate", "test_distortion", "images_per_second_median")
    print("\n".join(f"{key}: {metrics[key]:.2f}" for key in keys if metrics.get(key) is not None))
    if "test_iw_nll" in metrics:
        print(f"(NLL bound with k={metrics['iw_samples']}, nats per image, {metrics['data']})")
    print(f"run directory: {args.out} (checkpoints/, tensorboard/, metrics.json, samples.png, "
          f"reconstructions.png, latent.png, learning_curves.png)")
    return 0

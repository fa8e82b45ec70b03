"""The training loop every model family shares.

Order of work: strategy -> seed -> data -> model and optimizer under the strategy's scope ->
loop (update -> log -> evaluate -> checkpoint) -> final evaluation and pictures. A family
gives its model class (with `loss_terms(images, labels, seed)` returning per-example terms,
`loss` among them), its final metrics and its pictures. Started again with the same
command, a run resumes from its last checkpoint, at the same batch.
"""
from __future__ import annotations

import argparse
import dataclasses
import shutil
import time
from pathlib import Path
from typing import Callable, Literal

import keras
import numpy as np
import tensorflow as tf
from tqdm import tqdm

import zoo
from training.config import flat_dict, parse_config
from training.data import ImageData, load_images
from training.runtime import UserError, checkpoint_dir, is_chief, make_strategy, read_json, write_json


@dataclasses.dataclass(frozen=True)
class RunOptions:
    """What every training run has: data, schedule, seed, checkpoints, strategy."""

    data: str = "mnist"
    """'mnist' (full if ~/.keras/datasets/mnist.npz exists, else 5,000 shipped digits), 'digits', or a folder."""
    binarize: bool = True
    """Binarize pixels: a fresh Bernoulli draw per epoch for training, one fixed draw for held-out."""
    conditional: bool = False
    """Condition the model on the class label."""
    epochs: int = 30
    """Passes over the training images."""
    batch_size: int = 128
    """Images per replica per step (the global batch is this times the number of replicas)."""
    learning_rate: float = 1e-3
    """Adam step size."""
    seed: int = 0
    """Seed of initialisation, shuffling, binarization and the model's draws."""
    checkpoint_every: int = 200
    """Steps between checkpoints (one is also written at the end of every epoch)."""
    strategy: Literal["default", "mirrored", "multi_worker"] = "default"
    """tf.distribute strategy: one device, all local devices, or workers from TF_CONFIG."""
    jit_compile: bool = False
    """Compile the train step with XLA (for GPU/TPU; about 0.6x the speed on a 2-core CPU)."""

    def __post_init__(self):
        for name in ("epochs", "batch_size", "checkpoint_every"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")
        if self.learning_rate <= 0:
            raise ValueError(f"learning_rate must be positive, got {self.learning_rate}")


@dataclasses.dataclass(frozen=True)
class Family:
    """What a model family adds to the shared loop."""

    name: str
    model_class: type
    final_metrics: Callable[..., dict]
    """(model, config, data, held-out images, history) -> the family's own final metrics."""
    draw_pictures: Callable[..., None]
    """(model, config, data, held-out images, history, run_dir) -> writes the family's pictures."""


DERIVED = frozenset({"image_shape", "num_classes"})  # set from the data, not the command line


def prepare(config: RunOptions, data: ImageData) -> RunOptions:
    """Fill in what the data decides: image shape and number of classes."""
    model = dataclasses.replace(config.model, image_shape=data.image_shape,
                                num_classes=data.num_classes if config.conditional else 0)
    return dataclasses.replace(config, model=model)


def binarized(images: np.ndarray, seed: int) -> np.ndarray:
    """One fixed stochastic binarization (the held-out convention of Burda et al., 2016)."""
    return (np.random.default_rng(seed).random(images.shape) < images).astype(np.float32)


def check_resumable(run_dir: Path, config: RunOptions) -> None:
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


def make_train_step(model: keras.Model, optimizer: keras.optimizers.Optimizer, strategy: tf.distribute.Strategy,
                    config: RunOptions, global_batch: int):
    """A tf.function (images, labels, step) -> mean loss terms over the global batch.

    Each replica computes its share of the mean of the model's per-example `loss` over the
    global batch; the optimizer sums the replicas' gradients. `step` seeds the model's
    draws (a VAE's posterior samples), so a run is reproducible.
    """
    conditional = config.model.conditional

    # ALGO LOGIC: one gradient step on the mean per-example loss.
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


def train(config: RunOptions, run_dir: Path, family: Family, *, progress: bool = True) -> dict:
    """Train (or resume) `family`'s model into `run_dir`; return the final metrics (also in metrics.json)."""
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
        model = family.model_class(config.model)
        optimizer = keras.optimizers.Adam(config.learning_rate)
        optimizer.build(model.trainable_variables)
        step = tf.Variable(0, dtype=tf.int64, trainable=False, name="step")
    checkpoint = tf.train.Checkpoint(**zoo.checkpointed(model), optimizer=optimizer, step=step)
    manager = tf.train.CheckpointManager(checkpoint, checkpoint_dir(run_dir, strategy), max_to_keep=3)
    if manager.latest_checkpoint:
        checkpoint.restore(manager.latest_checkpoint).assert_existing_objects_matched()

    train_step = make_train_step(model, optimizer, strategy, config, global_batch)

    @tf.function(reduce_retracing=True)
    def evaluate_batch(images, labels):
        terms = model.loss_terms(images, labels if conditional else None, tf.constant([7, 7], tf.int64))
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
        write_json(run_dir / "model.json", {"family": family.name, "config": dataclasses.asdict(config.model)})
        writer = tf.summary.create_file_writer(str(run_dir / "tensorboard"))
        with writer.as_default(step=done):
            tf.summary.text("config", "\n".join(f"    {k} = {v}" for k, v in flat_dict(config).items()))
    else:
        writer = tf.summary.create_noop_writer()
    if done == 0:
        history = [{"step": 0, "epoch": 0, **evaluate()}]
    bar = tqdm(total=total_steps, initial=done, unit="step", disable=not (progress and chief),
               dynamic_ncols=True, desc=family.name)
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
    metrics = {**common_metrics(data, test_images, history),
               **family.final_metrics(model, config, data, test_images, history)}
    if not chief:
        shutil.rmtree(manager.directory, ignore_errors=True)  # this worker's scratch checkpoints
    if chief:
        write_json(metrics_path, metrics)
        np.savez_compressed(run_dir / "examples.npz", images=test_images[:8], labels=data.test_labels[:8])
        family.draw_pictures(model, config, data, test_images, history, run_dir)
        writer.flush()
    return metrics


def command(argv: list[str] | None, family: Family, presets: dict, description: str) -> tuple[dict, Path]:
    """`python -m training FAMILY`: parse presets and options, train; (metrics, run directory).

    A UserError (bad data, a run directory holding another config) exits 2 with one sentence.
    """
    parser = argparse.ArgumentParser(prog=f"python -m training {family.name}", description=description)
    parser.add_argument("--out", type=Path, required=True, help="run directory (created; resumed if it exists)")
    parser.add_argument("--no_progress", action="store_true", help="hide the progress bar")
    config, args = parse_config(argv, parser, presets, "demo", hidden=DERIVED)
    try:
        return train(config, args.out, family, progress=not args.no_progress), args.out
    except UserError as error:
        parser.exit(2, f"{parser.prog}: error: {error}\n")


def common_metrics(data: ImageData, test_images: np.ndarray, history: list[dict]) -> dict:
    """Data, size, steps, speed, and the last held-out evaluation: what every family reports."""
    last = history[-1] if history else {}
    speeds = [r["images_per_second"] for r in history if "images_per_second" in r]
    return {
        "data": data.source, "train_images": len(data.train_images), "test_images": len(test_images),
        "steps": last.get("step", 0), "epochs": last.get("epoch", 0),
        "images_per_second_median": float(np.median(speeds)) if speeds else None,
        **{k: v for k, v in last.items() if k.startswith("test_")},
    }

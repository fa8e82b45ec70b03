"""The training loop of the image model families (vae.py, cvae.py, pixelcnn.py, pixelrnn.py).

Order of work: strategy -> seed -> data -> model and optimizer under the strategy's scope ->
loop (update -> log -> evaluate -> checkpoint) -> final evaluation and pictures. A family
gives its model class (with `loss_terms(images, labels, seed)` returning per-example terms,
`loss` among them), its final metrics and its pictures. Started again with the same
command, a run resumes from its last checkpoint, at the same batch, and ends as the
uninterrupted run would (the data order and every draw follow from the seed and the step).
"""
from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Callable, Literal

import keras
import numpy as np
import tensorflow as tf
from tqdm import tqdm

from rundir import Run, UserError
from training.config import check_at_least_one, run_command
from training.data import ImageData, load_images
from training.runtime import is_chief, make_strategy


@dataclasses.dataclass(frozen=True)
class ImageRunOptions:
    """What every image model's run has: data, schedule, seed, checkpoints, strategy."""

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
        check_at_least_one(self, "epochs", "batch_size", "checkpoint_every")
        if self.learning_rate <= 0:
            raise ValueError(f"learning_rate must be positive, got {self.learning_rate}")


@dataclasses.dataclass(frozen=True)
class ImageFamily:
    """What an image model family adds to the loop."""

    name: str
    model_class: type
    final_metrics: Callable[..., dict]
    """(model, config, data, held-out images, history) -> the family's own final metrics."""
    draw_pictures: Callable[..., None]
    """(model, config, data, held-out images, history, run_dir) -> writes the family's pictures."""
    example_inputs: Callable[..., dict] = lambda config, count: {}
    """(config, count) -> the signatures' other inputs for `count` held-out images, by name (export's
    warm-up requests take them beside the images)."""


DERIVED = frozenset({"image_shape", "num_classes"})  # set from the data, not the command line


def prepare(config: ImageRunOptions, data: ImageData) -> ImageRunOptions:
    """Fill in what the data decides: image shape and number of classes."""
    model = dataclasses.replace(config.model, image_shape=data.image_shape,
                                num_classes=data.num_classes if config.conditional else 0)
    return dataclasses.replace(config, model=model)


def binarized(images: np.ndarray, seed: int) -> np.ndarray:
    """One fixed stochastic binarization (the held-out convention of Burda et al., 2016)."""
    return (np.random.default_rng(seed).random(images.shape) < images).astype(np.float32)


def held_out_images(data: ImageData, binarize: bool, seed: int) -> np.ndarray:
    """The held-out images a run with these options is scored on: one fixed binarization (from the seed), or as is."""
    return binarized(data.test_images, seed + 1) if binarize else data.test_images


def load_finished(run_dir: Path) -> tuple[keras.Model, dict]:
    """A finished training run's model and `load_run`'s info about it, for the commands that read
    trained runs; a UserError names what is wrong (no run, no checkpoint, not finished)."""
    from export.savedmodel import ExportError, load_run

    try:
        model, info = load_run(run_dir)
    except ExportError as error:
        raise UserError(str(error)) from None
    if not info["run"].finished:
        raise UserError(f"{run_dir} has not finished training (no metrics.json); finish it with its own command")
    return model, info


def make_train_step(model: keras.Model, optimizer: keras.optimizers.Optimizer, strategy: tf.distribute.Strategy,
                    config: ImageRunOptions, global_batch: int):
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


def train(config: ImageRunOptions, out: str | Path, family: ImageFamily, *, progress: bool = True) -> dict:
    """Train (or resume) `family`'s model into the run directory `out`; return the final metrics."""
    # Strategy first: multi-worker collectives must be configured before any op runs.
    strategy = make_strategy(config.strategy)
    # Seed and data.
    keras.utils.set_random_seed(config.seed)
    data = load_images(config.data)
    config = prepare(config, data)
    run = Run.open(out, config, family=family.name, kind="image_model", model=config.model, chief=is_chief(strategy))
    if run.finished:
        return run.metrics
    global_batch = config.batch_size * strategy.num_replicas_in_sync
    steps_per_epoch = len(data.train_images) // global_batch
    if steps_per_epoch == 0:
        raise UserError(f"the global batch ({global_batch}) is larger than the "
                        f"{len(data.train_images)} training images")
    total_steps = steps_per_epoch * config.epochs
    test_images = held_out_images(data, config.binarize, config.seed)
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
    checkpoints = run.checkpoints(config.checkpoint_every, model=model, optimizer=optimizer, step=step)
    saved = checkpoints.restore()
    partial = saved.state if saved else {}  # the sums of an epoch interrupted part-way

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
    if done == 0:
        run.history.append({"step": 0, "epoch": 0, **evaluate()})
    bar = tqdm(total=total_steps, initial=done, unit="step", disable=not (progress and run.chief),
               dynamic_ncols=True, desc=family.name)
    while done < total_steps:
        epoch, skip = divmod(done, steps_per_epoch)
        sums, count = partial.pop("sums", {}), partial.pop("count", 0)
        before = partial.pop("seconds", 0.0)  # this epoch's training time before an interruption
        timed, started = 0, time.perf_counter()
        for images, labels in epoch_dataset(epoch, skip):
            metrics = train_step(images, labels, step)
            step.assign_add(1)
            done += 1
            count += 1
            timed += 1
            for name, value in metrics.items():
                sums[name] = sums.get(name, 0.0) + float(value)
            if done % 20 == 0:
                run.log(done, {f"train/{name}": value for name, value in metrics.items()})
                bar.set_postfix(loss=f"{float(metrics['loss']):.2f}", epoch=epoch + 1)
            bar.update(1)
            if done % config.checkpoint_every == 0 and done % steps_per_epoch:  # the epoch's end saves below
                checkpoints.save(done, state={"sums": sums, "count": count,
                                              "seconds": before + time.perf_counter() - started})
        seconds = time.perf_counter() - started
        record = {"step": done, "epoch": epoch + 1, **{f"train_{k}": v / count for k, v in sums.items()},
                  "images_per_second": timed * global_batch / seconds, "train_seconds": before + seconds,
                  **evaluate()}
        run.history.append(record)
        checkpoints.save(done)
        run.log(done, {name.replace("test_", "test/"): value for name, value in record.items()
                       if name.startswith("test_") or name == "images_per_second"})
    bar.close()

    # Final evaluation and pictures.
    metrics = {**common_metrics(data, test_images, run.history),
               **family.final_metrics(model, config, data, test_images, run.history)}
    if run.chief:
        run.write_examples(images=test_images[:8], **({"label": data.test_labels[:8]} if conditional else {}),
                           **family.example_inputs(config, 8))
        family.draw_pictures(model, config, data, test_images, run.history, run.directory)
    return run.finish(metrics)


def command(argv: list[str] | None, family: ImageFamily, presets: dict, description: str) -> tuple[dict, Path]:
    """`python -m training FAMILY`: parse presets and options, train; (metrics, run directory)."""
    return run_command(argv, family.name, description, presets, "demo",
                       lambda config, out, progress: train(config, out, family, progress=progress), hidden=DERIVED)


def common_metrics(data: ImageData, test_images: np.ndarray, history: list[dict]) -> dict:
    """Data, size, steps, speed, training time (the train steps' wall time, evaluations left out),
    and the last held-out evaluation: what every image family reports."""
    last = history[-1] if history else {}
    speeds = [r["images_per_second"] for r in history if "images_per_second" in r]
    return {
        "data": data.source, "train_images": len(data.train_images), "test_images": len(test_images),
        "steps": last.get("step", 0), "epochs": last.get("epoch", 0),
        "images_per_second_median": float(np.median(speeds)) if speeds else None,
        "train_seconds": sum(r.get("train_seconds", 0.0) for r in history),
        **{k: v for k, v in last.items() if k.startswith("test_")},
    }

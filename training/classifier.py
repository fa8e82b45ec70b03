"""The autoencoder lecture's recipe: pretrain an autoencoder on unlabelled images, throw away the
decoder, train a classifier head on its encoder with the few labels there are, then fine-tune
the encoder; against the same network trained from scratch on the same labels.

    python -m training ae_classifier --encoder_from runs/vae-mnist --labels_per_class 10 --out runs/clf-10

For every seed, OUT/pretrained-SEED and OUT/scratch-SEED are classifier runs (exportable:
`python -m export OUT/pretrained-0 --model_base_path models --name classifier`); OUT/metrics.json
has their held-out accuracies and the medians over the seeds.

Schedule: the pretrained classifier trains its head alone for `head_steps` (encoder frozen),
then every weight for `finetune_steps` at `finetune_learning_rate`; the from-scratch one
trains every weight for the same `head_steps + finetune_steps` at `learning_rate`. Both see
the same K labelled images per class (drawn by the seed from the autoencoder's training
split), binarized afresh at every step when the autoencoder was trained on binarized images.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from rundir import Run, UserError
from training import image_loop
from training.config import check_at_least_one, run_command
from training.data import load_images
from zoo.classifier import Classifier, ClassifierConfig
from zoo.vae import VAE


@dataclasses.dataclass(frozen=True)
class Schedule:
    """The labels and the optimisation, the same for the pretrained and the from-scratch network."""

    labels_per_class: int = 10
    """K: labelled training images per class."""
    head_steps: int = 300
    """Adam steps on the head alone (encoder frozen) for the pretrained network."""
    finetune_steps: int = 300
    """Then Adam steps on every weight (the from-scratch network trains every weight for both phases)."""
    learning_rate: float = 3e-3
    """Adam step size of the head phase, and of the whole from-scratch run."""
    finetune_learning_rate: float = 3e-4
    """Adam step size of the pretrained network's fine-tuning."""
    batch_size: int = 100
    """Labelled images per step (at most all of them)."""
    head_units: tuple[int, ...] = ()
    """Dense ReLU layers between the code and the softmax; none gives a linear softmax on the code."""

    def __post_init__(self):
        check_at_least_one(self, "labels_per_class", "head_steps", "batch_size")
        if self.finetune_steps < 0:
            raise ValueError(f"finetune_steps must be 0 or more, got {self.finetune_steps}")
        if min(self.learning_rate, self.finetune_learning_rate) <= 0:
            raise ValueError("learning_rate and finetune_learning_rate must be positive")


@dataclasses.dataclass(frozen=True)
class CompareConfig:
    """The pretrained autoencoder, the seeds, and the schedule both networks follow."""

    encoder_from: str = ""
    """Run directory of the autoencoder whose encoder is pretrained (python -m training vae ... --out RUN)."""
    seeds: tuple[int, ...] = (0, 1, 2)
    """One pretrained and one from-scratch classifier per seed (the seed picks the labelled images too)."""
    schedule: Schedule = dataclasses.field(default_factory=Schedule)
    """Labels and optimisation (its fields are options too: --labels_per_class=100, ...)."""


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """One classifier run."""

    model: ClassifierConfig
    """The network (the autoencoder's encoder layout and the head)."""
    encoder_from: str
    """The autoencoder run whose encoder weights start the network (`train` gets its model), or "" for none."""
    data: str
    """The autoencoder's data set."""
    binarize: bool
    """Binarize the images, as the autoencoder saw them."""
    seed: int
    """Seed of the labelled images, initialisation and binarization."""
    schedule: Schedule
    """Labels and optimisation."""


def labelled_subset(labels: np.ndarray, per_class: int, seed: int) -> np.ndarray:
    """Indices of `per_class` images of every class, drawn without replacement by `seed`."""
    rng = np.random.default_rng(seed)
    chosen = []
    for label in np.unique(labels):
        members = np.flatnonzero(labels == label)
        if len(members) < per_class:
            raise UserError(f"class {label} has {len(members)} training images, fewer than --labels_per_class "
                            f"{per_class}")
        chosen.append(rng.choice(members, per_class, replace=False))
    return np.sort(np.concatenate(chosen))


def accuracy(model: Classifier, images: np.ndarray, labels: np.ndarray) -> float:
    """Fraction of `images` classified as their label."""
    correct = sum(int(tf.reduce_sum(model.loss_terms(images[i:i + 500], labels[i:i + 500], None)["accuracy"]))
                  for i in range(0, len(images), 500))
    return correct / len(images)


def train(config: TrainConfig, out: str | Path, autoencoder: VAE | None = None) -> dict:
    """Train one classifier (from `autoencoder`'s encoder when given) into the run directory `out`."""
    keras.utils.set_random_seed(config.seed)
    data = load_images(config.data)
    schedule = config.schedule
    model = Classifier(config.model)
    if autoencoder is not None:
        model.copy_encoder(autoencoder)
    run = Run.open(out, config, family="classifier", kind="image_model", model=model.config)
    if run.finished:
        return run.metrics
    chosen = labelled_subset(data.train_labels, schedule.labels_per_class, config.seed)
    train_images, train_labels = data.train_images[chosen], data.train_labels[chosen]
    test_images = image_loop.held_out_images(data, config.binarize, config.seed)
    batch = min(schedule.batch_size, len(chosen))
    rng = np.random.default_rng(config.seed)

    def phase(steps: int, learning_rate: float, first_step: int) -> None:
        """`steps` Adam steps on the model's trainable variables as they are now."""
        optimizer = keras.optimizers.Adam(learning_rate)
        variables = model.trainable_variables

        # ALGO LOGIC: one step on the mean cross-entropy of a batch of labelled images.
        @tf.function
        def step(images, labels, seed):
            if config.binarize:
                images = tf.cast(tf.random.stateless_uniform(tf.shape(images), seed) < images, tf.float32)
            with tf.GradientTape() as tape:
                loss = tf.reduce_mean(model.loss_terms(images, labels, seed)["loss"])
            optimizer.apply_gradients(zip(tape.gradient(loss, variables), variables))
            return loss

        for i in range(steps):
            rows = rng.choice(len(chosen), batch, replace=False)
            loss = step(train_images[rows], train_labels[rows], tf.constant([config.seed, first_step + i], tf.int64))
            if (first_step + i + 1) % 50 == 0:
                run.log(first_step + i + 1, {"train/loss": loss})

    total = schedule.head_steps + schedule.finetune_steps
    if autoencoder is not None:
        model.set_encoder_frozen(True)
        phase(schedule.head_steps, schedule.learning_rate, 0)
        run.history.append({"step": schedule.head_steps, "phase": "head, encoder frozen",
                            "test_accuracy": accuracy(model, test_images, data.test_labels)})
        model.set_encoder_frozen(False)
        phase(schedule.finetune_steps, schedule.finetune_learning_rate, schedule.head_steps)
    else:
        phase(total, schedule.learning_rate, 0)
    run.history.append({"step": total, "phase": "fine-tuned" if autoencoder is not None else "from scratch",
                        "test_accuracy": accuracy(model, test_images, data.test_labels)})
    run.checkpoints(total, model=model).save(total)
    run.write_examples(images=test_images[:8])
    metrics = {"test_accuracy": run.history[-1]["test_accuracy"], "labelled_images": len(chosen), "steps": total,
               "test_images": len(test_images), "data": data.source}
    if autoencoder is not None:
        metrics["test_accuracy_head_only"] = run.history[0]["test_accuracy"]
    return run.finish(metrics)


def compare(config: CompareConfig, out: str | Path, *, progress: bool = False) -> dict:
    """Per seed, a classifier on the pretrained encoder and the same network from scratch; accuracies
    and their medians over the seeds."""
    if not config.encoder_from:
        raise UserError("--encoder_from is required: the run directory of a trained VAE or autoencoder")
    autoencoder, info = image_loop.load_finished(Path(config.encoder_from))
    if info["family"] != "vae":
        raise UserError(f"{config.encoder_from} holds a {info['family']} run; expected a VAE or autoencoder run")
    try:
        model_config = ClassifierConfig.from_autoencoder(autoencoder.config, head_units=config.schedule.head_units)
    except ValueError as error:
        raise UserError(f"{config.encoder_from}: {error}") from None
    run = Run.open(out, config, family="ae_classifier", kind="comparison")
    if run.finished:
        return run.metrics
    options = info["run"].config
    results: dict[str, list[float]] = {"pretrained": [], "scratch": []}
    head_only = []
    for seed in config.seeds:
        for variant in results:
            pretrained = variant == "pretrained"
            one = TrainConfig(model=model_config, encoder_from=config.encoder_from if pretrained else "",
                              data=options["data"], binarize=options["binarize"], seed=seed, schedule=config.schedule)
            metrics = train(one, run.directory / f"{variant}-{seed}", autoencoder if pretrained else None)
            results[variant].append(metrics["test_accuracy"])
            if pretrained:
                head_only.append(metrics["test_accuracy_head_only"])
            if progress:
                print(f"seed {seed}, {variant}: held-out accuracy {metrics['test_accuracy']:.4f}", flush=True)
    medians = {variant: float(np.median(values)) for variant, values in results.items()}
    return run.finish({"labels_per_class": config.schedule.labels_per_class, "seeds": list(config.seeds),
                       "accuracy": results, "accuracy_head_only": head_only, "median": medians,
                       "median_head_only": float(np.median(head_only)),
                       "pretrained_minus_scratch": medians["pretrained"] - medians["scratch"]})


def main(argv: list[str] | None = None) -> int:
    summary, out = run_command(argv, "ae_classifier", "A classifier on a pretrained encoder against one from scratch.",
                               {"default": CompareConfig}, "default", compare)
    k = summary["labels_per_class"]
    print(f"held-out accuracy with {k} labels per class, seeds {summary['seeds']}:")
    for variant in ("pretrained", "scratch"):
        values = ", ".join(f"{a:.4f}" for a in summary["accuracy"][variant])
        print(f"{variant:>10}: median {summary['median'][variant]:.4f} ({values})")
    print(f"head alone on the frozen encoder: median {summary['median_head_only']:.4f}")
    print(f"pretrained - scratch (medians): {summary['pretrained_minus_scratch']:+.4f}")
    return 0

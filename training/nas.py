"""Architecture search: an RNN controller trained by REINFORCE designs small CNNs for
scikit-learn's 8x8 digits.

    python -m training nas --preset demo --out runs/nas      # about 2.5 minutes on 2 cores

Order of work: data (the digits' training split cut again into child-training and
validation images; the test split only scores the best architecture, at the end) ->
controller, optimizer -> loop (sample architectures -> train each child briefly -> reward =
its validation accuracy -> one REINFORCE step against the moving-average baseline ->
checkpoint) -> the best architecture, metrics.json, history.json, nas_rewards.png.

A child's training is seeded, so an architecture always earns the same reward; an
architecture sampled again reuses it instead of training again.
"""
from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import keras
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from tqdm import tqdm  # noqa: E402

from rundir import Run  # noqa: E402
from training.config import run_command  # noqa: E402
from training.data import load_digits  # noqa: E402
from zoo.nas import (Architecture, Controller, SearchSpace, build_child, controller_loss, describe,  # noqa: E402
                     moving_average)


@dataclasses.dataclass(frozen=True)
class NASConfig:
    """A search: the space, the controller and its REINFORCE settings, and how children train."""

    space: SearchSpace = dataclasses.field(default_factory=SearchSpace)
    """What each layer of a child may be (its fields are options too: --num_layers=2)."""
    controller_units: int = 32
    """Width of the controller's LSTM."""
    controller_steps: int = 20
    """REINFORCE updates of the controller."""
    architectures_per_step: int = 5
    """Architectures sampled (and children trained) per update."""
    controller_learning_rate: float = 0.01
    """Adam step size of the controller."""
    baseline_decay: float = 0.8
    """Decay of the reward's moving average that serves as the baseline."""
    entropy_weight: float = 0.01
    """Weight of the controller's entropy bonus (keeps it exploring)."""
    child_epochs: int = 5
    """Passes over the child-training images per child."""
    child_batch_size: int = 64
    """Child minibatch size."""
    child_learning_rate: float = 0.01
    """Adam step size of each child."""
    validation_fraction: float = 0.25
    """Share of the digits' training split held out to score children (the reward)."""
    seed: int = 0
    """Seed of the controller's initialisation and draws, and of every child's."""

    def __post_init__(self):
        for name in ("controller_units", "controller_steps", "architectures_per_step", "child_epochs",
                     "child_batch_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")
        if not 0 <= self.baseline_decay < 1:
            raise ValueError(f"baseline_decay must be in [0, 1), got {self.baseline_decay}")
        if not 0 < self.validation_fraction < 1:
            raise ValueError(f"validation_fraction must be in (0, 1), got {self.validation_fraction}")


PRESETS = {
    "demo": NASConfig,
    "smoke": lambda: NASConfig(controller_steps=2, architectures_per_step=2, child_epochs=1),  # for tests
}


@dataclasses.dataclass(frozen=True)
class Splits:
    train: tuple[np.ndarray, np.ndarray]
    validation: tuple[np.ndarray, np.ndarray]
    test: tuple[np.ndarray, np.ndarray]
    num_classes: int


def digit_splits(validation_fraction: float) -> Splits:
    """The digits' fixed train/test split, with the train part's last share kept for validation."""
    data = load_digits()
    cut = round(len(data.train_images) * (1 - validation_fraction))
    return Splits((data.train_images[:cut], data.train_labels[:cut]),
                  (data.train_images[cut:], data.train_labels[cut:]),
                  (data.test_images, data.test_labels), data.num_classes)


def train_child(architecture: Architecture, splits: Splits, config: NASConfig, *,
                score_test: bool = False) -> dict[str, float]:
    """Train the architecture's CNN briefly (seeded, so the same architecture earns the same
    accuracy); its validation accuracy, and its test accuracy if `score_test`.

    All epochs run inside one tf.function (a while loop over precomputed minibatch
    indices): each child is a new model, so it costs one trace and no per-batch Python.
    """
    keras.utils.set_random_seed(config.seed)
    images, labels = splits.train
    model = build_child(architecture, images.shape[1:], splits.num_classes)
    optimizer = keras.optimizers.Adam(config.child_learning_rate)
    optimizer.build(model.trainable_variables)
    batch = min(config.child_batch_size, len(images))
    per_epoch = len(images) // batch
    rng = np.random.default_rng(config.seed)
    order = np.concatenate([rng.permutation(len(images))[:per_epoch * batch] for _ in range(config.child_epochs)])
    images, labels = tf.constant(images), tf.constant(labels)

    @tf.function(autograph=False)
    def fit(order):
        def step(i, loss):
            indices = order[i * batch:(i + 1) * batch]
            with tf.GradientTape() as tape:
                logits = model(tf.gather(images, indices), training=True)
                loss = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(tf.gather(labels, indices),
                                                                                     logits))
            optimizer.apply(tape.gradient(loss, model.trainable_variables), model.trainable_variables)
            return i + 1, loss

        return tf.while_loop(lambda i, loss: i < tf.shape(order)[0] // batch, step, (0, 0.0))[1]

    fit(tf.constant(order))

    def accuracy(split):
        images, labels = split
        return float(np.mean(model(images).numpy().argmax(-1) == labels))

    scores = {"validation_accuracy": accuracy(splits.validation)}
    if score_test:
        scores["test_accuracy"] = accuracy(splits.test)
    return scores


def draw(history: list[dict], path: Path, title: str) -> None:
    """Every child's reward by controller step, with the step's mean, the baseline and the best so far."""
    fig, ax = plt.subplots(figsize=(7, 4))
    for record in history:
        rewards = [child["validation_accuracy"] for child in record["children"]]
        ax.scatter([record["step"]] * len(rewards), rewards, s=8, color="grey", alpha=0.5)
    steps = [r["step"] for r in history]
    ax.plot(steps, [r["mean_reward"] for r in history], label="mean reward of the step", marker=".")
    ax.plot(steps, [r["baseline"] for r in history], label="moving-average baseline")
    ax.plot(steps, [r["best_reward"] for r in history], label="best so far", linestyle="--")
    ax.set_xlabel("controller step")
    ax.set_ylabel("validation accuracy")
    ax.legend()
    ax.grid(alpha=0.3)
    ax.set_title(title)
    fig.savefig(path, bbox_inches="tight", dpi=80)
    plt.close(fig)


def search(config: NASConfig, out: str | Path, *, progress: bool = True) -> dict:
    """Run (or resume) a search into the run directory `out`; return its metrics (also in metrics.json)."""
    run = Run.open(out, config, family="nas", kind="architecture_search")
    if run.finished:
        return run.metrics
    splits = digit_splits(config.validation_fraction)
    keras.utils.set_random_seed(config.seed)
    controller = Controller(config.space, config.controller_units)
    optimizer = keras.optimizers.Adam(config.controller_learning_rate)
    optimizer.build(controller.trainable_variables)
    checkpoints = run.checkpoints(1, controller=controller, optimizer=optimizer)
    step, baseline, seconds, rewards = 0, None, 0.0, {}  # rewards: choices -> accuracies, shared by repeats
    if (saved := checkpoints.restore()) is not None:
        step, baseline, seconds = saved.step, saved.state["baseline"], saved.state["seconds"]
        rewards = {tuple(choices): scores for choices, scores in saved.state["rewards"]}
    history = run.history

    with tqdm(total=config.controller_steps, initial=step, unit="update", disable=not progress,
              dynamic_ncols=True, desc="nas") as bar:
        while step < config.controller_steps:
            started = time.perf_counter()
            # ALGO LOGIC: sample architectures, reward each with its child's validation accuracy.
            choices = controller.sample(config.architectures_per_step, seed=config.seed * 100_003 + step)
            children = []
            for row in choices:
                key = tuple(int(c) for c in row)
                trained = key not in rewards
                if trained:
                    rewards[key] = train_child(config.space.decode(row), splits, config)
                children.append({"architecture": describe(config.space.decode(row)), "choices": list(key),
                                 "trained": trained, **rewards[key]})
            reward = np.array([child["validation_accuracy"] for child in children], np.float32)

            # ALGO LOGIC: one REINFORCE step against the baseline, then move the baseline.
            baseline = moving_average(baseline, reward, config.baseline_decay)
            with tf.GradientTape() as tape:
                log_probs, entropy = controller.log_prob_and_entropy(choices)
                loss = controller_loss(log_probs, reward, baseline, entropy, config.entropy_weight)
            optimizer.apply(tape.gradient(loss, controller.trainable_variables), controller.trainable_variables)
            step += 1
            seconds += time.perf_counter() - started

            best_reward = max(float(reward.max()), history[-1]["best_reward"] if history else 0.0)
            record = {"step": step, "seconds": seconds, "mean_reward": float(reward.mean()), "baseline": baseline,
                      "best_reward": best_reward, "entropy": float(tf.reduce_mean(entropy)), "children": children}
            history.append(record)
            run.log(step, {name: record[name] for name in ("mean_reward", "baseline", "best_reward", "entropy")})
            checkpoints.save(step, state={"baseline": baseline, "seconds": seconds,
                                          "rewards": [[list(k), v] for k, v in rewards.items()]})
            bar.update(1)
            bar.set_postfix(reward=f"{reward.mean():.3f}", best=f"{best_reward:.3f}")

    # ALGO LOGIC: the best child by validation accuracy, trained again (the same network) and
    # scored once on the test digits, which the search never saw.
    children = [c for r in history for c in r["children"]]
    best = max(children, key=lambda child: child["validation_accuracy"])
    best_test = train_child(config.space.decode(best["choices"]), splits, config, score_test=True)["test_accuracy"]
    favourite = controller.mode()
    first, last = history[0]["mean_reward"], float(np.mean([r["mean_reward"] for r in history[-3:]]))
    metrics = {
        "best_architecture": best["architecture"], "best_validation_accuracy": best["validation_accuracy"],
        "best_test_accuracy": best_test, "first_mean_reward": first,
        "last_three_mean_reward": last, "children_trained": sum(c["trained"] for c in children),
        "architectures_sampled": len(children), "search_space_size": config.space.size, "seconds": seconds,
        "steps": step, "controller_mode": describe(config.space.decode(favourite)),
        "controller_mode_probability": float(controller.probabilities(favourite[None])[0]),
    }
    draw(history, run.directory / "nas_rewards.png",
         f"controller's reward: {config.architectures_per_step} children per step, baseline decay "
         f"{config.baseline_decay:g}")
    return run.finish(metrics)


def main(argv: list[str] | None = None) -> int:
    metrics, out = run_command(argv, "nas", __doc__.splitlines()[0], PRESETS, "demo", search)
    print(f"mean reward {metrics['first_mean_reward']:.3f} at the first step, "
          f"{metrics['last_three_mean_reward']:.3f} over the last three; "
          f"{metrics['children_trained']} children trained in {metrics['seconds']:.0f} s")
    print(f"best architecture: {metrics['best_architecture']} (validation accuracy "
          f"{metrics['best_validation_accuracy']:.3f}, test accuracy {metrics['best_test_accuracy']:.3f})")
    print(f"the controller's most likely choices now: {metrics['controller_mode']} "
          f"(probability {metrics['controller_mode_probability']:.2g})")
    print(f"picture: {out / 'nas_rewards.png'}")
    return 0

"""Architecture search: an RNN controller designs small CNNs for scikit-learn's 8x8 digits.

The per-layer space (Zoph & Le, 2017) or NASNet's cells (Zoph et al., 2018); REINFORCE or
PPO; the accuracy alone or MnasNet's FLOPs-aware reward (the search the lectures show last:
MnasNet / EfficientNet, `--target_flops` with `--controller_update=ppo`).

    python -m training nas --preset demo --out runs/nas                 # per-layer, REINFORCE, accuracy
    python -m training nas --preset demo --target_flops=6e5 --flops_exponent_below=0 \
        --controller_update=ppo --out runs/nas-flops                 # MnasNet: PPO, ACC (T / FLOPs)^0.07 over T
    python -m training nas --preset cells --out runs/nas-cells          # NASNet cells, PPO

Order of work: data (the digits' training split cut again into child-training and
validation images; the test split only scores the best architecture, at the end) ->
controller, optimizer -> loop (sample architectures -> train each child briefly -> reward =
its validation accuracy, times (T / FLOPs)^w with a FLOPs target -> one REINFORCE step
against the moving-average baseline, or several clipped PPO steps -> checkpoint) -> the best
architecture, metrics.json, history.json, nas_rewards.png.

A child's training is seeded, so an architecture always earns the same reward; an
architecture sampled again reuses it instead of training again.
"""
from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Literal

import keras
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from tqdm import tqdm  # noqa: E402

from rundir import Run  # noqa: E402
from training.config import check_at_least_one, run_command  # noqa: E402
from training.data import load_digits  # noqa: E402
from zoo.nas import (CellSpace, Cells, Controller, Layers, LayerSpace, controller_loss, flops_reward,  # noqa: E402
                     moving_average, multiply_adds, ppo_controller_loss)


@dataclasses.dataclass(frozen=True)
class NASConfig:
    """A search: the space, the reward, the controller and its update, and how children train."""

    space: Literal["layers", "cells"] = "layers"
    """Search space: per-layer choices (Zoph & Le, 2017) or NASNet's normal and reduction cells."""
    layers: LayerSpace = dataclasses.field(default_factory=LayerSpace)
    """The per-layer space (its fields are options too: --num_layers=2)."""
    cells: CellSpace = dataclasses.field(default_factory=CellSpace)
    """The cell space (its fields are options too: --blocks=3)."""
    target_flops: float | None = None
    """T of MnasNet's reward ACC (T / FLOPs)^w, in multiply-adds; none: the reward is the accuracy alone."""
    flops_exponent: float = 0.07
    """w of that reward (0.07 in MnasNet and EfficientNet: twice the FLOPs multiply the reward by 2^-0.07 = 0.953)."""
    flops_exponent_below: float | None = None
    """w for children at or under T (MnasNet's alpha); none: `flops_exponent` on both sides (the soft constraint)."""
    controller_update: Literal["reinforce", "ppo"] = "reinforce"
    """One REINFORCE step per batch of architectures, or several clipped PPO steps on it."""
    ppo_epochs: int = 4
    """PPO steps on each batch of architectures (their old log-probabilities held fixed)."""
    clip_ratio: float = 0.2
    """PPO's eps: pi(a) / pi_old(a) gains nothing beyond [1 - eps, 1 + eps]."""
    controller_units: int = 32
    """Width of the controller's LSTM."""
    controller_steps: int = 20
    """Batches of architectures sampled (controller updates)."""
    architectures_per_step: int = 5
    """Architectures sampled (and children trained) per update."""
    controller_learning_rate: float = 0.01
    """Adam step size of the controller."""
    baseline_decay: float = 0.8
    """Decay of the reward's moving average that serves as the baseline."""
    entropy_weight: float = 0.01
    """Weight of the controller's entropy bonus (keeps it exploring)."""
    child_epochs: int = 20
    """Passes over the child-training images per child (fewer leave the small networks half-trained)."""
    child_batch_size: int = 64
    """Child minibatch size."""
    child_learning_rate: float = 0.01
    """Adam step size of each child."""
    validation_fraction: float = 0.25
    """Share of the digits' training split held out to score children (the reward)."""
    seed: int = 0
    """Seed of the controller's initialisation and draws, and of every child's."""

    def __post_init__(self):
        check_at_least_one(self, "controller_units", "controller_steps", "architectures_per_step", "child_epochs",
                           "child_batch_size", "ppo_epochs")
        if not 0 <= self.baseline_decay < 1:
            raise ValueError(f"baseline_decay must be in [0, 1), got {self.baseline_decay}")
        if not 0 < self.validation_fraction < 1:
            raise ValueError(f"validation_fraction must be in (0, 1), got {self.validation_fraction}")
        if self.target_flops is not None and not self.target_flops > 0:
            raise ValueError(f"target_flops must be positive (or none), got {self.target_flops}")
        for name in ("flops_exponent", "flops_exponent_below"):
            if getattr(self, name) is not None and not getattr(self, name) >= 0:
                raise ValueError(f"{name} must be at least 0, got {getattr(self, name)}")
        if not 0 < self.clip_ratio < 1:
            raise ValueError(f"clip_ratio must be in (0, 1), got {self.clip_ratio}")

    @property
    def search_space(self) -> LayerSpace | CellSpace:
        """The space searched (`space` names it)."""
        return self.cells if self.space == "cells" else self.layers


PRESETS = {
    "demo": NASConfig,
    # NASNet's cells (B = 2) with PPO, as the NASNet paper trained its controller. A child costs
    # a few times a per-layer child (three cells deep), hence fewer of them.
    "cells": lambda: NASConfig(space="cells", controller_update="ppo", controller_steps=12),
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


def train_child(architecture: Layers | Cells, splits: Splits, config: NASConfig, *,
                score_test: bool = False) -> dict[str, float]:
    """Train the architecture's CNN briefly (seeded, so the same architecture earns the same
    accuracy); its validation accuracy, its FLOPs (`multiply_adds`), and its test accuracy if
    `score_test`.

    All epochs run inside one tf.function (a while loop over precomputed minibatch
    indices): each child is a new model, so it costs one trace and no per-batch Python.
    """
    keras.utils.set_random_seed(config.seed)
    images, labels = splits.train
    model = architecture.build(images.shape[1:], splits.num_classes)
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

    scores = {"validation_accuracy": accuracy(splits.validation), "flops": multiply_adds(model)}
    if score_test:
        scores["test_accuracy"] = accuracy(splits.test)
    return scores


def draw(history: list[dict], path: Path, title: str, ylabel: str) -> None:
    """Left: every child's reward by controller step, with the step's mean, the baseline and the
    best so far. Right: every child's FLOPs, with the step's mean."""
    fig, (rewards, flops) = plt.subplots(1, 2, figsize=(11, 4))
    steps = [r["step"] for r in history]
    for record in history:
        rewards.scatter([record["step"]] * len(record["children"]), [c["reward"] for c in record["children"]],
                        s=8, color="grey", alpha=0.5)
        flops.scatter([record["step"]] * len(record["children"]), [c["flops"] for c in record["children"]],
                      s=8, color="grey", alpha=0.5)
    rewards.plot(steps, [r["mean_reward"] for r in history], label="mean reward of the step", marker=".")
    rewards.plot(steps, [r["baseline"] for r in history], label="moving-average baseline")
    rewards.plot(steps, [r["best_reward"] for r in history], label="best so far", linestyle="--")
    rewards.set_ylabel(ylabel)
    rewards.legend()
    flops.plot(steps, [r["mean_flops"] for r in history], label="mean of the step", marker=".")
    flops.set_yscale("log")
    flops.set_ylabel("FLOPs (multiply-adds per image)")
    flops.legend()
    for ax in (rewards, flops):
        ax.set_xlabel("controller step")
        ax.grid(alpha=0.3)
    fig.suptitle(title)
    fig.savefig(path, bbox_inches="tight", dpi=80)
    plt.close(fig)


def update_controller(controller: Controller, optimizer: keras.optimizers.Optimizer, choices: np.ndarray,
                      reward: np.ndarray, baseline: float, config: NASConfig) -> float:
    """One REINFORCE step, or `ppo_epochs` clipped PPO steps against the log-probabilities of
    the controller that sampled `choices`; the mean entropy of pi over them before the update."""
    old_log_probs = entropy = None
    for _ in range(1 if config.controller_update == "reinforce" else config.ppo_epochs):
        with tf.GradientTape() as tape:
            log_probs, entropy_now = controller.log_prob_and_entropy(choices)
            if old_log_probs is None:  # the first pass is the controller that sampled the batch
                old_log_probs, entropy = tf.stop_gradient(log_probs), entropy_now
            if config.controller_update == "reinforce":
                loss = controller_loss(log_probs, reward, baseline, entropy_now, config.entropy_weight)
            else:
                loss = ppo_controller_loss(log_probs, old_log_probs, reward, baseline, entropy_now,
                                           config.clip_ratio, config.entropy_weight)
        optimizer.apply(tape.gradient(loss, controller.trainable_variables), controller.trainable_variables)
    return float(tf.reduce_mean(entropy))


def search(config: NASConfig, out: str | Path, *, progress: bool = True) -> dict:
    """Run (or resume) a search into the run directory `out`; return its metrics (also in metrics.json)."""
    run = Run.open(out, config, family="nas", kind="architecture_search")
    if run.finished:
        return run.metrics
    space = config.search_space
    splits = digit_splits(config.validation_fraction)
    keras.utils.set_random_seed(config.seed)
    controller = Controller(space, config.controller_units)
    optimizer = keras.optimizers.Adam(config.controller_learning_rate)
    optimizer.build(controller.trainable_variables)
    checkpoints = run.checkpoints(1, controller=controller, optimizer=optimizer)
    step, baseline, seconds, scores = 0, None, 0.0, {}  # scores: choices -> accuracy and FLOPs, shared by repeats
    if (saved := checkpoints.restore()) is not None:
        step, baseline, seconds = saved.step, saved.state["baseline"], saved.state["seconds"]
        scores = {tuple(choices): score for choices, score in saved.state["scores"]}
    history = run.history

    with tqdm(total=config.controller_steps, initial=step, unit="update", disable=not progress,
              dynamic_ncols=True, desc="nas") as bar:
        while step < config.controller_steps:
            started = time.perf_counter()
            # ALGO LOGIC: sample architectures; reward each with its child's validation accuracy
            # (times (T / FLOPs)^w with a FLOPs target).
            choices = controller.sample(config.architectures_per_step, seed=config.seed * 100_003 + step)
            children = []
            for row in choices:
                key = tuple(int(c) for c in row)
                trained = key not in scores
                if trained:
                    scores[key] = train_child(space.decode(row), splits, config)
                reward = flops_reward(scores[key]["validation_accuracy"], scores[key]["flops"], config.target_flops,
                                      config.flops_exponent, config.flops_exponent_below)
                children.append({"architecture": str(space.decode(row)), "choices": list(key), "trained": trained,
                                 **scores[key], "reward": float(reward)})
            reward = np.array([child["reward"] for child in children], np.float32)

            # ALGO LOGIC: move the baseline, then update the controller against it.
            baseline = moving_average(baseline, reward, config.baseline_decay)
            entropy = update_controller(controller, optimizer, choices, reward, baseline, config)
            step += 1
            seconds += time.perf_counter() - started

            best_reward = max(float(reward.max()), history[-1]["best_reward"] if history else -np.inf)
            record = {"step": step, "seconds": seconds, "mean_reward": float(reward.mean()), "baseline": baseline,
                      "best_reward": best_reward, "entropy": entropy,
                      "mean_flops": float(np.mean([child["flops"] for child in children])), "children": children}
            history.append(record)
            run.log(step, {name: record[name] for name in ("mean_reward", "baseline", "best_reward", "entropy",
                                                           "mean_flops")})
            checkpoints.save(step, state={"baseline": baseline, "seconds": seconds,
                                          "scores": [[list(k), v] for k, v in scores.items()]})
            bar.update(1)
            bar.set_postfix(reward=f"{reward.mean():.3f}", best=f"{best_reward:.3f}")

    # ALGO LOGIC: the child of the highest reward, trained again (the same network) and scored
    # once on the test digits, which the search never saw.
    children = [c for r in history for c in r["children"]]
    best = max(children, key=lambda child: child["reward"])
    best_test = train_child(space.decode(best["choices"]), splits, config, score_test=True)["test_accuracy"]
    favourite = controller.mode()
    last_three = history[-3:]
    metrics = {
        "best_architecture": best["architecture"], "best_reward": best["reward"],
        "best_validation_accuracy": best["validation_accuracy"], "best_test_accuracy": best_test,
        "best_flops": best["flops"], "first_mean_reward": history[0]["mean_reward"],
        "last_three_mean_reward": float(np.mean([r["mean_reward"] for r in last_three])),
        "first_mean_flops": history[0]["mean_flops"],
        "last_three_mean_flops": float(np.mean([r["mean_flops"] for r in last_three])),
        "children_trained": sum(c["trained"] for c in children), "architectures_sampled": len(children),
        "search_space_size": space.size, "seconds": seconds, "steps": step,
        "controller_mode": str(space.decode(favourite)),
        "controller_mode_probability": float(controller.probabilities(favourite[None])[0]),
    }
    objective = ("validation accuracy" if config.target_flops is None else
                 f"accuracy x ({config.target_flops:g} / FLOPs)^{config.flops_exponent:g}"
                 + ("" if config.flops_exponent_below is None else
                    f" above the target, ^{config.flops_exponent_below:g} under it"))
    draw(history, run.directory / "nas_rewards.png",
         f"{config.space} space, {config.controller_update}: {config.architectures_per_step} children per step, "
         f"baseline decay {config.baseline_decay:g}", objective)
    return run.finish(metrics)


def main(argv: list[str] | None = None) -> int:
    metrics, out = run_command(argv, "nas", __doc__.splitlines()[0], PRESETS, "demo", search)
    print(f"mean reward {metrics['first_mean_reward']:.3f} at the first step, "
          f"{metrics['last_three_mean_reward']:.3f} over the last three; "
          f"{metrics['children_trained']} children trained in {metrics['seconds']:.0f} s")
    print(f"best architecture: {metrics['best_architecture']} (reward {metrics['best_reward']:.3f}: validation "
          f"accuracy {metrics['best_validation_accuracy']:.3f}, {metrics['best_flops']:,} FLOPs; "
          f"test accuracy {metrics['best_test_accuracy']:.3f})")
    print(f"mean FLOPs of a step's children: {metrics['first_mean_flops']:,.0f} at the first step, "
          f"{metrics['last_three_mean_flops']:,.0f} over the last three")
    print(f"the controller's most likely choices now: {metrics['controller_mode']} "
          f"(probability {metrics['controller_mode_probability']:.2g})")
    print(f"picture: {out / 'nas_rewards.png'}")
    return 0

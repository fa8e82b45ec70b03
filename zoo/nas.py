"""Neural architecture search with a recurrent controller: two search spaces, two rewards and
two controller updates, which together make the three searches the literature is known by.

- **Per-layer search** (Zoph & Le, 2017): `LayerSpace`. The controller picks, for each
  layer of a small CNN, its filters, its kernel size and whether a skip connection
  concatenates the layer's input onto its output; reward = validation accuracy; REINFORCE
  with a moving-average baseline, loss = -mean((R - b) log pi(architecture)).
- **NASNet cells** (Zoph, Vasudevan, Shlens & Le, 2018): `CellSpace`. The controller
  designs a normal cell and a reduction cell, each of B blocks of five decisions (two
  inputs, two operations, one combination); a fixed skeleton stacks them. The NASNet
  paper trained its controller with PPO.
- **FLOPs-aware search** (MnasNet, Tan et al., 2019, which measured latency; the
  EfficientNet-B0 search, Tan & Le, 2019, which counted FLOPs), the one the lectures show
  last: reward = ACC(m) (T / FLOPs(m))^w (`flops_reward`, with FLOPs from `multiply_adds`),
  and "the PPO algorithm is used instead of REINFORCE with baseline"
  (`ppo_controller_loss`). Either space takes either reward and either update.

The controller is an LSTM that makes a space's decisions in order; each is a draw from a
`tfd.Categorical` whose logits come from the LSTM's state, and the next step reads an
embedding of the choice just made, so pi(architecture) is the product of its decisions'
probabilities: a distribution over the whole space.

- `LayerSpace`, `CellSpace`: the decisions and their options; `decode` turns choice indices
  into an architecture (`Layers`, `Cells`), whose `build` makes the Keras child network.
- `Controller`: `sample(batch, seed)` draws architectures reproducibly per seed;
  `log_prob_and_entropy(choices)` scores given ones (for the gradient).
- `multiply_adds`, `flops_reward`, `controller_loss`, `ppo_controller_loss` and
  `moving_average` are the algorithm's pure pieces.
"""
from __future__ import annotations

import dataclasses
from typing import Callable

import keras
import numpy as np
import tensorflow as tf
import tensorflow_probability as tfp

from zoo.policy_gradient import clipped_surrogate_loss

tfd = tfp.distributions


# ---------------------------------------------------------------- the per-layer space (Zoph & Le, 2017)


@dataclasses.dataclass(frozen=True)
class Layer:
    filters: int
    kernel_size: int
    skip: bool

    def __str__(self) -> str:
        return f"conv{self.filters}x{self.kernel_size}" + ("+skip" if self.skip else "")


@dataclasses.dataclass(frozen=True)
class Layers:
    """A per-layer architecture: the child's convolutional layers in order."""

    layers: tuple[Layer, ...]

    def __str__(self) -> str:
        """A short name such as 'conv16x3+skip > conv32x5 > conv8x1'."""
        return " > ".join(str(layer) for layer in self.layers)

    def build(self, input_shape: tuple[int, ...], num_classes: int) -> keras.Model:
        """The CNN this names: its ReLU convolutions ('same' padding; a skip concatenates the
        layer's input onto its output), global average pooling, then logits.

        Pooling over positions makes the kernel sizes matter: a stack of 1x1 convolutions sees
        each pixel alone and cannot tell digits apart.
        """
        inputs = keras.Input(input_shape)
        features = inputs
        for layer in self.layers:
            outputs = keras.layers.Conv2D(layer.filters, layer.kernel_size, padding="same", activation="relu")(features)
            features = keras.layers.Concatenate()([features, outputs]) if layer.skip else outputs
        pooled = keras.layers.GlobalAveragePooling2D()(features)
        return keras.Model(inputs, keras.layers.Dense(num_classes)(pooled), name="child")


class _Decisions:
    """What both spaces share: their size, from the options of their `decisions`."""

    @property
    def size(self) -> int:
        """How many architectures the space holds."""
        return int(np.prod([len(options) for _, options in self.decisions]))


@dataclasses.dataclass(frozen=True)
class LayerSpace(_Decisions):
    """Per layer of the child CNN: a number of filters, a kernel size, and a skip connection."""

    num_layers: int = 3
    """Convolutional layers of every child (per-layer space)."""
    filters: tuple[int, ...] = (8, 16, 32)
    """Options for each layer's number of filters (per-layer space)."""
    kernel_sizes: tuple[int, ...] = (1, 3, 5)
    """Options for each layer's (square) kernel size (per-layer space)."""
    skips: tuple[bool, ...] = (False, True)
    """Options for whether the layer's input is concatenated onto its output (per-layer space)."""

    def __post_init__(self):
        if self.num_layers < 1:
            raise ValueError(f"num_layers must be at least 1, got {self.num_layers}")
        for name in ("filters", "kernel_sizes", "skips"):
            if not getattr(self, name):
                raise ValueError(f"{name} needs at least one option")

    @property
    def decisions(self) -> list[tuple[str, tuple]]:
        """(name, options) of each choice, in the order the controller makes them."""
        per_layer = [("filters", self.filters), ("kernel_size", self.kernel_sizes), ("skip", self.skips)]
        return [(f"layer{i}/{name}", options) for i in range(self.num_layers) for name, options in per_layer]

    def decode(self, choices: np.ndarray) -> Layers:
        """Choice indices [num_decisions] -> the architecture they pick."""
        values = [options[int(c)] for (_, options), c in zip(self.decisions, choices)]
        return Layers(tuple(Layer(*values[i:i + 3]) for i in range(0, len(values), 3)))


# ---------------------------------------------------------------- the NASNet cell space (Zoph et al., 2018)


def _separable(kernel_size: int) -> Callable[[int, int, str], keras.layers.Layer]:
    return lambda filters, strides, name: keras.layers.SeparableConv2D(
        filters, kernel_size, strides, padding="same", activation="relu", name=name)


OPERATIONS: dict[str, Callable[[int, int, str], keras.layers.Layer | None]] = {
    # name -> (filters, strides, layer name) -> the layer; identity at stride 1 is no layer at all
    "identity": lambda filters, strides, name: (
        None if strides == 1 else keras.layers.MaxPooling2D(1, strides, name=name)),  # keeps every other pixel
    "sep_conv_3x3": _separable(3),
    "sep_conv_5x5": _separable(5),
    "max_pool_3x3": lambda filters, strides, name: keras.layers.MaxPooling2D(3, strides, padding="same", name=name),
    "avg_pool_3x3": lambda filters, strides, name: keras.layers.AveragePooling2D(3, strides, padding="same", name=name),
    "conv_3x3": lambda filters, strides, name: keras.layers.Conv2D(
        filters, 3, strides, padding="same", activation="relu", name=name),
}
"""The operations a block may apply to each of its inputs: NASNet's list cut to what a CPU
trains in seconds (identity, 3x3 and 5x5 separable convolutions, 3x3 max and average
pooling, 3x3 convolution). Convolutions end in a ReLU; every operation keeps the number of
channels, because a cell squeezes its inputs to the cell's width first."""

COMBINATIONS = ("add", "concat")
INPUTS = ("c-1", "c-2")
"""A cell's two inputs: the previous cell's output and the one before it."""


@dataclasses.dataclass(frozen=True)
class Block:
    """Five decisions: two inputs (a cell input or an earlier block 'b0', 'b1', ...), the
    operation applied to each, and how the two results combine."""

    inputs: tuple[str, str]
    operations: tuple[str, str]
    combination: str

    def __str__(self) -> str:
        return f"{self.combination}({self.operations[0]}({self.inputs[0]}), {self.operations[1]}({self.inputs[1]}))"


Cell = tuple[Block, ...]


@dataclasses.dataclass(frozen=True)
class Cells:
    """A NASNet architecture: a normal and a reduction cell, and the skeleton that stacks them."""

    normal: Cell
    reduction: Cell
    filters: int = 16
    normal_cells: int = 1

    def __str__(self) -> str:
        """A name such as 'normal: b0 = add(conv_3x3(c-1), identity(c-2)) | reduction: b0 = ...'."""
        def cell(blocks: Cell) -> str:
            return "; ".join(f"b{i} = {block}" for i, block in enumerate(blocks))
        return f"normal: {cell(self.normal)} | reduction: {cell(self.reduction)}"

    def build(self, input_shape: tuple[int, ...], num_classes: int) -> keras.Model:
        """The skeleton: a 3x3 ReLU convolution stem, N normal cells, one reduction cell
        (half the resolution, twice the channels), N normal cells, global average pooling,
        logits. Each cell reads the outputs of the two cells before it (the stem stands in
        for both at the start). NASNet's CIFAR skeleton has a second reduction; on 8x8
        digits it would leave 2x2 maps, so there is one.
        """
        inputs = keras.Input(input_shape)
        stem = keras.layers.Conv2D(self.filters, 3, padding="same", activation="relu", name="stem")(inputs)
        previous = before = stem
        filters = self.filters
        kinds = ["normal"] * self.normal_cells + ["reduction"] + ["normal"] * self.normal_cells
        for index, kind in enumerate(kinds):
            if kind == "reduction":
                filters *= 2
            blocks = self.reduction if kind == "reduction" else self.normal
            before, previous = previous, build_cell(blocks, previous, before, filters, kind == "reduction",
                                                    f"cell{index}_{kind}")
        pooled = keras.layers.GlobalAveragePooling2D(name="pool")(previous)
        return keras.Model(inputs, keras.layers.Dense(num_classes, name="logits")(pooled), name="child")


def build_cell(blocks: Cell, previous: keras.KerasTensor, before: keras.KerasTensor, filters: int,
               reduction: bool, name: str) -> keras.KerasTensor:
    """One cell on the outputs of the two cells before it; its output.

    As in NASNet: a 1x1 ReLU convolution first squeezes each input a block reads to
    `filters` channels (with stride 2 where `before` is twice `previous`'s size, after a
    reduction cell); in a reduction cell the operations applied to the cell's inputs have
    stride 2; the cell's output concatenates the blocks that no other block reads. Not as
    in NASNet: 'concat' joins the two results and a 1x1 ReLU convolution brings them back
    to `filters` channels, so every hidden state has the same shape.

    Layers are named CELL.c-1, CELL.c-2 (the squeezes), CELL.bI.left-OPERATION,
    CELL.bI.right-OPERATION, CELL.bI.add or CELL.bI.concat (+ .project), and CELL.output.
    """
    read = {source for block in blocks for source in block.inputs}
    inputs = {"c-1": (previous, 1), "c-2": (before, before.shape[1] // previous.shape[1])}
    states = {source: keras.layers.Conv2D(filters, 1, strides, padding="same", activation="relu",
                                          name=f"{name}.{source}")(tensor)
              for source, (tensor, strides) in inputs.items() if source in read}
    for i, block in enumerate(blocks):
        results = []
        for side, source, operation in zip(("left", "right"), block.inputs, block.operations):
            strides = 2 if reduction and source in INPUTS else 1
            layer = OPERATIONS[operation](filters, strides, f"{name}.b{i}.{side}-{operation}")
            results.append(states[source] if layer is None else layer(states[source]))
        if block.combination == "add":
            states[f"b{i}"] = keras.layers.Add(name=f"{name}.b{i}.add")(results)
        else:
            joined = keras.layers.Concatenate(name=f"{name}.b{i}.concat")(results)  # [b, h, w, 2 filters]
            states[f"b{i}"] = keras.layers.Conv2D(filters, 1, activation="relu", name=f"{name}.b{i}.concat.project")(
                joined)
    unread = [states[f"b{i}"] for i in range(len(blocks)) if f"b{i}" not in read]
    return unread[0] if len(unread) == 1 else keras.layers.Concatenate(name=f"{name}.output")(unread)


@dataclasses.dataclass(frozen=True)
class CellSpace(_Decisions):
    """NASNet's space: a normal and a reduction cell of B blocks each, five decisions a block."""

    blocks: int = 2
    """Blocks per cell, B (cell space)."""
    operations: tuple[str, ...] = tuple(OPERATIONS)
    """Operations a block may apply to each input (cell space): some of identity, sep_conv_3x3,
    sep_conv_5x5, max_pool_3x3, avg_pool_3x3, conv_3x3."""
    combinations: tuple[str, ...] = COMBINATIONS
    """How a block may join its two results (cell space): add, concat."""
    cell_filters: int = 16
    """Channels of every hidden state before the reduction cell (twice that after it) (cell space)."""
    normal_cells: int = 1
    """Normal cells before and after the reduction cell, N (cell space)."""

    def __post_init__(self):
        for name in ("blocks", "cell_filters", "normal_cells"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")
        for name, known in (("operations", OPERATIONS), ("combinations", COMBINATIONS)):
            options = getattr(self, name)
            if not options or not set(options) <= set(known):
                raise ValueError(f"{name} must be some of {', '.join(known)}; got {', '.join(options) or 'none'}")

    @property
    def decisions(self) -> list[tuple[str, tuple]]:
        """(name, options) of each choice, in the order the controller makes them: per cell
        (normal, then reduction) and block, input, input, operation, operation, combination.
        Block i may read the cell's inputs and blocks 0 .. i-1."""
        decisions = []
        for cell in ("normal", "reduction"):
            for i in range(self.blocks):
                inputs = INPUTS + tuple(f"b{j}" for j in range(i))
                decisions += [(f"{cell}/b{i}/left_input", inputs), (f"{cell}/b{i}/right_input", inputs),
                              (f"{cell}/b{i}/left_operation", self.operations),
                              (f"{cell}/b{i}/right_operation", self.operations),
                              (f"{cell}/b{i}/combination", self.combinations)]
        return decisions

    def decode(self, choices: np.ndarray) -> Cells:
        """Choice indices [num_decisions] -> the two cells they pick."""
        values = [options[int(c)] for (_, options), c in zip(self.decisions, choices)]
        blocks = tuple(Block((values[k], values[k + 1]), (values[k + 2], values[k + 3]), values[k + 4])
                       for k in range(0, len(values), 5))
        return Cells(blocks[:self.blocks], blocks[self.blocks:], self.cell_filters, self.normal_cells)


# ---------------------------------------------------------------- the reward


def multiply_adds(model: keras.Model) -> int:
    """FLOPs(m) as MnasNet and EfficientNet count them: the multiply-adds of one image's
    forward pass through the convolutions and dense layers (H, W: a layer's output size; k:
    kernel; C_in, C_out: channels; M: depth multiplier):

        Conv2D           H W k_h k_w C_in C_out / groups
        DepthwiseConv2D  H W k_h k_w C_in M
        SeparableConv2D  H W (k_h k_w C_in M + C_in M C_out)    (depthwise, then pointwise)
        Dense            C_in C_out, times the positions it is applied at

    Biases, activations, pooling, additions and concatenations are not counted.
    """
    total = 0
    for layer in model.layers:
        out = layer.output.shape
        if isinstance(layer, keras.layers.Dense):
            total += int(np.prod(out[1:-1], dtype=np.int64)) * layer.kernel.shape[0] * layer.units
            continue
        if not isinstance(layer, (keras.layers.Conv2D, keras.layers.DepthwiseConv2D,
                                  keras.layers.SeparableConv2D)):
            if layer.weights and any("kernel" in w.path for w in layer.weights):
                raise ValueError(f"cannot count the multiply-adds of layer {layer.name} ({type(layer).__name__})")
            continue
        positions, window, channels = out[1] * out[2], int(np.prod(layer.kernel_size)), layer.input.shape[-1]
        if isinstance(layer, keras.layers.Conv2D):
            total += positions * window * channels * layer.filters // layer.groups
        elif isinstance(layer, keras.layers.DepthwiseConv2D):
            total += positions * window * channels * layer.depth_multiplier
        else:
            depth = channels * layer.depth_multiplier
            total += positions * (window * depth + depth * layer.filters)
    return int(total)


def flops_reward(accuracy: float | np.ndarray, flops: float | np.ndarray, target_flops: float | None,
                 exponent: float, exponent_below: float | None = None) -> float | np.ndarray:
    """MnasNet's reward with FLOPs for latency, as in the EfficientNet-B0 search:
    ACC(m) (T / FLOPs(m))^w, w = `exponent_below` (MnasNet's alpha) when FLOPs(m) <= T and
    `exponent` (beta) above; the accuracy alone when T is None.

    The soft constraint has one w on both sides (`exponent_below` None; w = 0.07: twice the
    FLOPs cost a factor 2^-0.07, 4.7%), and then T only scales every reward alike. With no
    reward below the target (`exponent_below` 0), T matters: under it, accuracy alone.
    """
    if target_flops is None:
        return accuracy
    flops = np.asarray(flops, np.float64)
    w = np.where(flops <= target_flops, exponent if exponent_below is None else exponent_below, exponent)
    return accuracy * (target_flops / flops) ** w


# ---------------------------------------------------------------- the controller


class Controller(keras.Model):
    """An LSTM that makes the search space's decisions in order, each from its own softmax head."""

    def __init__(self, space: LayerSpace | CellSpace, units: int = 32, **kwargs):
        super().__init__(**kwargs)
        self.space, self.units = space, units
        self.cell = keras.layers.LSTMCell(units)
        self.start = self.add_weight(shape=(1, units), initializer="zeros", name="start")
        self.heads = [keras.layers.Dense(len(options), name=f"head{t}") for t, (_, options)
                      in enumerate(space.decisions)]
        self.embeddings = [keras.layers.Embedding(len(options), units, name=f"embedding{t}") for t, (_, options)
                           in enumerate(space.decisions[:-1])]  # the last choice feeds nothing
        self._unroll(1, lambda t, distribution: tf.zeros([1], tf.int32))

    def _unroll(self, batch: int, choose) -> list[tfd.Categorical]:
        """Run the LSTM over the decisions; `choose(t, distribution)` picks choice t [batch]
        (sampled, or given), whose embedding is the next step's input."""
        inputs = tf.tile(self.start, [batch, 1])
        state = [tf.zeros([batch, self.units]), tf.zeros([batch, self.units])]
        distributions = []
        for t, head in enumerate(self.heads):
            output, state = self.cell(inputs, state)
            distributions.append(tfd.Categorical(logits=head(output)))
            choice = choose(t, distributions[-1])
            if t < len(self.embeddings):
                inputs = self.embeddings[t](choice)
        return distributions

    def _decide(self, batch: int, pick) -> np.ndarray:
        """Choice indices [batch, num_decisions], each picked by `pick(t, distribution)`."""
        choices = []

        def choose(t, distribution):
            choices.append(tf.cast(pick(t, distribution), tf.int32))
            return choices[-1]

        self._unroll(batch, choose)
        return tf.stack(choices, axis=1).numpy()

    def sample(self, batch: int, seed: int) -> np.ndarray:
        """`batch` architectures' choice indices [batch, num_decisions], the same for the same seed."""
        return self._decide(batch, lambda t, distribution: distribution.sample(seed=tf.constant([seed, t], tf.int32)))

    def mode(self) -> np.ndarray:
        """The choice indices [num_decisions] picked by taking each decision's most likely option."""
        return self._decide(1, lambda t, distribution: distribution.mode())[0]

    def log_prob_and_entropy(self, choices: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        """log pi(architecture) and the summed entropy of its decisions, each [batch], for given choices."""
        choices = tf.convert_to_tensor(choices, tf.int32)
        distributions = self._unroll(int(choices.shape[0]), lambda t, distribution: choices[:, t])
        log_prob = tf.add_n([d.log_prob(choices[:, t]) for t, d in enumerate(distributions)])
        entropy = tf.add_n([d.entropy() for d in distributions])
        return log_prob, entropy

    def probabilities(self, choices: np.ndarray) -> np.ndarray:
        """pi(architecture) for each row of choice indices."""
        return np.exp(self.log_prob_and_entropy(choices)[0].numpy())


def controller_loss(log_probs: tf.Tensor, rewards: tf.Tensor, baseline: float | tf.Tensor,
                    entropy: tf.Tensor, entropy_weight: float = 0.0) -> tf.Tensor:
    """REINFORCE with a baseline: -mean((R - b) log pi(a)) - entropy_weight mean(H)."""
    advantages = tf.stop_gradient(tf.cast(rewards, tf.float32) - baseline)
    return -tf.reduce_mean(advantages * log_probs) - entropy_weight * tf.reduce_mean(entropy)


def ppo_controller_loss(log_probs: tf.Tensor, old_log_probs: tf.Tensor, rewards: tf.Tensor,
                        baseline: float | tf.Tensor, entropy: tf.Tensor, clip_ratio: float,
                        entropy_weight: float = 0.0) -> tf.Tensor:
    """PPO's clipped surrogate on whole architectures:
    -mean(min(rho A, clip(rho, 1 - eps, 1 + eps) A)) - entropy_weight mean(H), with A = R - b and
    rho = pi(a) / pi_old(a), pi_old the controller that sampled the batch (held fixed while
    several steps are taken on it). At rho = 1 its gradient is REINFORCE's."""
    advantages = tf.cast(rewards, tf.float32) - baseline
    surrogate = clipped_surrogate_loss(log_probs, old_log_probs, advantages, clip_ratio)["policy_loss"]
    return surrogate - entropy_weight * tf.reduce_mean(entropy)


def moving_average(baseline: float | None, rewards: np.ndarray, decay: float) -> float:
    """b <- decay b + (1 - decay) mean(R); the first batch's mean starts it."""
    mean = float(np.mean(rewards))
    return mean if baseline is None else decay * baseline + (1.0 - decay) * mean

"""PixelRNN (van den Oord, Kalchbrenner & Kavukcuoglu, "Pixel Recurrent Neural Networks", 2016).

The same explicit likelihood as the PixelCNN (zoo/pixelcnn.py): p(x) = prod_i p(x_i | x_<i)
in raster order, and R before G before B within a pixel. The context is carried by
two-dimensional LSTMs instead of stacked convolutions (section 3 of the paper):

- the **Row LSTM** runs down the image a row at a time. Its gates at row y are a masked
  convolution along row y of its input (input-to-state) plus a width-3 convolution over
  the hidden states of row y-1 (state-to-state). Its context is the triangle above the
  pixel: it widens by one column per row upwards and misses the rest;
- the **Diagonal BiLSTM** skews its input (row y shifted right by y), so that a column of
  the skewed map is a diagonal of the image, and runs a column LSTM along the skewed width
  with a 2x1 state-to-state kernel: the state at (y, x) comes from (y-1, x) and (y, x-1).
  A second direction does the same on the mirrored map (from (y-1, x) and (y, x+1)); its
  output is shifted down a row so that a pixel sees only rows above from it. Together they
  reach every earlier pixel (no blind spot; see the deviation below).

The stack is the paper's: a 7x7 mask-A convolution to 2h features, recurrent layers with
residual connections (each layer's h outputs go back up to 2h through a 1x1 mask-B
convolution and are added to its input), then two 1x1 mask-B output layers. Colour groups
are those of the PixelCNN's masks: the input-to-state and every 1x1 convolution are
masked, and an LSTM's gates act unit by unit, so group j at the current pixel only ever
sees colours before j. Deviations from the paper:

- the right-to-left direction also reads the image row it runs along (a 1x1 convolution of
  the pixels, unmasked: that direction's output only serves the row below). As the paper
  describes it, the layers' input at (y, x) never holds pixel (y, x) itself (mask A), so
  the right-to-left direction never carries the last pixel of a row, and output (y, x)
  with x < W - 1 - first_kernel//2 cannot see (y-1, W-1): a one-pixel blind spot, at
  any depth, which the tests would catch;
- ELU rather than ReLU between the output layers (as the PixelCNN here: no dead units, so
  a zero gradient in the tests is structural);
- the forget gates' biases start at 1 (Jozefowicz et al., 2015; Keras' LSTM default);
- an optional class label adds a learned bias to every layer's gates (as the conditional
  PixelCNN does).
"""
from __future__ import annotations

import dataclasses
from typing import Literal

import keras
import numpy as np
import tensorflow as tf

from zoo.pixelcnn import (MaskedConv2D, PixelModel, PixelOutputs, at_point, at_position, output_head, put,
                          shift_down)


@dataclasses.dataclass(frozen=True)
class PixelRNNConfig(PixelOutputs):
    """Architecture and output distribution of a PixelRNN."""

    image_shape: tuple[int, int, int] = (28, 28, 1)
    """Height, width and channels of the images (set from the data by the trainer)."""
    layer: Literal["row", "diagonal"] = "diagonal"
    """Row LSTM (the triangle above each pixel) or Diagonal BiLSTM (every earlier pixel)."""
    recurrent_layers: int = 7
    """Number of recurrent layers (each with a residual connection) between the first convolution and the output."""
    hidden_units: int = 16
    """h: LSTM units (per direction in the Diagonal BiLSTM); the stream between layers has 2h features."""
    first_kernel: int = 7
    """Kernel size of the first, type-A masked convolution."""
    row_kernel: int = 3
    """Width k of the Row LSTM's input-to-state convolution along the row: masked B, it sees the current
    position and the k//2 before it (the Diagonal BiLSTM's input-to-state is 1x1)."""
    output_units: int = 32
    """Features of the first of the two 1x1 output layers."""
    output: Literal["bernoulli", "categorical"] = "bernoulli"
    """Bernoulli logits for binarized images, or 256-way logits per channel for 8-bit images."""
    num_classes: int = 0
    """Number of classes for a class-conditional model; 0 for an unconditional one."""

    def __post_init__(self):
        channels = self.image_shape[2]
        for name in ("hidden_units", "output_units"):
            if getattr(self, name) < 1 or getattr(self, name) % channels:
                raise ValueError(f"{name} must be a positive multiple of the {channels} image channels, "
                                 f"got {getattr(self, name)}")
        self.check_outputs()
        for name in ("first_kernel", "row_kernel"):
            if getattr(self, name) < 1 or getattr(self, name) % 2 == 0:
                raise ValueError(f"{name} must be a positive odd number, got {getattr(self, name)}")
        if self.layer not in ("row", "diagonal"):
            raise ValueError(f"layer must be 'row' or 'diagonal', got {self.layer!r}")
        if self.recurrent_layers < 1:
            raise ValueError(f"recurrent_layers must be 1 or more, got {self.recurrent_layers}")

    @property
    def title(self) -> str:
        """The model's name in pictures and tables."""
        name = "Row LSTM" if self.layer == "row" else "Diagonal BiLSTM"
        return f"{name}, {self.recurrent_layers} x {self.hidden_units}"


# ---------------------------------------------------------------- pieces of both layers
def lstm_cell(gates: tf.Tensor, cell: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    """One LSTM update from its pre-activations [..., 4h] in the paper's order o, f, i, g:
    c = sigmoid(f) * c_prev + sigmoid(i) * tanh(g), h = sigmoid(o) * tanh(c). Returns (h, c)."""
    units = gates.shape[-1] // 4
    sigmoid_part, g = tf.split(gates, [3 * units, units], axis=-1)
    o, f, i = tf.split(tf.sigmoid(sigmoid_part), 3, axis=-1)  # one activation op for the three gates
    cell = f * cell + i * tf.tanh(g)
    return o * tf.tanh(cell), cell


def forget_bias(units: int, directions: int = 1) -> np.ndarray:
    """Initial input-to-state biases: 1 on the forget gates, 0 elsewhere ([o, f, i, g] per direction)."""
    return np.tile(np.repeat(np.array([0, 1, 0, 0], np.float32), units), directions)


def skew_index(height: int, width: int) -> np.ndarray:
    """[W + H - 1, H]: for diagonal t and row y, the flat position y * W + x of pixel (y, x = t - y), or H * W
    where that is outside the image."""
    t, y = np.meshgrid(np.arange(width + height - 1), np.arange(height), indexing="ij")
    x = t - y
    return np.where((x >= 0) & (x < width), y * width + x, height * width)


def skew(maps: tf.Tensor, fill: float | np.ndarray = 0.0) -> tf.Tensor:
    """Row y shifted right by y, position-major: [H, W, ...] -> [W + H - 1, H, ...], `fill` outside the image.

    Entry [t, y] holds maps[y, t - y]: step t of a scan along the first axis computes the whole
    diagonal x + y = t at once. One gather (cheaper, with its gradient, than padding, reshaping
    and transposing a channels-last map).
    """
    height, width = maps.shape[0], maps.shape[1]
    rest = tf.shape(maps)[2:]
    flat = tf.reshape(maps, tf.concat([[height * width], rest], axis=0))
    outside = tf.broadcast_to(tf.cast(fill, maps.dtype), tf.concat([[1], rest], axis=0))
    return tf.gather(tf.concat([flat, outside], axis=0), skew_index(height, width))


def unskew(skewed: tf.Tensor, width: int) -> tf.Tensor:
    """The inverse of `skew`: [W + H - 1, H, ...] -> [H, W, ...]."""
    height = skewed.shape[1]
    y, x = np.meshgrid(np.arange(height), np.arange(width), indexing="ij")
    flat = tf.reshape(skewed, tf.concat([[-1], tf.shape(skewed)[2:]], axis=0))  # [(W + H - 1) * H, ...]
    return tf.gather(flat, (x + y) * height + y)


def to_positions(maps: tf.Tensor) -> tf.Tensor:
    """[b, H, W, C] -> position-major [H, W, b, C]."""
    return tf.transpose(maps, [1, 2, 0, 3])


def to_images(maps: tf.Tensor) -> tf.Tensor:
    """Position-major [H, W, b, C] -> [b, H, W, C]."""
    return tf.transpose(maps, [2, 0, 1, 3])


def set_column(row: tf.Tensor, x, values: tf.Tensor) -> tf.Tensor:
    """A position-major row cache [W, b, ...] with position x set to `values` [b, ...]."""
    return tf.tensor_scatter_nd_update(row, [[x]], values[None])


class RecurrentLayer(keras.layers.Layer):
    """What both recurrent layers share: masked input-to-state gates (plus a label's bias), a
    state-to-state kernel, and the 1x1 mask-B projection of the h outputs back to the 2h stream.
    A subclass gives `recurrent_output(inputs, pixels, labels)`: its h outputs over the whole map."""

    def __init__(self, config: PixelRNNConfig, input_to_state: MaskedConv2D, state_to_state: tuple[int, ...],
                 directions: int, **kwargs):
        super().__init__(**kwargs)
        units, channels = config.hidden_units, config.image_shape[2]
        self.units, self.direction_count = units, directions
        self.input_to_state = input_to_state
        self.state_to_state_shape = state_to_state
        self.output_conv = MaskedConv2D(2 * units, 1, "B", channels)
        self.label_table = (keras.layers.Embedding(config.num_classes, 4 * units * directions)
                            if config.num_classes else None)

    def build(self, input_shape):
        self.state_to_state = self.add_weight(name="state_to_state", shape=self.state_to_state_shape,
                                              initializer="glorot_uniform")
        self.input_to_state.build(input_shape)
        self.input_to_state.bias.assign(forget_bias(self.units, self.direction_count))

    def label_gates(self, labels: tf.Tensor | None) -> tf.Tensor:
        """The label's additive bias on the gates, [b, 1, 1, gates] ([1, 1, 1, gates] of zeros without labels)."""
        if self.label_table is None:
            return tf.zeros([1, 1, 1, 4 * self.units * self.direction_count])
        return self.label_table(labels)[:, None, None, :]

    def gates(self, inputs: tf.Tensor, labels: tf.Tensor | None) -> tf.Tensor:
        """Input-to-state pre-activations of every position, [b, H, W, gates]."""
        return self.input_to_state(inputs) + self.label_gates(labels)

    def call(self, inputs, pixels, labels=None):
        """The residual stream [b, H, W, 2h] after this layer: inputs + 1x1 projection of the h outputs.
        `pixels` [b, H, W, C] is the image in [-1, 1] (which the Diagonal BiLSTM reads)."""
        return inputs + self.output_conv(self.recurrent_output(inputs, pixels, labels))


# ---------------------------------------------------------------- Row LSTM (section 3.1)
class RowLSTM(RecurrentLayer):
    """The Row LSTM: a whole row per step, top to bottom.

    gates_y = K_is * x_y + K_ss * h_{y-1}, c_y = f * c_{y-1} + i * g, h_y = o * tanh(c_y), where
    K_is is the input-to-state convolution along row y (k wide, masked B: kernel 1 x (k//2 + 1),
    the current position and the k//2 before it) and K_ss a width-3 convolution over the
    previous row's hidden states (no mask: that row is all earlier). So h at (y, x) sees the
    layer's inputs at row y - d in columns x - k//2 - d .. x + d: a triangle above the pixel.
    """

    def __init__(self, config: PixelRNNConfig, **kwargs):
        units, left = config.hidden_units, config.row_kernel // 2
        input_to_state = MaskedConv2D(4 * units, (1, left + 1), "B", config.image_shape[2], center=(0, left), parts=4)
        super().__init__(config, input_to_state, (3, units, 4 * units), directions=1, **kwargs)
        self.left = left

    def states(self, gates: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        """h and c of every position, [b, H, W, h] each, from the input-to-state gates [b, H, W, 4h]."""
        rows = tf.transpose(gates, [1, 0, 2, 3])  # [H, b, W, 4h]
        zeros = tf.zeros_like(rows[0, ..., :self.units])

        def row(state, row_gates):
            h, c = state  # the previous row's, [b, W, h]
            return lstm_cell(row_gates + tf.nn.conv1d(h, self.state_to_state, 1, "SAME"), c)

        h, c = tf.scan(row, rows, initializer=(zeros, zeros))
        return tf.transpose(h, [1, 0, 2, 3]), tf.transpose(c, [1, 0, 2, 3])

    def recurrent_output(self, inputs, pixels, labels):
        return self.states(self.gates(inputs, labels))[0]  # the triangle needs no pixels beyond the stream

    # Sampling state (position-major rows): the inputs of the row so far [k//2 + W, b, 2h], the
    # previous row's h [1 + W + 1, b, h] and c [W, b, h], and the row so far's h and c [W, b, h].
    def sampler_state(self, inputs: tf.Tensor, pixels: tf.Tensor, labels: tf.Tensor | None, row) -> tuple:
        """The state at the start of `row`, from this layer's inputs over a canvas whose rows before it are final."""
        h, c = self.states(self.gates(inputs, labels))
        above = tf.cast(row > 0, tf.float32)  # row 0 has zeros above it
        h_above = tf.transpose(tf.gather(h, tf.maximum(row - 1, 0), axis=1), [1, 0, 2]) * above
        c_above = tf.transpose(tf.gather(c, tf.maximum(row - 1, 0), axis=1), [1, 0, 2]) * above
        inputs_row = tf.zeros([self.left + inputs.shape[2], tf.shape(inputs)[0], inputs.shape[3]])
        h_above = tf.pad(h_above, [[1, 1], [0, 0], [0, 0]])  # zero states left and right of the image
        return inputs_row, h_above, c_above, tf.zeros_like(c_above), tf.zeros_like(c_above)

    def next_row(self, state: tuple, pixels_row: tf.Tensor) -> tuple:
        """The finished row becomes the row above (its pixels are in the states already)."""
        inputs_row, _, _, h_row, c_row = state
        return inputs_row, tf.pad(h_row, [[1, 1], [0, 0], [0, 0]]), c_row, h_row, c_row

    def at_position(self, state: tuple, x, inputs: tf.Tensor, label_gates: tf.Tensor) -> tuple[tuple, tf.Tensor]:
        """The layer at column x of the current row, given its input there [b, 2h]: (state, output [b, 2h])."""
        inputs_row, h_above, c_above, h_row, c_row = state
        inputs_row = set_column(inputs_row, x + self.left, inputs)
        conv = self.input_to_state
        gates = (tf.einsum("kbi,kio->bo", inputs_row[x:x + self.left + 1], conv.masked_kernel[0]) + conv.bias
                 + label_gates + tf.einsum("kbh,kho->bo", h_above[x:x + 3], self.state_to_state))
        h, c = lstm_cell(gates, c_above[x])
        outputs = inputs + at_point(h, self.output_conv)
        return (inputs_row, h_above, c_above, set_column(h_row, x, h), set_column(c_row, x, c)), outputs


# ---------------------------------------------------------------- Diagonal BiLSTM (section 3.2)
def diagonal_cell(gates: tf.Tensor, above: tf.Tensor, beside: tf.Tensor, beside_cell: tf.Tensor,
                  kernel: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    """The column LSTM's update at one position from the states above it and beside it (on the
    previous diagonal), [b, h] each: the 2x1 state-to-state kernel [2h, 4h] acts on [h_above,
    h_beside]; c follows the state beside. Returns (h, c)."""
    return lstm_cell(gates + tf.matmul(tf.concat([above, beside], axis=-1), kernel), beside_cell)


class DiagonalBiLSTM(RecurrentLayer):
    """The Diagonal BiLSTM: two column LSTMs along the skewed map, a whole diagonal per step.

    Input-to-state is a 1x1 mask-B convolution giving both directions' gates (the right-to-left
    ones also see the pixels, see the module's docstring). The left-to-right direction's state at
    (y, x) comes from (y-1, x) and (y, x-1); the right-to-left one, run on the mirrored map, from
    (y-1, x) and (y, x+1), which includes the rest of row y, so its output is shifted down a row
    before the two are added. States outside the image are zero.
    """

    def __init__(self, config: PixelRNNConfig, **kwargs):
        units = config.hidden_units
        input_to_state = MaskedConv2D(8 * units, 1, "B", config.image_shape[2], parts=8)  # [left o f i g | right ...]
        # per direction, rows 0..h-1 of the 2x1 kernel act on the state above, rows h..2h-1 on the state beside
        super().__init__(config, input_to_state, (2, 2 * units, 4 * units), directions=2, **kwargs)
        self.pixels_to_state = keras.layers.Dense(4 * units, use_bias=False)  # right-to-left only

    def direction_gates(self, inputs: tf.Tensor, pixels: tf.Tensor, labels: tf.Tensor | None) -> tuple:
        """Input-to-state pre-activations of the left-to-right and right-to-left directions, position-major
        [H, W, b, 4h] each (the 1x1 convolutions act on each position alone, whatever the layout)."""
        gates = self.input_to_state(to_positions(inputs)) + to_positions(self.label_gates(labels))
        left, right = tf.split(gates, 2, axis=-1)
        return left, right + self.pixels_to_state(to_positions(pixels))

    def states(self, left: tf.Tensor, right: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        """Hidden states of both directions, position-major [H, W, b, h] each, in image coordinates (not
        shifted), from their input-to-state gates [H, W, b, 4h]."""
        width, units = left.shape[1], self.units
        both = tf.stack([left, tf.reverse(right, [1])], axis=2)  # [H, W, 2, b, 4h]; right-to-left on the mirror
        # outside the image the input and forget gates are shut (pre-activations -1e9, sigmoid exactly 0), so
        # the states there stay exactly 0: set once here instead of a mask at every step
        columns = skew(both, np.repeat(np.array([0, -1e9, -1e9, 0], np.float32), units))  # [T, H, 2, b, 4h]
        zeros = tf.zeros_like(columns[0, ..., :units])  # [H, 2, b, h]

        def diagonal(state, column_gates):
            h, c = state  # the previous diagonal's, [H, 2, b, h]
            above = tf.pad(h, [[1, 0], [0, 0], [0, 0], [0, 0]])[:-1]  # row y takes row y-1
            # as diagonal_cell, with the kernel of each direction: [H, 2, b, 2h] @ [2, 2h, 4h]
            return lstm_cell(column_gates + tf.matmul(tf.concat([above, h], axis=-1), self.state_to_state), c)

        h, _ = tf.scan(diagonal, columns, initializer=(zeros, zeros))  # [T, H, 2, b, h]
        h = unskew(h, width)  # [H, W, 2, b, h]
        return h[:, :, 0], tf.reverse(h[:, :, 1], [1])

    def directions(self, inputs: tf.Tensor, pixels: tf.Tensor,
                   labels: tf.Tensor | None = None) -> tuple[tf.Tensor, tf.Tensor]:
        """The two directions' outputs [b, H, W, h]: left-to-right, and right-to-left shifted down a row."""
        left, right = self.states(*self.direction_gates(inputs, pixels, labels))
        return to_images(left), shift_down(to_images(right))

    def recurrent_output(self, inputs, pixels, labels):
        left, right = self.directions(inputs, pixels, labels)
        return left + right

    # Sampling state (position-major rows): the right-to-left gates (from the stream) of the row so far [W, b, 4h];
    # the left-to-right h of the previous row [W, b, h] and h and c of the row so far [1 + W, b, h]
    # (position 0 is the zero state left of the image); the right-to-left h of the previous row
    # [W, b, h], which is also this row's shifted right-to-left output.
    def sampler_state(self, inputs: tf.Tensor, pixels: tf.Tensor, labels: tf.Tensor | None, row) -> tuple:
        """The state at the start of `row`, from this layer's inputs over a canvas whose rows before it are final."""
        left, right = self.states(*self.direction_gates(inputs, pixels, labels))  # [H, W, b, h]
        above = tf.cast(row > 0, tf.float32)  # row 0 has zeros above it
        left_above = tf.gather(left, tf.maximum(row - 1, 0)) * above
        right_above = tf.gather(right, tf.maximum(row - 1, 0)) * above
        left_row = tf.pad(tf.zeros_like(left_above), [[1, 0], [0, 0], [0, 0]])
        right_gates = tf.zeros([inputs.shape[2], tf.shape(inputs)[0], 4 * self.units])
        return right_gates, left_above, left_row, left_row, right_above

    def next_row(self, state: tuple, pixels_row: tf.Tensor) -> tuple:
        """Run the right-to-left direction along the finished row (right to left, from the states above
        it; `pixels_row` [b, W, C] is that row of the image); its left-to-right states become the row above."""
        right_gates, _, left_h, left_c, right_above = state
        gates = right_gates + tf.transpose(self.pixels_to_state(pixels_row), [1, 0, 2])  # [W, b, 4h]
        zeros = tf.zeros_like(right_above[0])

        def position(state, column):
            h, c = state  # of the position to the right
            gates, above = column
            return diagonal_cell(gates, above, h, c, self.state_to_state[1])

        right, _ = tf.scan(position, (gates, right_above), initializer=(zeros, zeros), reverse=True)
        return right_gates, left_h[1:], left_h, left_c, right

    def at_position(self, state: tuple, x, inputs: tf.Tensor, label_gates: tf.Tensor) -> tuple[tuple, tf.Tensor]:
        """The layer at column x of the current row, given its input there [b, 2h]: (state, output [b, 2h])."""
        right_gates, left_above, left_h, left_c, right_above = state
        left_gates, right_gates_x = tf.split(at_point(inputs, self.input_to_state) + label_gates, 2, axis=-1)
        h, c = diagonal_cell(left_gates, left_above[x], left_h[x], left_c[x], self.state_to_state[0])
        outputs = inputs + at_point(h + right_above[x], self.output_conv)
        state = (set_column(right_gates, x, right_gates_x), left_above, set_column(left_h, x + 1, h),
                 set_column(left_c, x + 1, c), right_above)
        return state, outputs


LAYERS = {"row": RowLSTM, "diagonal": DiagonalBiLSTM}


class PixelRNN(PixelModel):
    """A PixelRNN: `call` gives logits, `log_prob` scores, `sample` and `complete` draw in raster order.

    The likelihood, the naive sampler (`complete`: the whole network once per value) and the
    serving signatures are PixelModel's; this class gives the network and the fast sampler.
    """

    def __init__(self, config: PixelRNNConfig, **kwargs):
        super().__init__(**kwargs)
        self.config = config
        self.input_conv = MaskedConv2D(2 * config.hidden_units, config.first_kernel, "A", config.image_shape[2])
        self.recurrent = [LAYERS[config.layer](config) for _ in range(config.recurrent_layers)]
        self.head = output_head(config.output_units, config)
        self.build_all()

    def logits(self, images: tf.Tensor, labels: tf.Tensor | None = None) -> tf.Tensor:
        pixels = 2.0 * tf.cast(images, tf.float32) - 1.0  # [0, 1] -> [-1, 1]
        stream = self.input_conv(pixels)  # [b, H, W, 2h]
        for layer in self.recurrent:
            stream = layer(stream, pixels, labels)
        return self.head_logits(stream)

    def complete_fast(self, images: tf.Tensor, known_rows: tf.Tensor, seeds: tf.Tensor,
                      labels: tf.Tensor | None = None, temperature: float | tf.Tensor = 1.0) -> tf.Tensor:
        """`complete`, carrying each layer's recurrent state instead of re-running the image per value.

        One full pass over the starting canvas gives every layer's states up to the first row to
        draw. Then a value at (y, x) runs the first convolution at (y, x) (a kernel-sized window
        of the canvas) and each layer at (y, x) alone; every channel of a pixel re-runs it.

        - Row LSTM. Kept per layer: h and c of the row above (computed when that row was
          drawn) and the layer's inputs along the current row so far. Recomputed per value:
          one LSTM update per layer, at (y, x), from the k//2 + 1 inputs ending there and the 3
          hidden states above it. Nothing is run per row.
        - Diagonal BiLSTM. Kept per layer: the left-to-right h of the row above and h and c of
          the current row so far; the right-to-left h of the row above (this row's shifted
          right-to-left output) and its gates along the current row so far. Recomputed per
          value: one left-to-right update per layer, at (y, x), from the states above and to
          the left. Per finished row: the right-to-left direction, which depends on the whole
          row from its right end, runs once along it (W updates per layer, from the row's
          gates and pixels and the kept states of the row above); those states are all the
          next row needs from it.

        That is O(layers) work per value (and O(layers x W) per row for the Diagonal BiLSTM)
        instead of the naive sampler's O(layers x H x W). The noise is the naive sampler's and
        the arithmetic the same, summed in another order, so the samples are the same (the
        tests check them bit for bit).
        """
        height, width, channels = self.config.image_shape
        canvas = tf.cast(images, tf.float32)
        noise = self.noise(seeds)
        known = tf.cast(known_rows, tf.int32)
        start_row = tf.reduce_min(known)
        rows_index = tf.range(tf.shape(images)[0])

        # one full pass over the starting canvas gives every layer's state at the end of row start_row - 1
        pixels = 2.0 * canvas - 1.0
        image_pad = tf.pad(pixels, self.input_conv.padding)
        stream = self.input_conv(pixels)
        states, label_gates = [], []
        for layer in self.recurrent:
            states.append(layer.sampler_state(stream, pixels, labels, start_row))
            label_gates.append(layer.label_gates(labels)[:, 0, 0])
            stream = layer(stream, pixels, labels)

        def value(y, x, c, canvas, image_pad, states):
            stream = at_position(image_pad, y, x, self.input_conv)
            new_states = []
            for layer, state, bias in zip(self.recurrent, states, label_gates):
                state, stream = layer.at_position(state, x, stream, bias)
                new_states.append(state)
            canvas, scaled = self._draw_at(stream, canvas, noise, known, y, x, c, temperature, rows_index)
            cy, cx = self.input_conv.center
            return canvas, put(image_pad, rows_index, y + cy, x + cx, scaled), new_states

        def row(y, canvas, image_pad, states):
            cy, cx = self.input_conv.center
            finished = image_pad[:, tf.maximum(y - 1, 0) + cy, cx:cx + width]  # row y-1 in [-1, 1]
            states = tf.cond(y > start_row, lambda: [layer.next_row(state, finished)
                                                     for layer, state in zip(self.recurrent, states)], lambda: states)

            def position(p, canvas, image_pad, states):
                return (p + 1, *value(y, p // channels, p % channels, canvas, image_pad, states))
            _, canvas, image_pad, states = tf.while_loop(lambda p, *_: p < width * channels, position,
                                                         [0, canvas, image_pad, states])
            return y + 1, canvas, image_pad, states

        _, canvas, *_ = tf.while_loop(lambda y, *_: y < height, row, [start_row, canvas, image_pad, states])
        return canvas

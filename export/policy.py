"""Policy SavedModels that TensorFlow Serving and tf-agents programs both load.

A policy export holds the model's own signatures (`serving_default`, `q_values`, ...) and
what tf-agents' `PolicySaver` writes, so that `SavedModelPyTFEagerPolicy(path,
load_specs_from_pbtxt=True)` runs it unchanged:

- the `action` signature, inputs `0/step_type`, `0/reward`, `0/discount`,
  `0/observation`, output `action`; `get_initial_state(batch_size)`; `get_train_step()
  -> int64`; `get_metadata()`. PolicySaver gives a stateless policy's `get_initial_state`,
  and `get_metadata` when no metadata is passed, no outputs at all, which no session can
  run (TensorFlow Serving answers "Must specify at least one target to fetch or
  execute"): ours returns an empty state `state[batch_size, 0]`, and the metadata
  `{"train_step": int64}` (PolicySaver's metadata is a dict of variables; this is ours);
- on the saved object, `action(time_step, policy_state=())` returning a
  `PolicyStep(action, state, info)`, `get_initial_state`, `get_train_step`,
  `get_metadata`, `train_step` and `model_variables`;
- `policy_specs.pbtxt` beside saved_model.pb: a `StructuredValue` holding the
  `collect_data_spec` (a `Trajectory` of specs) and the `policy_state_spec`.

TimeStep, PolicyStep and Trajectory are plain namedtuples with tf-agents' names and fields:
a restored function matches namedtuples by name and fields, so tf-agents' own classes fit
without importing tf-agents here. Written from tf-agents 0.19's policy_saver.py and
checked against a PolicySaver export of a tf-agents QPolicy.
"""
from __future__ import annotations

import collections
from pathlib import Path
import keras
import tensorflow as tf
from google.protobuf import text_format
from tensorflow.core.protobuf import struct_pb2

POLICY_SPECS = "policy_specs.pbtxt"

TimeStep = collections.namedtuple("TimeStep", ["step_type", "reward", "discount", "observation"])
PolicyStep = collections.namedtuple("PolicyStep", ["action", "state", "info"])
TRAJECTORY = ("step_type", "observation", "action", "policy_info", "next_step_type", "reward", "discount")


def time_step_spec(observation: tf.TensorSpec) -> TimeStep:
    """Batched TimeStep specs named by their nest paths, as PolicySaver names them."""
    return TimeStep(step_type=tf.TensorSpec([None], tf.int32, name="0/step_type"),
                    reward=tf.TensorSpec([None], tf.float32, name="0/reward"),
                    discount=tf.TensorSpec([None], tf.float32, name="0/discount"),
                    observation=tf.TensorSpec(observation.shape, observation.dtype, name="0/observation"))


def _spec_value(name: str, shape: list[int], dtype: tf.DType, bounds: tuple | None = None) -> struct_pb2.StructuredValue:
    """One (bounded) tensor spec as nested_structure_coder encodes it."""
    value = struct_pb2.StructuredValue()
    shape_proto = tf.TensorShape(shape).as_proto()
    if bounds is None:
        value.tensor_spec_value.name = name
        value.tensor_spec_value.shape.CopyFrom(shape_proto)
        value.tensor_spec_value.dtype = dtype.as_datatype_enum
        return value
    spec = value.bounded_tensor_spec_value
    spec.name = name
    spec.shape.CopyFrom(shape_proto)
    spec.dtype = dtype.as_datatype_enum
    spec.minimum.CopyFrom(tf.make_tensor_proto(bounds[0], dtype))
    spec.maximum.CopyFrom(tf.make_tensor_proto(bounds[1], dtype))
    return value


def policy_specs(observation: tf.TensorSpec, action: tuple) -> struct_pb2.StructuredValue:
    """The StructuredValue PolicySaver writes to policy_specs.pbtxt (unbatched specs);
    `action` is (shape, dtype, minimum, maximum), the model's `action_spec()`."""
    observation_shape = observation.shape.as_list()[1:]
    fields = {
        "step_type": _spec_value("step_type", [], tf.int32),
        "observation": _spec_value("observation", observation_shape, observation.dtype),
        "action": _spec_value("action", list(action[0]), action[1], (action[2], action[3])),
        "policy_info": struct_pb2.StructuredValue(tuple_value=struct_pb2.TupleValue()),
        "next_step_type": _spec_value("step_type", [], tf.int32),
        "reward": _spec_value("reward", [], tf.float32),
        "discount": _spec_value("discount", [], tf.float32, (0.0, 1.0)),
    }
    trajectory = struct_pb2.StructuredValue()
    trajectory.named_tuple_value.name = "Trajectory"
    for key in TRAJECTORY:
        trajectory.named_tuple_value.values.add(key=key, value=fields[key])
    specs = struct_pb2.StructuredValue()
    specs.dict_value.fields["collect_data_spec"].CopyFrom(trajectory)
    specs.dict_value.fields["policy_state_spec"].tuple_value.SetInParent()
    return specs


def write_policy(model: keras.Model, path: Path, signatures: dict, train_step: int) -> None:
    """Save `model` at `path` with its `signatures` plus the tf-agents policy layout.

    The model gives `greedy_action(observation[b, ...]) -> action[b, ...]` (what tf-agents'
    `action` runs), `observation_spec()` and `action_spec()`: (shape, dtype, minimum, maximum).
    """
    observation, action_spec = model.observation_spec(), model.action_spec()
    root = tf.Module()
    root.model_variables = list(model.variables)
    root.train_step = tf.Variable(train_step, dtype=tf.int64, trainable=False, name="train_step")
    root.metadata = {"train_step": root.train_step}

    step_spec = time_step_spec(observation)

    @tf.function
    def action(time_step, policy_state=()):
        return PolicyStep(action=model.greedy_action(time_step.observation), state=(), info=())

    action_functions = [action.get_concrete_function(step_spec, ()), action.get_concrete_function(step_spec)]
    get_initial_state = tf.function(lambda batch_size: ())
    get_initial_state.get_concrete_function(tf.TensorSpec([], tf.int32, name="batch_size"))
    get_train_step = tf.function(lambda: root.train_step.read_value()).get_concrete_function()
    get_metadata = tf.function(lambda: {k: v.read_value() for k, v in root.metadata.items()}).get_concrete_function()
    root.action, root.get_initial_state = action, get_initial_state
    root.get_train_step, root.get_metadata = get_train_step, get_metadata

    @tf.function(input_signature=list(step_spec))
    def action_signature(step_type, reward, discount, observation_):
        return {"action": action(TimeStep(step_type, reward, discount, observation_)).action}

    all_signatures = {
        name: tf.function(function, input_signature=specs).get_concrete_function()
        for name, (function, specs) in signatures.items()
    }
    all_signatures.update({
        "action": action_signature.get_concrete_function(),
        "get_initial_state": tf.function(lambda batch_size: {"state": tf.zeros([batch_size, 0])}).get_concrete_function(
            tf.TensorSpec([], tf.int32, name="batch_size")),
        "get_train_step": tf.function(lambda: {"int64": root.train_step.read_value()}).get_concrete_function(),
        "get_metadata": get_metadata,
    })
    # The tf.Variables the functions capture, tracked on the root: the session-based loader
    # finds a variable only through the object graph (as keras.export.ExportArchive does).
    captured = {id(v): v for f in [*all_signatures.values(), *action_functions] for v in f.variables}
    root.captured_variables = list(captured.values())
    tf.saved_model.save(root, str(path), signatures=all_signatures)
    (path / POLICY_SPECS).write_text(text_format.MessageToString(policy_specs(observation, action_spec)))

"""Keras 3 model families. FAMILIES maps a family name to (config dataclass, model class),
so a run directory that names its family can be rebuilt by `export` without `training`."""
from zoo.dqn import DQNConfig, QNetwork
from zoo.pixelcnn import PixelCNN, PixelCNNConfig
from zoo.policy_gradient import PolicyConfig, PolicyNetwork
from zoo.vae import VAE, VAEConfig


def checkpointed(model) -> dict:
    """What a checkpoint holds of a model: the model, and its variables listed in build order.

    Keras 3 leaves layers kept in Python lists out of a tf.train.Checkpoint's object graph
    (it converts them only for SavedModel), so `Checkpoint(model=model)` alone can save and
    restore nothing of them. The list reaches every variable; training and export both use it.
    """
    return {"model": model, "model_variables": list(model.variables)}


FAMILIES = {"vae": (VAEConfig, VAE), "pixelcnn": (PixelCNNConfig, PixelCNN),
            "dqn": (DQNConfig, QNetwork), "policy_gradient": (PolicyConfig, PolicyNetwork)}

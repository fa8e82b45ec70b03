"""Keras 3 model families. FAMILIES maps a family name to (config dataclass, model class),
so a run directory that names its family can be rebuilt by `export` without `training`."""
from zoo.dqn import DQNConfig, QNetwork
from zoo.pixelcnn import PixelCNN, PixelCNNConfig
from zoo.vae import VAE, VAEConfig

FAMILIES = {"vae": (VAEConfig, VAE), "pixelcnn": (PixelCNNConfig, PixelCNN),
            "dqn": (DQNConfig, QNetwork)}

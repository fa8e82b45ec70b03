"""Keras 3 model families. MODEL_FAMILIES maps the family a training run declares (in its
model.json) to the family's config dataclass and model class, so that `export` rebuilds a
trained model without importing `training`."""
from zoo.classifier import Classifier, ClassifierConfig
from zoo.cvae import CVAE, CVAEConfig
from zoo.dqn import DQNConfig, QNetwork
from zoo.pixelcnn import PixelCNN, PixelCNNConfig
from zoo.pixelrnn import PixelRNN, PixelRNNConfig
from zoo.policy_gradient import PolicyConfig, PolicyNetwork
from zoo.vae import VAE, VAEConfig

MODEL_FAMILIES = {"vae": (VAEConfig, VAE), "pixelcnn": (PixelCNNConfig, PixelCNN),
                  "pixelrnn": (PixelRNNConfig, PixelRNN), "dqn": (DQNConfig, QNetwork),
                  "policy_gradient": (PolicyConfig, PolicyNetwork), "cvae": (CVAEConfig, CVAE),
                  "classifier": (ClassifierConfig, Classifier)}

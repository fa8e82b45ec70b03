"""The model server (TensorFlow Serving's gRPC and REST APIs) and its client: see issue 3.

It will load any SavedModel under a models directory laid out by `export` and must never
import `zoo` or `training`."""

"""Import TensorFlow without its start-up chatter, for the command-line tools.

TensorFlow writes a few lines (CUDA probing, CPU feature notes) to file descriptor 2
before its logging is configured, so TF_CPP_MIN_LOG_LEVEL alone does not silence them.
Call `quiet_tensorflow()` before anything imports TensorFlow.
"""
import contextlib
import os


@contextlib.contextmanager
def _stderr_silenced():
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as devnull:
            os.dup2(devnull.fileno(), 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def quiet_tensorflow() -> None:
    """Import tensorflow (and TFP) with C++ logs at ERROR and fd 2 muted during import."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    if os.environ.get("TF_CPP_MIN_LOG_LEVEL") == "0":
        return  # the user asked for everything
    with _stderr_silenced():
        import tensorflow as tf  # noqa: F401

        # Probing the hardware prints too (cuInit). Listing devices probes it without starting
        # the runtime, so strategies and logical devices can still be configured afterwards.
        tf.config.list_physical_devices()
        tf.get_logger().setLevel("ERROR")

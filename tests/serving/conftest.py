"""Servers started as users start them: `python -m serving serve ...` in a subprocess on 127.0.0.1."""
import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import grpc
import numpy as np
import pytest
from tensorflow_serving.apis import (get_model_status_pb2, model_service_pb2_grpc,
                                     prediction_service_pb2_grpc)

from tests.helpers import ROOT, once_per_suite, suite_temp

OBSERVATION = 4


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def export_policy(base: Path, version: int, shift: float = 0.0) -> Path:
    """A small CartPole policy export: serving_default(observation[b,4]) -> action[b], q_values[b,2].

    Q-values are +-(angle + angular velocity) + shift, so the greedy action pushes the cart
    under the falling pole (it keeps CartPole up for a while), and each version's q_values
    differ by its shift.
    """
    import keras
    import tensorflow as tf

    inputs = keras.Input((OBSERVATION,), name="observation")
    dense = keras.layers.Dense(2, name="q")
    model = keras.Model(inputs, dense(inputs))
    dense.set_weights([np.array([[0, 0], [0, 0], [-1, 1], [-1, 1]], np.float32), np.full(2, shift, np.float32)])

    archive = keras.export.ExportArchive()
    archive.track(model)

    @tf.function(input_signature=[tf.TensorSpec([None, OBSERVATION], tf.float32, name="observation")])
    def act(observation):
        q = model(observation)
        return {"action": tf.argmax(q, axis=-1), "q_values": q}

    archive.add_endpoint("serving_default", act)
    staging = base / f".staging-{version}"
    archive.write_out(str(staging), verbose=False)
    staging.rename(base / str(version))
    return base / str(version)


def write_config(path: Path, models: dict[str, Path], extra: str = "") -> Path:
    entries = "".join(f'  config {{ name: "{name}" base_path: "{base}" model_platform: "tensorflow" {extra} }}\n'
                      for name, base in models.items())
    path.write_text("model_config_list {\n" + entries + "}\n")
    return path


class Server:
    """A running `python -m serving serve`; `.stub`, `.models`, `.rest()` talk to it."""

    def __init__(self, *flags: str, wait_for: tuple[str, ...] = (), rest: bool = True, timeout: float = 600):
        self.port = free_port()
        self.rest_port = free_port() if rest else 0
        args = [sys.executable, "-m", "serving", "serve", f"--port={self.port}",
                f"--rest_api_port={self.rest_port}", *flags]
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        self.log = open(Path(os.environ.get("TMPDIR", "/tmp")) / f"serving-{self.port}.log", "w+")
        self.process = subprocess.Popen(args, cwd=ROOT, env=env, stdout=self.log, stderr=subprocess.STDOUT)
        self.channel = grpc.insecure_channel(f"127.0.0.1:{self.port}",
                                             options=[("grpc.max_receive_message_length", 2**31 - 1)])
        self.stub = prediction_service_pb2_grpc.PredictionServiceStub(self.channel)
        self.models = model_service_pb2_grpc.ModelServiceStub(self.channel)
        try:
            self.wait(wait_for, timeout)
        except BaseException:
            self.stop()
            raise

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.port}"

    def output(self) -> str:
        self.log.flush()
        self.log.seek(0)
        return self.log.read()

    def wait(self, names, timeout: float = 600) -> None:
        end = time.monotonic() + timeout
        for name in names:
            while True:
                if self.process.poll() is not None:
                    raise RuntimeError(f"server exited with {self.process.returncode}:\n{self.output()}")
                try:
                    request = get_model_status_pb2.GetModelStatusRequest()
                    request.model_spec.name = name
                    reply = self.models.GetModelStatus(request, timeout=2)
                    if any(s.state == 30 for s in reply.model_version_status):
                        break
                except grpc.RpcError:
                    pass
                if time.monotonic() > end:
                    raise RuntimeError(f"{name} not available after {timeout} s:\n{self.output()}")
                time.sleep(0.2)

    def rest(self, path: str, body=None, method: str | None = None,
             headers: dict | None = None) -> tuple[int, dict | str, dict]:
        """(HTTP status, parsed JSON or text, headers) of one REST call."""
        data = body if isinstance(body, (bytes, type(None))) else json.dumps(body).encode()
        request = urllib.request.Request(f"http://127.0.0.1:{self.rest_port}{path}", data=data,
                                         method=method or ("POST" if data is not None else "GET"),
                                         headers=headers or {})
        try:
            with urllib.request.urlopen(request, timeout=60) as reply:
                status, text, headers = reply.status, reply.read().decode(), dict(reply.headers)
        except urllib.error.HTTPError as error:
            status, text, headers = error.code, error.read().decode(), dict(error.headers)
        try:
            return status, json.loads(text), headers
        except ValueError:
            return status, text, headers

    def stop(self) -> int:
        self.channel.close()
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                self.process.kill()
        self.log.close()
        return self.process.returncode


@pytest.fixture
def start_server():
    """Start servers with given flags; every one is stopped at the end of the test."""
    started = []

    def start(*flags, **kwargs) -> Server:
        server = Server(*flags, **kwargs)
        started.append(server)
        return server
    yield start
    for server in started:
        server.stop()


@pytest.fixture(scope="session")
def policy_models(tmp_path_factory) -> Path:
    """MODELS/cartpole/1: the small test policy."""
    models = tmp_path_factory.mktemp("policy-models")
    (models / "cartpole").mkdir()
    export_policy(models / "cartpole", 1)
    return models


def export_spin(base: Path, version: int = 1) -> Path:
    """A model whose work the request sets: serving_default(steps[b]) -> value[b].

    It loops max(steps) times over a 64x64 matmul (about 20-50 us a step here), so a request
    runs as long as a test needs, in one session step that only cancellation or a timeout
    stops. No variables: tf.saved_model.save of a plain tf.Module loads in the session loader.
    """
    import tensorflow as tf

    @tf.function(input_signature=[tf.TensorSpec([None], tf.int64, name="steps")])
    def spin(steps):
        def body(i, x):
            return i + 1, tf.tanh(tf.matmul(x, x) + 0.1)
        _, x = tf.while_loop(lambda i, x: i < tf.reduce_max(steps), body,
                             (tf.constant(0, tf.int64), tf.eye(64) * 0.5))
        return {"value": tf.fill(tf.shape(steps), tf.reduce_sum(x))}

    module = tf.Module()
    module.spin = spin
    tf.saved_model.save(module, str(base / str(version)), signatures={"serving_default": spin.get_concrete_function()})
    return base / str(version)


@pytest.fixture(scope="session")
def spin_models(tmp_path_factory) -> Path:
    """MODELS/spin/1 (see export_spin)."""
    models = tmp_path_factory.mktemp("spin-models")
    (models / "spin").mkdir()
    export_spin(models / "spin")
    return models


def export_half_plus_two(version_dir: Path) -> Path:
    """TF Serving's testdata saved_model_half_plus_two, regenerated: y = a x + b (a = 0.5, b = 2 in
    variables); `serving_default` (x[b] -> y[b]), `classify_x_to_y` and `regress_x_to_y`
    (serialized tf.Examples with feature x -> scores[b,1] / outputs[b])."""
    import tensorflow as tf

    module = tf.Module()
    module.a, module.b = tf.Variable(0.5), tf.Variable(2.0)

    @tf.function(input_signature=[tf.TensorSpec([None], tf.float32, name="x")])
    def predict(x):
        return {"y": module.a * x + module.b}

    def from_examples(serialized):
        x = tf.io.parse_example(serialized, {"x": tf.io.FixedLenFeature([1], tf.float32)})["x"]
        return module.a * x + module.b  # [b, 1]

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="inputs")])
    def classify(inputs):
        return {"scores": from_examples(inputs)}

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="inputs")])
    def regress(inputs):
        return {"outputs": tf.reshape(from_examples(inputs), [-1])}

    tf.saved_model.save(module, str(version_dir), signatures={
        "serving_default": predict.get_concrete_function(), "classify_x_to_y": classify.get_concrete_function(),
        "regress_x_to_y": regress.get_concrete_function()})
    return version_dir


@pytest.fixture(scope="session")
def half_plus_two(tmp_path_factory) -> Path:
    """BASE/00000123 (zero-padded, as upstream's testdata keeps it)."""
    base = tmp_path_factory.mktemp("half_plus_two")
    export_half_plus_two(base / "00000123")
    return base


VI_RUNS = ("vae_grey", "cvae", "classifier")


@pytest.fixture(scope="session")
def vi_models(grey_vae_run, cvae_run, classifier_runs, tmp_path_factory) -> tuple[Path, dict[str, Path]]:
    """The VI lecture's runs exported by `python -m export` (in-process) to one MODELS dir, once per
    suite: the Gaussian-decoder VAE (`log_prob`, `encode_refined`), the completion model and the
    pretrained classifier. (models, {name: run_dir})."""
    from export.__main__ import main as export_main

    runs = dict(zip(VI_RUNS, (grey_vae_run[0], cvae_run[0], classifier_runs[0] / "pretrained-0")))

    def export(models: Path) -> Path:
        for name, run_dir in runs.items():
            assert export_main([str(run_dir), f"--model_base_path={models}", f"--name={name}"]) == 0
        return models
    return once_per_suite("vi-models", tmp_path_factory, export), runs


@pytest.fixture(scope="session")
def shared_server(smoke_export, policy_models, spin_models, half_plus_two, pixelcnn_export, pixelrnn_export,
                  dqn_export, pg_export, pendulum_export, ppo_export, vi_models, tmp_path_factory):
    """One server for every test that only reads, or cancels only its own requests: the smoke VAE,
    the CartPole test policy (label `stable` -> 1), `spin`, half_plus_two, the PixelCNN, PixelRNN,
    DQN, policy-gradient, A2C and PPO smoke exports and the VI lecture's three (trained once for the
    whole suite), with REST, Prometheus, CORS, the playground page, one session run per model at a
    time, a 16 MB request bound, model roots, and the real server's test-harness flags. A server
    start costs 10-30 s here."""
    folder = tmp_path_factory.mktemp("shared")
    config = folder / "models.config"
    config.write_text(
        "model_config_list {\n"
        f'  config {{ name: "vae" base_path: "{smoke_export.parent}" model_platform: "tensorflow" }}\n'
        f'  config {{ name: "cartpole" base_path: "{policy_models / "cartpole"}" model_platform: "tensorflow" '
        'version_labels { key: "stable" value: 1 } }\n'
        f'  config {{ name: "spin" base_path: "{spin_models / "spin"}" model_platform: "tensorflow" }}\n'
        f'  config {{ name: "spin_b" base_path: "{spin_models / "spin"}" model_platform: "tensorflow" }}\n'
        f'  config {{ name: "half_plus_two" base_path: "{half_plus_two}" model_platform: "tensorflow" }}\n'
        + "".join(f'  config {{ name: "{name}" base_path: "{path}" model_platform: "tensorflow" }}\n'
                  for name, path in [("pixelcnn", pixelcnn_export.parent), ("pixelrnn", pixelrnn_export.parent),
                                     ("cartpole_dqn", dqn_export.parent),
                                     ("cartpole_pg", pg_export[1].parent),
                                     ("pendulum_a2c", pendulum_export[1].parent),
                                     ("cartpole_ppo", ppo_export[1].parent),
                                     *[(name, vi_models[0] / name) for name in VI_RUNS]])
        + "}\n")
    monitoring = folder / "monitoring.config"
    monitoring.write_text('prometheus_config { enable: true path: "/monitoring/prometheus/metrics" }\n')
    root = suite_temp(tmp_path_factory)
    started = Server(f"--model_config_file={config}", f"--monitoring_config_file={monitoring}",
                     "--rest_api_enable_cors_support", "--playground", "--allow_version_labels_for_unavailable_models",
                     "--max_inflight_per_model=1", "--max_request_bytes=16000000", f"--allowed_model_roots={root}",
                     "--grpc_channel_arguments=grpc.max_connection_age_ms=600000,grpc.so_reuseaddr=1",
                     "--enable_grpc_healthcheck_service", "--num_load_threads=2", "--num_unload_threads=1",
                     "--rest_api_num_threads=2", timeout=600,  # fourteen models; the pixel models' warm-up samples
                     wait_for=("vae", "cartpole", "spin", "spin_b", "half_plus_two", "pixelcnn", "pixelrnn",
                               "cartpole_dqn", "cartpole_pg", "pendulum_a2c", "cartpole_ppo", *VI_RUNS))
    started.allowed_root = root
    yield started
    assert started.process.poll() is None, started.output()
    started.stop()

"""The two command lines: `serve` refuses bad flags in one sentence; `query` drives a live server."""
import numpy as np
import pytest
from PIL import Image

from tests.helpers import run_module
from tests.serving.conftest import write_config


@pytest.mark.parametrize("flags, code, message", [
    (["--bogus=1"], 2, "unrecognized arguments: --bogus=1"),
    (["--model_base_path=/a", "--model_config_file=/b"], 2,
     "--model_config_file and --model_base_path are exclusive"),
    ([], 2, "give --model_base_path (with --model_name) or --model_config_file"),
    (["--model_base_path=models/vae"], 2, "--model_base_path must be absolute, got 'models/vae'"),
    (["--model_base_path=/a", "--batching_parameters_file=/b"], 2, "--batching_parameters_file needs --enable_batching"),
    (["--model_base_path=/a", "--port=9000", "--rest_api_port=9000"], 2, "--rest_api_port must differ from --port"),
    (["--model_config_file=/no/such.config"], 2, "cannot read /no/such.config"),
    (["--model_base_path=/no/such/dir", "--model_name=vae"], 1, "Could not find base path /no/such/dir for servable vae"),
])
def test_bad_flags_get_one_sentence_and_a_nonzero_exit(flags, code, message):
    result = run_module("-m", "serving", "serve", *flags, timeout=120)
    assert result.returncode == code
    assert message in result.stderr.strip().splitlines()[-1]


def test_bad_config_file_is_named(tmp_path):
    config = tmp_path / "models.config"
    config.write_text("model_config_list { confi { } }")
    result = run_module("-m", "serving", "serve", f"--model_config_file={config}", timeout=120)
    assert result.returncode == 2
    assert ("Error parsing text-format tensorflow.serving.ModelServerConfig: 1:21 : Message type "
            f"\"tensorflow.serving.ModelConfigList\" has no field named \"confi\".; Invalid protobuf file: '{config}'"
            in result.stderr)


def test_query_commands_against_a_live_server(start_server, smoke_export, policy_models, tmp_path):
    config = write_config(tmp_path / "models.config", {"vae": smoke_export.parent,
                                                       "cartpole": policy_models / "cartpole"})
    server = start_server(f"--model_config_file={config}", wait_for=("vae", "cartpole"), rest=False)
    query = ("-m", "serving", "query", f"--server={server.target}")

    status = run_module(*query, "status", "--model=vae", timeout=120)
    assert status.returncode == 0 and status.stdout.strip() == "vae version 1: AVAILABLE"

    metadata = run_module(*query, "metadata", "--model=cartpole", timeout=120)
    assert metadata.stdout.strip() == "serving_default(observation: float[?,4]) -> action: int64[?], q_values: float[?,2]"

    out = tmp_path / "samples.png"
    sample = run_module(*query, "sample", "--model=vae", "-n", "6", "--seed=3", "--scale=2", f"--out={out}",
                        timeout=120)
    assert sample.returncode == 0, sample.stderr
    grid = np.asarray(Image.open(out))
    assert grid.shape == (2 * (2 * 29 + 1), 2 * (3 * 29 + 1)) and grid.std() > 0

    act = run_module(*query, "act", "--model=cartpole", "--observation=0,0,0.1,0.2", timeout=120)
    assert act.returncode == 0 and act.stdout.strip() == "1"

    play = run_module(*query, "play", "--model=cartpole", "--env=CartPole-v1", "--episodes=2", timeout=300)
    assert play.returncode == 0, play.stderr
    lines = play.stdout.strip().splitlines()
    assert lines[0].startswith("episode 1: return ") and lines[-1].startswith("mean return over 2 episodes: ")
    assert float(lines[-1].split()[-1]) > 30  # a random policy averages about 22

    missing = run_module(*query, "status", "--model=nope", timeout=120)
    assert missing.returncode == 1
    assert missing.stderr.strip().splitlines()[-1] == (
        "python -m serving query status: NOT_FOUND: Could not find any versions of model nope")


def test_startup_fails_when_a_model_cannot_load(smoke_export, tmp_path):
    """Like tensorflow_model_server: no port opens unless every model loaded (and warmed up)."""
    import shutil

    import tensorflow as tf
    from tensorflow_serving.apis import prediction_log_pb2

    broken = tmp_path / "broken" / "1"
    broken.mkdir(parents=True)
    (broken / "saved_model.pb").write_bytes(b"not a SavedModel")
    result = run_module("-m", "serving", "serve", f"--model_base_path={broken.parent}", "--model_name=broken",
                        "--max_num_load_retries=0", timeout=120)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1].startswith(
        "python -m serving serve: Loading servable: {name: broken version: 1} failed: ")

    # a warm-up record the version cannot answer fails its load too
    copy = tmp_path / "badwarmup" / "1"
    shutil.copytree(smoke_export, copy)
    log = prediction_log_pb2.PredictionLog()
    log.predict_log.request.model_spec.signature_name = "no_such_signature"
    with tf.io.TFRecordWriter(str(copy / "assets.extra" / "tf_serving_warmup_requests")) as writer:
        writer.write(log.SerializeToString())
    result = run_module("-m", "serving", "serve", f"--model_base_path={copy.parent}", "--model_name=vae",
                        "--max_num_load_retries=0", timeout=120)
    assert result.returncode == 1
    assert 'Serving signature key "no_such_signature" not found.' in result.stderr.strip().splitlines()[-1]


def test_query_sample_and_complete_on_a_pixelcnn(start_server, pixelcnn_export, tmp_path):
    from serving.client import Client

    server = start_server(f"--model_base_path={pixelcnn_export.parent}", "--model_name=pixelcnn",
                          wait_for=("pixelcnn",), rest=False)
    query = ("-m", "serving", "query", f"--server={server.target}")
    out = tmp_path / "samples.png"
    assert run_module(*query, "sample", "--model=pixelcnn", "-n", "4", f"--out={out}", timeout=120).returncode == 0
    digit = np.zeros((28, 28), np.uint8)
    digit[4:24, 12:16] = 255  # a "1"
    Image.fromarray(digit).save(tmp_path / "one.png")
    out = tmp_path / "completed.png"
    result = run_module(*query, "complete", "--model=pixelcnn", f"--image={tmp_path / 'one.png'}", "--known_rows=14",
                        "-n", "3", "--scale=1", f"--out={out}", timeout=120)
    assert result.returncode == 0, result.stderr
    grid = np.asarray(Image.open(out))
    assert grid.shape == (29 + 1, 4 * 29 + 1)
    np.testing.assert_array_equal(grid[1:15, 1:29], digit[:14])  # the original, first
    for i in range(1, 4):  # every completion keeps the 14 known rows exactly
        np.testing.assert_array_equal(grid[1:15, 1 + 29 * i:29 + 29 * i], digit[:14])
    bad = run_module(*query, "complete", "--model=pixelcnn", f"--image={tmp_path / 'one.png'}", "--known_rows=40",
                     f"--out={out}", timeout=120)
    assert bad.returncode == 2 and "--known_rows must be in [0, 28], got 40" in bad.stderr
    with Client(server.target) as client:
        images = np.random.default_rng(0).integers(0, 2, (2, 28, 28, 1)).astype(np.float32)
        completed = client.complete_images("pixelcnn", images, [10, 20], [1, 2])
        np.testing.assert_array_equal(completed[0, :10], images[0, :10])
        np.testing.assert_array_equal(completed[1, :20], images[1, :20])


def test_query_play_runs_a_trained_dqn_through_the_server(start_server, dqn_export, dqn_run, tmp_path):
    """The README's `query play --model cartpole_dqn --env CartPole-v1`, on the exported smoke run."""
    from export.savedmodel import load_run
    from tests.export.test_policy_export import greedy_returns

    config = write_config(tmp_path / "models.config", {"cartpole_dqn": dqn_export.parent})
    server = start_server(f"--model_config_file={config}", wait_for=("cartpole_dqn",), rest=False)
    play = run_module("-m", "serving", "query", f"--server={server.target}", "play", "--model=cartpole_dqn",
                      "--env=CartPole-v1", "--episodes=2", "--seed=3", timeout=300)
    assert play.returncode == 0, play.stderr
    served = [float(line.split()[3]) for line in play.stdout.splitlines() if line.startswith("episode ")]
    model, _ = load_run(dqn_run[0])
    assert served == greedy_returns(model, [3, 4])[0]  # the server plays exactly as the trained network


def test_query_play_runs_policy_gradient_exports_through_the_server(start_server, pg_export, pendulum_export, tmp_path):
    """`query play` with a sampling policy (seeded: the same seed plays the same game), its
    greedy signature (exactly the trained network's play), and a Gaussian policy's torques."""
    from export.savedmodel import load_run
    from tests.export.test_policy_export import greedy_returns

    config = write_config(tmp_path / "models.config", {"cartpole_pg": pg_export[1].parent,
                                                       "pendulum_a2c": pendulum_export[1].parent})
    server = start_server(f"--model_config_file={config}", wait_for=("cartpole_pg", "pendulum_a2c"), rest=False)

    def play(*flags):
        result = run_module("-m", "serving", "query", f"--server={server.target}", "play", "--episodes=2", *flags,
                            timeout=300)
        assert result.returncode == 0, result.stderr
        return [float(line.split()[3]) for line in result.stdout.splitlines() if line.startswith("episode ")]

    sampled = play("--model=cartpole_pg", "--seed=3")
    assert play("--model=cartpole_pg", "--seed=3") == sampled
    greedy = play("--model=cartpole_pg", "--seed=3", "--signature=greedy")
    model, _ = load_run(pg_export[0])
    assert greedy == greedy_returns(model, [3, 4])[0]
    pendulum = play("--model=pendulum_a2c", "--env=Pendulum-v1")
    assert len(pendulum) == 2 and all(-2000 < r < 0 for r in pendulum)  # 200 steps of torque costs

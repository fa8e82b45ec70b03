"""The two command lines: `serve` refuses bad flags in one sentence; `query` drives a live server.

Both run in-process (`serve(argv)`, `query(argv)`), as `python -m serving` calls them: a
subprocess would only add seconds of TensorFlow import per call.
"""
import numpy as np
import pytest
from PIL import Image

from serving.query import query
from serving.server import serve
from tests.helpers import run_main


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
def test_bad_flags_get_one_sentence_and_a_nonzero_exit(flags, code, message, capsys):
    got, _, err = run_main(serve, flags, capsys)
    assert got == code
    assert message in err.strip().splitlines()[-1]


def test_bad_config_file_is_named(tmp_path, capsys):
    config = tmp_path / "models.config"
    config.write_text("model_config_list { confi { } }")
    code, _, err = run_main(serve, [f"--model_config_file={config}"], capsys)
    assert code == 2
    assert ("Error parsing text-format tensorflow.serving.ModelServerConfig: 1:21 : Message type "
            f"\"tensorflow.serving.ModelConfigList\" has no field named \"confi\".; Invalid protobuf file: '{config}'"
            in err)


def test_query_commands_against_a_live_server(shared_server, tmp_path, capsys):
    target = f"--server={shared_server.target}"

    assert run_main(query, [target, "status", "--model=vae"], capsys)[:2] == (0, "vae version 1: AVAILABLE\n")
    code, out, _ = run_main(query, [target, "metadata", "--model=cartpole"], capsys)
    assert out.strip() == "serving_default(observation: float[?,4]) -> action: int64[?], q_values: float[?,2]"

    out = tmp_path / "samples.png"
    code, _, err = run_main(query, [target, "sample", "--model=vae", "-n", "6", "--seed=3", "--scale=2",
                                    f"--out={out}"], capsys)
    assert code == 0, err
    grid = np.asarray(Image.open(out))
    assert grid.shape == (2 * (2 * 29 + 1), 2 * (3 * 29 + 1)) and grid.std() > 0

    assert run_main(query, [target, "act", "--model=cartpole", "--observation=0,0,0.1,0.2"], capsys)[:2] == (0, "1\n")

    code, out, err = run_main(query, [target, "play", "--model=cartpole", "--env=CartPole-v1", "--episodes=2"], capsys)
    assert code == 0, err
    lines = out.strip().splitlines()
    assert lines[0].startswith("episode 1: return ") and lines[-1].startswith("mean return over 2 episodes: ")
    assert float(lines[-1].split()[-1]) > 30  # a random policy averages about 22

    code, _, err = run_main(query, [target, "status", "--model=nope"], capsys)
    assert code == 1
    assert err.strip().splitlines()[-1] == (
        "python -m serving query status: NOT_FOUND: Could not find any versions of model nope")


def test_startup_fails_when_a_model_cannot_load(smoke_export, tmp_path, capsys):
    """Like tensorflow_model_server: no port opens unless every model loaded (and warmed up)."""
    import shutil

    import tensorflow as tf
    from tensorflow_serving.apis import prediction_log_pb2

    broken = tmp_path / "broken" / "1"
    broken.mkdir(parents=True)
    (broken / "saved_model.pb").write_bytes(b"not a SavedModel")
    code, _, err = run_main(serve, [f"--model_base_path={broken.parent}", "--model_name=broken",
                                    "--max_num_load_retries=0"], capsys)
    assert code == 1
    assert err.strip().splitlines()[-1].startswith(
        "python -m serving serve: Loading servable: {name: broken version: 1} failed: ")

    # a warm-up record the version cannot answer fails its load too
    copy = tmp_path / "badwarmup" / "1"
    shutil.copytree(smoke_export, copy)
    log = prediction_log_pb2.PredictionLog()
    log.predict_log.request.model_spec.signature_name = "no_such_signature"
    with tf.io.TFRecordWriter(str(copy / "assets.extra" / "tf_serving_warmup_requests")) as writer:
        writer.write(log.SerializeToString())
    code, _, err = run_main(serve, [f"--model_base_path={copy.parent}", "--model_name=vae", "--max_num_load_retries=0"],
                            capsys)
    assert code == 1
    assert 'Serving signature key "no_such_signature" not found.' in err.strip().splitlines()[-1]


def test_query_sample_and_complete_on_a_pixelcnn(shared_server, tmp_path, capsys):
    from serving.client import Client

    server = shared_server
    target = f"--server={server.target}"
    out = tmp_path / "samples.png"
    assert run_main(query, [target, "sample", "--model=pixelcnn", "-n", "4", f"--out={out}"], capsys)[0] == 0
    digit = np.zeros((28, 28), np.uint8)
    digit[4:24, 12:16] = 255  # a "1"
    Image.fromarray(digit).save(tmp_path / "one.png")
    out = tmp_path / "completed.png"
    code, _, err = run_main(query, [target, "complete", "--model=pixelcnn", f"--image={tmp_path / 'one.png'}",
                                    "--known_rows=14", "-n", "3", "--scale=1", f"--out={out}"], capsys)
    assert code == 0, err
    grid = np.asarray(Image.open(out))
    assert grid.shape == (29 + 1, 4 * 29 + 1)
    np.testing.assert_array_equal(grid[1:15, 1:29], digit[:14])  # the original, first
    for i in range(1, 4):  # every completion keeps the 14 known rows exactly
        np.testing.assert_array_equal(grid[1:15, 1 + 29 * i:29 + 29 * i], digit[:14])
    code, _, err = run_main(query, [target, "complete", "--model=pixelcnn", f"--image={tmp_path / 'one.png'}",
                                    "--known_rows=40", f"--out={out}"], capsys)
    assert code == 2 and "--known_rows must be in [0, 28], got 40" in err
    with Client(server.target) as client:
        images = np.random.default_rng(0).integers(0, 2, (2, 28, 28, 1)).astype(np.float32)
        completed = client.complete_images("pixelcnn", images, [10, 20], [1, 2])
        np.testing.assert_array_equal(completed[0, :10], images[0, :10])
        np.testing.assert_array_equal(completed[1, :20], images[1, :20])


def test_a_pixelrnn_export_answers_sample_log_prob_and_complete_over_grpc(shared_server, pixelrnn_run, tmp_path,
                                                                         capsys):
    """The served smoke PixelRNN (official gRPC stubs) answers as the run's model restored in this process: the
    same samples for the same seeds (another process, the same images), the same log p(x), completions that
    keep their known rows bit for bit; `query complete --model=pixelrnn` works as for the PixelCNN."""
    import tensorflow as tf

    from export.savedmodel import load_run
    from tests.serving.test_api import predict_request

    model, _ = load_run(pixelrnn_run[0])
    images = np.load(pixelrnn_run[0] / "examples.npz")["images"][:3]  # held-out binarized digits, 8x8
    seeds = np.array([7, 8, 7], np.int64)

    def predict(signature, **inputs):
        reply = shared_server.stub.Predict(predict_request("pixelrnn", signature, **inputs), timeout=60)
        return {alias: tf.make_ndarray(tensor) for alias, tensor in reply.outputs.items()}

    sampled = predict("sample", seed=seeds)["images"]
    np.testing.assert_array_equal(sampled, model.sample(tf.constant(seeds)).numpy())
    np.testing.assert_array_equal(sampled[0], sampled[2])  # a row's sample follows its seed alone
    assert set(np.unique(sampled)) <= {0.0, 1.0}
    np.testing.assert_array_equal(predict("", seed=seeds)["images"], sampled)  # serving_default samples
    scored = predict("log_prob", images=images)
    np.testing.assert_allclose(scored["log_prob"], model.log_prob(images).numpy(), rtol=1e-5)
    np.testing.assert_allclose(scored["bits_per_dim"], -scored["log_prob"] / (64 * np.log(2)), rtol=1e-5)
    known = np.array([0, 3, 8], np.int64)
    completed = predict("complete", images=images, known_rows=known, seed=seeds)["images"]
    np.testing.assert_array_equal(completed, model.complete_fast(images, known, tf.constant(seeds)).numpy())
    np.testing.assert_array_equal(completed[0], sampled[0])  # nothing known: a sample
    np.testing.assert_array_equal(completed[1, :3], images[1, :3])
    np.testing.assert_array_equal(completed[2], images[2])  # every row known

    digit = (images[1, ..., 0] * 255).astype(np.uint8)
    Image.fromarray(digit).save(tmp_path / "digit.png")
    code, out, err = run_main(query, [f"--server={shared_server.target}", "complete", "--model=pixelrnn",
                                      f"--image={tmp_path / 'digit.png'}", "--known_rows=4", "-n", "2", "--scale=1",
                                      f"--out={tmp_path / 'completed.png'}"], capsys)
    assert code == 0, err
    grid = np.asarray(Image.open(tmp_path / "completed.png"))
    assert grid.shape == (9 + 1, 3 * 9 + 1)  # 8x8 cells, a pixel of border each
    for column in range(3):  # the original, then two completions: each keeps the 4 known rows
        np.testing.assert_array_equal(grid[1:5, 1 + 9 * column:9 + 9 * column], digit[:4])


def test_query_play_runs_policy_exports_through_the_server(shared_server, dqn_run, pg_export, ppo_export, capsys):
    """The README's `query play`: a DQN export plays exactly as the trained network; a sampling
    policy-gradient export (seeded: the same seed plays the same game), its greedy signature
    (exactly the trained network's play), a Gaussian policy's torques, and a PPO export as the
    policy-gradient one."""
    from export.savedmodel import load_run
    from tests.export.test_policy_export import greedy_returns

    server = shared_server

    def play(*flags):
        code, out, err = run_main(query, [f"--server={server.target}", "play", "--episodes=2", *flags], capsys)
        assert code == 0, err
        return [float(line.split()[3]) for line in out.splitlines() if line.startswith("episode ")]

    served = play("--model=cartpole_dqn", "--env=CartPole-v1", "--seed=3")
    assert served == greedy_returns(load_run(dqn_run[0])[0], [3, 4])[0]  # the server plays as the trained network

    sampled = play("--model=cartpole_pg", "--seed=3")
    assert play("--model=cartpole_pg", "--seed=3") == sampled
    greedy = play("--model=cartpole_pg", "--seed=3", "--signature=greedy")
    assert greedy == greedy_returns(load_run(pg_export[0])[0], [3, 4])[0]
    pendulum = play("--model=pendulum_a2c", "--env=Pendulum-v1")
    assert len(pendulum) == 2 and all(-2000 < r < 0 for r in pendulum)  # 200 steps of torque costs

    ppo_greedy = play("--model=cartpole_ppo", "--seed=3", "--signature=greedy")
    assert ppo_greedy == greedy_returns(load_run(ppo_export[0])[0], [3, 4])[0]
    ppo_sampled = play("--model=cartpole_ppo", "--seed=3")
    assert play("--model=cartpole_ppo", "--seed=3") == ppo_sampled
    assert min(ppo_sampled) > 60  # the smoke run's sampling policy; a random one lasts about 22 steps

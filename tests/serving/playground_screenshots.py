"""Pictures of the playground's panels, in headless Chromium (Debian's, through Playwright).

    .venv/bin/python -m tests.serving.playground_screenshots URL [DIR]

URL is a served playground with its models named, e.g. the address `make playground`
prints; DIR (default docs/) gets playground-models.png, -images.png, -completion.png,
-policies.png and, for each further environment, e.g. -policies-acrobot.png (a panel none of
the models fits is left out), in 256 colours. The browser tests use the same launcher and
run `take` against their own server.
"""
from __future__ import annotations

import sys
import tempfile
from pathlib import Path

CHROMIUM = Path("/usr/bin/chromium")
# This machine has no internet: keep Chromium from calling home (it retries closed connections otherwise).
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def launch(playwright, profile: Path):
    """Debian's Chromium with a fresh profile: a Playwright BrowserContext."""
    if not CHROMIUM.exists():
        raise FileNotFoundError(f"{CHROMIUM} is missing: `make test` installs it (as root: apt-get install chromium)")
    return playwright.chromium.launch_persistent_context(
        str(profile), executable_path=str(CHROMIUM), args=CHROMIUM_FLAGS, headless=True,
        viewport={"width": 1100, "height": 800})


def take(page, directory: Path) -> list[Path]:
    """Use each panel of a loaded page once (its first model, default settings) and save a picture of it."""
    directory.mkdir(parents=True, exist_ok=True)
    page.evaluate("() => Promise.all([playground.ready, playground.digitsReady])")
    written = []

    def save(name: str) -> None:
        from PIL import Image

        path = directory / f"playground-{name}.png"
        page.screenshot(path=str(path), full_page=True)
        picture = Image.open(path).convert("RGB")  # flat colours and text: a palette loses nothing visible
        picture.quantize(256, method=Image.Quantize.FASTOCTREE, dither=Image.Dither.NONE).save(path, optimize=True)
        written.append(path)

    def has(select: str) -> bool:
        return bool(page.eval_on_selector(select, "s => s.value"))

    save("models")
    page.click("#tabs button[data-panel=images-panel]")
    if has("#sample-model"):
        page.click("#sample-button")
        page.wait_for_function("() => playground.samples")
    if has("#latent-model"):
        page.click("#latent-button")
        page.wait_for_function("() => !document.querySelector('#latent-button').disabled")
        box = page.locator("#latent-map").bounding_box()
        page.mouse.click(box["x"] + box["width"] * 0.62, box["y"] + box["height"] * 0.3)
        page.wait_for_function("() => document.querySelector('#latent-z').dataset.z")
    if has("#interpolate-model"):
        page.click("#interpolate-button")
        page.wait_for_function("() => playground.interpolation")
    if has("#sample-model") or has("#latent-model"):
        save("images")
    page.click("#tabs button[data-panel=completion-panel]")
    if has("#complete-model"):
        page.select_option("#complete-digit", "3")
        page.click("#complete-button")
        page.wait_for_function("() => playground.completion", timeout=300_000)
        save("completion")
    page.click("#tabs button[data-panel=policies-panel]")
    environments = []  # one episode for each environment some model acts in
    for model in page.eval_on_selector_all("#policy-model option", "options => options.map(o => o.value)"):
        page.select_option("#policy-model", model)
        environment = page.text_content("#policy-env").split()[0]  # "CartPole-v1 (observations of 4 numbers)"
        if not model or environment in environments:
            continue
        environments.append(environment)
        page.uncheck("#policy-realtime")
        page.click("#policy-play")
        page.wait_for_function(f"() => playground.episode && playground.episode.model === '{model}' && "
                               "playground.episode.done", timeout=300_000)
        save("policies" if len(environments) == 1 else f"policies-{environment.split('-')[0].lower()}")
    return written


def main(argv: list[str]) -> int:
    from playwright.sync_api import sync_playwright

    if len(argv) not in (1, 2):
        print(__doc__.strip().splitlines()[2].strip(), file=sys.stderr)
        return 2
    directory = Path(argv[1] if len(argv) > 1 else "docs")
    with sync_playwright() as playwright, tempfile.TemporaryDirectory() as profile:
        browser = launch(playwright, Path(profile))
        page = browser.new_page()
        page.goto(argv[0])
        for path in take(page, directory):
            print(f"wrote {path}")
        error = page.text_content("#error")
        browser.close()
    if error:
        print(f"the page showed an error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

"""`python -m serving query`: ask a running server (ours or tensorflow_model_server) from the shell."""
from __future__ import annotations

import argparse
import sys

import numpy as np


def image_grid(images: np.ndarray, columns: int | None = None) -> np.ndarray:
    """[n, H, W, C] floats in [0, 1] -> one uint8 picture with a 1-pixel gap between images."""
    n, height, width, channels = images.shape
    columns = columns or int(np.ceil(np.sqrt(n)))
    rows = int(np.ceil(n / columns))
    grid = np.ones(((height + 1) * rows + 1, (width + 1) * columns + 1, channels), dtype=np.float32)
    for i, image in enumerate(images):
        r, c = divmod(i, columns)
        grid[1 + r * (height + 1):1 + r * (height + 1) + height, 1 + c * (width + 1):1 + c * (width + 1) + width] = image
    grid = np.clip(grid * 255 + 0.5, 0, 255).astype(np.uint8)
    return grid[..., 0] if channels == 1 else grid


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m serving query",
                                     description="Query a TensorFlow Serving compatible server over gRPC.")
    parser.add_argument("--server", default="127.0.0.1:8500", help="host:port of the gRPC API")
    parser.add_argument("--timeout", type=float, default=30.0, help="seconds per call")
    commands = parser.add_subparsers(dest="command", required=True)

    def command(name: str, help: str) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, help=help)
        sub.add_argument("--model", required=True)
        return sub

    def picture_options(sub: argparse.ArgumentParser, count: int, what: str, out: str) -> None:
        sub.add_argument("-n", type=int, default=count, help=f"number of {what}")
        sub.add_argument("--seed", type=int, default=0, help="seed of the first one; the rest count up")
        sub.add_argument("--label", type=int, help="class label, for conditional models")
        sub.add_argument("--out", required=True, help=f"PNG file to write: {out}")
        sub.add_argument("--scale", type=int, default=3, help="enlarge the picture this many times")

    status = command("status", "version states of a model")
    status.add_argument("--version", type=int)
    status.add_argument("--wait", type=float, default=0, help="wait this long for an AVAILABLE version")
    command("metadata", "signatures with their inputs and outputs").add_argument("--version", type=int)
    picture_options(command("sample", "sample images into a PNG grid"), 16, "images", "a grid of the samples")
    complete = command("complete", "keep an image's top rows, sample the rest, into a PNG")
    complete.add_argument("--image", required=True, help="PNG or JPEG of the model's size (grey or RGB)")
    complete.add_argument("--known_rows", type=int, required=True, help="rows kept from the top of the image")
    picture_options(complete, 4, "completions", "the image, then the completions")
    classify = command("classify", "the class of each image, with its probability")
    classify.add_argument("--image", nargs="+", required=True, help="PNG or JPEG files of the model's size")
    classify.add_argument("--signature", default="classify", help="signature to call (default: %(default)s)")
    act = command("act", "the action of a policy for one observation")
    act.add_argument("--observation", required=True, help="comma-separated numbers, e.g. 0.1,0,0.2,0")
    act.add_argument("--seed", type=int, default=0, help="seed, for policies that sample")
    play = command("play", "play a gymnasium environment with the served policy")
    play.add_argument("--env", default="CartPole-v1", help="gymnasium environment id")
    play.add_argument("--episodes", type=int, default=5)
    play.add_argument("--seed", type=int, default=0, help="seed of the first episode (and of sampled actions)")
    play.add_argument("--signature", default="serving_default",
                      help="signature that acts (default: %(default)s; 'greedy' for a policy-gradient export's mode)")
    return parser


def query(argv: list[str]) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    from quiet import quiet_tensorflow
    quiet_tensorflow()
    from serving.client import Client
    from serving.errors import ServingError

    try:
        with Client(args.server, timeout=args.timeout) as client:
            return COMMANDS[args.command](client, args, parser)
    except ServingError as error:
        print(f"python -m serving query {args.command}: {error.code.name}: {error.message}", file=sys.stderr)
        return 1


def _status(client, args, parser) -> int:
    if args.wait:
        client.wait_ready(args.model, args.wait)
    for entry in client.status(args.model, args.version):
        error = f" ({entry['error_code']}: {entry['error_message']})" if entry["error_code"] != "OK" else ""
        print(f"{args.model} version {entry['version']}: {entry['state']}{error}")
    return 0


def _metadata(client, args, parser) -> int:
    from serving.tensors import dtype_name

    def describe(infos) -> str:
        return ", ".join(f"{alias}: {dtype_name(info.dtype)}"
                         f"[{','.join('?' if d.size < 0 else str(d.size) for d in info.tensor_shape.dim)}]"
                         for alias, info in sorted(infos.items()))
    for name, signature in sorted(client.metadata(args.model, args.version).items()):
        if not name.startswith("__"):
            print(f"{name}({describe(signature.inputs)}) -> {describe(signature.outputs)}")
    return 0


def _save(images: np.ndarray, path: str, scale: int, columns: int | None = None) -> None:
    from PIL import Image

    picture = Image.fromarray(image_grid(images, columns))
    picture.resize((picture.width * scale, picture.height * scale), Image.NEAREST).save(path)


def _sample(client, args, parser) -> int:
    if args.n < 1 or args.scale < 1:
        parser.error("-n and --scale must be at least 1")
    seeds = range(args.seed, args.seed + args.n)
    labels = None if args.label is None else [args.label] * args.n
    images = client.sample_images(args.model, seeds, labels)
    _save(images, args.out, args.scale)
    print(f"wrote {args.n} samples of {args.model} ({images.shape[1]}x{images.shape[2]}) to {args.out}")
    return 0


def _read_images(client, args, parser, signature: str, paths: list[str]) -> np.ndarray:
    """The image files at `paths` as float32 [N, H, W, C] in [0, 1], checked against the size the
    signature's `images` input takes (the model's metadata is asked for once)."""
    from PIL import Image

    if signature not in (signatures := client.metadata(args.model)):
        names = ", ".join(sorted(name for name in signatures if not name.startswith("__")))
        parser.error(f"{args.model} has no signature {signature!r}; it has {names}")
    if "images" not in signatures[signature].inputs:
        parser.error(f"{args.model}'s signature {signature!r} takes no images input; it takes "
                     f"{', '.join(sorted(signatures[signature].inputs))}")
    dims = [d.size for d in signatures[signature].inputs["images"].tensor_shape.dim]
    height, width, channels = dims[1:]
    images = []
    for path in paths:
        try:
            picture = Image.open(path).convert("L" if channels == 1 else "RGB")
        except OSError as error:
            parser.error(f"--image {path}: {error}")
        if picture.size != (width, height):
            parser.error(f"--image {path} is {picture.width}x{picture.height}; {args.model} takes "
                         f"{width}x{height} images")
        images.append(np.asarray(picture, dtype=np.float32).reshape(height, width, channels) / 255)
    return np.stack(images)


def _complete(client, args, parser) -> int:
    if args.n < 1 or args.scale < 1:
        parser.error("-n and --scale must be at least 1")
    image = _read_images(client, args, parser, "complete", [args.image])[0]
    height = image.shape[0]
    if not 0 <= args.known_rows <= height:
        parser.error(f"--known_rows must be in [0, {height}], got {args.known_rows}")
    labels = None if args.label is None else [args.label] * args.n
    completed = client.complete_images(args.model, np.repeat(image[None], args.n, axis=0),
                                       [args.known_rows] * args.n, range(args.seed, args.seed + args.n), labels)
    _save(np.concatenate([image[None], completed]), args.out, args.scale, columns=args.n + 1)
    print(f"wrote {args.image} and {args.n} completions below row {args.known_rows} to {args.out}")
    return 0


def _classify(client, args, parser) -> int:
    images = _read_images(client, args, parser, args.signature, args.image)
    outputs = client.predict(args.model, {"images": images}, signature=args.signature)
    if missing := {"probabilities", "classes"} - outputs.keys():
        parser.error(f"{args.model}'s signature {args.signature!r} has no output {', '.join(sorted(missing))}; "
                     "classify reads probabilities and classes")
    for path, probabilities, predicted in zip(args.image, outputs["probabilities"], outputs["classes"]):
        print(f"{path}: class {int(predicted)} (probability {probabilities[int(predicted)]:.3f}); probabilities "
              + " ".join(f"{p:.3f}" for p in probabilities))
    return 0


def _act(client, args, parser) -> int:
    try:
        observation = [float(x) for x in args.observation.split(",")]
    except ValueError:
        parser.error(f"--observation must be comma-separated numbers, got {args.observation!r}")
    action = client.act(args.model, [observation], seed=args.seed)[0]
    print(action.tolist() if hasattr(action, "tolist") else action)
    return 0


def _play(client, args, parser) -> int:
    import gymnasium as gym

    try:
        env = gym.make(args.env)
    except gym.error.Error as error:
        parser.error(f"--env {args.env}: {error}")
    returns = []
    for episode in range(args.episodes):
        observation, _ = env.reset(seed=args.seed + episode)
        total, done, step = 0.0, False, 0
        while not done:
            action = client.act(args.model, [observation], seed=args.seed * 100_003 + step,
                                signature=args.signature)[0]
            observation, reward, terminated, truncated, _ = env.step(action.item() if action.ndim == 0 else action)
            total += float(reward)
            done = terminated or truncated
            step += 1
        returns.append(total)
        print(f"episode {episode + 1}: return {total:g} ({step} steps)")
    print(f"mean return over {args.episodes} episodes: {np.mean(returns):g}")
    return 0


COMMANDS = {"status": _status, "metadata": _metadata, "sample": _sample, "complete": _complete,
            "classify": _classify, "act": _act, "play": _play}

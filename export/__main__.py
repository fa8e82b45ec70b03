"""python -m export RUN_DIR --model_base_path MODELS --name NAME
python -m export verify MODELS/NAME[/VERSION]"""
import argparse
import sys
from pathlib import Path

from quiet import quiet_tensorflow


def export_main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m export",
                                     description="Write a training run as the next version of a served model.")
    parser.add_argument("run_dir", type=Path, help="training run directory (holds model.json and checkpoints/)")
    parser.add_argument("--model_base_path", type=Path, required=True, help="models directory, e.g. models/")
    parser.add_argument("--name", required=True, help="model name: the version goes to MODEL_BASE_PATH/NAME/N")
    args = parser.parse_args(argv)
    if not args.name or "/" in args.name or args.name.startswith("."):
        parser.error(f"--name {args.name!r} must be a plain directory name")
    quiet_tensorflow()
    from export.savedmodel import ExportError, export_run

    try:
        version_dir = export_run(args.run_dir, args.model_base_path, args.name)
    except ExportError as error:
        parser.exit(1, f"{parser.prog}: error: {error}\n")
    print(f"exported {version_dir} (model card and warm-up requests in {version_dir / 'assets.extra'})")
    print(f"models.config: {args.model_base_path / 'models.config'}")
    return 0


def verify_main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m export verify",
                                     description="Load an export as TensorFlow Serving does and run every signature.")
    parser.add_argument("path", type=Path, help="MODELS/NAME (latest version) or MODELS/NAME/VERSION")
    args = parser.parse_args(argv)
    quiet_tensorflow()
    from export.savedmodel import ExportError
    from export.verify import verify

    try:
        version_dir, results = verify(args.path)
    except ExportError as error:
        parser.exit(1, f"{parser.prog}: FAILED: {error}\n")
    for result in results:
        print(f"{result.name}: {'OK' if result.ok else 'FAILED'}: {result.detail}")
    failed = [r.name for r in results if not r.ok]
    if failed:
        print(f"{version_dir}: FAILED ({len(failed)} of {len(results)} signatures: {', '.join(failed)})")
        return 1
    print(f"{version_dir}: OK, loads through the session-based loader and all {len(results)} signatures run")
    return 0


def main(argv: list[str]) -> int:
    if argv and argv[0] == "verify":
        return verify_main(argv[1:])
    return export_main(argv)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

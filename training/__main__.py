"""python -m training FAMILY [--preset NAME] [--key=value ...] --out RUN_DIR"""
import importlib
import sys

from quiet import quiet_tensorflow

FAMILIES = {"vae": "training.vae"}  # family name -> module with main(argv)


def main(argv: list[str]) -> int:
    if not argv or argv[0] in ("-h", "--help") or argv[0] not in FAMILIES:
        known = ", ".join(sorted(FAMILIES))
        message = "usage: python -m training FAMILY [--preset NAME] [--key=value ...] --out RUN_DIR\n"
        if argv and argv[0] not in ("-h", "--help"):
            sys.stderr.write(f"{message}python -m training: error: unknown family {argv[0]!r}; expected one of: {known}\n")
            return 2
        print(f"{message}families: {known}\n'python -m training FAMILY --help' lists presets and options.")
        return 0 if argv else 2
    quiet_tensorflow()
    return importlib.import_module(FAMILIES[argv[0]]).main(argv[1:])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

"""python -m training FAMILY [--preset NAME] [--key=value ...] --out RUN_DIR"""
import importlib
import sys

from quiet import quiet_tensorflow

FAMILIES = {  # family -> module with main(argv); one module may serve several algorithms
    "vae": "training.vae", "pixelcnn": "training.pixelcnn", "dqn": "training.dqn", "bandits": "training.bandits",
    "reinforce": "training.pg", "reinforce_baseline": "training.pg", "a2c": "training.pg",
    "pg_compare": "training.pg_compare", "nas": "training.nas",
    "ingraph": "training.ingraph",
}


def main(argv: list[str]) -> int:
    known = ", ".join(sorted(FAMILIES))
    usage = "usage: python -m training FAMILY [--preset NAME] [--key=value ...] --out RUN_DIR"
    if argv[:1] in (["-h"], ["--help"]):
        print(f"{usage}\nfamilies: {known}\n'python -m training FAMILY --help' lists presets and options.")
        return 0
    if not argv or argv[0] not in FAMILIES:
        problem = f"unknown family {argv[0]!r}" if argv else "no family given"
        sys.stderr.write(f"{usage}\npython -m training: error: {problem}; expected one of: {known}\n")
        return 2
    quiet_tensorflow()
    module = importlib.import_module(FAMILIES[argv[0]])
    if hasattr(module, "ALGORITHMS"):  # one module, several algorithms
        return module.main(argv[0], argv[1:])
    return module.main(argv[1:])

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

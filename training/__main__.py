"""python -m training COMMAND [--preset NAME] [--key=value ...] --out RUN_DIR"""
import importlib
import sys

from quiet import quiet_tensorflow

COMMANDS = {  # python -m training COMMAND -> "module:function", the function main(argv) -> exit status
    "vae": "training.vae:main", "pixelcnn": "training.pixelcnn:main", "pixelrnn": "training.pixelrnn:main",
    "compare_generative": "training.compare_generative:main", "dqn": "training.dqn:main",
    "reinforce": "training.pg:main_reinforce", "reinforce_baseline": "training.pg:main_reinforce_baseline",
    "a2c": "training.pg:main_a2c", "ppo": "training.ppo:main", "pg_compare": "training.pg_compare:main",
    "nas": "training.nas:main", "bandits": "training.bandits:main", "tabular": "training.tabular:main",
    "vae_estimators": "training.vae_lecture:main_estimators", "vae_vi": "training.vae_lecture:main_vi",
    "vae_latent_dims": "training.vae_lecture:main_latent_dims",
    "vae_loss_balance": "training.vae_lecture:main_loss_balance", "cvae": "training.cvae:main",
    "completions": "training.cvae:main_completions", "ae_classifier": "training.classifier:main",
}


def main(argv: list[str]) -> int:
    known = ", ".join(sorted(COMMANDS))
    usage = "usage: python -m training COMMAND [--preset NAME] [--key=value ...] --out RUN_DIR"
    if argv[:1] in (["-h"], ["--help"]):
        print(f"{usage}\ncommands: {known}\n'python -m training COMMAND --help' lists presets and options.")
        return 0
    if not argv or argv[0] not in COMMANDS:
        problem = f"unknown command {argv[0]!r}" if argv else "no command given"
        sys.stderr.write(f"{usage}\npython -m training: error: {problem}; expected one of: {known}\n")
        return 2
    quiet_tensorflow()
    module, function = COMMANDS[argv[0]].split(":")
    return getattr(importlib.import_module(module), function)(argv[1:])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

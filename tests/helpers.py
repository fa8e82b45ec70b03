"""Helpers for the tests: run a module in a subprocess, train a preset in-process."""
import dataclasses
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def run_module(*args: str, cwd: Path = ROOT, timeout: float = 300, **kwargs):
    """Run `python -m ...` from the project's venv in a subprocess; returns CompletedProcess."""
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, *args], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=timeout, **kwargs)


def train_run(run_dir: Path, preset: str = "smoke", **overrides):
    """Train in-process with a preset and overrides; returns (config, metrics)."""
    from training import vae

    config = vae.PRESETS[preset]()
    model_fields = {f.name for f in dataclasses.fields(config.model)}
    config = dataclasses.replace(
        config, model=dataclasses.replace(config.model, **{k: v for k, v in overrides.items() if k in model_fields}),
        **{k: v for k, v in overrides.items() if k not in model_fields})
    return config, vae.train(config, run_dir, progress=False)

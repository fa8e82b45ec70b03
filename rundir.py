"""The run directory: the one module that writes what a training run leaves behind, and that
`export` reads it back with (without importing `training/`).

    RUN/config.json         the run's options, flat, as the command line spells them (written once)
    RUN/model.json          family, kind and model config: what the run is and what export rebuilds (written once)
    RUN/checkpoints/STEP/   one whole checkpoint per directory: variables.*, state.json, NAME.npz, NAME.pkl
    RUN/history.json        the records logged so far (evaluations, epochs)
    RUN/metrics.json        the final metrics; a run that has them is finished
    RUN/examples.npz        a few held-out inputs (export's warm-up requests use them)
    RUN/tensorboard/        TensorBoard logs, the config first

A training script opens its run, returns the metrics if it already finished, registers what
its checkpoints hold, restores the latest, and finishes with its metrics:

    run = Run.open(out, config, family="dqn", kind="policy", model=config.model)
    if run.finished:
        return run.metrics
    checkpoints = run.checkpoints(config.checkpoint_every, model=online, optimizer=optimizer, rng=rng)
    if (saved := checkpoints.restore()) is not None:
        step, state = saved.step, saved.state          # and saved.arrays, saved.pickled
    ... checkpoints.save(step, state={...}, arrays={"replay": {...}}, pickled={"envs": envs}) ...
    return run.finish(metrics)

A checkpoint is written into a hidden staging directory and renamed to checkpoints/STEP/ when
complete, so it appears whole or not at all; the latest is found by listing them (there is no
index file to lose). A damaged checkpoint is named in one sentence and the previous intact one
is used instead, said aloud; none intact is an error, never a silent restart from step 0.
"""
from __future__ import annotations

import dataclasses
import json
import os
import pickle
import shutil
import sys
import tempfile
import typing
import zipfile
from pathlib import Path
from typing import Any

import keras
import numpy as np
import tensorflow as tf

KINDS = ("image_model", "policy", "architecture_search", "comparison")
"""What a run holds: a generative image model or a policy (both export), a search, or a comparison of runs."""


class UserError(ValueError):
    """A problem with what the user asked for (data, flags, run directory): the command line
    prints its message as one sentence and exits with status 2."""


class Damaged(Exception):
    """A file of a checkpoint that cannot be read; `path` names it, the message says why."""

    def __init__(self, path: Path, reason: str):
        super().__init__(f"{path} is damaged ({reason})")
        self.path = path


# ---------------------------------------------------------------- configs as JSON


def json_value(value: Any) -> Any:
    """`value` as it reads back from JSON (tuples become lists)."""
    return json.loads(json.dumps(value))


def config_values(config: Any) -> dict[str, Any]:
    """A config dataclass as one flat {option: JSON value} mapping: the fields of nested
    dataclasses are options of their own, as the command line spells them."""
    values = {}
    for field in dataclasses.fields(config):
        value = getattr(config, field.name)
        if dataclasses.is_dataclass(value):
            values.update(config_values(value))
        else:
            values[field.name] = json_value(value)
    return values


def config_from_json(config_type: type, values: dict) -> Any:
    """Rebuild a config dataclass from `dataclasses.asdict` JSON (lists back to tuples)."""
    hints = typing.get_type_hints(config_type)
    fields = {}
    for field in dataclasses.fields(config_type):
        if field.name in values:
            value, hint = values[field.name], hints[field.name]
            if dataclasses.is_dataclass(hint):
                value = config_from_json(hint, value)
            elif typing.get_origin(hint) is tuple:
                value = tuple(value)
            fields[field.name] = value
    return config_type(**fields)


def write_json(path: Path, value: Any) -> None:
    """Write JSON atomically: a reader never sees half a file."""
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    with os.fdopen(handle, "w") as f:
        json.dump(value, f, indent=2, default=str)
        f.write("\n")
    os.replace(temporary, path)


def read_json(path: Path) -> Any:
    """The JSON in `path`; a file that cannot be read is a UserError naming it."""
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError) as error:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise UserError(f"{path} cannot be read ({_reason(error)})") from None


def _reason(error: BaseException) -> str:
    lines = str(error).strip().splitlines()
    return f"{type(error).__name__}: {lines[0][:200]}" if lines else type(error).__name__


def checked_directory(out: str | Path) -> Path:
    """`out` as a run directory, checked without creating anything: not empty, not a file, not
    under a file, somewhere this process can write. A UserError says what is wrong."""
    if not str(out).strip():
        raise UserError("the run directory (--out) is empty; expected a path such as runs/NAME")
    path = Path(out).expanduser()
    if path.exists() and not path.is_dir():
        raise UserError(f"run directory {path} is a file; expected a directory (new, or a run to resume)")
    existing = next(p for p in (path, *path.parents) if p.exists())
    if not existing.is_dir():
        raise UserError(f"cannot create run directory {path}: {existing} is a file, not a directory")
    try:
        tempfile.TemporaryFile(dir=existing).close()
    except OSError as error:
        raise UserError(f"cannot write in run directory {path} ({error.strerror or error})") from None
    return path


def _say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# ---------------------------------------------------------------- the run


class Run:
    """One run directory. `Run.open` starts or resumes a run (training); `Run.read` reads a
    finished or running one (export). Only the chief of a multi-worker job writes in it."""

    def __init__(self, directory: Path, family: str, kind: str, model_config: dict | None,
                 config: dict | None, chief: bool):
        self.directory, self.family, self.kind, self.chief = directory, family, kind, chief
        self.model_config = model_config
        """The model's config as JSON (`dataclasses.asdict`), or None for a run without a model."""
        self.config = config
        """The run's flat options as JSON (config.json)."""
        self.history: list[dict] = []
        """Records logged so far: saved with every checkpoint and in history.json."""
        self._writer = None

    @classmethod
    def open(cls, out: str | Path, config: Any, *, family: str, kind: str, model: Any = None,
             chief: bool = True) -> Run:
        """Start a run in `out`, or resume the one there if it has the same family and config.

        `config` is the run's config dataclass, after what the data or environment decides;
        `model` the model's config dataclass, the one export rebuilds the model from (None
        for runs without one). A directory that holds another family's run, or another
        config, is refused with one sentence naming what differs.
        """
        if kind not in KINDS:
            raise ValueError(f"unknown kind {kind!r}; expected one of {', '.join(KINDS)}")
        directory = checked_directory(out)
        if chief:
            try:
                directory.mkdir(parents=True, exist_ok=True)
            except OSError as error:
                raise UserError(f"cannot create run directory {directory} ({error.strerror or error})") from None
        run = cls(directory, family, kind, json_value(dataclasses.asdict(model)) if model is not None else None,
                  config_values(config), chief)
        if (directory / "config.json").exists():
            run._check_same_run()
        elif chief:
            write_json(directory / "model.json", {"family": family, "kind": kind, "config": run.model_config})
            write_json(directory / "config.json", run.config)
        if run.finished:
            print(f"{directory} is already trained; its metrics.json and pictures stand")
        return run

    @classmethod
    def read(cls, directory: str | Path) -> Run:
        """The run in `directory`, to read (export); a folder that holds no run is a UserError."""
        directory = Path(directory)
        declared = directory / "model.json"
        if not declared.exists():
            raise UserError(f"{directory} is not a training run directory (no model.json); "
                            f"train one with 'python -m training FAMILY --out {directory}'")
        info = read_json(declared)
        if not isinstance(info, dict) or "kind" not in info:
            raise UserError(f"{declared} was written by an older version of this project (it declares no kind); "
                            f"train the run again to export it")
        config = read_json(directory / "config.json") if (directory / "config.json").exists() else {}
        return cls(directory, info["family"], info["kind"], info.get("config"), config, chief=False)

    def _check_same_run(self) -> None:
        declared = self.directory / "model.json"
        before = read_json(declared) if declared.exists() else {}
        if not isinstance(before, dict) or "kind" not in before:
            raise UserError(f"{self.directory} holds a run written by an older version of this project; "
                            f"use another --out")
        if (before["family"], before["kind"]) != (self.family, self.kind):
            raise UserError(f"{self.directory} holds a {before['family']} run ({before['kind']}), not a "
                            f"{self.family} one; use another --out")
        saved = read_json(self.directory / "config.json")
        missing = object()
        differs = sorted(k for k in {*saved, *self.config} if saved.get(k, missing) != self.config.get(k, missing))
        if differs:
            raise UserError(f"{self.directory} holds a run with a different config (differs in: "
                            f"{', '.join(differs)}); use another --out, or the same options to resume")

    # ---------------------------------------------------------------- finished runs

    @property
    def finished(self) -> bool:
        """Whether the run has its final metrics (metrics.json is written last)."""
        return (self.directory / "metrics.json").exists()

    @property
    def metrics(self) -> dict:
        """The final metrics of a finished run; {} before it finishes."""
        return read_json(self.directory / "metrics.json") if self.finished else {}

    def finish(self, metrics: dict) -> dict:
        """Write history.json and then metrics.json (which marks the run finished); return `metrics`."""
        if self.chief:
            self.write_history()
            write_json(self.directory / "metrics.json", metrics)
            if self._writer is not None:
                self._writer.flush()
        return metrics

    def write_history(self) -> None:
        if self.chief:
            write_json(self.directory / "history.json", self.history)

    # ---------------------------------------------------------------- logs and examples

    @property
    def writer(self) -> tf.summary.SummaryWriter:
        """The TensorBoard writer (a no-op one off the chief); the config is its first entry."""
        if self._writer is None:
            if not self.chief:
                self._writer = tf.summary.create_noop_writer()
            else:
                self._writer = tf.summary.create_file_writer(str(self.directory / "tensorboard"))
                with self._writer.as_default(step=0):
                    tf.summary.text("config", "\n".join(f"    {k} = {v}" for k, v in self.config.items()))
        return self._writer

    def log(self, step: int, values: dict[str, Any]) -> None:
        """TensorBoard scalars for the finite numbers among `values`."""
        with self.writer.as_default(step=step):
            for name, value in values.items():
                if isinstance(value, (int, float, np.number, tf.Tensor)) and np.isfinite(float(value)):
                    tf.summary.scalar(name, value)

    def write_examples(self, **inputs: np.ndarray) -> None:
        """A few held-out inputs, by signature input name, for export's warm-up requests."""
        if self.chief:
            temporary = self.directory / ".examples.tmp.npz"
            np.savez_compressed(temporary, **inputs)
            os.replace(temporary, self.directory / "examples.npz")

    def examples(self) -> dict[str, np.ndarray]:
        path = self.directory / "examples.npz"
        if not path.exists():
            return {}
        with np.load(path) as saved:
            return {name: saved[name] for name in saved.files}

    # ---------------------------------------------------------------- checkpoints

    def checkpoints(self, every: int, keep: int = 2, **objects: Any) -> Checkpoints:
        """Numbered checkpoints of `objects`, due every `every` steps, the last `keep` kept.

        Keras models, optimizers, tf.Modules and variables go to the variables file (a model
        with the variables of its layers, which Keras keeps out of the object graph when they
        sit in lists); numpy Generators' states to state.json. The model export rebuilds is
        the one passed as `model`.
        """
        return Checkpoints(self, every, keep, objects)

    def restore_model(self, model: keras.Model) -> Path:
        """Restore `model` (registered as `model`) from the latest intact checkpoint; its path."""
        checkpoints, damaged = Checkpoints(self, 1, 1, {"model": model}), None
        for step in checkpoints.steps():
            prefix = checkpoints.directory / str(step) / "variables"
            try:
                checkpoints.read_variables(prefix, partial=True)
            except Damaged as error:
                damaged = error
                _say(f"{error}; exporting the checkpoint before it")
                continue
            except AssertionError:
                raise UserError(f"{prefix} does not hold this model's variables") from None
            return prefix
        if damaged is not None:
            raise UserError(f"{damaged} and no earlier checkpoint is intact; nothing to export")
        raise UserError(f"{self.directory} has no checkpoint to export; train it first "
                        f"(the run directory must hold checkpoints/)")


def trackables(objects: dict[str, Any]) -> dict[str, Any]:
    """What tf.train.Checkpoint gets: each Keras model with its variables listed beside it.

    Keras 3 leaves layers kept in Python lists out of a checkpoint's object graph (it
    converts them only for SavedModel), so `Checkpoint(model=model)` alone can save and
    restore nothing of them; the list reaches every variable.
    """
    tracked = {}
    for name, value in objects.items():
        tracked[name] = value
        if isinstance(value, keras.Model):
            tracked[f"{name}_variables"] = list(value.variables)
    return tracked


@dataclasses.dataclass
class Restored:
    """What a checkpoint gave back besides the variables and generators (restored in place)."""

    step: int
    state: dict
    """The loop's JSON state, as passed to `save`."""
    arrays: dict[str, dict[str, np.ndarray]]
    """Named groups of arrays (a replay memory, the last observations)."""
    pickled: dict[str, Any]
    """Python objects that have no other form (vector environments), unpickled."""


class Checkpoints:
    """RUN/checkpoints/STEP/: variables.*, state.json (step, config, generators, history, the
    loop's state), NAME.npz per group of arrays and NAME.pkl per pickled object.

    In a multi-worker job every worker saves (the save may need all of them) but only the
    chief's copy is kept; every worker restores the chief's.
    """

    def __init__(self, run: Run, every: int, keep: int, objects: dict[str, Any]):
        self.run, self.every, self.keep = run, every, keep
        self.directory = run.directory / "checkpoints"
        self.generators = {name: o for name, o in objects.items() if isinstance(o, np.random.Generator)}
        self.checkpoint = tf.train.Checkpoint(**trackables(
            {name: o for name, o in objects.items() if name not in self.generators}))
        self._unsaved_said = False

    def due(self, previous: int, step: int) -> bool:
        """Whether a checkpoint falls between steps `previous` and `step`."""
        return step // self.every > previous // self.every

    def steps(self) -> list[int]:
        """Steps of the complete checkpoints, latest first."""
        if not self.directory.is_dir():
            return []
        return sorted((int(p.name) for p in self.directory.iterdir() if p.name.isdigit() and p.is_dir()),
                      reverse=True)

    # ---------------------------------------------------------------- save

    def save(self, step: int, state: dict | None = None, arrays: dict[str, dict[str, np.ndarray]] | None = None,
             pickled: dict[str, Any] | None = None) -> None:
        """Checkpoint the registered objects and `state` (JSON), `arrays` and `pickled` at `step`."""
        if self.run.chief:
            self.directory.mkdir(exist_ok=True)
            staging = Path(tempfile.mkdtemp(dir=self.directory, prefix=f".staging-{step}-"))
        else:
            staging = Path(tempfile.mkdtemp(prefix="worker-checkpoint-"))
        try:
            self.checkpoint.write(str(staging / "variables"))
            for name, group in (arrays or {}).items():
                np.savez(staging / f"{name}.npz", **group)
            unsaved = {}
            for name, value in (pickled or {}).items():
                try:
                    (staging / f"{name}.pkl").write_bytes(pickle.dumps(value))
                except (pickle.PicklingError, TypeError, AttributeError) as error:
                    unsaved[name] = _reason(error)
            if unsaved and not self._unsaved_said:
                _say(f"cannot save {', '.join(unsaved)} with the checkpoints ({'; '.join(unsaved.values())}): "
                     f"a resumed run starts them afresh and will differ from an uninterrupted one")
                self._unsaved_said = True
            write_json(staging / "state.json", {
                "step": step, "config": self.run.config, "history": self.run.history,
                "generators": {name: g.bit_generator.state for name, g in self.generators.items()},
                "state": state or {}, "unsaved": unsaved})
            if self.run.chief:
                target = self.directory / str(step)
                if target.exists():  # saved again at the same step (after a fall-back): the new one wins
                    shutil.rmtree(target)
                os.rename(staging, target)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        if self.run.chief:
            for old in self.steps()[self.keep:]:
                shutil.rmtree(self.directory / str(old), ignore_errors=True)
            self.run.write_history()

    # ---------------------------------------------------------------- restore

    def restore(self) -> Restored | None:
        """Restore the latest intact checkpoint (None if there is none yet).

        A damaged checkpoint is named and moved aside (checkpoints/damaged-STEP), and the one
        before it is used, said aloud; if none is intact, a UserError: never a silent restart.
        """
        self._refuse_older_format()
        damaged: list[tuple[int, Damaged]] = []
        for step in self.steps():
            try:
                restored = self._read(step)
            except Damaged as error:
                damaged.append((step, error))
                continue
            for bad, error in damaged:
                _say(f"{error}; resuming from the checkpoint before it (moved to {self._move_aside(bad)})")
            print(f"resuming from step {step} ({self.directory / str(step)})", flush=True)
            return restored
        if damaged:
            raise UserError(f"{damaged[0][1]} and no earlier checkpoint is intact; use another --out, or move "
                            f"{self.directory} away to train from the start")
        return None

    def _refuse_older_format(self) -> None:
        if self.directory.is_dir() and not self.steps():
            older = [p.name for p in self.directory.iterdir() if p.name == "checkpoint" or p.name.startswith("ckpt-")]
            if older:
                raise UserError(f"{self.directory} holds checkpoints of an older version of this project "
                                f"({sorted(older)[0]}, ...); use another --out")

    def _move_aside(self, step: int) -> Path:
        """checkpoints/STEP -> checkpoints/damaged-STEP (kept to look at, no longer listed)."""
        aside = self.directory / f"damaged-{step}"
        if self.run.chief:
            shutil.rmtree(aside, ignore_errors=True)
            os.rename(self.directory / str(step), aside)
        return aside

    def read_variables(self, prefix: Path, partial: bool = False) -> None:
        """Restore the registered objects from `prefix`; a file that cannot be read raises Damaged.

        AssertionError: the checkpoint lacks some of the objects (another model).
        """
        index = prefix.with_name(prefix.name + ".index")
        if not index.exists():
            raise Damaged(index, "missing")
        # A damaged file fails in TensorFlow's C++ reader in many ways (DataLossError, IndexError
        # "Read less bytes than requested", protobuf DecodeError, ...): any failure to read is damage.
        try:
            tf.train.load_checkpoint(str(prefix))  # reads the index
        except Exception as error:
            raise Damaged(index, _reason(error)) from None
        try:
            status = self.checkpoint.read(str(prefix))
        except Exception as error:
            data = sorted(prefix.parent.glob(prefix.name + ".data-*"))
            raise Damaged(data[0] if data else prefix.parent, _reason(error)) from None
        (status.expect_partial() if partial else status).assert_existing_objects_matched()

    def _read(self, step: int) -> Restored:
        folder = self.directory / str(step)
        try:
            record = json.loads((folder / "state.json").read_text())
            generators = {name: record["generators"][name] for name in self.generators}
            state, history = record["state"], list(record["history"])
        except (OSError, ValueError) as error:
            raise Damaged(folder / "state.json", _reason(error)) from None
        except (KeyError, TypeError) as error:
            raise Damaged(folder / "state.json", f"no {error}") from None
        try:
            self.read_variables(folder / "variables")
        except AssertionError as error:
            raise Damaged(folder / "variables.index", _reason(error)) from None
        arrays, pickled = {}, {}
        for path in sorted(folder.glob("*.npz")):
            try:
                with np.load(path, allow_pickle=False) as saved:
                    arrays[path.stem] = {name: saved[name] for name in saved.files}
            except (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile) as error:
                raise Damaged(path, _reason(error)) from None
        for path in sorted(folder.glob("*.pkl")):
            try:
                pickled[path.stem] = pickle.loads(path.read_bytes())
            except Exception as error:  # unpickling can fail in any way a damaged byte stream leads it
                raise Damaged(path, _reason(error)) from None
        for name, value in record.get("unsaved", {}).items():
            _say(f"{name} was not saved with checkpoint {step} ({value}): it starts afresh, so this run "
                 f"will differ from an uninterrupted one")
        try:
            for name, generator in self.generators.items():
                generator.bit_generator.state = generators[name]
        except (TypeError, ValueError, KeyError) as error:
            raise Damaged(folder / "state.json", _reason(error)) from None
        self.run.history[:] = history
        return Restored(step, state, arrays, pickled)

"""The run directory: declared once, a foreign run refused in one sentence, checkpoints that
appear whole and come back whole, damaged ones named (or passed over, said aloud), never a
silent restart, and unusable paths refused."""
import dataclasses
import json
from pathlib import Path

import keras
import numpy as np
import pytest

import rundir
from rundir import Run, UserError, config_from_json, config_values


@dataclasses.dataclass(frozen=True)
class Inner:
    hidden: tuple[int, ...] = (4,)


@dataclasses.dataclass(frozen=True)
class Config:
    learning_rate: float = 0.1
    model: Inner = dataclasses.field(default_factory=Inner)


def test_configs_as_flat_json_and_back():
    assert config_values(Config()) == {"learning_rate": 0.1, "hidden": [4]}
    assert config_from_json(Inner, {"hidden": [4, 2]}) == Inner((4, 2))


def test_a_run_declares_itself_once_and_refuses_another_in_one_sentence(tmp_path):
    run = Run.open(tmp_path / "run", Config(), family="toy", kind="policy", model=Inner())
    declared = json.loads((run.directory / "model.json").read_text())
    assert declared == {"family": "toy", "kind": "policy", "config": {"hidden": [4]}}
    assert json.loads((run.directory / "config.json").read_text()) == {"learning_rate": 0.1, "hidden": [4]}
    assert not run.finished and Run.open(tmp_path / "run", Config(), family="toy", kind="policy", model=Inner())
    with pytest.raises(UserError, match=r"holds a run with a different config \(differs in: hidden, learning_rate\); "
                                        r"use another --out, or the same options to resume$"):
        Run.open(tmp_path / "run", Config(0.2, Inner((8,))), family="toy", kind="policy", model=Inner((8,)))
    with pytest.raises(UserError, match=r"holds a toy run \(policy\), not a vae one; use another --out$"):
        Run.open(tmp_path / "run", Config(), family="vae", kind="image_model")
    read = Run.read(tmp_path / "run")
    assert (read.family, read.kind, read.model_config) == ("toy", "policy", {"hidden": [4]})


def test_a_finished_run_has_its_metrics_and_history(tmp_path, capsys):
    run = Run.open(tmp_path / "run", Config(), family="toy", kind="comparison")
    run.history.append({"step": 1})
    assert run.finish({"score": 3}) == {"score": 3}
    again = Run.open(tmp_path / "run", Config(), family="toy", kind="comparison")
    assert again.finished and again.metrics == {"score": 3}
    assert json.loads((tmp_path / "run" / "history.json").read_text()) == [{"step": 1}]
    assert "already trained" in capsys.readouterr().out


@pytest.mark.parametrize("out, message", [
    ("", "the run directory (--out) is empty; expected a path such as runs/NAME"),
    ("a-file", "run directory a-file is a file; expected a directory (new, or a run to resume)"),
    ("a-file/run", "cannot create run directory a-file/run: a-file is a file, not a directory"),
    ("/sys/run", "cannot write in run directory /sys/run (Permission denied)"),
])
def test_unusable_run_directories_are_refused_in_one_sentence(out, message, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "a-file").write_text("not a directory")
    with pytest.raises(UserError) as error:
        Run.open(out, Config(), family="toy", kind="policy")
    assert str(error.value) == message
    assert not Path("config.json").exists()  # nothing trained into the current directory


# ---------------------------------------------------------------- checkpoints


def toy(directory: Path):
    """A fresh toy run in `directory`: (run, model, generator, checkpoints), kernel all zeros."""
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2, kernel_initializer="zeros")])
    optimizer = keras.optimizers.Adam()
    optimizer.build(model.trainable_variables)
    rng = np.random.default_rng(0)
    run = Run.open(directory, Config(), family="toy", kind="policy")
    return run, model, rng, run.checkpoints(10, model=model, optimizer=optimizer, rng=rng)


@pytest.fixture
def saved(tmp_path):
    """A toy run checkpointed at steps 10 (kernel 1s) and 20 (kernel 2s), each with state,
    arrays, a pickled object and the history so far; returns the run directory."""
    run, model, rng, checkpoints = toy(tmp_path / "run")
    for step in (10, 20):
        model.layers[0].kernel.assign(np.full((3, 2), step / 10, np.float32))
        rng.random(step)
        run.history.append({"step": step})
        checkpoints.save(step, state={"step_seen": step}, arrays={"replay": {"rows": np.arange(step)}},
                         pickled={"environments": {"position": step}})
    return tmp_path / "run"


def test_a_checkpoint_gives_back_everything_it_saved(saved, capsys):
    _, _, rng_then, _ = toy(saved.parent / "reference")
    rng_then.random(10)
    rng_then.random(20)
    run, model, rng, checkpoints = toy(saved)
    restored = checkpoints.restore()
    assert restored.step == 20 and "resuming from step 20" in capsys.readouterr().out
    np.testing.assert_array_equal(model.layers[0].kernel.numpy(), np.full((3, 2), 2.0))
    assert rng.random() == rng_then.random()  # the generator continues where it was
    assert restored.state == {"step_seen": 20} and restored.pickled == {"environments": {"position": 20}}
    np.testing.assert_array_equal(restored.arrays["replay"]["rows"], np.arange(20))
    assert run.history == [{"step": 10}, {"step": 20}]


def test_old_checkpoints_are_pruned_and_a_failed_save_leaves_nothing_half_written(saved, monkeypatch):
    run, _, _, checkpoints = toy(saved)
    checkpoints.save(30)
    assert sorted(p.name for p in (saved / "checkpoints").iterdir()) == ["20", "30"]

    def disk_full(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(rundir.np, "savez", disk_full)
    with pytest.raises(OSError, match="disk full"):
        checkpoints.save(40, arrays={"replay": {"rows": np.arange(3)}})
    assert sorted(p.name for p in (saved / "checkpoints").iterdir()) == ["20", "30"]  # no 40, no staging


def truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[:len(path.read_bytes()) // 2])


def garble(path: Path) -> None:
    path.write_bytes(np.random.default_rng(1).bytes(len(path.read_bytes())))


def delete(path: Path) -> None:
    path.unlink()


@pytest.mark.parametrize("name, damage", [
    (name, damage) for name in ("variables.data-00000-of-00001", "variables.index", "replay.npz", "state.json",
                                "environments.pkl") for damage in (truncate, garble)] + [("variables.index", delete)])
def test_a_damaged_checkpoint_is_named_and_the_one_before_it_used(saved, name, damage, capsys):
    damaged = saved / "checkpoints" / "20" / name
    damage(damaged)
    _, model, _, checkpoints = toy(saved)
    restored = checkpoints.restore()
    assert restored.step == 10 and restored.state == {"step_seen": 10}
    np.testing.assert_array_equal(model.layers[0].kernel.numpy(), np.full((3, 2), 1.0))
    err = capsys.readouterr().err
    assert f"{damaged} is damaged (" in err and "; resuming from the checkpoint before it" in err
    assert sorted(p.name for p in (saved / "checkpoints").iterdir()) == ["10", "damaged-20"]  # kept to look at


def test_no_intact_checkpoint_is_an_error_never_a_restart(saved):
    for step in ("10", "20"):
        truncate(saved / "checkpoints" / step / "variables.data-00000-of-00001")
    _, _, _, checkpoints = toy(saved)
    with pytest.raises(UserError) as error:
        checkpoints.restore()
    message = str(error.value)
    assert message.startswith(f"{saved}/checkpoints/20/variables.data-00000-of-00001 is damaged (")
    assert message.endswith("and no earlier checkpoint is intact; use another --out, or move "
                            f"{saved}/checkpoints away to train from the start") and "\n" not in message
    assert sorted(p.name for p in (saved / "checkpoints").iterdir()) == ["10", "20"]  # nothing moved: it refuses again


def test_a_stray_or_damaged_index_file_does_not_matter(saved):
    (saved / "checkpoints" / "checkpoint").write_bytes(b"\xff\x00 garbage")  # what TensorFlow's manager would keep
    _, _, _, checkpoints = toy(saved)
    assert checkpoints.restore().step == 20  # the latest is found by listing, not by an index


def test_checkpoints_of_the_older_layout_are_refused(tmp_path):
    older = tmp_path / "run" / "checkpoints"
    older.mkdir(parents=True)
    (older / "checkpoint").write_text('model_checkpoint_path: "ckpt-5"\n')
    (older / "ckpt-5.index").write_bytes(b"")
    _, _, _, checkpoints = toy(tmp_path / "run")
    with pytest.raises(UserError, match=r"holds checkpoints of an older version of this project \(checkpoint, "):
        checkpoints.restore()

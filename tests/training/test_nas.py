"""Architecture search: the reward tells good children from bad, and a search runs, resumes
and writes what it found."""
import json
import shutil

import pytest

from tests.helpers import exits_2
from training import nas
from zoo.nas import Layer, Layers


def test_the_reward_separates_good_architectures_from_blind_ones():
    config = nas.NASConfig()
    splits = nas.digit_splits(config.validation_fraction)
    assert len(splits.train[0]) + len(splits.validation[0]) + len(splits.test[0]) == 1797
    # 1x1 kernels see one pixel at a time, and the global average pool erases where it was
    blind = nas.train_child(Layers((Layer(8, 1, False),) * 3), splits, config)
    seeing = nas.train_child(Layers((Layer(32, 5, False), Layer(32, 3, True), Layer(32, 3, False))), splits, config)
    assert blind["validation_accuracy"] < 0.3 < 0.7 < seeing["validation_accuracy"], (blind, seeing)
    assert nas.train_child(Layers((Layer(8, 1, False),) * 3), splits, config) == blind  # seeded: the same reward


def test_smoke_search_writes_its_findings_and_does_not_run_twice(nas_run, capsys):
    run_dir, metrics = nas_run
    history = json.loads((run_dir / "history.json").read_text())
    assert metrics["architectures_sampled"] == 4 and 1 <= metrics["children_trained"] <= 4
    assert [r["step"] for r in history] == [1, 2]
    best = max(c["validation_accuracy"] for r in history for c in r["children"])
    assert metrics["best_validation_accuracy"] == best
    assert (run_dir / "nas_rewards.png").stat().st_size > 0
    assert nas.main(["--preset", "smoke", "--no_progress", "--out", str(run_dir)]) == 0
    out = capsys.readouterr().out
    assert "already trained" in out and "best architecture: conv" in out


def test_a_search_resumes_from_its_last_step(nas_run, tmp_path):
    run_dir = tmp_path / "run"
    shutil.copytree(nas_run[0], run_dir)
    shutil.rmtree(run_dir / "checkpoints" / "2")  # as if it had died after its first controller step
    (run_dir / "metrics.json").unlink()
    resumed = nas.search(nas.PRESETS["smoke"](), run_dir, progress=False)
    # the same draws, rewards and update: the same search
    whole = nas_run[1]
    assert {k: v for k, v in resumed.items() if k != "seconds"} == {k: v for k, v in whole.items() if k != "seconds"}


def test_a_cell_search_with_ppo_and_the_flops_reward(tmp_path, capsys):
    run_dir = tmp_path / "cells"
    assert nas.main(["--preset=smoke", "--space=cells", "--blocks=1", "--controller_steps=1",
                     "--controller_update=ppo", "--target_flops=1e5", "--no_progress", f"--out={run_dir}"]) == 0
    metrics = json.loads((run_dir / "metrics.json").read_text())
    children = [c for r in json.loads((run_dir / "history.json").read_text()) for c in r["children"]]
    for child in children:  # reward = ACC (T / FLOPs)^0.07, FLOPs counted from the child's layers
        assert child["flops"] > 0 and child["architecture"].startswith("normal: b0 = ")
        assert child["reward"] == pytest.approx(child["validation_accuracy"] * (1e5 / child["flops"]) ** 0.07)
    best = max(children, key=lambda child: child["reward"])
    assert (metrics["best_architecture"], metrics["best_flops"]) == (best["architecture"], best["flops"])
    assert metrics["search_space_size"] == (2 * 2 * 6 * 6 * 2) ** 2 and 0 <= metrics["best_test_accuracy"] <= 1
    assert f"{best['flops']:,} FLOPs" in capsys.readouterr().out


def test_a_hard_flops_target_rewards_accuracy_alone_under_it(tmp_path, capsys):
    run_dir = tmp_path / "hard"
    assert nas.main(["--preset=smoke", "--target_flops=2e5", "--flops_exponent=1", "--flops_exponent_below=0",
                     "--no_progress", f"--out={run_dir}"]) == 0
    children = [c for r in json.loads((run_dir / "history.json").read_text()) for c in r["children"]]
    for child in children:  # ACC under 2e5 FLOPs, ACC (2e5 / FLOPs)^1 over it
        factor = 1.0 if child["flops"] <= 2e5 else 2e5 / child["flops"]
        assert child["reward"] == pytest.approx(child["validation_accuracy"] * factor)
    err = exits_2(lambda: nas.main(["--preset=smoke", "--flops_exponent_below=-1", f"--out={tmp_path / 'bad'}"]),
                  capsys)
    assert "flops_exponent_below must be at least 0, got -1" in err

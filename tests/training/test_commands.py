"""Every training command, in-process: a run directory that holds another run is refused with
one sentence and exit status 2 (every family, the architecture search included), and so is
a run directory that cannot be one."""
import pytest

from tests.helpers import exits_2, run_module
from training.__main__ import COMMANDS, main


def refusal(argv: list[str], capsys) -> str:
    """`python -m training ARGV`'s one-sentence error, after checking it exits with status 2."""
    err = exits_2(lambda: main(argv), capsys)
    assert "\n" not in err and "Traceback" not in err, err
    return err


DIFFERENT = {  # command -> (the trained run it is pointed at, options that differ from that run's, what differs)
    "vae": ("smoke_run", ["--preset=smoke", "--beta=2"], "beta"),
    "pixelcnn": ("pixelcnn_run", ["--preset=smoke", "--filters=8"], "filters"),
    "pixelrnn": ("pixelrnn_run", ["--preset=smoke", "--layer=row"], "layer"),
    "dqn": ("dqn_run", ["--preset=smoke", "--learning_rate=0.5"], "learning_rate"),
    "reinforce": ("reinforce", ["--preset=smoke", "--gamma=0.9"], "gamma"),
    "reinforce_baseline": ("reinforce", ["--preset=smoke"], "algorithm, baseline, critic, normalize_returns"),
    "a2c": ("a2c", ["--preset=smoke", "--n_steps=4"], "n_steps"),
    "nas": ("nas_run", ["--preset=smoke", "--child_epochs=2"], "child_epochs"),
    "cvae": ("cvae_run", ["--preset=smoke", "--latent_dim=3"], "latent_dim"),
}


@pytest.mark.parametrize("command", list(DIFFERENT))
def test_a_run_directory_that_holds_another_run_is_refused(command, request, pg_smoke_runs, capsys):
    fixture, options, differs = DIFFERENT[command]
    run_dir = pg_smoke_runs(fixture)[0] if fixture in ("reinforce", "a2c") else request.getfixturevalue(fixture)[0]
    message = refusal([command, *options, f"--out={run_dir}"], capsys)
    assert message.endswith(f"{run_dir} holds a run with a different config (differs in: {differs}); use another "
                            f"--out, or the same options to resume")


def test_a_run_of_another_family_is_refused(dqn_run, capsys):
    message = refusal(["a2c", "--preset=smoke", f"--out={dqn_run[0]}"], capsys)
    assert message.endswith(f"{dqn_run[0]} holds a dqn run (policy), not a policy_gradient one; use another --out")


@pytest.mark.parametrize("command", sorted(set(COMMANDS) - {"completions"}))  # completions writes a picture, no run
@pytest.mark.parametrize("out, message", [
    ("", "the run directory (--out) is empty; expected a path such as runs/NAME"),
    ("{tmp}/a-file/run", "cannot create run directory {tmp}/a-file/run: {tmp}/a-file is a file, not a directory"),
])
def test_an_unusable_run_directory_is_refused(command, out, message, tmp_path, capsys):
    (tmp_path / "a-file").write_text("not a directory")
    no_smoke = ("bandits", "pg_compare", "nas", "tabular", "vae_vi", "vae_latent_dims", "vae_loss_balance",
                "ae_classifier", "compare_generative")
    preset = [] if command in no_smoke else ["--preset=smoke"]
    assert refusal([command, *preset, f"--out={out.format(tmp=tmp_path)}"], capsys).endswith(
        message.format(tmp=tmp_path))


def test_an_unknown_command_is_refused():
    result = run_module("-m", "training", "gan", "--out=x")  # before TensorFlow is imported: fast
    assert result.returncode == 2
    assert "unknown command 'gan'; expected one of: a2c, ae_classifier, bandits, compare_generative, completions, cvae, dqn" in result.stderr
    assert "Traceback" not in result.stderr

"""The VI lecture's commands, in-process on tiny settings: each writes its picture and figures,
and the figures say what the lecture says."""
import json

from tests.helpers import exits_2
from training.__main__ import main


def command(argv: list[str], capsys) -> str:
    """Run `python -m training ARGV` in-process; its standard output, after checking it succeeded."""
    assert main(argv) == 0
    return capsys.readouterr().out


def test_vae_vi_refines_past_the_encoder_and_counts_parameters(smoke_run, tmp_path, capsys):
    from export.savedmodel import load_run
    from zoo.vae import parameter_counts

    out = tmp_path / "vi"
    printed = command(["vae_vi", f"--run={smoke_run[0]}", "--steps=40", "--images=60", "--batch_size=30",
                       "--elbo_samples=32", "--iw_samples=32", "--no_progress", f"--out={out}"], capsys)
    metrics = json.loads((out / "metrics.json").read_text())
    assert (out / "vae_vi.png").stat().st_size > 0
    # Scored with the same draws: the refined q has the higher ELBO on average, and each bound
    # is at least its ELBO (k = 32 draws against 32).
    assert metrics["refined_elbo"] > metrics["encoder_elbo"], metrics
    assert metrics["amortization_gap"] >= metrics["refined_elbo"] - metrics["encoder_elbo"] > 0
    for way in ("encoder", "from_prior", "refined"):
        assert metrics[f"{way}_iw_bound"] >= metrics[f"{way}_elbo"] - 0.5, (way, metrics)
    # smoke: decoder 2 -> 64 -> 784, (2*64 + 64) + (64*784 + 784) = 192 + 50960 = 51152;
    # per-datapoint |theta| + 2 d N = 51152 + 2 * 2 * 60 = 51392.
    model, _ = load_run(smoke_run[0])
    assert metrics["parameters_decoder"] == 51152 and metrics["parameters_per_datapoint"] == 51392
    assert metrics["parameters_amortized"] == parameter_counts(model, 60)["amortized"]
    assert f"amortization gap: {metrics['amortization_gap']:.2f} nats" in printed
    assert "per-datapoint |theta| + 2dN = 51,152 + 2*2*60 = 51,392" in printed


def test_vae_vi_refuses_a_run_that_is_not_a_vae(cvae_run, tmp_path, capsys):
    err = exits_2(lambda: main(["vae_vi", f"--run={cvae_run[0]}", f"--out={tmp_path / 'vi'}"]), capsys)
    assert err.endswith(f"{cvae_run[0]} holds a cvae run; expected a VAE run (python -m training vae ...)")
    assert "--run is required" in exits_2(lambda: main(["vae_vi", f"--out={tmp_path / 'vi'}"]), capsys)


def test_vae_estimators_measures_the_score_functions_larger_variance(tmp_path, capsys):
    out = tmp_path / "estimators"
    printed = command(["vae_estimators", "--epochs=1", "--samples=2,8", "--draws=20", "--batch=20", "--no_progress",
                       f"--out={out}"], capsys)
    metrics = json.loads((out / "metrics.json").read_text())
    assert (out / "estimators.png").stat().st_size > 0
    assert metrics["ratio"][0] > 10, metrics["ratio"]  # at M = 2
    variance = metrics["variance"]
    for estimator in ("reparameterized", "score_function"):
        assert variance[estimator][1] < variance[estimator][0]  # 4 times the draws, less variance
    for estimator in ("reparameterized", "score_function"):
        assert (out / estimator / "metrics.json").exists()  # each an ordinary VAE run
        assert metrics["trained"][estimator]["test_negative_elbo"] < 300  # 543 nats untrained
    assert "ratio" in printed


def test_the_lecture_pictures_and_the_loss_balance(tmp_path, capsys):
    out = tmp_path / "dims"
    command(["vae_latent_dims", "--dims=2,3", "--epochs=1", "--hidden_units=32", "--data=digits", "--no_progress",
             f"--out={out}"], capsys)
    assert (out / "latent_dims.png").stat().st_size > 0
    assert set(json.loads((out / "metrics.json").read_text())) == {"d=2", "d=3"}

    out = tmp_path / "balance"
    command(["vae_loss_balance", "--epochs=3", "--latent_dim=4", "--hidden_units=32", "--data=digits",
             "--no_progress", f"--out={out}"], capsys)
    assert (out / "loss_balance.png").stat().st_size > 0
    metrics = json.loads((out / "metrics.json").read_text())
    heavy, light = metrics["beta=8"], metrics["beta=0.02"]
    assert heavy["latent_loss"] < 0.5 * light["latent_loss"], metrics
    assert heavy["reconstruction_loss"] > light["reconstruction_loss"], metrics

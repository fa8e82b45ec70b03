"""The variational-inference lecture's experiments on the VAE family, one command each.

    python -m training vae_estimators --out runs/vae-estimators   # score function vs reparameterization
    python -m training vae_vi --run runs/vae-mnist --steps 300 --out runs/vae-mnist-vi   # amortization gap
    python -m training vae_latent_dims --out runs/vae-latent-dims # samples for d = 2, 5, 10, 20
    python -m training vae_loss_balance --out runs/vae-balance    # too much KL weight, too little

Each writes its picture and metrics.json into OUT, a run directory of kind "comparison"; the
VAEs it trains go to OUT/NAME, each an ordinary (resumable, exportable) VAE run.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Literal

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from rundir import Run, UserError  # noqa: E402
from training import image_loop, plots, vae  # noqa: E402
from training.config import check_at_least_one, run_command  # noqa: E402
from training.data import load_images  # noqa: E402
from zoo.vae import VAE, encoder_gradient_moments, parameter_counts, refine_posterior, tfd  # noqa: E402


def load_vae(run_dir: Path) -> tuple[VAE, np.ndarray, np.ndarray | None]:
    """A trained VAE run's model and its held-out images (binarized as the run binarized them) and
    labels (None for an unconditional model)."""
    model, info = image_loop.load_finished(run_dir)
    if info["family"] != "vae":
        raise UserError(f"{run_dir} holds a {info['family']} run; expected a VAE run (python -m training vae ...)")
    if model.config.kind != "vae" or model.config.latent != "gaussian":
        raise UserError(f"{run_dir} holds a {model.config.kind} with a {model.config.latent} latent; expected a "
                        f"VAE with a Gaussian latent")
    options = info["run"].config
    data = load_images(options["data"])
    images = image_loop.held_out_images(data, options["binarize"], options["seed"])
    return model, images, data.test_labels if model.config.conditional else None


def batches(count: int, size: int):
    """(start, stop) of consecutive batches covering range(count)."""
    return [(start, min(start + size, count)) for start in range(0, count, size)]


# ---------------------------------------------------------------- score function vs reparameterization


@dataclasses.dataclass(frozen=True)
class EstimatorsConfig:
    """The VAE trained with each estimator, and where the encoder's gradient variance is measured."""

    base: Literal["smoke", "demo", "mnist"] = "smoke"
    """The VAE preset trained once with each estimator."""
    train_samples: int = 4
    """M of both training runs (the score function's leave-one-out baseline needs 2 or more)."""
    epochs: int = 0
    """Epochs of both training runs; 0 keeps the base preset's."""
    samples: tuple[int, ...] = (2, 4, 8, 16, 32)
    """The values of M at which the gradient variance is measured."""
    draws: int = 200
    """Independent M-sample gradient estimates per M and estimator."""
    batch: int = 100
    """Held-out images in the fixed batch (the first ones)."""
    seed: int = 0
    """Seed of the training runs and of the gradient draws."""

    def __post_init__(self):
        if self.train_samples < 2 or min(self.samples, default=0) < 2:
            raise ValueError("train_samples and samples must be at least 2 (the leave-one-out baseline)")
        if self.epochs < 0:
            raise ValueError(f"epochs must be 0 (the preset's) or more, got {self.epochs}")
        if self.draws < 2 or self.batch < 1:
            raise ValueError(f"draws must be at least 2 and batch at least 1, got {self.draws} and {self.batch}")


ESTIMATORS = ("reparameterized", "score_function")


def compare_estimators(config: EstimatorsConfig, out: str | Path, *, progress: bool = False) -> dict:
    """Train the base preset with each estimator (OUT/ESTIMATOR), then measure, at the
    reparameterized run's final weights on a fixed held-out batch, the summed variance over the
    encoder's parameters of each estimator's gradient of the batch's mean loss, against M."""
    run = Run.open(out, config, family="vae_estimators", kind="comparison")
    if run.finished:
        return run.metrics
    trained = {}
    for estimator in ESTIMATORS:
        preset = vae.PRESETS[config.base]()
        preset = dataclasses.replace(preset, seed=config.seed, epochs=config.epochs or preset.epochs,
                                     model=dataclasses.replace(preset.model, gradient_estimator=estimator,
                                                               estimator_samples=config.train_samples))
        metrics = vae.train(preset, run.directory / estimator, progress=progress)
        trained[estimator] = {key: metrics[key] for key in ("test_negative_elbo", "test_iw_nll", "test_rate")}
        print(f"{estimator}: held-out -ELBO {metrics['test_negative_elbo']:.2f}, NLL <= {metrics['test_iw_nll']:.2f}"
              f" (k={metrics['iw_samples']})", flush=True)

    model, images, labels = load_vae(run.directory / "reparameterized")
    images = tf.constant(images[:config.batch])
    labels = None if labels is None else tf.constant(labels[:config.batch])
    variance = {estimator: [] for estimator in ESTIMATORS}
    for m in config.samples:
        for index, estimator in enumerate(ESTIMATORS):
            moments = encoder_gradient_moments(model, images, labels, estimator, m, config.draws,
                                               seed=config.seed * 1000 + 10 * index + m)
            variance[estimator].append(sum(float(v["variance"].sum()) for v in moments.values()))
        print(f"M={m}: summed encoder-gradient variance {variance['reparameterized'][-1]:.4g} (reparameterized), "
              f"{variance['score_function'][-1]:.4g} (score function)", flush=True)
    ratios = [s / r for s, r in zip(variance["score_function"], variance["reparameterized"])]

    fig, ax = plt.subplots(figsize=(6, 4))
    for estimator in ESTIMATORS:
        trained_elbo = trained[estimator]["test_negative_elbo"]
        ax.loglog(config.samples, variance[estimator], marker="o",
                  label=f"{estimator.replace('_', ' ')} (trained: -ELBO {trained_elbo:.1f})")
    ax.set_xticks(config.samples, [str(m) for m in config.samples])
    ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    ax.set_xlabel("M, posterior draws per image")
    ax.set_ylabel("summed variance of the encoder's gradient")
    ax.grid(alpha=0.3, which="both")
    ax.legend()
    ax.set_title(f"{config.base} VAE, {config.batch} held-out digits, {config.draws} estimates per point")
    fig.savefig(run.directory / "estimators.png", bbox_inches="tight", dpi=80)
    plt.close(fig)
    return run.finish({"trained": trained, "samples": list(config.samples), "variance": variance, "ratio": ratios,
                       "batch": config.batch, "draws": config.draws})


def main_estimators(argv: list[str] | None = None) -> int:
    summary, out = run_command(argv, "vae_estimators", "Score function vs reparameterization on a VAE's encoder.",
                               {"smoke": EstimatorsConfig}, "smoke", compare_estimators)
    print(f"{'M':>4} {'reparameterized':>16} {'score function':>15} {'ratio':>7}")
    for m, r, s, ratio in zip(summary["samples"], summary["variance"]["reparameterized"],
                              summary["variance"]["score_function"], summary["ratio"]):
        print(f"{m:>4} {r:>16.4g} {s:>15.4g} {ratio:>7.1f}")
    for estimator, metrics in summary["trained"].items():
        print(f"trained with {estimator}: held-out -ELBO {metrics['test_negative_elbo']:.2f}, "
              f"NLL <= {metrics['test_iw_nll']:.2f}")
    print(f"picture: {out / 'estimators.png'}")
    return 0


# ---------------------------------------------------------------- per-datapoint VI, the amortization gap


@dataclasses.dataclass(frozen=True)
class VIConfig:
    """Which trained VAE, how long each image's own posterior is fitted, and how it is scored."""

    run: str = ""
    """The trained VAE's run directory (python -m training vae ... --out RUN)."""
    steps: int = 300
    """Adam steps of gradient ascent on each image's ELBO, for q_i from the prior and from the encoder."""
    learning_rate: float = 0.1
    """First step size of the per-image Adam (it decays linearly to 0)."""
    refine_samples: int = 1
    """Posterior draws per step of each image's ELBO estimate."""
    images: int = 200
    """Held-out images (the first ones of the run's held-out split)."""
    batch_size: int = 100
    """Images fitted together (each has its own parameters; the batch only shares the decoder's passes)."""
    elbo_samples: int = 100
    """Posterior draws of each reported ELBO (its rate is analytic)."""
    iw_samples: int = 100
    """k of each reported importance-weighted bound, with the q being scored as the proposal."""
    seed: int = 0
    """Seed of the refinement noise and of the scoring draws."""

    def __post_init__(self):
        check_at_least_one(self, "steps", "refine_samples", "images", "batch_size", "elbo_samples", "iw_samples")
        if self.learning_rate <= 0:
            raise ValueError(f"learning_rate must be positive, got {self.learning_rate}")


WAYS = {"encoder": "(a) the encoder's q(z|x)", "from_prior": "(b) q_i fitted from the prior",
        "refined": "(c) the encoder's q refined"}


def amortization_gap(config: VIConfig, out: str | Path, *, progress: bool = False) -> dict:
    """ELBO and importance-weighted bound per held-out image for (a) the encoder's posterior,
    (b) each image's own N(mean_i, stddev_i) fitted from the prior N(0, I), (c) the same fit
    started at the encoder's output; all with the decoder fixed, scored with the same draws.

    The amortization gap is the mean of max(ELBO_b, ELBO_c) - ELBO_a, the ELBO the encoder
    leaves on the table by sharing its parameters (Cremer et al., 2018); the best of the
    three bounds estimates log p(x), and its distance from the best ELBO is the approximation
    gap, the price of a diagonal Gaussian family.
    """
    if not config.run:
        raise UserError("--run is required: the run directory of a trained VAE")
    model, images, labels = load_vae(Path(config.run))
    run = Run.open(out, config, family="vae_vi", kind="comparison")
    if run.finished:
        return run.metrics
    count = min(config.images, len(images))
    score_chunk = max(1, 4096 // max(config.elbo_samples, config.iw_samples))

    @tf.function(reduce_retracing=True)
    def score(x, y, mean, stddev, seed):
        posterior = tfd.MultivariateNormalDiag(loc=mean, scale_diag=stddev)
        elbo = model.elbo_terms(x, y, seed, estimator="reparameterized", samples=config.elbo_samples,
                                posterior=posterior)["elbo"]
        return elbo, model.importance_weighted_log_likelihood(x, y, config.iw_samples, seed, posterior=posterior)

    results = {way: {"elbo": [], "iw": []} for way in WAYS}
    traces = {"from_prior": [], "refined": []}
    for start, stop in batches(count, config.batch_size):
        x = tf.constant(images[start:stop])
        y = None if labels is None else tf.constant(labels[start:stop])
        seeds = tf.range(config.seed * 1_000_003 + start, config.seed * 1_000_003 + stop, dtype=tf.int64)
        mean, stddev = model.encode(x, y)

        def fit(start_mean, start_stddev):  # decoder fixed; each image's own Adam on its own ELBO
            return refine_posterior(model, x, y, start_mean, start_stddev, seeds, config.steps, config.learning_rate,
                                    config.refine_samples)

        fits = {"encoder": {"mean": mean, "stddev": stddev},
                "from_prior": fit(tf.zeros_like(mean), tf.ones_like(stddev)), "refined": fit(mean, stddev)}
        for way in traces:
            traces[way].append(fits[way]["elbo"].numpy())  # [steps, b]
        for way, fit in fits.items():
            for chunk_start, chunk_stop in batches(stop - start, score_chunk):
                part = slice(chunk_start, chunk_stop)
                seed = tf.constant([config.seed + 17, start + chunk_start], tf.int64)  # the same draws for every way
                elbo, iw = score(x[part], None if y is None else y[part], fit["mean"][part], fit["stddev"][part], seed)
                results[way]["elbo"].append(elbo.numpy())
                results[way]["iw"].append(iw.numpy())
        if progress:
            print(f"{stop}/{count} images", flush=True)

    per_image = {way: {kind: np.concatenate(values) for kind, values in parts.items()}
                 for way, parts in results.items()}
    best_elbo = np.maximum(per_image["from_prior"]["elbo"], per_image["refined"]["elbo"])
    log_px = np.max([per_image[way]["iw"] for way in WAYS], axis=0)
    counts = parameter_counts(model, count)
    metrics = {
        "run": str(config.run), "images": count, "steps": config.steps, "iw_samples": config.iw_samples,
        "elbo_samples": config.elbo_samples,
        **{f"{way}_elbo": float(per_image[way]["elbo"].mean()) for way in WAYS},
        **{f"{way}_iw_bound": float(per_image[way]["iw"].mean()) for way in WAYS},
        "amortization_gap": float((best_elbo - per_image["encoder"]["elbo"]).mean()),
        "approximation_gap": float((log_px - best_elbo).mean()),
        "refinement_lowered_elbo_fraction": float(np.mean(per_image["refined"]["elbo"] < per_image["encoder"]["elbo"])),
        "parameters_amortized": counts["amortized"], "parameters_per_datapoint": counts["per_datapoint"],
        "parameters_decoder": counts["decoder"], "parameters_encoder": counts["encoder"],
        "latent_dim": model.config.latent_dim,
    }

    draw_refinement({way: np.concatenate(trace, axis=1).mean(axis=1) for way, trace in traces.items()}, metrics,
                    run.directory / "vae_vi.png")
    return run.finish(metrics)


def draw_refinement(curves: dict[str, np.ndarray], metrics: dict, path: Path) -> None:
    """The mean ELBO estimate at each refinement step, from the prior and from the encoder,
    against the encoder's own ELBO."""
    fig, ax = plt.subplots(figsize=(7, 4))
    for way, curve in curves.items():
        ax.plot(np.arange(len(curve)), curve, label=WAYS[way])
    ax.axhline(metrics["encoder_elbo"], color="k", linestyle="--", label=WAYS["encoder"])
    ax.set_ylim(metrics["encoder_elbo"] - 4 * max(metrics["amortization_gap"], 1.0), None)
    ax.set_xlabel("Adam step on each image's ELBO (decoder fixed)")
    ax.set_ylabel(f"mean ELBO of {metrics['images']} held-out images (nats)")
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right")
    ax.set_title(f"amortization gap {metrics['amortization_gap']:.2f} nats (d = {metrics['latent_dim']})")
    fig.savefig(path, bbox_inches="tight", dpi=80)
    plt.close(fig)


def main_vi(argv: list[str] | None = None) -> int:
    metrics, out = run_command(argv, "vae_vi", "Per-datapoint variational inference and the amortization gap.",
                               {"default": VIConfig}, "default", amortization_gap)
    print(f"{metrics['images']} held-out images of {metrics['run']}, {metrics['steps']} steps; nats per image "
          f"(ELBO with {metrics['elbo_samples']} draws, bound with k={metrics['iw_samples']}):")
    print(f"{'':34} {'ELBO':>9} {'IW bound':>9}")
    for way, label in WAYS.items():
        print(f"{label:34} {metrics[f'{way}_elbo']:>9.2f} {metrics[f'{way}_iw_bound']:>9.2f}")
    print(f"amortization gap: {metrics['amortization_gap']:.2f} nats; approximation gap: "
          f"{metrics['approximation_gap']:.2f} nats")
    n, d = metrics["images"], metrics["latent_dim"]
    print(f"parameters: amortized |theta| + |phi| = {metrics['parameters_decoder']:,} + "
          f"{metrics['parameters_encoder']:,} = {metrics['parameters_amortized']:,}; per-datapoint |theta| + 2dN = "
          f"{metrics['parameters_decoder']:,} + 2*{d}*{n} = {metrics['parameters_per_datapoint']:,}")
    print(f"picture: {out / 'vae_vi.png'}")
    return 0


# ---------------------------------------------------------------- the lectures' pictures


@dataclasses.dataclass(frozen=True)
class LatentDimsConfig:
    """MLP VAEs on MNIST that differ only in the latent dimension (Kingma & Welling, 2014, Fig. 5)."""

    dims: tuple[int, ...] = (2, 5, 10, 20)
    """Latent dimensions, one run each."""
    hidden_units: tuple[int, ...] = (256,)
    """Dense layers of the encoder and decoder."""
    data: str = "mnist"
    """The image data set (as the vae command's --data)."""
    epochs: int = 50
    """Passes over the training digits per run."""
    seed: int = 0
    """Seed of every run and of the samples."""


def latent_dims(config: LatentDimsConfig, out: str | Path, *, progress: bool = False) -> dict:
    """Train one VAE per latent dimension (OUT/d-D) and draw 64 samples of each side by side."""
    run = Run.open(out, config, family="vae_latent_dims", kind="comparison")
    if run.finished:
        return run.metrics
    panels, metrics = [], {}
    for d in config.dims:
        model_config = vae.VAEConfig(architecture="mlp", latent_dim=d, hidden_units=config.hidden_units)
        options = vae.TrainConfig(model=model_config,
                                  data=config.data, epochs=config.epochs, batch_size=100, iw_samples=100,
                                  seed=config.seed)
        result = vae.train(options, run.directory / f"d-{d}", progress=progress)
        metrics[f"d={d}"] = {key: result[key] for key in ("test_negative_elbo", "test_iw_nll", "test_rate")}
        model, _, _ = load_vae(run.directory / f"d-{d}")
        panels.append((f"d = {d}: -ELBO {result['test_negative_elbo']:.1f}",
                       model.sample(tf.range(64, dtype=tf.int64) + config.seed * 64).numpy()))
        print(f"d={d}: held-out -ELBO {result['test_negative_elbo']:.2f}, KL {result['test_rate']:.2f}", flush=True)
    draw_panels(panels, run.directory / "latent_dims.png", columns=8)
    return run.finish(metrics)


@dataclasses.dataclass(frozen=True)
class LossBalanceConfig:
    """Two MLP VAEs on MNIST, one with the latent loss (KL) weighted too high, one too low."""

    betas: tuple[float, ...] = (8.0, 0.02)
    """Weights beta of the KL term in D + beta R, one run each."""
    latent_dim: int = 16
    """Dimension of z."""
    hidden_units: tuple[int, ...] = (256,)
    """Dense layers of the encoder and decoder."""
    data: str = "mnist"
    """The image data set (as the vae command's --data)."""
    epochs: int = 30
    """Passes over the training digits per run."""
    seed: int = 0
    """Seed of every run and of the samples."""


def loss_balance(config: LossBalanceConfig, out: str | Path, *, progress: bool = False) -> dict:
    """Train one VAE per beta (OUT/beta-B); for each, held-out digits over their reconstructions,
    then samples: too much weight on the KL gives the same blurred digit whatever the input; too
    little gives sharp reconstructions but samples from N(0, I) that land between the codes."""
    run = Run.open(out, config, family="vae_loss_balance", kind="comparison")
    if run.finished:
        return run.metrics
    panels, metrics = [], {}
    for beta in config.betas:
        options = vae.TrainConfig(model=vae.VAEConfig(architecture="mlp", latent_dim=config.latent_dim,
                                                      hidden_units=config.hidden_units, beta=beta),
                                  data=config.data, epochs=config.epochs, batch_size=100, iw_samples=100,
                                  seed=config.seed)
        result = vae.train(options, run.directory / f"beta-{beta:g}", progress=progress)
        metrics[f"beta={beta:g}"] = {"latent_loss": result["test_rate"],
                                     "reconstruction_loss": result["test_distortion"],
                                     "test_negative_elbo": result["test_negative_elbo"]}
        model, images, _ = load_vae(run.directory / f"beta-{beta:g}")
        originals = images[:16]
        reconstructed = model.decode(model.encode(originals)[0]).numpy()
        samples = model.sample(tf.range(16, dtype=tf.int64) + config.seed * 16).numpy()
        too = "latent" if beta > 1 else "reconstruction"
        title = f"too high {too} loss\nbeta = {beta:g}: KL {result['test_rate']:.1f}, " \
                f"-log p(x|z) {result['test_distortion']:.1f}"
        panels.append((title, np.concatenate([originals, reconstructed, samples])))
        print(f"beta={beta:g}: KL {result['test_rate']:.2f}, reconstruction {result['test_distortion']:.2f}",
              flush=True)
    draw_panels(panels, run.directory / "loss_balance.png", columns=8,
                caption="rows 1-2: held-out digits | 3-4: their reconstructions | 5-6: samples")
    return run.finish(metrics)


def draw_panels(panels: list[tuple[str, np.ndarray]], path: Path, columns: int, caption: str = "") -> None:
    """Image grids side by side, each with its title, and a caption under them."""
    fig, axes = plt.subplots(1, len(panels), figsize=(3.6 * len(panels), 4.0), layout="constrained")
    for ax, (title, images) in zip(np.atleast_1d(axes), panels):
        plots.show(ax, plots.tile(images, columns))
        ax.set_title(title, fontsize=9)
    if caption:
        fig.supxlabel(caption, fontsize=9)
    fig.savefig(path, bbox_inches="tight", dpi=90)
    plt.close(fig)


def main_latent_dims(argv: list[str] | None = None) -> int:
    metrics, out = run_command(argv, "vae_latent_dims", "VAE samples for several latent dimensions.",
                               {"mnist": LatentDimsConfig}, "mnist", latent_dims)
    for name, figures in metrics.items():
        print(f"{name}: held-out -ELBO {figures['test_negative_elbo']:.2f}, KL {figures['test_rate']:.2f}")
    print(f"picture: {out / 'latent_dims.png'}")
    return 0


def main_loss_balance(argv: list[str] | None = None) -> int:
    metrics, out = run_command(argv, "vae_loss_balance", "Too high latent loss, too high reconstruction loss.",
                               {"mnist": LossBalanceConfig}, "mnist", loss_balance)
    for name, figures in metrics.items():
        print(f"{name}: latent loss (KL) {figures['latent_loss']:.2f}, reconstruction loss "
              f"{figures['reconstruction_loss']:.2f}")
    print(f"picture: {out / 'loss_balance.png'}")
    return 0

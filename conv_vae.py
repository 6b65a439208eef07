"""
Parts 2 and 3 — the convolutional VAE, then every saved model decoded from the prior.

    python conv_vae.py                     # trains the conv VAE for 25 epochs, then Part 3
    python conv_vae.py --quick             # a smoke test: every code path in seconds, into results-quick/
    python conv_vae.py --data-dir ../shared/data --device cpu --out results

Loading, the loss, training and plotting come from vae.py; only the architecture is new here. Outputs under
--out: conv.pt, conv_samples.png, conv_metrics.json and conv_losses.png (Part 2). Part 3 reads every saved model
back from its checkpoint with weights_only=True and writes saved_models_samples.png (the same 15 vectors
z ~ N(0, I) decoded by each model), reconstructions.png (the first test image of each digit and each model's
reconstruction decode(μ(x))) and saved_models.json (each model's reconstruction error −log p(x | z = μ(x)) on
the whole test set, in nats per image).
"""
import matplotlib.pyplot as plt
import torch
import torch.nn as nn

from bookkeeping import (UserError, cli, file_digest, load_trained, make_parser, parse, save_figure, save_json, start,
                         up_to_date)
from vae import (EPOCHS, HIDDEN_CONFIGS, LATENT_DIM, MODEL_2D, N_SAMPLES, VAE, MLPVAE, active_units, add_vae_args,
                 figure_title, fit, is_active, kl_per_unit, load_mnist, plot_losses, reconstruct, reconstruction,
                 show_images, unit_variance)


# ---------------------------------------------------------------------------------------------------------------
# Part 2: the model, layer for layer as the assignment gives it

class ConvVAE(VAE):
    """ELU after every layer but the three outputs (μ, log σ², logits), as in the MLPs (see README); the
    assignment fixes the layers, not the activation."""

    def __init__(self, latent_dim=LATENT_DIM):
        super().__init__()
        self.config = {"arch": "conv", "latent_dim": latent_dim}
        self.encoder = nn.Sequential(                              # x: (B, 1, 28, 28)
            nn.Conv2d(1, 32, 4, stride=2, padding=1), nn.ELU(),    # (B, 32, 14, 14)
            nn.Conv2d(32, 64, 4, stride=2, padding=1), nn.ELU(),   # (B, 64, 7, 7)
            nn.Flatten(),                                          # (B, 3136)
            nn.Linear(64 * 7 * 7, 256), nn.ELU(),                  # (B, 256)
            nn.Linear(256, 128), nn.ELU())                         # (B, 128)
        self.mu = nn.Linear(128, latent_dim)                       # (B, 20)
        self.logvar = nn.Linear(128, latent_dim)                   # (B, 20)
        self.decoder = nn.Sequential(                              # z: (B, 20)
            nn.Linear(latent_dim, 128), nn.ELU(),                  # (B, 128)
            nn.Linear(128, 256), nn.ELU(),                         # (B, 256)
            nn.Linear(256, 64 * 7 * 7), nn.ELU(),                  # (B, 3136)
            nn.Unflatten(1, (64, 7, 7)),                           # (B, 64, 7, 7)
            nn.ConvTranspose2d(64, 32, 4, stride=2, padding=1), nn.ELU(),  # (B, 32, 14, 14)
            nn.ConvTranspose2d(32, 1, 4, stride=2, padding=1))     # (B, 1, 28, 28) logits


def load_conv_vae(out, device, latent_dim):
    """The trained conv VAE from --out with a z of `latent_dim` units, for the Part 4 scripts."""
    model, _ = load_trained(out / "conv.pt", ConvVAE, ConvVAE(latent_dim).config, "python conv_vae.py")
    return model.to(device)


def load_model_2d(out, device):
    """The 2-D MLP of vae.py from --out, or None (with a line saying so) when it is not there."""
    name = MODEL_2D["name"]
    if not (out / f"{name}.pt").is_file():
        print(f"{name}.pt is not in {out}; run `python vae.py` to include the 2-D model")
        return None
    model_class, expected, run_first = saved_model_files(MODEL_2D["latent_dim"])[name]
    return load_trained(out / f"{name}.pt", model_class, expected, run_first)[0].to(device)


# ---------------------------------------------------------------------------------------------------------------
# Part 3: every saved model, read back from disk, decodes the same 15 prior samples and reconstructs test digits

def saved_model_files(latent_dim):
    """{name: (model class, its expected config, the command that trains it)} for each model of the study, the 2-D
    MLP of vae.py included (its latent size is always 2)."""
    specs = {f"mlp_{h1}_{h2}": (MLPVAE, MLPVAE((h1, h2), latent_dim).config, "python vae.py")
             for h1, h2 in HIDDEN_CONFIGS}
    specs["conv"] = (ConvVAE, ConvVAE(latent_dim).config, "python conv_vae.py")
    specs[MODEL_2D["name"]] = (MLPVAE, MLPVAE(MODEL_2D["hidden"], MODEL_2D["latent_dim"]).config, "python vae.py")
    return specs


def saved_model_digests(out, latent_dim):
    return {name: file_digest(out / f"{name}.pt") for name in saved_model_files(latent_dim)
            if (out / f"{name}.pt").is_file()}


def load_saved_models(out, latent_dim, device, step):
    """{name: model} for every finished model under `out`, read back with weights_only=True. A missing or
    unfinished one is left out, and a line says why."""
    models, unusable = {}, []
    for name, (model_class, expected, run_first) in saved_model_files(latent_dim).items():
        if not (out / f"{name}.pt").is_file():
            print(f"{step}: {name}.pt is not in {out}; run `{run_first}` to include it")
            continue
        try:
            models[name] = load_trained(out / f"{name}.pt", model_class, expected, run_first)[0].to(device)
        except UserError as e:   # an unfinished or different model: leave it out, say why
            print(f"{step}: leaving out {name}: {e}")
            unusable.append(e)
    if not models and unusable:   # the models are there, but not as asked: training again would replace them
        raise UserError(f"{step}: no model in {out} can be used as asked; {unusable[-1]}")
    if not models:
        raise UserError(f"{step}: no finished model in {out}; run `python vae.py` and `python conv_vae.py` first")
    return models


def first_of_each_digit(labels):
    """Indices of the first test image of each digit 0–9 that the test set has."""
    return [int((labels == d).nonzero()[0]) for d in range(10) if (labels == d).any()]


@torch.no_grad()
def decode_saved_models(out, device, latent_dim, seed, test, force=False, quick=False):
    test_x, test_y = test
    config = {"seed": seed, "quick": quick, "test_images": len(test_x), "models": saved_model_digests(out, latent_dim)}
    figures = {"samples": out / "saved_models_samples.png", "reconstructions": out / "reconstructions.png",
               "kl": out / "kl_per_unit.png"}
    if up_to_date("Part 3", out / "saved_models.json", config, figures.values(), force):
        return
    models = load_saved_models(out, latent_dim, device, "Part 3")

    # the same 15 vectors z for every model whose z has the run's latent size (the 2-D MLP cannot decode them)
    z = torch.randn(N_SAMPLES, latent_dim, generator=torch.Generator().manual_seed(seed)).to(device)
    same_z = {name: model for name, model in models.items() if model.config["latent_dim"] == latent_dim}
    samples = [torch.sigmoid(model.decode(z)) for model in same_z.values()]
    show_images(torch.cat(samples), figures["samples"],
                figure_title("Each row: one saved model decoding the same 15 vectors z ~ N(0, I)", quick),
                captions=[name if i == 0 else "" for name in same_z for i in range(N_SAMPLES)], ncols=N_SAMPLES)

    # reconstructions x̂ = σ(decode(μ(x))) of the first test image of each digit, and −log p(x | z = μ(x)) on all
    x = test_x[first_of_each_digit(test_y)]
    rows = [x] + [torch.sigmoid(reconstruct(model, x)) for model in models.values()]
    show_images(torch.cat(rows), figures["reconstructions"],
                figure_title("Top row: test images; below, each saved model's reconstruction decode(μ(x))", quick),
                captions=[name if i == 0 else "" for name in ["input", *models] for i in range(len(x))], ncols=len(x))
    error = {name: reconstruction(reconstruct(model, test_x), test_x).mean().item() for name, model in models.items()}

    # posterior collapse: the KL of each unit, E_x KL(q(z_u|x) ‖ N(0, 1)), beside whether the unit is active
    units = {name: {"kl": kl_per_unit(model, test_x).tolist(), "variance": unit_variance(model, test_x).tolist()}
             for name, model in models.items()}
    plot_kl_per_unit(units, figures["kl"], figure_title(
        "KL per unit, E_x KL(q(z_u|x) ‖ N(0, 1)): dark bars are active units (variance of μ above 0.01), crosses "
        "inactive ones", quick))
    save_json(out / "saved_models.json", {"config": config, "models": list(models), "reconstruction_error": error,
                                          "units": units})
    print("Part 3: reconstruction error −log p(x | μ(x)) on the test set, nats per image: "
          + ", ".join(f"{name} {e:.2f}" for name, e in error.items()))
    for name, u in units.items():
        print(f"Part 3: {name} KL per unit (nats): " + " ".join(f"{kl:.2f}" for kl in u["kl"]))
    print(f"Part 3: wrote {', '.join(str(f) for f in figures.values())}")


def plot_kl_per_unit(units, path, title):
    """One bar chart per model: the KL of each latent unit, active units dark, inactive ones light."""
    fig, axes = plt.subplots(1, len(units), figsize=(3.2 * len(units), 3.2), squeeze=False, layout="constrained")
    for ax, (name, u) in zip(axes.flat, units.items()):
        kl, variance = torch.tensor(u["kl"]), torch.tensor(u["variance"])
        active = is_active(variance)
        ax.bar(range(len(kl)), kl.tolist(), color=["C0" if a else "#b9cfe4" for a in active.tolist()])
        inactive = (~active).nonzero().squeeze(1).tolist()   # a collapsed unit's bar has no height: mark its place
        ax.plot(inactive, [0] * len(inactive), "x", color="C3", ms=6, label="inactive unit")
        if inactive:
            ax.legend(fontsize=7, loc="upper left")
        ax.set(title=f"{name}: {active_units(variance)} of {len(kl)} active", xlabel="latent unit u",
               xticks=range(0, len(kl), max(1, len(kl) // 10)))
    axes[0, 0].set_ylabel("KL (nats per image)")
    fig.suptitle(title, fontsize=10)
    save_figure(fig, path)


# ---------------------------------------------------------------------------------------------------------------

def main(argv=None):
    p = make_parser("Parts 2 and 3: train the convolutional VAE, then decode prior samples with every saved model.")
    add_vae_args(p)
    args = parse(p, argv)
    args.epochs = args.epochs or (1 if args.quick else EPOCHS)
    device, out = start(args, vars(args))
    data = load_mnist(args.data_dir, device, args.quick)

    metrics = fit("conv", lambda: ConvVAE(args.latent_dim), args, data, device, out)
    plot_losses([metrics], out / "conv_losses.png", figure_title("Part 2: the convolutional VAE", args.quick))
    decode_saved_models(out, device, args.latent_dim, args.seed, data[2:], args.force, args.quick)


if __name__ == "__main__":
    cli(main)

"""
Parts 2 and 3 — the convolutional VAE, then every saved model decoded from the prior.

    python conv_vae.py                     # trains the conv VAE for 25 epochs, then Part 3
    python conv_vae.py --quick             # a smoke test: every code path in seconds, into results-quick/
    python conv_vae.py --data-dir ../shared/data --device cpu --out results

Loading, the loss, training and plotting come from vae.py; only the architecture is new here. Outputs under
--out: conv.pt, conv_samples.png, conv_metrics.json and conv_losses.png (Part 2), and saved_models_samples.png
with saved_models.json (Part 3): the same 15 vectors z ~ N(0, I) decoded by each saved model, read back from
its checkpoint with weights_only=True.
"""
import torch
import torch.nn as nn

from bookkeeping import UserError, cli, file_digest, load_trained, make_parser, outputs_complete, parse, save_json, start
from vae import (EPOCHS, HIDDEN_CONFIGS, LATENT_DIM, N_SAMPLES, VAE, MLPVAE, add_vae_args, figure_title, fit,
                 load_mnist, plot_losses, show_images)


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


def load_conv_vae(out, device, latent_dim=LATENT_DIM):
    """The trained conv VAE from --out, for the Part 4 scripts."""
    model, _ = load_trained(out / "conv.pt", ConvVAE, ConvVAE(latent_dim).config, "python conv_vae.py")
    return model.to(device)


# ---------------------------------------------------------------------------------------------------------------
# Part 3: every saved model, read back from disk, decodes the same 15 prior samples

def decode_saved_models(out, device, latent_dim, seed, force=False, quick=False):
    models = {f"mlp_{h1}_{h2}": (MLPVAE, MLPVAE((h1, h2), latent_dim).config, "python vae.py")
              for h1, h2 in HIDDEN_CONFIGS}
    models["conv"] = (ConvVAE, ConvVAE(latent_dim).config, "python conv_vae.py")
    found = {name: spec for name, spec in models.items() if (out / f"{name}.pt").is_file()}
    for name in [name for name in models if name not in found]:
        print(f"Part 3: {name}.pt is not in {out}; run `{models[name][2]}` to include it")
    config = {"seed": seed, "models": {name: file_digest(out / f"{name}.pt") for name in found}}
    figure = out / "saved_models_samples.png"
    if not force and outputs_complete(out / "saved_models.json", config, [figure]):
        print("Part 3: skipped, the figure is up to date")
        return

    z = torch.randn(N_SAMPLES, latent_dim, generator=torch.Generator().manual_seed(seed)).to(device)
    rows, captions, shown = [], [], []
    for name, (model_class, expected, run_first) in found.items():
        try:
            model, _ = load_trained(out / f"{name}.pt", model_class, expected, run_first)
        except UserError as e:   # an unfinished or different model: leave it out of the figure, say why
            print(f"Part 3: leaving out {name}: {e}")
            continue
        with torch.no_grad():
            rows.append(torch.sigmoid(model.to(device).decode(z)))
        captions += [name if i == 0 else "" for i in range(N_SAMPLES)]
        shown.append(name)
    if not rows:
        raise UserError(f"Part 3: no finished model in {out} to decode with; run `python vae.py` and "
                        f"`python conv_vae.py` first")
    show_images(torch.cat(rows), figure, figure_title("Each row: one saved model decoding the same 15 vectors "
                                                      "z ~ N(0, I)", quick), captions=captions, ncols=N_SAMPLES)
    save_json(out / "saved_models.json", {"config": config, "models": shown})
    print(f"Part 3: wrote {figure}")


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
    decode_saved_models(out, device, args.latent_dim, args.seed, args.force, args.quick)


if __name__ == "__main__":
    cli(main)

"""
Part 1 — three fully connected VAEs on MNIST, and the base that the later parts import.

    python vae.py                          # trains (100,100), (200,200) and (300,300), 25 epochs each
    python vae.py --hidden 200 200         # one configuration
    python vae.py --quick                  # a smoke test: every code path in seconds, into results-quick/
    python vae.py --data-dir ../shared/data --device cpu --out results

Each model is a Gaussian encoder q(z|x) = N(μ(x), diag σ²(x)) and a Bernoulli decoder p(x|z) over the 784
pixels, with the prior p(z) = N(0, I) and z of dimension 20. Training maximises the evidence lower bound

    ELBO(x) = E_q[log p(x|z)] − KL(q(z|x) || p(z))  ≤  log p(x),

so the loss is the negative ELBO, in nats per image. The file reads in order: data, model, loss, the training
loop, evaluation, figures, main(). Outputs, under --out for each model NAME: NAME.pt (weights, config, metrics),
NAME_samples.png (15 images decoded from z ~ N(0, I)) and NAME_metrics.json; and mlp_losses.png, which compares
the models. Checkpoints, skipping finished work and resuming live in bookkeeping.py.
"""
import math
import time
import warnings
from pathlib import Path

import matplotlib.pyplot as plt
import torch
import torch.nn as nn
import torch.nn.functional as F

from bookkeeping import (TrainingCheckpoint, UserError, as_json, check_idx, cli, device_name, load_trained,
                         make_parser, parse, positive_int, positive_float, read_metrics, save_figure, save_json, start,
                         up_to_date)

HIDDEN_CONFIGS = [(100, 100), (200, 200), (300, 300)]  # Part 1: two hidden layers each
LATENT_DIM = 20      # size of z
# Beyond the assignment: the classic 2-D picture, a (200, 200) MLP whose z has 2 units, so that its encoded test set
# and its decoder's whole manifold can be drawn directly, without t-SNE
MODEL_2D = {"name": "mlp_200_200_z2", "hidden": (200, 200), "latent_dim": 2}
GRID_2D = 20         # the manifold figure decodes a GRID_2D × GRID_2D grid of z
EPOCHS = 25          # full run; --quick uses 1
BATCH_SIZE = 128
LR = 3e-3            # peak Adam learning rate, with a cosine decay stepped once per epoch (see cosine_lr)
QUICK_TRAIN, QUICK_TEST = 512, 256   # images used by --quick
N_SAMPLES = 15       # images decoded from the prior, shown as a 3×5 grid
MNIST_FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte",
               "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")


# ---------------------------------------------------------------------------------------------------------------
# Data: the whole of MNIST as two tensors on the device, no DataLoader

def load_mnist(data_dir, device, quick=False):
    """(train_x, train_y, test_x, test_y): images (N, 1, 28, 28) scaled to [0, 1], labels (N,), on `device`."""
    from torchvision.datasets import MNIST   # imported here: importing vae.py stays light

    raw = Path(data_dir) / "MNIST" / "raw"
    for name in MNIST_FILES:
        if (raw / name).is_file():
            check_idx(raw / name)
    try:
        sets = [MNIST(data_dir, train=train, download=True) for train in (True, False)]
    except Exception:
        missing = [n for n in MNIST_FILES if not (raw / n).is_file()]
        raise UserError(f"MNIST is not in {raw}/ and could not be downloaded: put {', '.join(missing or MNIST_FILES)} "
                        f"there (from a machine with internet), or pass --data-dir") from None
    tensors = []
    for ds, n in zip(sets, (QUICK_TRAIN, QUICK_TEST)):
        images, labels = (ds.data[:n], ds.targets[:n]) if quick else (ds.data, ds.targets)
        tensors += [images.to(device).unsqueeze(1).float().div_(255), labels.to(device)]
    return tuple(tensors)


# ---------------------------------------------------------------------------------------------------------------
# Model

class VAE(nn.Module):
    """What every VAE here shares. A subclass sets self.encoder, self.mu, self.logvar, self.decoder and
    self.config (the architecture, saved with each checkpoint so that the model can be rebuilt)."""

    def encode(self, x):                     # (B, 1, 28, 28) → μ, log σ²: (B, 20) each
        h = self.encoder(x)
        return self.mu(h), self.logvar(h)

    def reparameterize(self, mu, logvar):
        # z = μ + σ ⊙ ε, ε ~ N(0, I): the sample stays differentiable in μ and σ
        return mu + torch.exp(0.5 * logvar) * torch.randn_like(mu)

    def decode(self, z):                     # (B, 20) → Bernoulli logits (B, 1, 28, 28)
        return self.decoder(z)

    def forward(self, x):
        mu, logvar = self.encode(x)
        return self.decode(self.reparameterize(mu, logvar)), mu, logvar


class MLPVAE(VAE):
    """Encoder 784 → h1 → h2 → (μ, log σ²); decoder z → h2 → h1 → 784 logits. ELU activations (see README)."""

    def __init__(self, hidden=(200, 200), latent_dim=LATENT_DIM):
        super().__init__()
        h1, h2 = hidden
        self.config = {"arch": "mlp", "hidden": [h1, h2], "latent_dim": latent_dim}
        self.encoder = nn.Sequential(nn.Flatten(), nn.Linear(784, h1), nn.ELU(), nn.Linear(h1, h2), nn.ELU())
        self.mu = nn.Linear(h2, latent_dim)
        self.logvar = nn.Linear(h2, latent_dim)
        self.decoder = nn.Sequential(nn.Linear(latent_dim, h2), nn.ELU(), nn.Linear(h2, h1), nn.ELU(),
                                     nn.Linear(h1, 784), nn.Unflatten(1, (1, 28, 28)))


# ---------------------------------------------------------------------------------------------------------------
# Loss: the negative ELBO, per image, in nats

def kl_divergence(mu, logvar):
    # KL(N(μ, σ²) || N(0, I)) = ½ Σ_j (μ_j² + σ_j² − log σ_j² − 1)
    return 0.5 * (mu.pow(2) + logvar.exp() - logvar - 1).sum(1)


def reconstruction(logits, x):
    # −log p(x|z) = −Σ_pixels [x log σ(ℓ) + (1 − x) log(1 − σ(ℓ))], with ℓ the decoder's logits
    return F.binary_cross_entropy_with_logits(logits, x, reduction="none").flatten(1).sum(1)


def elbo_terms(model, x):
    """Per-image (reconstruction, KL), one z sample each; −ELBO = reconstruction + KL."""
    logits, mu, logvar = model(x)
    return reconstruction(logits, x), kl_divergence(mu, logvar)


def vae_loss(model, x):
    """The batch's mean −ELBO, to minimise, and its two terms, to report."""
    rec, kl = elbo_terms(model, x)
    return (rec + kl).mean(), {"rec": rec.mean().detach(), "kl": kl.mean().detach()}


# ---------------------------------------------------------------------------------------------------------------
# Training: one plain loop, shared by every model of the study (the classifier too)

def train(model, loss_fn, train_data, test_fn, args, ckpt, device):
    """Minimise loss_fn(model, *batch) → (loss, {name: value}) with Adam over the tensors in train_data, for
    args.epochs, reshuffled every epoch; test_fn(model) → {name: value} after each epoch. `ckpt` (a
    TrainingCheckpoint) resumes an interrupted run and saves every epoch. Returns the history, one dict per epoch."""
    torch.manual_seed(args.seed)                       # the training noise starts from the seed
    graph = use_cuda_graph(args, device)
    opt = make_optimizer(model, args.lr, capturable=graph)
    history = ckpt.resume(model, opt)                  # [] unless an interrupted run left a checkpoint
    n = len(train_data[0])
    batch_size = min(args.batch_size, n)

    def step(*batch):
        loss, stats = loss_fn(model, *batch)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return {"loss": loss.detach(), **stats}

    # On CUDA, launching a step's hundred small kernels from Python takes longer than running them, so the same
    # step is recorded once as a CUDA graph and replayed (CUDAGraphStep); --no-cuda-graph keeps the plain step.
    if graph:
        step = cuda_graph_or_plain(step, model, opt, [t[:batch_size] for t in train_data])
    shuffle = torch.Generator().manual_seed(args.seed)
    ckpt.restore_random_state(shuffle, device)         # after the graph's warm-up, which draws random numbers
    with ckpt.on_interrupt():
        for epoch in range(len(history), args.epochs):
            set_lr(opt, cosine_lr(args.lr, epoch, args.epochs))
            model.train()
            t0, sums, n_batches = time.perf_counter(), {}, n // batch_size   # the last partial batch is dropped
            order = torch.randperm(n, generator=shuffle).to(device)
            for i in range(n_batches):
                batch = order[i * batch_size:(i + 1) * batch_size]
                stats = step(*(t[batch] for t in train_data))
                sums = {k: sums.get(k, 0) + v for k, v in stats.items()}   # on the device: no sync per batch
            record = {"epoch": epoch + 1, **{f"train_{k}": (v / n_batches).item() for k, v in sums.items()}}
            check_finite(record["train_loss"], epoch, ckpt)
            record.update({**test_fn(model), "seconds": time.perf_counter() - t0})
            history.append(record)
            print_epoch(ckpt.path.stem, record, args.epochs)
            ckpt.save(model, opt, history, shuffle, device)
    return history


def use_cuda_graph(args, device):
    return device.type == "cuda" and args.cuda_graph


def make_optimizer(model, lr, capturable=False):
    # A CUDA graph replays the same kernels every step, so Adam's state and learning rate must live on the GPU.
    if capturable:
        return torch.optim.Adam(model.parameters(), lr=torch.tensor(lr, device="cuda"), capturable=True)
    return torch.optim.Adam(model.parameters(), lr=lr)


def cosine_lr(peak, epoch, epochs):
    # η_e = η · ½ (1 + cos(π e / E)), e = 0 … E − 1: set once per epoch, so the last epoch runs at ½(1 + cos(π(E−1)/E))
    # of the peak (0.4% for E = 25), not at zero
    return peak * 0.5 * (1 + math.cos(math.pi * epoch / epochs))


def set_lr(opt, lr):
    for group in opt.param_groups:
        if torch.is_tensor(group["lr"]):
            group["lr"].fill_(lr)
        else:
            group["lr"] = lr


def check_finite(loss, epoch, ckpt):
    if not math.isfinite(loss):
        kept = (f"the last good checkpoint {ckpt.path} (epoch {epoch}) was kept; try a smaller --lr, with --force to "
                f"train over it from the start" if epoch else "nothing was saved; try a smaller --lr")
        raise UserError(f"{ckpt.path.stem}: the loss became {loss} in epoch {epoch + 1}; {kept}")


def print_epoch(name, record, epochs):
    test = "  ".join(f"{k[5:]} {v:.2f}" for k, v in record.items() if k.startswith("test_"))
    print(f"{name} epoch {record['epoch']:2d}/{epochs}  train loss {record['train_loss']:.2f} | test {test} | "
          f"{record['seconds']:.2f}s")


class CUDAGraphStep:
    """A training step, recorded once as a CUDA graph and then replayed.

    A VAE step on MNIST is about a hundred tiny kernels; on a fast GPU launching them one by one from Python
    takes longer than running them. A graph launches all of them with one call. What a graph needs: the same
    shapes every step (training drops the last partial batch), inputs copied into fixed buffers (`self.batch`),
    and an optimiser whose state and learning rate live on the GPU (Adam with capturable=True).
    The arithmetic is the plain step's; only the launching differs.
    """

    def __init__(self, step, model, opt, batch):
        self.batch = [t.clone() for t in batch]
        # Warm up on a side stream (cuDNN picks its kernels, Adam allocates its state), then undo the warm-up's
        # updates so that the run matches the plain loop.
        weights, adam = snapshot(model, opt)
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side), warnings.catch_warnings():
            warnings.simplefilter("ignore")   # Adam notes that capturable=True runs outside a graph here
            for _ in range(3):
                step(*self.batch)
        torch.cuda.current_stream().wait_stream(side)
        restore(model, opt, weights, adam)
        self.graph = torch.cuda.CUDAGraph()
        opt.zero_grad(set_to_none=True)   # backward then allocates the gradients from the graph's own memory
        with torch.cuda.graph(self.graph):
            self.out = step(*self.batch)

    def __call__(self, *batch):
        for buffer, t in zip(self.batch, batch):
            buffer.copy_(t)
        self.graph.replay()
        return self.out


def cuda_graph_or_plain(step, model, opt, batch):
    """The step as a CUDA graph, or, if capture fails for any reason, the plain step (and one line saying so)."""
    weights, adam = snapshot(model, opt)
    try:
        return CUDAGraphStep(step, model, opt, batch)
    except Exception as e:
        restore(model, opt, weights, adam)
        print(f"CUDA graph capture failed ({type(e).__name__}: {e}); training with the plain loop")
        return step


def snapshot(model, opt):
    weights = {k: v.clone() for k, v in model.state_dict().items()}
    return weights, {p: {k: v.clone() for k, v in s.items()} for p, s in opt.state.items()}


@torch.no_grad()
def restore(model, opt, weights, adam):
    model.load_state_dict(weights)    # copies in place: a graph keeps seeing the same tensors
    for p, state in opt.state.items():
        for k, v in state.items():
            v.copy_(adam[p][k]) if p in adam else v.zero_()


# ---------------------------------------------------------------------------------------------------------------
# Evaluation: each function puts the model in eval mode itself and computes without gradients

@torch.no_grad()
def evaluate(model, x, batch_size=2000):
    """Single-sample test −ELBO and its two terms, averaged over images (nats per image)."""
    model.eval()
    total = torch.zeros(2, device=x.device)
    for xb in x.split(batch_size):
        rec, kl = elbo_terms(model, xb)
        total += torch.stack([rec.sum(), kl.sum()])
    rec, kl = (total / len(x)).tolist()
    return {"neg_elbo": rec + kl, "rec": rec, "kl": kl}


@torch.no_grad()
def iw_log_likelihood(model, x, k, batch_size=20000):
    """Importance-weighted estimate of log p(x) in nats per image (Burda et al., 2016), a bound tighter than the ELBO."""
    model.eval()
    log2pi = math.log(2 * math.pi)
    per_image = []
    images_per_chunk = max(1, batch_size // k)
    for xb in x.split(images_per_chunk):
        mu, logvar = model.encode(xb)                                    # (b, d)
        eps = torch.randn(k, *mu.shape, device=x.device)                 # (k, b, d)
        z = mu + torch.exp(0.5 * logvar) * eps
        logits = model.decode(z.flatten(0, 1))                           # (k·b, 1, 28, 28)
        log_px_z = -reconstruction(logits, xb.repeat(k, 1, 1, 1)).view(k, -1)
        log_pz = -0.5 * (z.pow(2) + log2pi).sum(-1)
        log_qz = -0.5 * (eps.pow(2) + log2pi + logvar).sum(-1)
        # log p(x) ≈ log (1/k) Σ_i p(x|z_i) p(z_i) / q(z_i|x),  z_i ~ q(z|x)
        per_image.append(torch.logsumexp(log_px_z + log_pz - log_qz, 0) - math.log(k))
    return torch.cat(per_image).mean().item()


@torch.no_grad()
def unit_variance(model, x, batch_size=2000):
    # Var_x(E_q[z_u | x]) for each latent unit u: how much the posterior mean of u moves with the image
    model.eval()
    return torch.cat([model.encode(xb)[0] for xb in x.split(batch_size)]).var(0)


@torch.no_grad()
def kl_per_unit(model, x, batch_size=2000):
    """E_x KL(q(z_u|x) ‖ N(0, 1)) for each latent unit u, in nats → (d,). The units' values add up to the KL term
    of the −ELBO on the same images. A unit whose KL is 0 has q(z_u|x) = N(0, 1) for every x: it tells the decoder
    nothing about the image (posterior collapse)."""
    model.eval()
    total = 0
    for xb in x.split(batch_size):
        mu, logvar = model.encode(xb)
        # KL(N(μ_u, σ_u²) ‖ N(0, 1)) = ½ (μ_u² + σ_u² − log σ_u² − 1), unit by unit
        total = total + 0.5 * (mu.pow(2) + logvar.exp() - logvar - 1).sum(0)
    return total / len(x)


ACTIVE_VARIANCE = 0.01   # unit u is active if Var_x(E_q[z_u | x]) exceeds this (Burda et al., 2016)


def is_active(variance):
    # Var_x(E_q[z_u | x]) > 0.01 → a boolean mask (d,)
    return variance > ACTIVE_VARIANCE


def active_units(variance):
    return int(is_active(variance).sum())


@torch.no_grad()
def reconstruct(model, x, batch_size=2000):
    """Bernoulli logits of decode(μ(x)): the model's reconstruction of each image, at the posterior mean."""
    model.eval()
    return torch.cat([model.decode(model.encode(xb)[0]) for xb in x.split(batch_size)])


def iw_settings(args, device):
    """(samples per image, test images) for the log-likelihood estimate, sized to the device unless given."""
    if args.quick:
        default = (10, 64)
    elif device.type == "cuda":
        default = (1000, 10000)
    else:
        default = (200, 1000)   # a CPU does this in about half a minute; the bound is a little looser than k = 1000
    return args.iw_samples or default[0], args.iw_images or default[1]


# ---------------------------------------------------------------------------------------------------------------
# Figures

def show_images(images, path, title, captions=None, ncols=5):
    """A grid of (N, 1, 28, 28) images in [0, 1], with an optional caption under each."""
    n = len(images)
    nrows = math.ceil(n / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(1.6 * ncols, 1.8 * nrows), squeeze=False, layout="constrained")
    for i, ax in enumerate(axes.flat):
        ax.axis("off")
        if i < n:
            ax.imshow(images[i, 0].cpu().numpy(), cmap="gray", vmin=0, vmax=1)
            if captions:
                ax.set_title(captions[i], fontsize=8)
    fig.suptitle(title, fontsize=10)
    save_figure(fig, path)


def plot_losses(all_metrics, path, title=""):
    """−ELBO, reconstruction and KL per epoch for each model: train solid, test dashed."""
    fig, axes = plt.subplots(1, 3, figsize=(15, 4))
    for color, metrics in zip(plt.rcParams["axes.prop_cycle"].by_key()["color"], all_metrics):
        epochs = [h["epoch"] for h in metrics["history"]]
        for ax, key, name in zip(axes, ("loss", "rec", "kl"),
                                 ("−ELBO (nats/image)", "reconstruction (nats/image)", "KL (nats/image)")):
            # markers: a one-epoch run still shows its point
            ax.plot(epochs, [h[f"train_{key}"] for h in metrics["history"]], color=color, marker="o", ms=3,
                    label=f"{metrics['name']} train")
            ax.plot(epochs, [h[f"test_{key}"] for h in metrics["history"]], color=color, ls="--", marker="o", ms=3,
                    label=f"{metrics['name']} test")
            ax.set(title=name, xlabel="epoch")
    axes[0].legend(fontsize=8)
    if title:
        fig.suptitle(title, fontsize=10)
    save_figure(fig, path)


@torch.no_grad()
def plot_latent_2d(model, x, labels, path, title):
    """The 2-D model seen directly: its test set encoded as μ(x), coloured by true digit, and the decoder's
    manifold, decode(z) over a grid of z at the quantiles of N(0, 1) on each axis."""
    model.eval()
    mu = torch.cat([model.encode(xb)[0] for xb in x.split(2000)]).cpu()              # (N, 2)
    # z_k = Φ⁻¹(q_k) for q_k evenly spaced in (0, 1): each cell of the grid holds the same prior mass
    q = torch.linspace(0.5 / GRID_2D, 1 - 0.5 / GRID_2D, GRID_2D)
    ticks = torch.distributions.Normal(0.0, 1.0).icdf(q)                              # (G,)
    z = torch.stack(torch.meshgrid(ticks, ticks.flip(0), indexing="xy"), -1)          # (G, G, 2); z_2 grows upwards
    device = next(model.parameters()).device
    images = torch.sigmoid(model.decode(z.reshape(-1, 2).to(device))).cpu()          # (G·G, 1, 28, 28)
    canvas = images.view(GRID_2D, GRID_2D, 28, 28).permute(0, 2, 1, 3).reshape(GRID_2D * 28, GRID_2D * 28)

    fig, (left, right) = plt.subplots(1, 2, figsize=(14, 6.5), layout="constrained")
    mu, labels = mu.numpy(), labels.cpu().numpy()
    for digit in range(10):
        mask = labels == digit
        if mask.any():
            left.scatter(mu[mask, 0], mu[mask, 1], s=2, color=plt.cm.tab10(digit), label=str(digit))
    left.set(title=f"μ(x) of {len(x)} test images, coloured by true digit", xlabel="z₁", ylabel="z₂")
    left.legend(title="digit", markerscale=5, fontsize=8)
    lim = ticks[-1].item() + 0.5 * (ticks[-1] - ticks[-2]).item()
    right.imshow(canvas.numpy(), cmap="gray", vmin=0, vmax=1, extent=(-lim, lim, -lim, lim))
    right.set(title=f"decode(z) on a {GRID_2D} × {GRID_2D} grid at the quantiles of N(0, 1)", xlabel="z₁",
              ylabel="z₂ (axes not to scale: equal prior mass per cell)")
    fig.suptitle(title, fontsize=10)
    save_figure(fig, path)


def figure_title(text, quick):
    """A figure's title; a smoke test says so on every figure."""
    return f"SMOKE TEST (--quick), numbers mean nothing — {text}" if quick else text


# ---------------------------------------------------------------------------------------------------------------
# Part 1: train, evaluate and save each model

def fit(name, build, args, data, device, out):
    """Train the model that build() makes (or resume it, or skip it when done), evaluate it, and write its
    checkpoint, samples and metrics under `out`. Returns the metrics."""
    torch.manual_seed(args.seed)              # the same initial weights, whether trained alone or after the others
    model = build().to(device)
    train_x, _, test_x, _ = data
    iw_k, iw_n = iw_settings(args, device)
    train_config = {"epochs": args.epochs, "batch_size": min(args.batch_size, len(train_x)), "lr": args.lr,
                    "schedule": "cosine", "seed": args.seed, "quick": args.quick}
    config = {"model": model.config, "train": train_config, "eval": {"iw_samples": iw_k, "iw_images": iw_n}}
    paths = {"ckpt": out / f"{name}.pt", "samples": out / f"{name}_samples.png",
             "metrics": out / f"{name}_metrics.json"}
    ckpt = TrainingCheckpoint(paths["ckpt"], model.config, train_config, force=args.force)
    if ckpt.complete and up_to_date(name, paths["metrics"], config, [paths["samples"]], args.force):
        return read_metrics(paths["metrics"])

    def test_losses(model):
        test = evaluate(model, test_x)
        return {"test_loss": test["neg_elbo"], "test_rec": test["rec"], "test_kl": test["kl"]}

    history = train(model, vae_loss, (train_x,), test_losses, args, ckpt, device)

    torch.manual_seed(args.seed + 1)          # evaluation noise does not depend on how training was split
    model.eval()
    test = {**evaluate(model, test_x), "images": len(test_x)}
    iw_x = test_x[:iw_n]
    iw = {"log_likelihood": iw_log_likelihood(model, iw_x, iw_k, batch_size=50_000 if device.type == "cuda" else 20_000),
          # the −ELBO on the same images, so that the gap between the two bounds compares like with like
          "neg_elbo": evaluate(model, iw_x)["neg_elbo"], "samples": iw_k, "images": len(iw_x)}
    with torch.no_grad():
        samples = torch.sigmoid(model.decode(torch.randn(N_SAMPLES, model.config["latent_dim"], device=device)))
    variance = unit_variance(model, test_x)
    metrics = {
        "name": name, "config": as_json(config), "device": device_name(device), "torch": str(torch.__version__),
        "train_path": "cuda-graph" if use_cuda_graph(args, device) else "eager",
        "history": history, "test": test, "iw": iw,
        "active_units": active_units(variance), "unit_variance": variance.tolist(),
        "kl_per_unit": kl_per_unit(model, test_x).tolist(),
        "seconds_per_epoch": sum(h["seconds"] for h in history) / len(history),
    }
    print(f"{name}: test −ELBO {test['neg_elbo']:.2f} nats (rec {test['rec']:.2f} + kl {test['kl']:.2f}); "
          f"on {iw['images']} test images, IW log-likelihood {iw['log_likelihood']:.2f} (k={iw_k}) against "
          f"−ELBO {iw['neg_elbo']:.2f}; {metrics['active_units']} active units")
    ckpt.finish(model, history, metrics)
    show_images(samples, paths["samples"], figure_title(f"{name}: 15 images decoded from z ~ N(0, I)",
                                                                args.quick))
    save_json(paths["metrics"], metrics)
    return metrics


def add_training_args(p, epochs=EPOCHS, batch_size=BATCH_SIZE, lr=LR):
    p.add_argument("--epochs", type=positive_int, default=None, help=f"(default: {epochs}; 1 with --quick)")
    p.add_argument("--batch-size", type=positive_int, default=batch_size, help=f"(default: {batch_size})")
    p.add_argument("--lr", type=positive_float, default=lr, help=f"peak Adam learning rate (default: {lr})")
    p.add_argument("--no-cuda-graph", dest="cuda_graph", action="store_false",
                   help="on CUDA, train with the plain loop instead of replaying each step as a CUDA graph")


def add_latent_dim_arg(p):
    p.add_argument("--latent-dim", type=positive_int, default=LATENT_DIM,
                   help=f"size of z of the models to train or read (default: {LATENT_DIM})")


def add_vae_args(p):
    add_training_args(p)
    add_latent_dim_arg(p)
    p.add_argument("--iw-samples", type=positive_int, default=None,
                   help="importance samples per test image (default: 1000 on cuda, 200 on cpu/mps, 10 with --quick)")
    p.add_argument("--iw-images", type=positive_int, default=None,
                   help="test images for that estimate (default: all on cuda, 1000 on cpu/mps, 64 with --quick)")


def main(argv=None):
    p = make_parser("Part 1: train fully connected VAEs on MNIST.")
    p.add_argument("--hidden", type=positive_int, nargs=2, metavar=("H1", "H2"), default=None,
                   help="train one configuration (default: all of 100 100, 200 200, 300 300)")
    add_vae_args(p)
    args = parse(p, argv)
    args.epochs = args.epochs or (1 if args.quick else EPOCHS)
    hidden_configs = [tuple(args.hidden)] if args.hidden else HIDDEN_CONFIGS
    device, out = start(args, vars(args))
    data = load_mnist(args.data_dir, device, args.quick)

    all_metrics = []
    for hidden in hidden_configs:
        name = f"mlp_{hidden[0]}_{hidden[1]}"
        all_metrics.append(fit(name, lambda: MLPVAE(hidden, args.latent_dim), args, data, device, out))
    plot_losses(all_metrics, out / "mlp_losses.png", figure_title("Part 1: the three MLP VAEs", args.quick))
    print(f"wrote {out / 'mlp_losses.png'}")
    if not args.hidden:
        fit_2d(args, data, device, out)


def fit_2d(args, data, device, out):
    """Beyond the assignment: the same recipe with a 2-D z, drawn directly in latent_2d.png."""
    name, hidden, latent_dim = MODEL_2D["name"], MODEL_2D["hidden"], MODEL_2D["latent_dim"]
    fit(name, lambda: MLPVAE(hidden, latent_dim), args, data, device, out)
    model, _ = load_trained(out / f"{name}.pt", MLPVAE, MLPVAE(hidden, latent_dim).config, "python vae.py")
    _, _, test_x, test_y = data
    plot_latent_2d(model.to(device), test_x, test_y, out / "latent_2d.png", figure_title(
        f"{name}: a VAE with a 2-D latent space (beyond the assignment)", args.quick))
    print(f"wrote {out / 'latent_2d.png'}")


if __name__ == "__main__":
    cli(main)

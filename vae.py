"""
Part 1 — three fully connected VAEs on MNIST, and the base the other scripts import.

    python vae.py                          # trains (100,100), (200,200) and (300,300), 25 epochs each
    python vae.py --hidden 200 200         # one configuration
    python vae.py --quick                  # every code path in seconds on a CPU
    python vae.py --data-dir ../shared/data --device cpu --out results

Each model is a Gaussian encoder q(z|x) = N(μ(x), diag σ²(x)) and a Bernoulli decoder p(x|z) over the 784
pixels, with the prior p(z) = N(0, I) and z of dimension 20. Training maximises the evidence lower bound

    ELBO(x) = E_q[log p(x|z)] − KL(q(z|x) || p(z))  ≤  log p(x),

so the loss is the negative ELBO, reported in nats per image. Outputs, under --out for each model NAME:
NAME.pt (state_dict, config, metrics), NAME_samples.png (15 images decoded from z ~ N(0, I)) and
NAME_metrics.json; and mlp_losses.png, which compares the models. A rerun skips a model whose outputs are
complete and were made with the same settings, and resumes an interrupted one from its last finished epoch.
"""
import argparse
import hashlib
import json
import math
import os
import platform
import sys
import time
import warnings
from pathlib import Path

import matplotlib.pyplot as plt
import torch
import torch.nn as nn
import torch.nn.functional as F

HIDDEN_CONFIGS = [(100, 100), (200, 200), (300, 300)]  # Part 1: two hidden layers each
LATENT_DIM = 20      # size of z
EPOCHS = 25          # full run; --quick uses 1
BATCH_SIZE = 128
LR = 3e-3            # peak Adam learning rate, decayed to zero on a cosine over the run (see README)
SEED = 0
QUICK_TRAIN, QUICK_TEST = 512, 256   # images used by --quick
N_SAMPLES = 15       # images decoded from the prior, shown as a 3×5 grid
MNIST_FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte",
               "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")


# ---------------------------------------------------------------------------------------------------------------
# Mistakes get one line, not a traceback; results are written whole or not at all

class UserError(Exception):
    """A problem the user can fix. `cli` prints it as one line on stderr and exits with code 2."""


def cli(main):
    """Run a script's main(); in a notebook call main() directly and read the exception instead."""
    try:
        main()
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)


def atomic_write(path, write):
    """write(tmp) then rename tmp over path: a run killed at any moment leaves the old file or the new one."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def save_json(path, obj):
    atomic_write(path, lambda tmp: tmp.write_text(json.dumps(obj, indent=2) + "\n"))


def save_figure(fig, path):
    atomic_write(path, lambda tmp: fig.savefig(tmp, format=Path(path).suffix[1:], dpi=120, bbox_inches="tight"))
    plt.close(fig)


def save_checkpoint(path, obj):
    atomic_write(path, lambda tmp: torch.save(obj, tmp))


def read_checkpoint(path):
    """Load with weights_only=True: a checkpoint is data, and a pickle that carries code is refused, not run."""
    try:
        with warnings.catch_warnings():   # a foreign file can make torch warn; the error below says it all
            warnings.simplefilter("ignore")
            ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise UserError(f"{path} cannot be read safely as a checkpoint ({type(e).__name__}); "
                        f"delete it and rerun the step that writes it") from None
    if not (isinstance(ckpt, dict) and {"model", "state_dict", "complete"} <= ckpt.keys()):
        raise UserError(f"{path} is not a checkpoint of this project; delete it and rerun the step that writes it")
    return ckpt


def load_trained(path, model_class, expected, run_first):
    """The finished model in checkpoint `path`, checked against the architecture `expected` (a model config)."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path} not found: run `{run_first}` first (with the same --out)")
    ckpt = read_checkpoint(path)
    if not ckpt["complete"]:
        raise UserError(f"{path} is from an unfinished run: rerun `{run_first}` to finish it")
    if ckpt["model"] != expected:
        raise UserError(f"{path} holds {ckpt['model']}, but {expected} was asked for; "
                        f"rerun `{run_first}` or point --out at the right folder")
    model = model_class(**{k: v for k, v in ckpt["model"].items() if k != "arch"})
    model.load_state_dict(ckpt["state_dict"])
    return model.eval(), ckpt


def file_digest(path):
    """A short fingerprint of a file: a step that reads a model redoes its work when the model changes."""
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()[:16]


def as_json(obj):
    """The form a config takes after a round trip through JSON (tuples become lists), for comparisons."""
    return json.loads(json.dumps(obj))


def read_metrics(path):
    """A metrics file's contents, or None if it is absent or unreadable (a step then simply redoes its work)."""
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None


def outputs_complete(metrics_path, config, files=()):
    """True when an earlier run left a metrics file made with exactly `config` and every file in `files`."""
    metrics = read_metrics(metrics_path)
    return (isinstance(metrics, dict) and metrics.get("config") == as_json(config)
            and all(Path(f).is_file() for f in files))


def prepare_out(out):
    out = Path(out)
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / f".write-test.{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as e:
        raise UserError(f"cannot write to --out {out} ({e.strerror}); choose a folder you can write to") from None
    return out


# ---------------------------------------------------------------------------------------------------------------
# Command line, shared by every script

def positive_int(text):
    value = int(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
    return value


def positive_float(text):
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be a positive number, got {text}")
    return value


class Parser(argparse.ArgumentParser):
    def error(self, message):
        # One line that names the flag, instead of the whole usage text.
        print(f"{self.prog}: error: {message} (see --help)", file=sys.stderr)
        sys.exit(2)


def make_parser(description):
    p = Parser(description=description)
    p.add_argument("--quick", action="store_true", help="run every code path in seconds on a sliver of MNIST")
    p.add_argument("--data-dir", default="data", help="where MNIST is, or is downloaded to (default: data)")
    p.add_argument("--out", default="results", help="folder for checkpoints, metrics and figures (default: results)")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda", "mps"],
                   help="auto picks cuda, then mps, then cpu (default: auto)")
    p.add_argument("--seed", type=int, default=SEED, help=f"random seed (default: {SEED})")
    p.add_argument("--force", action="store_true", help="redo this step even if its outputs are complete")
    return p


def parse(parser, argv=None):
    """parse_known_args, so that the `-f kernel.json` a notebook puts on argv is ignored; other unknowns fail."""
    args, unknown = parser.parse_known_args(argv)
    if unknown and unknown[0] == "-f" and len(unknown) == 2:
        unknown = []
    if unknown:
        parser.error(f"unrecognized arguments: {' '.join(unknown)}")
    return args


def pick_device(name="auto"):
    available = ["cpu"]
    if torch.cuda.is_available():
        available.append("cuda")
    if torch.backends.mps.is_available():
        available.append("mps")
    if name == "auto":
        name = "cuda" if "cuda" in available else "mps" if "mps" in available else "cpu"
    if name not in available:
        raise UserError(f"--device {name} is not available on this machine; available: {', '.join(available)}")
    return torch.device(name)


def device_name(device):
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name"))
    except (OSError, StopIteration):
        cpu = platform.processor() or platform.machine()
    return f"{device.type}: {cpu}, {torch.get_num_threads()} threads"


def start(args, config):
    """Seed everything, pick the device, print both, and make sure --out can be written."""
    torch.manual_seed(args.seed)
    device = pick_device(args.device)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    print(f"device: {device_name(device)}")
    print("config: " + json.dumps(config))
    return device, prepare_out(args.out)


# ---------------------------------------------------------------------------------------------------------------
# Data: the whole of MNIST as two tensors on the device, no DataLoader

def check_idx(path):
    """Raise if an IDX file's header does not match its size (a truncated or damaged download)."""
    data = Path(path).read_bytes()
    ok = len(data) >= 4 and data[:2] == b"\x00\x00" and data[2] == 0x08
    if ok:
        ndim = data[3]
        dims = [int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim)]
        ok = len(data) == 4 + 4 * ndim + math.prod(dims)
    if not ok:
        raise UserError(f"{path} is damaged (truncated or not an IDX file); delete it and download MNIST again")


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


@torch.no_grad()
def evaluate(model, x, batch_size=2000):
    """Single-sample test −ELBO and its two terms, averaged over images (nats per image)."""
    total = torch.zeros(2, device=x.device)
    for xb in x.split(batch_size):
        rec, kl = elbo_terms(model, xb)
        total += torch.stack([rec.sum(), kl.sum()])
    rec, kl = (total / len(x)).tolist()
    return {"neg_elbo": rec + kl, "rec": rec, "kl": kl}


@torch.no_grad()
def iw_log_likelihood(model, x, k, batch_size=20000):
    """Importance-weighted estimate of log p(x) in nats per image (Burda et al., 2016), a bound tighter than the ELBO."""
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
def active_units(model, x, batch_size=2000, threshold=0.01):
    # unit u is active if Var_x(E_q[z_u | x]) > 0.01 (Burda et al., 2016)
    mu = torch.cat([model.encode(xb)[0] for xb in x.split(batch_size)])
    return int((mu.var(0) > threshold).sum())


def iw_settings(args, device):
    """(samples per image, test images) for the log-likelihood estimate, sized to the device unless given."""
    if args.quick:
        default = (10, 64)
    elif device.type == "cuda":
        default = (1000, 10000)
    else:
        default = (200, 1000)   # a CPU does this in about a minute; the bound is a little looser than k = 1000
    return args.iw_samples or default[0], args.iw_images or default[1]


# ---------------------------------------------------------------------------------------------------------------
# Training: a plain step everyone can read, and the same step replayed as one CUDA graph

def make_optimizer(model, lr, capturable):
    # A graph replays the same kernels every step, so the learning rate must live on the GPU to be changeable.
    if capturable:
        return torch.optim.Adam(model.parameters(), lr=torch.tensor(lr, device="cuda"), capturable=True)
    return torch.optim.Adam(model.parameters(), lr=lr)


def set_lr(opt, lr):
    for group in opt.param_groups:
        if torch.is_tensor(group["lr"]):
            group["lr"].fill_(lr)
        else:
            group["lr"] = lr


def cosine_lr(peak, epoch, epochs):
    # η_e = η · ½ (1 + cos(π e / E)): large steps early, small ones to settle at the end
    return peak * 0.5 * (1 + math.cos(math.pi * epoch / epochs))


def vae_step(model, opt, xb):
    """One plain optimisation step on a batch; returns the detached (reconstruction, KL) batch means."""
    opt.zero_grad(set_to_none=True)
    rec, kl = elbo_terms(model, xb)
    loss = (rec + kl).mean()
    loss.backward()
    opt.step()
    return torch.stack([rec.mean(), kl.mean()]).detach()


class CUDAGraphStep:
    """A training step, recorded once as a CUDA graph and then replayed.

    A VAE step on MNIST is about a hundred tiny kernels; on a fast GPU launching them one by one from Python
    takes longer than running them. A graph launches all of them with one call. What a graph needs: the same
    shapes every step (training drops the last partial batch), inputs copied into fixed buffers (`self.batch`),
    and an optimiser whose state and learning rate live on the GPU (Adam with capturable=True).
    The arithmetic is the eager step's; only the launching differs.
    """

    def __init__(self, step, model, opt, data, batch_size):
        self.step, self.data = step, data
        self.batch = [t[:batch_size].clone() for t in data]
        # Warm up on a side stream (cuDNN picks its kernels, Adam allocates its state), then undo the warm-up's
        # updates so that the run matches the eager loop.
        weights = {k: v.clone() for k, v in model.state_dict().items()}
        saved = {p: {k: v.clone() for k, v in s.items()} for p, s in opt.state.items()}
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side), warnings.catch_warnings():
            warnings.simplefilter("ignore")   # Adam notes that capturable=True runs outside a graph here
            for _ in range(3):
                step(*self.batch)
        torch.cuda.current_stream().wait_stream(side)
        model.load_state_dict(weights)    # copies in place: the graph will see the same tensors
        with torch.no_grad():
            for p, state in opt.state.items():
                for k, v in state.items():
                    v.copy_(saved[p][k]) if p in saved else v.zero_()
        self.graph = torch.cuda.CUDAGraph()
        opt.zero_grad(set_to_none=True)   # backward then allocates the gradients from the graph's own memory
        with torch.cuda.graph(self.graph):
            self.out = step(*self.batch)

    def __call__(self, idx):
        for full, buffer in zip(self.data, self.batch):
            torch.index_select(full, 0, idx, out=buffer)
        self.graph.replay()
        return self.out


def make_step(step, model, opt, data, batch_size):
    """step(*batch) → stats, as a function of the batch's indices: replayed as a CUDA graph when the optimiser
    is capturable (on CUDA), else the plain eager loop that CPU and MPS use and everyone can read."""
    if opt.defaults.get("capturable"):
        return CUDAGraphStep(step, model, opt, data, batch_size)
    return lambda idx: step(*(t[idx] for t in data))


def train_epoch(step, n, batch_size, generator, device):
    """One pass over a fresh shuffle of n examples; returns the mean of step's stats. The running sum stays on
    the device and is read once, at the end: no host sync inside the epoch."""
    perm = torch.randperm(n, generator=generator).to(device)
    n_batches = n // batch_size   # the last partial batch is dropped: every step has one shape
    total = 0
    for i in range(n_batches):
        total = total + step(perm[i * batch_size:(i + 1) * batch_size])
    return (total / n_batches).tolist()


def fit(name, build, args, data, device, out):
    """Train the model that build() makes (or resume it, or skip it when done), evaluate it, and write its
    checkpoint, samples and metrics under `out`. Returns the metrics."""
    torch.manual_seed(args.seed)              # the same initial weights, whether trained alone or after the others
    model = build()
    train_x, _, test_x, _ = data
    batch_size = min(args.batch_size, len(train_x))
    train_cfg = {"epochs": args.epochs, "batch_size": batch_size, "lr": args.lr, "schedule": "cosine",
                 "seed": args.seed, "quick": args.quick}
    iw_k, iw_n = iw_settings(args, device)
    config = {"model": model.config, "train": train_cfg, "eval": {"iw_samples": iw_k, "iw_images": iw_n}}
    paths = {"ckpt": out / f"{name}.pt", "samples": out / f"{name}_samples.png",
             "metrics": out / f"{name}_metrics.json"}

    ckpt = read_checkpoint(paths["ckpt"]) if paths["ckpt"].is_file() and not args.force else None
    if ckpt and as_json([ckpt["model"], ckpt["train"]]) != as_json([model.config, train_cfg]):
        print(f"{name}: {paths['ckpt']} was made with other settings; training again")
        ckpt = None
    if ckpt and ckpt["complete"] and outputs_complete(paths["metrics"], config, [paths["samples"]]):
        print(f"{name}: skipped, outputs are complete and match the settings (--force redoes it)")
        return read_metrics(paths["metrics"])

    torch.manual_seed(args.seed)              # the training noise starts from the seed too
    generator = torch.Generator().manual_seed(args.seed)
    model.to(device)
    use_graph = device.type == "cuda"
    opt = make_optimizer(model, args.lr, capturable=use_graph)
    history, first_epoch = [], 0
    if ckpt:
        model.load_state_dict(ckpt["state_dict"])
        history, first_epoch = ckpt["history"], len(ckpt["history"])
        if not ckpt["complete"]:
            opt.load_state_dict(ckpt["optimizer"])
            # The checkpoint may come from another device: give Adam the settings this run's path needs.
            for group in opt.param_groups:
                group["capturable"] = use_graph
                group["lr"] = torch.tensor(args.lr, device=device) if use_graph else args.lr
            for state in opt.state.values():
                state["step"] = state["step"].to(device if use_graph else "cpu", torch.float32)
            generator.set_state(ckpt["rng"]["shuffle"])
            torch.set_rng_state(ckpt["rng"]["cpu"])
            if device.type == "cuda" and ckpt["rng"].get("cuda") is not None:
                torch.cuda.set_rng_state(ckpt["rng"]["cuda"])
            print(f"{name}: resuming after epoch {first_epoch} from {paths['ckpt']}")
    if first_epoch < args.epochs:
        step = make_step(lambda xb: vae_step(model, opt, xb), model, opt, (train_x,), batch_size)
    for epoch in range(first_epoch, args.epochs):
        set_lr(opt, cosine_lr(args.lr, epoch, args.epochs))
        t0 = time.perf_counter()
        rec, kl = train_epoch(step, len(train_x), batch_size, generator, device)
        seconds = time.perf_counter() - t0
        train = {"loss": rec + kl, "rec": rec, "kl": kl}
        if not math.isfinite(train["loss"]):
            kept = f"the last good checkpoint {paths['ckpt']} (epoch {epoch}) was kept" if epoch else "nothing was saved"
            raise UserError(f"{name}: the loss became {train['loss']} in epoch {epoch + 1}; {kept}; "
                            f"try a smaller --lr")
        test = evaluate(model, test_x)
        history.append({"epoch": epoch + 1, "train_loss": train["loss"], "train_rec": train["rec"],
                        "train_kl": train["kl"], "test_loss": test["neg_elbo"], "test_rec": test["rec"],
                        "test_kl": test["kl"], "seconds": seconds})
        print(f"{name} epoch {epoch + 1:2d}/{args.epochs}  train {train['loss']:7.2f}  "
              f"test {test['neg_elbo']:7.2f} (rec {test['rec']:6.2f} + kl {test['kl']:5.2f})  {seconds:5.2f}s")
        save_checkpoint(paths["ckpt"], {
            "model": model.config, "train": train_cfg, "complete": False, "history": history,
            "state_dict": model.state_dict(), "optimizer": opt.state_dict(),
            "rng": {"shuffle": generator.get_state(), "cpu": torch.get_rng_state(),
                    "cuda": torch.cuda.get_rng_state() if device.type == "cuda" else None}})

    torch.manual_seed(args.seed + 1)          # evaluation noise does not depend on how training was split
    test = evaluate(model, test_x)
    iw_ll = iw_log_likelihood(model, test_x[:iw_n], iw_k, batch_size=50_000 if use_graph else 20_000)
    samples = torch.sigmoid(model.decode(torch.randn(N_SAMPLES, model.config["latent_dim"], device=device)))
    metrics = {
        "name": name, "config": as_json(config), "device": device_name(device),
        "train_path": "cuda-graph" if use_graph else "eager",
        "history": history, "test": test, "iw_log_likelihood": iw_ll,
        "active_units": active_units(model, test_x),
        "seconds_per_epoch": sum(h["seconds"] for h in history) / len(history),
    }
    print(f"{name}: test −ELBO {test['neg_elbo']:.2f} nats (rec {test['rec']:.2f} + kl {test['kl']:.2f}), "
          f"IW log-likelihood {iw_ll:.2f} (k={iw_k}, {min(iw_n, len(test_x))} images), "
          f"{metrics['active_units']} active units")
    save_checkpoint(paths["ckpt"], {"model": model.config, "train": train_cfg, "complete": True,
                                    "history": history, "state_dict": model.state_dict(), "metrics": metrics})
    show_images(samples.detach(), paths["samples"], f"{name}: 15 images decoded from z ~ N(0, I)")
    save_json(paths["metrics"], metrics)
    return metrics


# ---------------------------------------------------------------------------------------------------------------
# Figures

def show_images(images, path, title, captions=None, ncols=5):
    """A grid of (N, 1, 28, 28) images in [0, 1], with an optional caption under each."""
    n = len(images)
    nrows = math.ceil(n / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(1.6 * ncols, 1.8 * nrows), squeeze=False)
    for i, ax in enumerate(axes.flat):
        ax.axis("off")
        if i < n:
            ax.imshow(images[i, 0].cpu().numpy(), cmap="gray", vmin=0, vmax=1)
            if captions:
                ax.set_title(captions[i], fontsize=8)
    fig.suptitle(title, fontsize=10)
    save_figure(fig, path)


def plot_losses(all_metrics, path):
    """−ELBO, reconstruction and KL per epoch for each model: train solid, test dashed."""
    fig, axes = plt.subplots(1, 3, figsize=(15, 4))
    for color, metrics in zip(plt.rcParams["axes.prop_cycle"].by_key()["color"], all_metrics):
        epochs = [h["epoch"] for h in metrics["history"]]
        for ax, key, title in zip(axes, ("loss", "rec", "kl"),
                                  ("−ELBO (nats/image)", "reconstruction (nats/image)", "KL (nats/image)")):
            ax.plot(epochs, [h[f"train_{key}"] for h in metrics["history"]], color=color,
                    label=f"{metrics['name']} train")
            ax.plot(epochs, [h[f"test_{key}"] for h in metrics["history"]], color=color, ls="--",
                    label=f"{metrics['name']} test")
            ax.set(title=title, xlabel="epoch")
    axes[0].legend(fontsize=8)
    save_figure(fig, path)


# ---------------------------------------------------------------------------------------------------------------
# Part 1

def add_training_args(p, epochs=EPOCHS, batch_size=BATCH_SIZE, lr=LR):
    p.add_argument("--epochs", type=positive_int, default=None, help=f"(default: {epochs}; 1 with --quick)")
    p.add_argument("--batch-size", type=positive_int, default=batch_size, help=f"(default: {batch_size})")
    p.add_argument("--lr", type=positive_float, default=lr, help=f"peak Adam learning rate (default: {lr})")


def add_vae_args(p):
    add_training_args(p)
    p.add_argument("--latent-dim", type=positive_int, default=LATENT_DIM, help=f"(default: {LATENT_DIM})")
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
    plot_losses(all_metrics, out / "mlp_losses.png")
    print(f"wrote {out / 'mlp_losses.png'}")


if __name__ == "__main__":
    cli(main)

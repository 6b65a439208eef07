"""
Seconds per training epoch, for each model and three input pipelines (a benchmark, not a test).

    python benchmarks/bench_train.py --data-dir ../shared/data
    python benchmarks/bench_train.py --data-dir ../shared/data --models mlp_300_300 conv --batches 100
    python benchmarks/bench_train.py --data-dir ../shared/data --models mlp_200_200 --busy 1   # beside another job

Pipelines:
  dataloader  torchvision's MNIST with ToTensor through a DataLoader, batches copied to the device: what most
              tutorials do;
  resident    the whole data set on the device, batches gathered by index, the plain eager step (vae.py's CPU path);
  graph       the same, with the step replayed as one CUDA graph (vae.py's CUDA path; CUDA only).
On CUDA each figure is the second of two full epochs. With --batches N only N batches are timed, and the figure is
scaled to a full epoch (468 batches of 128); the printout says so.
"""
import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import bookkeeping              # noqa: E402
import vae                      # noqa: E402
from busy import busy           # noqa: E402
from conv_vae import ConvVAE    # noqa: E402

MODELS = {"mlp_100_100": lambda: vae.MLPVAE((100, 100)), "mlp_200_200": lambda: vae.MLPVAE((200, 200)),
          "mlp_300_300": lambda: vae.MLPVAE((300, 300)), "conv": ConvVAE}
BATCH_SIZE = 128


def plain_step(model, opt):
    """vae.train's step: loss, zero_grad, backward, step."""
    def step(xb):
        loss, stats = vae.vae_loss(model, xb)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return loss.detach()
    return step


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def time_dataloader(make_model, data_dir, device, batches):
    from torchvision import datasets, transforms
    dataset = datasets.MNIST(data_dir, train=True, download=False, transform=transforms.ToTensor())
    loader = torch.utils.data.DataLoader(dataset, batch_size=BATCH_SIZE, shuffle=True, drop_last=True,
                                         num_workers=1, pin_memory=device.type == "cuda")
    model = make_model().to(device)
    opt = vae.make_optimizer(model, vae.LR, capturable=False)
    step = plain_step(model, opt)
    seconds = []
    for _ in range(2 if batches is None else 1):
        sync(device)
        t0 = time.perf_counter()
        for i, (xb, _) in enumerate(loader):
            if batches is not None and i == batches:
                break
            step(xb.to(device, non_blocking=True))
        sync(device)
        seconds.append(time.perf_counter() - t0)
    return seconds[-1]


def time_resident(make_model, train_x, device, batches, graph):
    model = make_model().to(device)
    opt = vae.make_optimizer(model, vae.LR, capturable=graph)
    step = plain_step(model, opt)
    if graph:
        step = vae.CUDAGraphStep(step, model, opt, [train_x[:BATCH_SIZE]])
    n = len(train_x) if batches is None else batches * BATCH_SIZE
    generator = torch.Generator().manual_seed(0)
    seconds = []
    for _ in range(2 if batches is None else 1):
        sync(device)
        t0 = time.perf_counter()
        order = torch.randperm(n, generator=generator).to(device)
        total = 0
        for i in range(n // BATCH_SIZE):
            total = total + step(train_x[order[i * BATCH_SIZE:(i + 1) * BATCH_SIZE]])
        total.item()                     # reads the loss once: a sync at the end, as vae.train does
        seconds.append(time.perf_counter() - t0)
    return seconds[-1]


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[1])
    p.add_argument("--data-dir", default="../shared/data")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda", "mps"])
    p.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    p.add_argument("--batches", type=int, default=None,
                   help="time this many batches and scale to an epoch (default: full epochs on CUDA, 50 elsewhere)")
    p.add_argument("--pipelines", nargs="+", default=None, choices=["dataloader", "resident", "graph"],
                   help="input pipelines to time (default: all that the device has)")
    p.add_argument("--busy", type=int, default=0, metavar="K",
                   help="start K other processes multiplying 256×256 matrices while timing (default: 0)")
    p.add_argument("--threads", type=int, default=None,
                   help="CPU threads for torch (default: one per free core, as the study scripts choose)")
    args = p.parse_args()
    device = bookkeeping.pick_device(args.device)
    batches = args.batches or (None if device.type == "cuda" else 50)
    torch.manual_seed(0)
    train_x = vae.load_mnist(args.data_dir, device)[0]
    full = len(train_x) // BATCH_SIZE
    scale = 1 if batches is None else full / batches
    print(f"device: {bookkeeping.device_name(device)}; torch {torch.__version__}")
    print(f"seconds per epoch of {full} batches of {BATCH_SIZE}"
          + ("" if batches is None else f", timed on {batches} batches and scaled by {scale:.2f}"))
    pipelines = args.pipelines or ["dataloader", "resident"] + (["graph"] if device.type == "cuda" else [])
    with busy(args.busy):
        if args.busy:
            print(f"beside {args.busy} other process(es) multiplying 256×256 matrices with torch's default threads")
        if args.threads:
            torch.set_num_threads(args.threads)
        else:
            bookkeeping.use_free_cores()   # as the study's scripts do when they start
        print(f"{torch.get_num_threads()} CPU thread(s)")
        print(f"{'model':<14}" + "".join(f"{name:>12}" for name in pipelines))
        for name in args.models:
            make_model = MODELS[name]
            timers = {"dataloader": lambda: time_dataloader(make_model, args.data_dir, device, batches),
                      "resident": lambda: time_resident(make_model, train_x, device, batches, graph=False),
                      "graph": lambda: time_resident(make_model, train_x, device, batches, graph=True)}
            row = [timers[pipeline]() for pipeline in pipelines]
            print(f"{name:<14}" + "".join(f"{s * scale:12.3f}" for s in row), flush=True)

if __name__ == "__main__":
    main()

"""What the study's choice of CPU threads costs on an idle machine and saves on a busy one (a benchmark, not a test).

    python benchmarks/bench_threads.py --data-dir ../shared/data                 # idle and beside 1 busy process
    python benchmarks/bench_threads.py --data-dir ../shared/data --busy 0 --runs 7

Two workloads, each in a fresh Python process, as a study script runs:
  epoch  an MLP (200,200) VAE trained on --batches batches of 128, scaled to a full epoch of 468;
  tsne   tsne.tsne of the first 1000 MNIST test digits (50 principal components), 1000 iterations.
Two thread settings:
  torch default  torch's own choice, one thread per core, whatever else runs;
  free cores     bookkeeping.use_free_cores(), which the study's scripts call at start: one thread per core that
                 other processes leave free. Its 0.25 s look at the machine's load, once per script, is printed
                 apart ("choosing").
The runs of the two settings alternate, so a change in the machine's load hits both alike. Beside each busy level
K (--busy), K other processes multiply 256×256 matrices with torch's default threads, as another training would.
"""
import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

SETTINGS = ["torch default", "free cores"]
WORKLOADS = ["epoch", "tsne"]
EPOCH_BATCHES = 468      # 60000 // 128


def child(workload, setting, data_dir, batches):
    """Run one workload in this process and print its seconds: the thread choice and the work, not the imports."""
    import torch

    import bookkeeping
    import tsne
    import vae

    train_x, _, test_x, _ = vae.load_mnist(data_dir, "cpu")
    if workload == "epoch":
        torch.manual_seed(0)
        model = vae.MLPVAE((200, 200))
        opt = vae.make_optimizer(model, vae.LR, capturable=False)
        xs = train_x[:batches * 128].reshape(batches, 128, 1, 28, 28)
    else:
        X = tsne.pca(test_x[:1000].reshape(1000, -1), 50).float()
    t0 = time.perf_counter()
    if setting == "free cores":
        bookkeeping.use_free_cores()
    choosing = time.perf_counter() - t0     # once per script, whatever it then does: reported apart
    t0 = time.perf_counter()
    if workload == "epoch":
        for xb in xs:
            loss, _ = vae.vae_loss(model, xb)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        seconds = (time.perf_counter() - t0) * EPOCH_BATCHES / batches
    else:
        tsne.tsne(X, 30.0, 1000)
        seconds = time.perf_counter() - t0
    print(f"{seconds} {choosing} {torch.get_num_threads()}")


def run_child(workload, setting, args):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OMP_", "MKL_", "GOMP_"))}
    out = subprocess.run([sys.executable, __file__, "--child", workload, setting, "--data-dir", args.data_dir,
                          "--batches", str(args.batches)], env=env, check=True, capture_output=True, text=True)
    seconds, choosing, threads = out.stdout.split()[-3:]
    return float(seconds), float(choosing), int(threads)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data-dir", default=str(ROOT.parent / "shared" / "data"))
    p.add_argument("--busy", type=int, nargs="+", default=[0, 1], help="busy processes beside the runs (default: 0 1)")
    p.add_argument("--runs", type=int, default=5, help="runs of each setting at each busy level (default: 5)")
    p.add_argument("--batches", type=int, default=100, help="batches timed for an epoch (default: 100)")
    p.add_argument("--workloads", nargs="+", default=WORKLOADS, choices=WORKLOADS)
    p.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        return child(*args.child, args.data_dir, args.batches)

    import torch
    from busy import busy
    print(f"torch {torch.__version__}, {os.cpu_count()} cores; {args.runs} alternating runs of each setting; "
          f"an epoch is {args.batches} batches scaled to {EPOCH_BATCHES}")
    medians = {}
    for k in args.busy:
        with busy(k):
            for workload in args.workloads:
                runs = {s: [] for s in SETTINGS}
                for _ in range(args.runs):
                    for setting in SETTINGS:
                        runs[setting].append(run_child(workload, setting, args))
                for setting in SETTINGS:
                    seconds = [s for s, _, _ in runs[setting]]
                    choosing = statistics.median(c for _, c, _ in runs[setting])
                    threads = sorted({t for _, _, t in runs[setting]})
                    medians[workload, k, setting] = statistics.median(seconds)
                    print(f"{workload:6s} busy {k}  {setting:14s} threads {threads}  median {medians[workload, k, setting]:7.2f} s"
                          f" (+{choosing:.2f} s choosing)  runs " + ", ".join(f"{s:.2f}" for s in seconds), flush=True)
    print()
    for workload in args.workloads:
        if 0 in args.busy:
            idle = {s: medians[workload, 0, s] for s in SETTINGS}
            print(f"{workload}: idle, free cores / torch default = {idle['free cores'] / idle['torch default']:.2f}")
            for k in args.busy:
                if k:
                    print(f"{workload}: beside {k} busy, time / idle time with the same setting: "
                          + ", ".join(f"{s} {medians[workload, k, s] / idle[s]:.1f}×" for s in SETTINGS))


if __name__ == "__main__":
    main()

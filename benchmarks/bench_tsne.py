"""Speed and quality of tsne.py on real MNIST digits (reduced to 50 principal components), beside scikit-learn's
TSNE and, if it is installed, openTSNE, in the same process and on the same data.

    python benchmarks/bench_tsne.py --compare                   # N = 2000, 5000, 20000, 70000: ours and the others
    python benchmarks/bench_tsne.py --compare --n 2000 5000 --repeats 3
    python benchmarks/bench_tsne.py --compare --n 2000 --repeats 5
    python benchmarks/bench_tsne.py --n 1000 --busy 1           # ours beside one other busy torch process
    python benchmarks/bench_tsne.py --device cuda --n 10000     # ours alone, on a GPU

The digits are the 10,000 MNIST test images followed by the 60,000 training images; N takes the first N, so
N = 70000 is all of MNIST. The project's goals on a 2-core CPU: at most 1.0× the time of the faster of
scikit-learn and openTSNE at N = 2000 and 5000, at most 0.7× at N = 20000 and 70000 (P included), with
trustworthiness (k = 10) within 0.003 and 10-NN accuracy within 0.005 of the better of the two; beside one other
busy torch process, N = 1000 in at most 3× its time alone. Each method's time is split into P and the
iterations: for ours, P is the neighbour search and the affinities; for the others, everything before their first
iteration. Above TRUST_ROWS points, trustworthiness is taken over the neighbourhoods of TRUST_ROWS random points
(the same for every method). scikit-learn is left out above --sklearn-max-n points (default 20000), to keep the
run within half an hour. All methods run their defaults at perplexity 30 with 1000 iterations (250 of them
exaggerated) from a PCA start, with the same number of threads: one per free core, as tsne.py chooses, unless
--threads says otherwise. Runs are interleaved, so a busy machine slows each method alike; the line "CPU taken by
other processes" says how busy it was. For ours with the exact repulsion (below tsne.FFT_FROM_N), the time per
iteration is set against what this machine can do at best: the bytes an iteration moves at the measured cache
bandwidth, and its FLOPs at the measured peak. --baseline FILE times another version of tsne.py beside this one,
at N up to 5000 (the study's sizes). Needs the real MNIST files; scikit-learn and openTSNE are needed only here
(`pip install scikit-learn openTSNE`).
"""
import argparse
import importlib.util
import os
import random
import re
import statistics
import sys
import tempfile
import time

import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
import tsne  # noqa: E402
import bookkeeping  # noqa: E402
import vae  # noqa: E402
from busy import busy  # noqa: E402

# ---------------------------------------------------------------------------------------------------------------
# defaults

DATA_DIR = os.path.join(ROOT, "..", "shared", "data")  # holds MNIST/raw/t10k-images-idx3-ubyte and the labels
SIZES = [2000, 5000, 20000, 70000]  # the first N digits: the test set, then the training set
TRUST_ROWS = 5000  # above this N, trustworthiness over this many random points' neighbourhoods
SKLEARN_MAX_N = 20000  # scikit-learn's Barnes-Hut grows as N log N; at 70000 it would take most of the run
BASELINE_MAX_N = 5000  # another version of tsne.py (--baseline) runs up to this N: the study's sizes
N_PCS = 50  # principal components kept before t-SNE, as usual for MNIST
K = 10  # neighbours for trustworthiness and the k-NN accuracy
PERPLEXITY = 30.0
N_ITER = 1000


class OthersLoad:
    """with OthersLoad() as load: ...; then load.share is the CPU share that other processes took meanwhile."""

    def __enter__(self):
        self.busy, self.total = bookkeeping.cpu_seconds()
        self.ours = time.process_time()
        return self

    def __exit__(self, *exc):
        busy, total = bookkeeping.cpu_seconds()
        others = busy - self.busy - (time.process_time() - self.ours)
        self.share = max(others, 0.0) / max(total - self.total, 1e-9)


def knn_accuracy(Y, labels, k=K, rows=500):
    """Leave-one-out k-NN classification accuracy: majority label of each point's k nearest neighbours."""
    Y = Y.double()
    correct = 0
    for r0 in range(0, len(Y), rows):
        D = tsne.pairwise_sq_dists(Y[r0:r0 + rows], Y)
        D.diagonal(r0).fill_(float("inf"))
        nn = D.topk(k, dim=1, largest=False).indices
        votes = torch.zeros(len(nn), int(labels.max()) + 1, dtype=torch.long, device=Y.device)
        votes.scatter_add_(1, labels[nn], torch.ones_like(nn))
        correct += (votes.argmax(1) == labels[r0:r0 + rows]).sum().item()
    return correct / len(Y)


def trustworthiness(X, Y, k=K, subset=None):
    """tsne.trustworthiness, or, for the points `subset` only, the same sum over their neighbourhoods, scaled
    from len(subset) points to N: an unbiased estimate of it."""
    if subset is None:
        return tsne.trustworthiness(X, Y, k)
    N = len(X)
    X64, Y64 = X.double(), Y.double()
    penalty = 0
    for r0 in range(0, len(subset), 4):
        i = subset[r0:r0 + 4]
        DX, DY = tsne.pairwise_sq_dists(X64[i], X64), tsne.pairwise_sq_dists(Y64[i], Y64)
        DX[torch.arange(len(i)), i] = DY[torch.arange(len(i)), i] = float("inf")
        d_ij = DX.gather(1, DY.topk(k, dim=1, largest=False).indices)  # (b, k)
        rank = 1 + (DX[:, None, :] < d_ij[:, :, None]).sum(2)
        penalty += (rank - k).clamp(min=0).sum().item()
    return 1.0 - 2.0 / (len(subset) * k * (2.0 * N - 3.0 * k - 1.0)) * penalty


class Stdout:
    """with Stdout() as out: ...; then out.text holds what was printed, by Python or by C code, meanwhile."""

    def __enter__(self):
        sys.stdout.flush()
        self.file = tempfile.TemporaryFile(mode="w+")
        self.saved = os.dup(1)
        os.dup2(self.file.fileno(), 1)
        return self

    def __exit__(self, *exc):
        sys.stdout.flush()
        os.dup2(self.saved, 1)
        os.close(self.saved)
        self.file.seek(0)
        self.text = self.file.read()
        self.file.close()


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


# ---------------------------------------------------------------------------------------------------------------
# the methods: each returns (Y (N, 2) tensor, KL, details)


def ours(X, module=tsne):
    """tsne.tsne (or `module`'s), with its parts timed: the affinities, and the iterations (counted through
    tsne.gradient)."""
    details = {"seconds_P": 0.0, "iterations": -1}  # the last gradient call is the final KL's
    affinities, gradient = module.neighbour_affinities, module.gradient

    def timed_affinities(*args):
        sync(X.device)
        t0 = time.perf_counter()
        P = affinities(*args)
        sync(X.device)
        details["seconds_P"] += time.perf_counter() - t0
        return P

    def counted_gradient(*args, **kwargs):
        details["iterations"] += 1
        return gradient(*args, **kwargs)

    module.neighbour_affinities, module.gradient = timed_affinities, counted_gradient
    try:
        Y, kl = module.tsne(X, PERPLEXITY, N_ITER)
    finally:
        module.neighbour_affinities, module.gradient = affinities, gradient
    details["seconds_iterations"] = None  # the total less P
    return Y, kl, details


def sklearn_tsne(X):
    from sklearn.manifold import TSNE
    from threadpoolctl import threadpool_limits

    with threadpool_limits(torch.get_num_threads()), Stdout() as out:  # OpenMP: as many threads as ours
        Y = TSNE(perplexity=PERPLEXITY, max_iter=N_ITER, init="pca", random_state=0, verbose=2).fit(X.cpu().numpy())
    # verbose=2 prints "(50 iterations in 0.123s)" for every 50 iterations
    iterations = sum(float(t) for t in re.findall(r"iterations in ([0-9.]+)s\)", out.text))
    return torch.from_numpy(Y.embedding_), float(Y.kl_divergence_), {"iterations": Y.n_iter_ + 1,
                                                                     "seconds_iterations": iterations}


def opentsne(X):
    from openTSNE import TSNE

    # openTSNE counts the exaggerated iterations apart: 250 + 750 = 1000
    with Stdout() as out:
        E = TSNE(perplexity=PERPLEXITY, n_iter=N_ITER - 250, initialization="pca", random_state=0,
                 n_jobs=torch.get_num_threads(), verbose=True).fit(X.cpu().double().numpy())
    # verbose prints "--> Time elapsed: 1.23 seconds" after each step; the optimisation's follow "Running
    # optimization"
    steps = re.findall(r"===> (.*?)\n.*?--> Time elapsed: ([0-9.]+) seconds", out.text, re.S)
    iterations = sum(float(t) for step, t in steps if step.startswith("Running optimization"))
    return torch.from_numpy(E.copy()), float(E.kl_divergence), {"seconds_iterations": iterations}


def load_baseline(path):
    """Another version of tsne.py, e.g. `git show REV:tsne.py > /tmp/tsne_before.py`, as a module."""
    spec = importlib.util.spec_from_file_location("tsne_baseline", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def available_methods(compare, device, baseline=None):
    methods = {"ours (tsne.py)": ours}
    if baseline:
        module = load_baseline(baseline)
        methods["ours, baseline"] = lambda X: ours(X, module)
    if compare and device.type == "cpu":
        methods["scikit-learn"] = sklearn_tsne
        try:
            import openTSNE  # noqa: F401
            methods["openTSNE"] = opentsne
        except ImportError:
            print("openTSNE is not installed: compared with scikit-learn only")
    return methods


# ---------------------------------------------------------------------------------------------------------------
# the machine's floor for one iteration of ours


def machine_floor(device):
    """What one core of this machine can do at best, measured with one thread (so that other work on the machine
    does not stall it at barriers): (float32 GFLOP/s of a large matrix product, GB/s reading memory, GB/s reading
    a 4 MB array in cache)."""
    def best_of(f, n=5):
        f()
        times = []
        for _ in range(n):
            sync(device)
            t0 = time.perf_counter()
            f()
            sync(device)
            times.append(time.perf_counter() - t0)
        return min(times)

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    A = torch.randn(2048, 2048, device=device)
    gflops = 2 * 2048 ** 3 / best_of(lambda: A @ A) / 1e9
    big = torch.rand(100_000_000, device=device)  # 400 MB: far beyond any cache
    memory = big.numel() * 4 / best_of(lambda: big.sum()) / 1e9
    small = torch.rand(2**20, device=device)  # 4 MB, the size of a strip: in L3
    cache = 20 * small.numel() * 4 / best_of(lambda: [small.sum() for _ in range(20)]) / 1e9
    torch.set_num_threads(threads)
    return gflops, memory, cache


def iteration_cost(n, k):
    """(bytes, FLOPs) that one iteration of `tsne.gradient` moves through the cache and computes. The repulsion
    touches each of the N²/2 pairs with 22 float32 reads and writes and 15 FLOPs: the differences (2 writes), w
    (7 accesses), Z (1), w² (2), the forces (6) and their row and column sums (4). The attraction touches each of
    the N·k neighbour pairs with about 20 and 12."""
    pairs = n * n / 2
    return pairs * 22 * 4 + n * k * 20 * 4, pairs * 15 + n * k * 12


# ---------------------------------------------------------------------------------------------------------------


def main(argv=None):
    global N_ITER
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data-dir", default=DATA_DIR, help=f"folder with MNIST/raw (default: {DATA_DIR})")
    parser.add_argument("--device", default="cpu", help="cpu, cuda or mps (default: cpu)")
    parser.add_argument("--n", type=int, nargs="+", default=SIZES, help=f"points to embed (default: {SIZES})")
    parser.add_argument("--compare", action="store_true", help="run scikit-learn (and openTSNE) beside ours")
    parser.add_argument("--baseline", default=None, metavar="FILE",
                        help=f"also time another version of tsne.py, up to N = {BASELINE_MAX_N} (default: none)")
    parser.add_argument("--iterations", type=int, default=N_ITER, help=f"iterations (default: {N_ITER})")
    parser.add_argument("--sklearn-max-n", type=int, default=SKLEARN_MAX_N,
                        help=f"leave scikit-learn out above this N (default: {SKLEARN_MAX_N})")
    parser.add_argument("--repeats", type=int, default=1, help="timed runs of each method, interleaved (default: 1)")
    parser.add_argument("--busy", type=int, default=0, metavar="K",
                        help="start K other processes multiplying 256×256 matrices while timing (default: 0)")
    parser.add_argument("--threads", type=int, default=None,
                        help="CPU threads for torch and the others (default: one per free core, as tsne.py chooses)")
    args, _ = parser.parse_known_args(argv)
    N_ITER = args.iterations
    device = bookkeeping.pick_device(args.device)
    print(f"device: {bookkeeping.device_name(device)}; torch {torch.__version__}")
    methods = available_methods(args.compare, device, args.baseline)
    train_x, train_y, test_x, test_y = vae.load_mnist(args.data_dir, "cpu")
    digits, digit_labels = torch.cat([test_x, train_x]), torch.cat([test_y, train_y])

    if args.threads:
        torch.set_num_threads(args.threads)
    floor = machine_floor(device)
    print(f"one core of this machine: {floor[0]:.0f} GFLOP/s (float32 matrix product), {floor[1]:.0f} GB/s from "
          f"memory, {floor[2]:.0f} GB/s from a 4 MB array in cache")
    with busy(args.busy):
        if args.busy:
            print(f"{args.busy} other process(es) multiplying 256×256 matrices with torch's default threads")
        if not args.threads:
            bookkeeping.use_free_cores()  # as tsne.py does when it starts: one thread per core that is free now
        print(f"{torch.get_num_threads()} CPU thread(s)")
        for n in args.n:
            images = digits[:n].reshape(n, -1)  # (n, 784), in [0, 1]
            labels = digit_labels[:n].to(device)
            X = tsne.pca(images, N_PCS).float().to(device)  # (n, 50)
            if device.type == "cuda":
                tsne.tsne(X, PERPLEXITY, 300)  # warm-up: CUDA context, kernels, allocator
            here = {name: method for name, method in methods.items()
                    if (name != "scikit-learn" or n <= args.sklearn_max_n)
                    and (name != "ours, baseline" or n <= BASELINE_MAX_N)}
            if "scikit-learn" in methods and "scikit-learn" not in here:
                print(f"\nN = {n}: scikit-learn left out (--sklearn-max-n {args.sklearn_max_n})")
            results = {name: [] for name in here}
            with OthersLoad() as load:
                for _ in range(args.repeats):
                    for name, method in here.items():
                        sync(device)
                        t0 = time.perf_counter()
                        Y, kl, details = method(X)
                        sync(device)
                        results[name].append((time.perf_counter() - t0, Y, kl, details))
            report(n, results, labels, X, load.share, floor)


def report(n, results, labels, X, others, floor):
    subset = None
    if n > TRUST_ROWS:
        subset = torch.tensor(sorted(random.Random(0).sample(range(n), TRUST_ROWS)), device=X.device)
    print(f"\nN = {n} MNIST digits (50 PCs), perplexity {PERPLEXITY:g}, {N_ITER} iterations, "
          f"{torch.get_num_threads()} threads; CPU taken by other processes meanwhile: {others:.0%} of all cores"
          + (f"; trustworthiness over {TRUST_ROWS} random points' neighbourhoods" if subset is not None else ""))
    peers = [statistics.median(t for t, *_ in runs) for name, runs in results.items() if not name.startswith("ours")]
    faster = min(peers) if peers else None
    print(f"{'method':16s} {'median s':>9s} {'× faster':>9s} {'P s':>7s} {'iter. s':>8s} {'trust.':>7s} "
          f"{'10-NN acc.':>11s} {'KL':>7s}  all runs (s)")
    for name, runs in results.items():
        seconds = [t for t, *_ in runs]
        t, Y, kl, details = runs[-1]
        iterations = details.get("seconds_iterations")
        if iterations is None and "seconds_P" in details:
            iterations = t - details["seconds_P"]
        p_seconds = t - iterations if iterations is not None else float("nan")
        ratio = f"{statistics.median(seconds) / faster:9.2f}" if faster else f"{'':9s}"
        print(f"{name:16s} {statistics.median(seconds):9.2f} {ratio} {p_seconds:7.2f} "
              f"{iterations if iterations is not None else float('nan'):8.2f} "
              f"{trustworthiness(X, Y.to(X.device), K, subset):7.4f} "
              f"{knn_accuracy(Y.to(labels.device), labels):11.4f} {kl:7.3f}  " + ", ".join(f"{t:.2f}" for t in seconds))
    # ours, per iteration
    t, _, _, details = min(results["ours (tsne.py)"], key=lambda run: run[0])
    per_iteration = (t - details["seconds_P"]) / details["iterations"]
    line = (f"ours, fastest run: P {details['seconds_P']:.2f} s, {details['iterations']} iterations at "
            f"{1e3 * per_iteration:.2f} ms each")
    if n < tsne.FFT_FROM_N:  # the exact strips: against the machine's floor
        cores = torch.get_num_threads()
        gflops, memory, cache = (cores * rate for rate in floor)
        nbytes, flops = iteration_cost(n, tsne.default_neighbours(n, PERPLEXITY))
        line += (f". An iteration moves {nbytes / 1e9:.2f} GB through the cache and computes {flops / 1e9:.2f} GFLOP; "
                 f"on {cores} core(s) that takes at least {1e3 * nbytes / cache / 1e9:.2f} ms at the cache's "
                 f"bandwidth, {1e3 * flops / gflops / 1e9:.2f} ms at peak FLOPs "
                 f"({1e3 * nbytes / memory / 1e9:.2f} ms if it all came from memory)")
    print(line)


if __name__ == "__main__":
    bookkeeping.cli(main)

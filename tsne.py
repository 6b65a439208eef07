"""Part 4 — t-SNE written by hand in torch, then used to look at the conv VAE's latent space.

t-SNE (van der Maaten & Hinton, 2008) places N points in 2-D so that their Student-t similarities Q match the
Gaussian affinities P of the data, by gradient descent on KL(P || Q). The file reads in three parts:
  1. `tsne_reference`: the algorithm as the papers write it, with full N×N matrices in float64. Read this first;
     the tests check everything else against it.
  2. `tsne`: the same algorithm, fast. P is kept over each point's 3·perplexity nearest neighbours, as in
     scikit-learn's Barnes-Hut t-SNE. Below FFT_FROM_N points the repulsion between all N² pairs stays exact,
     computed a strip of rows at a time in float32; from there on it comes from the FFT-accelerated
     interpolation of Linderman et al. (2019), at a cost that grows as N.
  3. the study: 5000 prior samples z ~ N(0, I) of the conv VAE, embedded in all their units (coloured by the
     digit the classifier sees in their decodings), in the active units alone, and as decoded images; beside them
     the posterior means μ(x) of 5000 test images, coloured by their true digit. Then whether the prior matches the
     aggregate posterior q(z) = E_x q(z|x): how far prior samples land from posterior samples z ~ q(z|x) of test
     half A, against posterior samples of half B, in all units and in the active ones. Beyond the assignment, the
     2-D MLP of vae.py seen directly, against the t-SNE map of μ(x). Outputs: tsne.png, latent_distances.png,
     tsne_metrics.json.

    python tsne.py                                  # the four maps and the distances
    python tsne.py --quick                          # a smoke test: every code path in seconds, into results-quick/
    python -m pytest tests/test_tsne.py -q          # checks against the reference
    python benchmarks/bench_tsne.py --compare       # speed and quality beside scikit-learn, on MNIST digits

    import tsne
    Y, kl = tsne.tsne(X)                            # X: (N, D) on any device -> Y: (N, 2) on the same device
"""
import math
import time

import matplotlib.pyplot as plt
import torch

from bookkeeping import (cli, device_name, file_digest, make_parser, parse, plural, positive_float, positive_int,
                         save_figure, save_json, start, up_to_date)

# ---------------------------------------------------------------------------------------------------------------
# constants

# the study (Part 4)
N_SAMPLES = 5000      # prior samples z ~ N(0, I) to decode, classify and embed; --quick uses QUICK_SAMPLES
QUICK_SAMPLES = 300
PERPLEXITY = 30.0     # van der Maaten & Hinton (2008): "typical values are between 5 and 50"; scikit-learn's default
N_ITER = 1000         # scikit-learn's and bhtsne's default; --quick uses QUICK_ITER
QUICK_ITER = 300
BOOTSTRAP = 1000      # resamples for the 95% interval of the prior-to-posterior distance ratio

# the affinities P: scikit-learn's binary search (sklearn/manifold/_utils.pyx), as in bhtsne
PERPLEXITY_TOL = 1e-5    # |H(P_i) − log(perplexity)| at which the search for β_i stops
BISECTION_STEPS = 100    # at most this many halvings or doublings of β_i
NEIGHBOURS_PER_PERPLEXITY = 3  # the fast P keeps int(3·perplexity + 1) neighbours, as scikit-learn's Barnes-Hut does
KNN_SPARE = 16         # the neighbour search keeps this many candidates beyond k from float32 distances
KNN_ELEMENTS = 2**24   # the neighbour search's strip: rows × N float32 distances (64 MB)

# the optimiser: scikit-learn's TSNE (sklearn/manifold/_t_sne.py; its exact and Barnes-Hut methods share it).
# bhtsne (van der Maaten, 2014) uses the same exaggeration, momenta and stage length, with η = 200 and no early
# stop; van der Maaten's original tsne.py exaggerates by 4 for 100 iterations, with η = 500 and the momentum
# switched at iteration 20.
EARLY_EXAGGERATION = 12.0  # α: P is multiplied by it during the first stage
EXAGGERATION_ITERS = 250   # length of the first stage (scikit-learn's _EXPLORATION_MAX_ITER)
MOMENTUM = (0.5, 0.8)      # first stage, second stage
PATIENCE = (250, 300)      # a stage ends after this many iterations without a lower KL (n_iter_without_progress)
MIN_GRAD_NORM = 1e-7       # ... or once |gains ⊙ ∇C| is below this (min_grad_norm)
CHECK_EVERY = 50           # the KL and the gradient norm are looked at every 50 iterations (_N_ITER_CHECK)
MIN_GAIN = 0.01            # per-coordinate gains never fall below this
INIT_STD = 1e-4            # the start: PCA scaled so that its first column has this std, or N(0, INIT_STD²)

# the fast path's working memory: a strip of rows × N columns, 3 float32 values per pair
STRIP_ELEMENTS = {"cpu": 2**20, "cuda": 2**26}  # 12 MB on a CPU, the fastest size tried; on a GPU, few large kernels

# the fast path's repulsion from N = FFT_FROM_N on: FFT-accelerated interpolation (Linderman et al., 2019), with
# openTSNE's defaults; below it, the exact strips are faster on the 2-core CPU (README, "t-SNE beside scikit-learn")
FFT_FROM_N = 5000        # the one rule that chooses between the two repulsions
INTERPOLATION_NODES = 3  # p: Lagrange nodes per box along each axis (openTSNE's n_interpolation_points)
BOX_WIDTH = 1.0          # boxes at most this wide, in map units (openTSNE's ints_in_interval)
MIN_BOXES = 50           # boxes along each axis, at least (openTSNE's min_num_intervals)


# ---------------------------------------------------------------------------------------------------------------
# 1. the textbook algorithm


def reference_affinities(X, perplexity=PERPLEXITY):
    """The joint affinities P (N, N) of X (N, D), float64: p_{j|i} by bisection on β_i, one row at a time."""
    X = X.double()
    N = len(X)
    # d_ij = |x_i − x_j|²
    D = ((X[:, None, :] - X[None, :, :]) ** 2).sum(-1)
    P = torch.zeros(N, N, dtype=torch.float64, device=X.device)
    for i in range(N):
        d = torch.cat([D[i, :i], D[i, i + 1:]])  # j ≠ i
        d = d - d.min()  # the same p_{j|i} for any shift of d; exp(−β d) no longer underflows
        beta, lo, hi = 1.0, 0.0, math.inf
        for _ in range(BISECTION_STEPS):
            # p_{j|i} = exp(−β_i d_ij) / Σ_{k≠i} exp(−β_i d_ik)
            p = torch.exp(-beta * d)
            p = p / p.sum()
            # H(P_i) = −Σ_j p_{j|i} log p_{j|i}, and perplexity(P_i) = e^H
            H = -torch.xlogy(p, p).sum().item()
            if abs(H - math.log(perplexity)) <= PERPLEXITY_TOL:
                break
            # H too high: the Gaussian is too wide, so raise β (double it until the other bound is known)
            if H > math.log(perplexity):
                lo, beta = beta, 2 * beta if hi == math.inf else (beta + hi) / 2
            else:
                hi, beta = beta, (beta + lo) / 2
        P[i, :i], P[i, i + 1:] = p[:i], p[i:]
    # p_ij = (p_{j|i} + p_{i|j}) / 2N
    return (P + P.T) / (2 * N)


def reference_objective(P, Y, exaggeration=1.0):
    """(∂C/∂Y (N, 2) with P multiplied by α = exaggeration, KL(P || Q)), from full N×N matrices."""
    diff = Y[:, None, :] - Y[None, :, :]  # (N, N, 2): y_i − y_j
    # w_ij = (1 + |y_i − y_j|²)⁻¹, the Student-t kernel with one degree of freedom; no self-pairs
    W = 1 / (1 + (diff ** 2).sum(-1))
    W.fill_diagonal_(0)
    # q_ij = w_ij / Σ_{k≠l} w_kl
    Q = W / W.sum()
    # ∂C/∂y_i = 4 Σ_j (α p_ij − q_ij) w_ij (y_i − y_j)
    grad = 4 * (((exaggeration * P - Q) * W)[:, :, None] * diff).sum(1)
    # KL(P || Q) = Σ_{i≠j} p_ij log(p_ij / q_ij)
    kl = (torch.xlogy(P, P) - torch.xlogy(P, Q)).sum().item()
    return grad, kl


def descend(objective, Y, n_iter=N_ITER, stop_early=True, centre=True, verbose=False):
    """scikit-learn's t-SNE optimiser: gradient descent with momentum and per-coordinate gains (Jacobs, 1988) in two
    stages, early exaggeration then the plain cost, each starting from zero update and unit gains.

    objective(Y, α, with_kl) -> (∂C/∂Y with P multiplied by α, KL(P || Q) as a float or None). Every CHECK_EVERY
    iterations a stage may end: when KL has not improved for its patience, or when |gains ⊙ ∇C| < MIN_GRAD_NORM
    (scikit-learn compares the KL of αP, α·KL + α log α: the same order). Unlike scikit-learn, the map is centred
    after every step, as bhtsne does; the cost ignores the origin, so only the float32 digits this saves differ.
    """
    N = len(Y)
    # η = max(N / α / 4, 50), scikit-learn's learning_rate="auto" (Belkina et al., 2019)
    lr = max(N / EARLY_EXAGGERATION / 4, 50.0)
    stages = [(EARLY_EXAGGERATION, MOMENTUM[0], min(EXAGGERATION_ITERS, n_iter), PATIENCE[0]),
              (1.0, MOMENTUM[1], n_iter, PATIENCE[1])]
    it = 0
    for stage, (exaggeration, momentum, end, patience) in enumerate(stages, 1):
        update, gains = torch.zeros_like(Y), torch.ones_like(Y)
        best_kl, best_it = math.inf, it
        while it < end:
            check = (it + 1) % CHECK_EVERY == 0
            grad, kl = objective(Y, exaggeration, check)
            # gains: +0.2 where the gradient's sign is opposite to the last update's, ×0.8 elsewhere. (The product of
            # the signs, as grad · update underflows in float32 once the map is about 1e-20 wide.)
            gains = torch.where(grad.sign() * update.sign() < 0, gains + 0.2, gains * 0.8).clamp_(min=MIN_GAIN)
            # Δ ← μ Δ − η gains ⊙ ∂C/∂Y,   Y ← Y + Δ
            update = momentum * update - lr * gains * grad
            Y = Y + update
            if centre:
                # the gains move the mean; uncentred, a map that shrinks (see the tests) would lose its float32 digits
                Y = Y - Y.mean(0)
            it += 1
            if not check:
                continue
            grad_norm = torch.linalg.vector_norm(gains * grad).item()
            if verbose:
                print(f"stage {stage}, iteration {it:4d}: KL {kl:.4f}, |gains ⊙ ∇C| {grad_norm:.2e}")
            if not stop_early:
                continue
            if kl < best_kl:
                best_kl, best_it = kl, it
            elif it - best_it > patience:
                break
            if grad_norm <= MIN_GRAD_NORM:
                break
    return Y


def tsne_reference(X, Y, perplexity=PERPLEXITY, n_iter=N_ITER, P=None, stop_early=True):
    """Exact t-SNE of X (N, D) from the start Y (N, 2), in float64. P (N, N), if given, replaces the affinities of
    X (X is then not used). Returns (Y, KL(P || Q), P)."""
    P = (reference_affinities(X, perplexity) if P is None else P).double()
    objective = lambda Y, exaggeration, with_kl: reference_objective(P, Y, exaggeration)  # noqa: E731
    Y = descend(objective, Y.to(P.device, torch.float64), n_iter, stop_early)
    return Y, reference_objective(P, Y)[1], P


# ---------------------------------------------------------------------------------------------------------------
# 2. the fast path: the affinities


def pairwise_sq_dists(X, Y=None):
    """Squared Euclidean distances between the rows of X (B, D) and of Y (N, D), default Y = X -> (B, N).
    For data, in float64: |x − y|² = |x|² + |y|² − 2 x·y loses digits in float32 when |x| ≫ |x − y|."""
    Y = X if Y is None else Y
    # |x − y|² = |x|² + |y|² − 2 x·y
    D = torch.addmm((Y * Y).sum(1)[None, :], X, Y.T, alpha=-2.0)
    D.add_((X * X).sum(1)[:, None])
    # rounding can make tiny distances negative
    return D.clamp_(min=0.0)


def conditional_affinities(D, perplexity):
    """p_{j|i} for every row of D (N, m), the squared distances from point i to m candidates j (inf where j = i),
    with perplexity e^H(P_i) = perplexity: the reference's bisection on β_i, for all rows at once, in float64.
    Returns (P (N, m) float64, β (N,))."""
    D = D.double()
    D = D - D.min(1, keepdim=True).values  # the same p_{j|i} for any shift of row i; exp() no longer underflows
    target = math.log(perplexity)
    beta = torch.ones(len(D), 1, dtype=torch.float64, device=D.device)
    lo, hi = torch.zeros_like(beta), torch.full_like(beta, math.inf)
    for step in range(BISECTION_STEPS):
        # p_{j|i} = exp(−β_i d_ij) / Σ_j exp(−β_i d_ij)
        E = torch.exp(-beta * D)
        sum_e = E.sum(1, keepdim=True)
        P = E / sum_e
        # H(P_i) = −Σ_j p_{j|i} log p_{j|i} = log Σ_j e^{−β d_ij} + β Σ_j d_ij p_{j|i}
        H = sum_e.log() + beta * torch.where(P > 0, D * P, 0.0).sum(1, keepdim=True)
        done = (H - target).abs() <= PERPLEXITY_TOL
        if bool(done.all()) or step == BISECTION_STEPS - 1:
            break   # out of steps: stop before β moves on, so that the β returned is the one P was computed from
        # too wide (H too high): raise β, doubling until bracketed; too narrow: lower it; then bisect
        wide = H > target
        lo, hi = torch.where(wide & ~done, beta, lo), torch.where(~wide & ~done, beta, hi)
        beta = torch.where(done, beta, torch.where(wide, torch.where(hi.isinf(), 2 * beta, (beta + hi) / 2),
                                                   (beta + lo) / 2))
    return P, beta.squeeze(1)


def nearest_neighbours(X, k, rows=None):
    """The k nearest other points of each row of X (N, D), exactly: (squared distances (N, k) float64, indices
    (N, k)).

    A strip of rows at a time, candidates first: the k + KNN_SPARE nearest by float32 distances, then the k nearest
    of those by float64 distances from the differences. A row is certain when its k-th float64 distance lies below
    its last candidate's float32 distance by more than float32's error bound; the rare others are searched again
    over all points, by float64 differences.
    """
    N, dim = X.shape
    X64, X32 = X.double(), X.float()
    m = min(N - 1, k + KNN_SPARE)  # candidates per row
    rows = rows or max(1, KNN_ELEMENTS // N)
    sq = (X64 * X64).sum(1)
    # |fl(|x|² + |y|² − 2 x·y) − |x − y|²| ≤ (D + 2) ε₃₂ (|x| + |y|)², and (|x| + |y|)² ≤ 2 (|x|² + |y|²)
    error = 2 * (dim + 2) * torch.finfo(torch.float32).eps * (sq + sq.max())  # (N,)
    dists = torch.empty(N, k, dtype=torch.float64, device=X.device)
    index = torch.empty(N, k, dtype=torch.long, device=X.device)
    for r0 in range(0, N, rows):
        r1 = min(N, r0 + rows)
        D = pairwise_sq_dists(X32[r0:r1], X32)  # (b, N) float32
        D.diagonal(r0).fill_(math.inf)  # a point is not its own neighbour
        d32, candidates = D.topk(m, dim=1, largest=False)  # (b, m)
        del D
        # |x_i − x_j|² in float64, for the candidates
        d = ((X64[r0:r1, None, :] - X64[candidates]) ** 2).sum(2)  # (b, m)
        d, order = d.topk(k, dim=1, largest=False)
        dists[r0:r1], index[r0:r1] = d, candidates.gather(1, order)
        # with every other point a candidate, each row is certain
        unsure = (d[:, -1] >= d32[:, -1].double() - error[r0:r1]) & (m < N - 1)  # (b,)
        for i in (r0 + unsure.nonzero().squeeze(1)).tolist():
            D = ((X64[i] - X64) ** 2).sum(1)  # (N,): |x_i − x_j|² from the differences
            D[i] = math.inf
            dists[i], index[i] = D.topk(k, largest=False)
    return dists, index


def neighbour_affinities(X, perplexity, k):
    """The fast path's P: for each point i its k nearest neighbours j (nbr (N, k)) and a_ij = p_{j|i} / 2N (N, k)
    float32, with p_{j|i} found among the neighbours only. The joint p_ij = a_ij + a_ji (zero outside the lists)."""
    D, nbr = nearest_neighbours(X, k)
    P, _ = conditional_affinities(D, perplexity)
    return nbr, (P / (2 * len(X))).float()


def joint_affinities(X, perplexity, neighbours=None):
    """Symmetric joint affinities p_ij = (p_{j|i} + p_{i|j}) / 2N of X (N, D), summing to 1, float32 on X's device:
    exact, (N, N) dense, when neighbours is None; else over the `neighbours` nearest, as a sparse (N, N) tensor."""
    if neighbours is None:
        D = pairwise_sq_dists(X.double())
        D.fill_diagonal_(math.inf)
        P, _ = conditional_affinities(D, perplexity)
        # p_ij = (p_{j|i} + p_{i|j}) / 2N
        return ((P + P.T) / (2 * len(X))).float()
    return sparse_joint(*neighbour_affinities(X, perplexity, neighbours))


def sparse_joint(nbr, a):
    """The neighbour lists' P as a sparse (N, N) tensor: p_ij = a_ij + a_ji."""
    N, k = nbr.shape
    rows = torch.arange(N, device=nbr.device).repeat_interleave(k)
    A = torch.sparse_coo_tensor(torch.stack([rows, nbr.flatten()]), a.flatten(), (N, N), check_invariants=False)
    return (A + A.t()).coalesce()


def default_neighbours(n, perplexity):
    # scikit-learn's Barnes-Hut: min(N − 1, int(3·perplexity + 1)) neighbours
    return min(n - 1, int(NEIGHBOURS_PER_PERPLEXITY * perplexity + 1))


# ---------------------------------------------------------------------------------------------------------------
# 2. the fast path: the gradient


def attraction(nbr, a, Yt, with_kl=False):
    """Σ_j p_ij w_ij (y_i − y_j) for every i -> (2, N), with p_ij = a_ij + a_ji over the neighbour lists; and, if
    with_kl, Σ_{i≠j} p_ij log w_ij. Yt: the map transposed, (2, N) float32. Four passes over the N·k pairs, in
    place: the gather, the differences, w and the forces."""
    N, k = nbr.shape
    j = nbr.view(1, -1).expand(2, -1)  # (2, N·k): each neighbour's column, for x and for y
    d = torch.gather(Yt, 1, j).view(2, N, k)  # y_j for j in i's list
    d = torch.sub(Yt[:, :, None], d, out=d)  # (2, N, k): y_i − y_j
    # w_ij = (1 + |y_i − y_j|²)⁻¹
    w = torch.addcmul(torch.ones((), device=Yt.device), d[0], d[0]).addcmul_(d[1], d[1]).reciprocal_()  # (N, k)
    # Σ_{i≠j} p_ij log w_ij = 2 Σ_{listed i→j} a_ij log w_ij, as w_ij = w_ji
    p_log_w = 2 * (a * w.log()).sum().double() if with_kl else None
    f = d.mul_(w.mul_(a))  # (2, N, k): a_ij w_ij (y_i − y_j)
    # p_ij = a_ij + a_ji: each listed pair pulls i towards j by f and j towards i by −f
    return f.sum(2) - torch.zeros_like(Yt).scatter_add_(1, j, f.view(2, -1)), p_log_w


def gradient(P, Y, exaggeration=1.0, buffers=None, with_kl=False, interpolate=False):
    """∂C/∂Y (N, 2) float32 for the map Y, with P multiplied by α = exaggeration; and, if with_kl, Σ p_ij log q_ij
    (else None). P is dense (N, N), or the neighbour lists (nbr, a) of `neighbour_affinities`.

    The repulsion runs over all pairs, in float32, a strip of rows at a time. It uses explicit differences
    y_i − y_j, so the result is exact to float32 rounding, and each pair once: w_ij = w_ji, and the force of a pair
    on j is minus its force on i. buffers: two float32 tensors of 2·rows·N elements. interpolate=True (neighbour
    lists only) takes the repulsion from `interpolated_repulsion` instead, at a cost that grows as N.
    """
    N = len(Y)
    Yt = Y.T.float().contiguous()  # (2, N)
    dense = torch.is_tensor(P)
    if interpolate and dense:
        raise ValueError("the interpolated repulsion takes P as neighbour lists, not dense")
    if interpolate:
        repel, Z = interpolated_repulsion(Yt)
    else:
        repel, Z, attract, p_log_w = exact_repulsion(P, Yt, buffers, with_kl)
    if not dense:
        attract, p_log_w = attraction(*P, Yt, with_kl)
    # ∂C/∂y_i = 4 Σ_j (α p_ij − q_ij) w_ij (y_i − y_j) = 4α Σ_j p_ij w_ij (y_i − y_j) − 4/Z Σ_j w_ij² (y_i − y_j)
    grad = 4 * exaggeration * attract - (4 / Z.float()) * repel
    # Σ p_ij log q_ij = Σ p_ij log w_ij − log Z   (Σ p_ij = 1)
    return grad.T, ((p_log_w - Z.log()).item() if with_kl else None)


def exact_repulsion(P, Yt, buffers=None, with_kl=False):
    """Σ_j w_ij² (y_i − y_j) (2, N) and Z = Σ_{k≠l} w_kl (float64) for the map Yt (2, N), over all pairs, a strip of
    rows at a time; with dense P (N, N), also Σ_j p_ij w_ij (y_i − y_j) (2, N) and, if with_kl, Σ p_ij log w_ij
    (else both None)."""
    N = Yt.shape[1]
    if buffers is None:
        buffers = strip_buffers(N, Yt.device)
    rows = buffers[0].numel() // (2 * N)
    dense = torch.is_tensor(P)
    attract = torch.zeros_like(Yt) if dense else None  # Σ_j p_ij w_ij (y_i − y_j), accumulated strip by strip
    repel = torch.zeros_like(Yt)  # Σ_j w_ij² (y_i − y_j)
    Z = torch.zeros((), dtype=torch.float64, device=Yt.device)
    p_log_w = torch.zeros((), dtype=torch.float64, device=Yt.device) if dense else None
    one = torch.ones((), device=Yt.device)
    for r0 in range(0, N, rows):
        # the strip: rows i in [r0, r1), columns j ≥ r0. Pairs with j ≥ r1 count for i and for j; pairs inside
        # [r0, r1) appear twice, (i, j) and (j, i), and count for their row only.
        r1 = min(N, r0 + rows)
        b, M = r1 - r0, N - r0
        d = buffers[0][:2 * b * M].view(2, b, M)
        w = buffers[1][:b * M].view(b, M)
        torch.sub(Yt[:, r0:r1, None], Yt[:, None, r0:], out=d)  # (2, b, M): y_i − y_j
        # w_ij = (1 + |y_i − y_j|²)⁻¹; w_ii = 0, no self-pairs
        torch.addcmul(one, d[0], d[0], out=w).addcmul_(d[1], d[1]).reciprocal_()
        w.diagonal().zero_()
        # Z = Σ_{k≠l} w_kl: the strip's pairs beyond its rows count twice, (i, j) and (j, i)
        Z += 2 * w.sum() - w[:, :b].sum()
        if dense:
            f = P[r0:r1, r0:] * w * d  # (2, b, M): p_ij w_ij (y_i − y_j)
            attract[:, r0:r1] += f.sum(2)
            attract[:, r1:] -= f[:, :, b:].sum(1)
            if with_kl:
                p_log_w += torch.xlogy(P[r0:r1, r0:], w).sum() + torch.xlogy(P[r0:r1, r1:], w[:, b:]).sum()
        w.square_()
        f = d.mul_(w)  # (2, b, M): w_ij² (y_i − y_j)
        repel[:, r0:r1] += f.sum(2)
        repel[:, r1:] -= f[:, :, b:].sum(1)
    return repel, Z, attract, p_log_w


def strip_buffers(n, device):
    """Two float32 buffers for `gradient`'s strips, allocated once per run: fresh ones every strip cost page
    faults."""
    rows = max(1, min(n, STRIP_ELEMENTS["cuda" if device.type == "cuda" else "cpu"] // n))
    return [torch.empty(2 * rows * n, dtype=torch.float32, device=device) for _ in range(2)]


# ---------------------------------------------------------------------------------------------------------------
# 2. the fast path: the repulsion by FFT-accelerated interpolation (Linderman et al., 2019)
#
# Σ_j w_ij² (y_i − y_j) = y_i φ₁(y_i) − φ_y(y_i), with the potentials φ_c(y) = Σ_j K(y, y_j) c_j of the charges
# c_j ∈ {1, y_j, |y_j|²} under the kernel K(y, y') = (1 + |y − y'|²)⁻² = w². Each φ_c is a sum over all N points. Cover
# the map with n × n boxes of p × p equispaced nodes; K is smooth, so within a box it is close to its polynomial
# interpolant in the nodes. Spread each charge onto the nodes of its box with the Lagrange weights, sum over nodes
# (the same kernel between every pair of nodes the same offset apart: a convolution, by FFT), and interpolate the
# node potentials back to the points with the same weights. The cost grows as N p² + (np)² log(np).


def lagrange_weights(t, p=INTERPOLATION_NODES):
    """The p Lagrange polynomials of the nodes t_k = (k + ½)/p, at t in [0, 1] -> (*t.shape, p)."""
    nodes = [(k + 0.5) / p for k in range(p)]
    # L_k(t) = Π_{l≠k} (t − t_l) / (t_k − t_l)
    return torch.stack([math.prod((t - nodes[l]) / (nodes[k] - nodes[l]) for l in range(p) if l != k)
                        for k in range(p)], -1)


def fft_size(n):
    """The smallest m ≥ n with no prime factor above 5: a fast FFT length."""
    while True:
        m = n
        for f in (2, 3, 5):
            while m % f == 0:
                m //= f
        if m == 1:
            return n
        n += 1


def interpolated_repulsion(Yt, p=INTERPOLATION_NODES):
    """Σ_j w_ij² (y_i − y_j) (2, N) float32 and Z = Σ_{k≠l} w_kl (float64) for the map Yt (2, N), approximately:
    the interpolation's error grows as (box width)³."""
    N = Yt.shape[1]
    lo = Yt.min(1, keepdim=True).values  # (2, 1)
    widths = (Yt.max(1).values - lo[:, 0]).tolist()  # the map's width along x and along y
    n = fft_size(max(MIN_BOXES, math.ceil(max(widths) / BOX_WIDTH)))  # boxes along the wider axis
    h = max(max(widths), torch.finfo(torch.float32).tiny) / n  # box width, the same along both axes
    nx, ny = (fft_size(max(1, math.ceil(w / h - 1e-3))) for w in widths)  # boxes along x and y
    Mx, My = nx * p, ny * p  # nodes along x and y, h / p apart
    u = (Yt - lo) / h  # (2, N): position in box widths
    last = torch.tensor([[nx - 1], [ny - 1]], dtype=u.dtype, device=Yt.device)
    box = torch.minimum(u.floor().clamp_(min=0), last)  # the box of each point; the far edge is in the last box
    L = lagrange_weights(u - box, p)  # (2, N, p): along x and along y
    node = box.long()[:, :, None] * p + torch.arange(p, device=Yt.device)  # (2, N, p): node index along each axis
    index = (node[0, :, :, None] * My + node[1, :, None, :]).view(N, p * p)  # (N, p²) into the flat Mx × My grid
    weight = (L[0, :, :, None] * L[1, :, None, :]).view(N, p * p)  # (N, p²): L_k(x) L_l(y)
    # the charges c_j: 1, x_j, y_j, |y_j|²
    charges = torch.stack([torch.ones_like(Yt[0]), Yt[0], Yt[1], (Yt * Yt).sum(0)])  # (4, N)
    # spread: q_c(node) = Σ_j L_k(x_j) L_l(y_j) c_j over the points j whose box holds the node
    grid = torch.zeros(4, Mx * My, device=Yt.device)
    grid.view(-1).index_add_(0, (index.view(1, -1) + Mx * My * torch.arange(4, device=Yt.device)[:, None]).view(-1),
                             (charges[:, :, None] * weight).view(-1))
    # the kernel between nodes (a, b) apart, on a 2Mx × 2My torus: zero padding turns the circular convolution into
    # the plain one for offsets |a| < Mx, |b| < My
    ox, oy = (torch.arange(2 * m, device=Yt.device) for m in (Mx, My))
    ox, oy = (torch.minimum(o, len(o) - o) * (h / p) for o in (ox, oy))  # (2Mx,), (2My,): |a| h/p, |b| h/p
    # K = (1 + |δ|²)⁻²
    kernel = (1 + ox[:, None] ** 2 + oy[None, :] ** 2) ** -2  # (2Mx, 2My)
    # φ_c(node) = Σ_node' K(node − node') q_c(node'): a convolution, a product of spectra
    size = (2 * Mx, 2 * My)
    spectrum = torch.fft.rfft2(grid.view(4, Mx, My), s=size) * torch.fft.rfft2(kernel)
    potential = torch.fft.irfft2(spectrum, s=size)[:, :Mx, :My].reshape(4, Mx * My)  # (4, Mx·My)
    # interpolate back: φ_c(y_i) = Σ_{k,l} L_k(x_i) L_l(y_i) φ_c(node_kl)
    phi = (potential[:, index] * weight).sum(2).double()  # (4, N)
    Y = Yt.double()
    # Σ_j w_ij² (y_i − y_j) = y_i φ₁ − (φ_x, φ_y)
    repel = (Y * phi[0] - phi[1:3]).float()
    # Σ_j w_ij = Σ_j w_ij² (1 + |y_i − y_j|²) = (1 + |y_i|²) φ₁ − 2 y_i·(φ_x, φ_y) + φ_|y|², self-pair included
    Z = ((1 + (Y * Y).sum(0)) * phi[0] - 2 * (Y * phi[1:3]).sum(0) + phi[3]).sum()
    # Z = Σ_{k≠l} w_kl leaves out each self-pair as interpolated, s_i = Σ_{ν,ν'} L_ν(y_i) K(ν − ν') L_ν'(y_i) over the
    # nodes of i's box (not w_ii = 1: the interpolant misses the kernel's peak by up to 60% in boxes 1 wide)
    a = (torch.arange(p, device=Yt.device)[:, None] - torch.arange(p, device=Yt.device)).abs()  # |k − k'|
    in_box = kernel[a[:, None, :, None], a[None, :, None, :]].reshape(p * p, p * p)  # K between nodes (k,l), (k',l')
    Z = Z - ((weight @ in_box) * weight).sum(1).double().sum()
    return repel, Z


# ---------------------------------------------------------------------------------------------------------------
# 2. the fast path: the whole run


def pca(X, n_components=2):
    """Projection of X (N, D) onto its top principal axes, in float64 (on the CPU for MPS) -> (N, n_components).

    Each axis's sign is fixed so that its largest-magnitude loading is positive, which makes the result unique.
    """
    X64 = X.detach().to("cpu" if X.device.type == "mps" else X.device, torch.float64)
    Xc = X64 - X64.mean(0)
    # principal axes = eigenvectors of the scatter matrix XᵀX with the largest eigenvalues (eigh sorts ascending)
    _, vecs = torch.linalg.eigh(Xc.T @ Xc)
    V = vecs[:, -n_components:].flip(1)  # (D, n_components)
    big = V.abs().argmax(0)
    V = V * torch.sign(V[big, torch.arange(n_components, device=V.device)])
    return Xc @ V


def start_map(X, init="pca", seed=0):
    """The start of the optimisation (N, 2) float64, as scikit-learn makes it: init="pca" projects X on its two
    principal axes, scaled so that the first has std INIT_STD (the aspect ratio stays); init="random" draws
    N(0, INIT_STD²) from `seed`."""
    if init == "pca":
        Y = pca(X, 2)
        return Y / Y[:, 0].std() * INIT_STD
    if init == "random":
        generator = torch.Generator().manual_seed(seed)
        return INIT_STD * torch.randn(len(X), 2, generator=generator, dtype=torch.float64)
    raise ValueError(f"init must be 'pca' or 'random', not {init!r}")


def tsne(X, perplexity=PERPLEXITY, n_iter=N_ITER, seed=0, init="pca", exact=False, stop_early=True, centre=True,
         verbose=False, interpolate=None):
    """t-SNE of X (N, D) on X's device -> (Y (N, 2) float32 on X's device, final KL(P || Q) as a float).

    init: "pca", "random" (from `seed`) or an (N, 2) tensor. exact=True uses the exact P over all pairs (dense,
    N×N) instead of the nearest neighbours. The map is float32: centred after every step, it keeps its digits even
    when early exaggeration shrinks it by 17 orders of magnitude. stop_early=False (every iteration, whatever the
    stopping rules say) and centre=False are there to show, in the tests, how float32 lost such maps before.
    interpolate: the repulsion by FFT interpolation (True) or exact over all pairs (False); by default from
    N = FFT_FROM_N on, with the neighbour lists only.
    """
    t0 = time.perf_counter()
    N = len(X)
    original_device = X.device
    # float64 for the affinities, which MPS lacks: there the work runs on the CPU
    device = torch.device("cpu") if X.device.type == "mps" else X.device
    X = X.detach().to(device)
    if exact:
        P = joint_affinities(X, perplexity)  # (N, N)
        p_log_p = torch.xlogy(P, P).sum().item()
    else:
        P = neighbour_affinities(X, perplexity, default_neighbours(N, perplexity))  # (nbr, a), each (N, k)
        p = sparse_joint(*P).values()
        p_log_p = torch.xlogy(p, p).sum().item()
    if verbose:
        print(f"t-SNE of N={N}: P ({'exact' if exact else f'{P[0].shape[1]} neighbours'}) in "
              f"{time.perf_counter() - t0:.2f} s")

    Y = init.double() if torch.is_tensor(init) else start_map(X, init, seed)
    Y = Y.to(device, torch.float32)
    if interpolate is None:
        interpolate = not exact and N >= FFT_FROM_N
    buffers = None if interpolate else strip_buffers(N, device)

    def objective(Y, exaggeration, with_kl):
        grad, p_log_q = gradient(P, Y, exaggeration, buffers, with_kl, interpolate)
        return grad.to(Y.dtype), (p_log_p - p_log_q if with_kl else None)

    Y = descend(objective, Y, n_iter, stop_early, centre, verbose)
    kl = objective(Y, 1.0, True)[1]
    if verbose:
        print(f"t-SNE done in {time.perf_counter() - t0:.2f} s, KL {kl:.4f}")
    return Y.to(original_device), kl


# ---------------------------------------------------------------------------------------------------------------
# quality of an embedding

CHUNK_ELEMENTS = 2**22  # rows × N elements per chunk in the quality measures


def trustworthiness(X, Y, k=10, chunk_size=None):
    """Trustworthiness (Venna & Kaski, 2001) of the embedding Y (N, d) of X (N, D), exact.

    T(k) = 1 - 2 / (N k (2N - 3k - 1)) Σ_i Σ_{j in U_i} (r(i, j) - k), where U_i are the k nearest neighbours of i
    in Y that are not among its k nearest in X, and r(i, j) is j's rank (1 = nearest) among i's neighbours in X.
    """
    N = X.shape[0]
    work = torch.device("cpu") if X.device.type == "mps" else X.device
    X64 = X.detach().to(work, torch.float64)
    Y64 = Y.detach().to(work, torch.float64)
    rows = chunk_size or max(1, CHUNK_ELEMENTS // ((3 + k) * N))
    penalty = torch.zeros((), dtype=torch.float64, device=work)
    for r0 in range(0, N, rows):
        r1 = min(N, r0 + rows)
        idx = torch.arange(r0, r1, device=work)
        DX = pairwise_sq_dists(X64[r0:r1], X64)
        DY = pairwise_sq_dists(Y64[r0:r1], Y64)
        DX[idx - r0, idx] = math.inf  # a point is not its own neighbour
        DY[idx - r0, idx] = math.inf
        nn_Y = DY.topk(k, dim=1, largest=False).indices  # (b, k)
        # r(i, j) = 1 + #{l ≠ i : d_X(i, l) < d_X(i, j)}  (ties share the better rank)
        d_ij = DX.gather(1, nn_Y)  # (b, k)
        rank = 1 + (DX[:, None, :] < d_ij[:, :, None]).sum(2)  # (b, k)
        penalty += (rank - k).clamp(min=0).sum()
    return 1.0 - 2.0 / (N * k * (2.0 * N - 3.0 * k - 1.0)) * penalty.item()


def knn_agreement(Z, labels, k=10, chunk_size=None):
    """Mean fraction of each point's k nearest neighbours in Z (itself excluded) that share its label."""
    N = Z.shape[0]
    work = torch.device("cpu") if Z.device.type == "mps" else Z.device
    Z64 = Z.detach().to(work, torch.float64)
    labels = torch.as_tensor(labels).to(work)
    rows = chunk_size or max(1, CHUNK_ELEMENTS // (2 * N))
    agree = torch.zeros((), dtype=torch.float64, device=work)
    for r0 in range(0, N, rows):
        r1 = min(N, r0 + rows)
        idx = torch.arange(r0, r1, device=work)
        D = pairwise_sq_dists(Z64[r0:r1], Z64)
        D[idx - r0, idx] = math.inf
        nn = D.topk(k, dim=1, largest=False).indices  # (b, k)
        agree += (labels[nn] == labels[r0:r1, None]).double().sum()
    return agree.item() / (N * k)


# ---------------------------------------------------------------------------------------------------------------
# 3. the study: embed the conv VAE's latent space
#
# Two kinds of latent vectors meet here. Prior samples z ~ N(0, I) are what the generative model decodes. Posterior
# samples z ~ q(z|x), one per test image, are draws from the aggregate posterior q(z) = E_x q(z|x), the distribution
# of codes the encoder gives the data, which the prior should match. The posterior means μ(x) are neither: on an
# inactive unit (one the model leaves at q(z_u|x) = N(0, 1) for every x) μ_u(x) ≈ 0, while both kinds of sample carry
# N(0, 1) noise there. So samples are compared with samples, and every measure is also taken in the active units
# alone, the ones the decoder reads.


@torch.no_grad()
def decode_prior(vae, probabilities, n, seed, device):
    """n prior samples z ~ N(0, I) (n, d), their decoded images (n, 1, 28, 28), and the digit that
    probabilities(images) → (n, 10), the classifier's, gives each, with its confidence."""
    vae.eval()
    generator = torch.Generator().manual_seed(seed)
    z = torch.randn(n, vae.config["latent_dim"], generator=generator).to(device)   # same z on every device
    images = torch.sigmoid(vae.decode(z))
    confidence, labels = probabilities(images).max(1)
    return {"z": z, "images": images, "labels": labels, "confidence": confidence}


@torch.no_grad()
def encode(vae, x, seed):
    """The posterior of every image of x: means μ(x) (N, d) and one sample z = μ + σ ⊙ ε ~ q(z|x) each (N, d)."""
    vae.eval()
    mu, logvar = (torch.cat(t) for t in zip(*(vae.encode(xb) for xb in x.split(2000))))
    eps = torch.randn(mu.shape, generator=torch.Generator().manual_seed(seed + 1)).to(mu.device)
    return mu, mu + torch.exp(0.5 * logvar) * eps


def nearest_distances(Q, R, chunk=1024):
    """For each row of Q (N, d), the Euclidean distance to its nearest row of R (M, d) → (N,)."""
    return torch.cat([torch.cdist(q, R).min(1).values for q in Q.split(chunk)])


def median_ratio(prior_to_a, b_to_a, seed, resamples=BOOTSTRAP):
    """median(prior → A) / median(B → A), and a 95% bootstrap interval: both sets of distances resampled with
    replacement `resamples` times."""
    generator = torch.Generator().manual_seed(seed)
    ratios = []
    for _ in range(resamples):
        i = torch.randint(len(prior_to_a), (len(prior_to_a),), generator=generator)
        j = torch.randint(len(b_to_a), (len(b_to_a),), generator=generator)
        ratios.append(prior_to_a.cpu()[i].median() / b_to_a.cpu()[j].median())
    low, high = torch.quantile(torch.stack(ratios).double(), torch.tensor([0.025, 0.975], dtype=torch.float64))
    return (prior_to_a.median() / b_to_a.median()).item(), [low.item(), high.item()]


def prior_against_posterior(prior_z, posterior_z, units, seed):
    """How far prior samples land from the aggregate posterior, against how far held-out posterior samples do.

    The test set's posterior samples are split into halves A and B. For each prior sample, the distance to the
    nearest posterior sample of A; for each posterior sample of B, the same. If the prior matched the aggregate
    posterior, the two distributions would be the same (the ratio of their medians 1). units: a boolean mask of the
    latent units to measure in. Returns (summary for JSON, the two tensors of distances)."""
    half = len(posterior_z) // 2
    a, b = posterior_z[:half, units], posterior_z[half:2 * half, units]
    prior = prior_z[:, units]
    prior_to_a, b_to_a = nearest_distances(prior, a), nearest_distances(b, a)
    ratio, interval = median_ratio(prior_to_a, b_to_a, seed)
    return ({"units": int(units.sum()), "half_size": half, "median_prior_to_a": prior_to_a.median().item(),
             "median_b_to_a": b_to_a.median().item(), "ratio": ratio, "ratio_95": interval},
            (prior_to_a, b_to_a))


def embed(spaces, perplexity, n_iter, seed):
    """t-SNE of each space {name: (X (N, D), labels (N,), init)} → {name: Y}, with each map's KL, seconds,
    trustworthiness and 10-NN agreement of its labels."""
    maps, stats = {}, {"kl": {}, "seconds": {}, "trustworthiness": {}, "knn_agreement": {}}
    for name, (X, labels, init) in spaces.items():
        t0 = time.perf_counter()
        maps[name], stats["kl"][name] = tsne(X, perplexity, n_iter, seed, init=init)
        stats["seconds"][name] = time.perf_counter() - t0   # tsne returns the KL as a float: the GPU is done by now
        stats["trustworthiness"][name] = trustworthiness(X, maps[name])
        stats["knn_agreement"][name] = knn_agreement(maps[name], labels)
        print(f"tsne of the {name} vectors: KL {stats['kl'][name]:.3f}, 10-NN agreement "
              f"{stats['knn_agreement'][name]:.3f}, trustworthiness {stats['trustworthiness'][name]:.3f}, "
              f"{stats['seconds'][name]:.1f}s")
    return maps, stats


def plot_embeddings(panels, path, title=""):
    """Maps side by side: panels = {title: (Y (N, 2), digit labels (N,), what the labels are)}."""
    fig, axes = plt.subplots(1, len(panels), figsize=(6.5 * len(panels), 6.5), squeeze=False)
    for ax, (name, (Y, labels, meaning)) in zip(axes.flat, panels.items()):
        Y, labels = Y.cpu(), labels.cpu()
        counts = torch.bincount(labels, minlength=10).tolist()
        for digit in range(10):
            if counts[digit]:
                mask = labels == digit
                ax.scatter(Y[mask, 0], Y[mask, 1], s=3, color=plt.cm.tab10(digit), label=f"{digit} ({counts[digit]})")
        ax.set(title=name, xticks=[], yticks=[])
        ax.legend(title=f"{meaning} (count)", markerscale=4, fontsize=8, loc="upper center", ncols=5,
                  bbox_to_anchor=(0.5, -0.01))
    if title:
        fig.suptitle(title)
    save_figure(fig, path)


def plot_distances(panels, path, title):
    """One panel per set of units: histograms of the distance to the nearest posterior sample of test half A, from
    prior samples and from the posterior samples of half B. If the prior matched the aggregate posterior, the two
    would coincide."""
    fig, axes = plt.subplots(1, len(panels), figsize=(7 * len(panels), 4), squeeze=False, layout="constrained")
    for ax, (name, (summary, (prior, held_out))) in zip(axes.flat, panels.items()):
        bins = torch.linspace(0, max(prior.max(), held_out.max()).item(), 50)
        for d, label in ((prior, "prior samples z ~ N(0, I)"), (held_out, "posterior samples z ~ q(z|x), half B")):
            ax.hist(d.cpu(), bins=bins, alpha=0.6, density=True, label=f"{label}, median {d.median():.2f}")
        low, high = summary["ratio_95"]
        ax.set(xlabel="distance to the nearest posterior sample of test half A", ylabel="density",
               title=f"{name}: ratio of medians {summary['ratio']:.2f} (95% interval {low:.2f}–{high:.2f})")
        ax.legend(fontsize=8)
    fig.suptitle(title, fontsize=10)
    save_figure(fig, path)


def parse_args(argv):
    from vae import add_latent_dim_arg
    p = make_parser("Part 4: t-SNE of prior samples of the conv VAE, coloured by the classifier's digit, beside the "
                    "encoded test set; the prior against the aggregate posterior.")
    add_latent_dim_arg(p)
    p.add_argument("--n-samples", type=positive_int, default=None,
                   help=f"prior samples to embed (default: {N_SAMPLES}; {QUICK_SAMPLES} with --quick)")
    p.add_argument("--perplexity", type=positive_float, default=PERPLEXITY, help=f"(default: {PERPLEXITY})")
    p.add_argument("--n-iter", type=positive_int, default=None,
                   help=f"t-SNE iterations (default: {N_ITER}; {QUICK_ITER} with --quick)")
    args = parse(p, argv)
    args.n_samples = args.n_samples or (QUICK_SAMPLES if args.quick else N_SAMPLES)
    args.n_iter = args.n_iter or (QUICK_ITER if args.quick else N_ITER)
    if args.perplexity >= args.n_samples - 1:
        p.error(f"argument --perplexity: must be below --n-samples − 1 = {args.n_samples - 1}, got {args.perplexity}")
    return args


@torch.no_grad()
def encode_test_set(vae, probabilities, x, labels, n, seed):
    """The test set in the latent space: posterior means μ(x) and samples z ~ q(z|x) of every image, the
    classifier's digit for the decodings of the first n samples (labelled as prior samples are), and their true
    digits."""
    mu, posterior = encode(vae, x, seed)
    return {"mu": mu, "z": posterior, "labels": probabilities(torch.sigmoid(vae.decode(posterior[:n]))).argmax(1),
            "true": labels[:n], "n": n}


def latent_agreement(prior, test, units):
    """10-NN agreement in the latent space itself, samples against samples, in all units and in `units`."""
    n = test["n"]
    return {"prior": knn_agreement(prior["z"], prior["labels"]),
            "prior_active": knn_agreement(prior["z"][:, units], prior["labels"]),
            "posterior": knn_agreement(test["z"][:n], test["labels"]),
            "posterior_active": knn_agreement(test["z"][:n, units], test["labels"]),
            "encoded": knn_agreement(test["mu"][:n], test["true"])}


def map_spaces(prior, test, units):
    """What the four t-SNE maps embed: {name: (X, labels, start)}. Prior z in all units (what the assignment asks
    for) and in `units`, their decoded images, and the posterior means of as many test images in `units`."""
    pca_or_random = "pca" if int(units.sum()) >= 2 else "random"   # PCA needs two dimensions
    return {"latent": (prior["z"], prior["labels"], "random"),     # isotropic: its principal axes are arbitrary
            "latent_active": (prior["z"][:, units], prior["labels"], "random"),
            "image": (prior["images"].flatten(1), prior["labels"], "pca"),
            "encoded": (test["mu"][:test["n"], units], test["true"], pca_or_random)}


@torch.no_grad()
def direct_view(model_2d, x, labels, encoded_map, seed):
    """Beyond the assignment: the 2-D MLP's μ(x) seen directly, against the t-SNE map of the conv VAE's μ(x) of the
    same images, both judged by the 10-NN agreement of true digits and by trustworthiness against the images."""
    if model_2d is None:
        return {}
    mu_2d, _ = encode(model_2d, x, seed)
    images = x.flatten(1)
    return {"knn_agreement": {"direct_2d": knn_agreement(mu_2d, labels),
                              "encoded_map": knn_agreement(encoded_map, labels)},
            "trustworthiness_to_images": {"direct_2d": trustworthiness(images, mu_2d),
                                          "encoded_map": trustworthiness(images, encoded_map)}}


def main(argv=None):
    # the study's own modules, imported here: `import tsne` for tsne.tsne(X) alone stays light
    from classifier import classify, load_classifier
    from conv_vae import load_conv_vae, load_model_2d
    from vae import figure_title, is_active, load_mnist

    args = parse_args(argv)
    device, out = start(args, vars(args))
    vae, classifier = load_conv_vae(out, device, args.latent_dim), load_classifier(out, device)
    paths = {"maps": out / "tsne.png", "distances": out / "latent_distances.png", "metrics": out / "tsne_metrics.json"}
    config = {"n_samples": args.n_samples, "perplexity": args.perplexity, "n_iter": args.n_iter, "seed": args.seed,
              "quick": args.quick, "models": {name: file_digest(out / name) for name in
                                              ("conv.pt", "classifier.pt", "mlp_200_200_z2.pt") if (out / name).is_file()}}
    if up_to_date("tsne", paths["metrics"], config, [paths["maps"], paths["distances"]], args.force):
        return
    probabilities = lambda images: classify(classifier, images)  # noqa: E731
    latent_dim = vae.config["latent_dim"]

    # --- prior samples, decoded and classified; the encoded test set, whose digits are known
    prior = decode_prior(vae, probabilities, args.n_samples, args.seed, device)
    _, _, test_x, test_y = load_mnist(args.data_dir, device, args.quick)
    n = min(args.n_samples, len(test_x))                                             # the maps compare equal N
    test = encode_test_set(vae, probabilities, test_x, test_y, n, args.seed)
    active = is_active(test["mu"].var(0))                 # (d,) boolean: the variance of μ over the test set

    # --- the prior against the aggregate posterior, in all units and in the active ones
    units = {f"all {plural(latent_dim, 'unit')}": torch.ones_like(active)}
    if 0 < int(active.sum()) < latent_dim:
        units[f"the {plural(int(active.sum()), 'active unit')}"] = active
    else:
        print(f"tsne: {'no unit is' if not active.any() else 'every unit is'} active; the measures in the active "
              f"units are those in all units")
    in_active = units[list(units)[-1]]
    distances = {name: prior_against_posterior(prior["z"], test["z"], mask, args.seed) for name, mask in units.items()}

    # --- 10-NN agreement in the latent space, the four t-SNE maps, and the 2-D model seen directly
    knn = latent_agreement(prior, test, in_active)
    maps, stats = embed(map_spaces(prior, test, in_active), args.perplexity, args.n_iter, args.seed)
    direct = direct_view(load_model_2d(out, device), test_x[:n], test_y[:n], maps["encoded"], args.seed)

    # --- figures and metrics
    title = lambda text: figure_title(text, args.quick)  # noqa: E731
    in_units = f"its {plural(int(in_active.sum()), 'active unit')}"
    plot_embeddings({f"t-SNE of {args.n_samples} prior samples z ~ N(0, I), all {plural(latent_dim, 'unit')}":
                     (maps["latent"], prior["labels"], "predicted digit"),
                     f"the same z, {in_units} only": (maps["latent_active"], prior["labels"], "predicted digit"),
                     "t-SNE of their decoded images": (maps["image"], prior["labels"], "predicted digit"),
                     f"t-SNE of μ(x) of {n} test images, {in_units}": (maps["encoded"], test["true"], "true digit")},
                    paths["maps"], title("Part 4: the conv VAE's latent space, prior samples beside encoded test "
                                         "images"))
    plot_distances(distances, paths["distances"], title("Does the prior match the aggregate posterior? Distances to "
                                                        "the encoded test set, samples against samples"))
    counts = torch.bincount(prior["labels"], minlength=10).tolist()
    metrics = {"config": config, "device": device_name(device), "latent_dim": latent_dim, "n_samples": args.n_samples,
               "n_encoded": n, "active_units": int(active.sum()), "class_counts": counts,
               "mean_confidence": prior["confidence"].mean().item(),
               "low_confidence_share": (prior["confidence"] < 0.5).float().mean().item(),
               "knn_agreement": {**knn, **{f"{k}_map": v for k, v in stats["knn_agreement"].items()}},
               "trustworthiness": stats["trustworthiness"], "kl": stats["kl"], "seconds": stats["seconds"],
               "distances": {"all": distances[list(units)[0]][0], "active": distances[list(units)[-1]][0]},
               "direct_2d": direct}
    save_json(paths["metrics"], metrics)
    report_numbers(metrics)
    print(f"wrote {', '.join(str(p) for p in paths.values())}")


def report_numbers(m):
    """The step's main numbers, one line each."""
    knn, d = m["knn_agreement"], m["distances"]
    print(f"class counts 0-9: {m['class_counts']}; mean confidence {m['mean_confidence']:.3f}; "
          f"{100 * m['low_confidence_share']:.1f}% below 0.5")
    print(f"10-NN agreement: prior z {knn['prior']:.3f} (active units {knn['prior_active']:.3f}), posterior samples "
          f"{knn['posterior']:.3f} (active units {knn['posterior_active']:.3f}), μ(x) of true digits {knn['encoded']:.3f}")
    for name, s in d.items():
        print(f"distance to test half A ({plural(s['units'], 'unit')}): median from prior samples {s['median_prior_to_a']:.2f}, "
              f"from posterior samples of half B {s['median_b_to_a']:.2f}, ratio {s['ratio']:.2f} "
              f"(95% {s['ratio_95'][0]:.2f}–{s['ratio_95'][1]:.2f})")
    if m["direct_2d"]:
        k, t = m["direct_2d"]["knn_agreement"], m["direct_2d"]["trustworthiness_to_images"]
        print(f"2-D MLP seen directly: 10-NN agreement {k['direct_2d']:.3f}, trustworthiness {t['direct_2d']:.3f}; "
              f"t-SNE of μ(x): {k['encoded_map']:.3f}, {t['encoded_map']:.3f}")


if __name__ == "__main__":
    cli(main)

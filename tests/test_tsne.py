"""Checks of tsne.py: the textbook `tsne_reference` against autograd and the definitions, then the fast path against
the reference. The same quantity computed another way must agree.

    python -m pytest tests/test_tsne.py -q
"""
import math

import numpy as np
import pytest
import torch

import tsne

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else []) + (
    ["mps"] if torch.backends.mps.is_available() else []
)
F32 = torch.finfo(torch.float32).eps
TINY = torch.finfo(torch.float32).tiny  # affinities below this underflow in float32


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    # the problems here are small; a second thread only adds waits when the machine is busy
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def gaussian_clusters(n_per, n_clusters=5, dim=10, spread=20.0, seed=0):
    g = torch.Generator().manual_seed(seed)
    centres = spread * torch.randn(n_clusters, dim, generator=g)
    labels = torch.arange(n_clusters).repeat_interleave(n_per)
    X = centres[labels] + torch.randn(len(labels), dim, generator=g)
    return X, labels


def swiss_roll(n, seed=0):
    # a 2-D sheet rolled up in 3-D, then rotated into 10-D
    g = torch.Generator().manual_seed(seed)
    t = 1.5 * math.pi * (1 + 2 * torch.rand(n, generator=g, dtype=torch.float64))
    h = 10 * torch.rand(n, generator=g, dtype=torch.float64)
    X3 = torch.stack([t * torch.cos(t), h, t * torch.sin(t)], 1)
    rotation, _ = torch.linalg.qr(torch.randn(10, 10, generator=g, dtype=torch.float64))
    return X3 @ rotation[:3]


def spread_map(n, scale, seed=9):
    """A map of n points in 10 clusters of size `scale`/10, `scale` apart: where float32 shortcuts lose digits."""
    g = torch.Generator().manual_seed(seed)
    centres = scale * torch.randn(10, 2, generator=g, dtype=torch.float64)
    return centres[torch.arange(n) % 10] + scale / 10 * torch.randn(n, 2, generator=g, dtype=torch.float64)


# ---------------------------------------------------------------------------------------------------------------
# the reference against the definitions


def kl_definition(P, Y, exaggeration=1.0):
    """KL(P || Q) from the definitions, plus a cost whose gradient is the exaggerated t-SNE gradient."""
    N = len(Y)
    off = ~torch.eye(N, dtype=torch.bool)
    w = 1 / (1 + ((Y[:, None, :] - Y[None, :, :]) ** 2).sum(-1))
    Q = w[off] / w[off].sum()
    p = P[off]
    kl = (p * (p / Q).log()).sum()
    # -α Σ p log w + log Z has gradient 4 Σ_j (α p_ij - q_ij) w_ij (y_i - y_j)
    exaggerated = -exaggeration * (p * w[off].log()).sum() + w[off].sum().log()
    return kl, exaggerated


def random_P(N, seed=3):
    g = torch.Generator().manual_seed(seed)
    A = torch.rand(N, N, generator=g, dtype=torch.float64) ** 4
    P = A + A.T
    P.fill_diagonal_(0)
    return P / P.sum()


@pytest.mark.parametrize("exaggeration", [1.0, 12.0])
def test_reference_gradient_matches_autograd(exaggeration):
    P = random_P(30)
    Y = torch.randn(30, 2, generator=torch.Generator().manual_seed(4), dtype=torch.float64, requires_grad=True)
    kl_ref, cost = kl_definition(P, Y, exaggeration)
    (grad_autograd,) = torch.autograd.grad(cost, Y)
    grad, kl = tsne.reference_objective(P, Y.detach(), exaggeration)
    assert abs(kl - kl_ref.item()) < 1e-12
    assert torch.allclose(grad, grad_autograd, rtol=1e-10, atol=1e-14)


# ---------------------------------------------------------------------------------------------------------------
# the fast path's affinities


@pytest.mark.parametrize("perplexity", [5.0, 30.0])
def test_conditional_affinities_have_the_target_perplexity(perplexity):
    X = torch.randn(300, 5, generator=torch.Generator().manual_seed(1), dtype=torch.float64) * 3
    D = tsne.pairwise_sq_dists(X).fill_diagonal_(math.inf)
    P, beta = tsne.conditional_affinities(D, perplexity)
    assert P.dtype == torch.float64 and P.shape == (300, 300)
    assert torch.all(P.diagonal() == 0)
    assert torch.allclose(P.sum(1), torch.ones(300, dtype=torch.float64))
    # H(P_i) = -Σ_j p_j|i log p_j|i, perplexity = exp(H)
    H = -torch.xlogy(P, P).sum(1)
    assert torch.all((H - math.log(perplexity)).abs() <= tsne.PERPLEXITY_TOL)
    # and P really is the Gaussian exp(-β_i d_ij) / Σ_k exp(-β_i d_ik) for the returned β_i
    D_ref = ((X[:, None, :] - X[None, :, :]) ** 2).sum(-1).fill_diagonal_(math.inf)
    E = torch.exp(-beta[:, None] * D_ref)
    assert torch.allclose(P, E / E.sum(1, keepdim=True), atol=1e-9)


@pytest.mark.parametrize("steps", [1, 3, 8])
def test_bisection_out_of_steps_returns_the_beta_of_its_P(monkeypatch, steps):
    """Stopped by its step limit before reaching the tolerance, the search still returns a β and the P made from
    that β, not a β one update ahead of it."""
    monkeypatch.setattr(tsne, "BISECTION_STEPS", steps)
    X = torch.randn(50, 5, generator=torch.Generator().manual_seed(1), dtype=torch.float64) * 3
    D = tsne.pairwise_sq_dists(X).fill_diagonal_(math.inf)
    P, beta = tsne.conditional_affinities(D, 10.0)
    H = -torch.xlogy(P, P).sum(1)
    assert (H - math.log(10.0)).abs().max() > tsne.PERPLEXITY_TOL      # the limit, not the tolerance, stopped it
    E = torch.exp(-beta[:, None] * D)
    assert torch.allclose(P, E / E.sum(1, keepdim=True), atol=1e-12)


def test_fast_P_is_the_reference_P():
    """The exact P of the fast path equals the reference's, to float32 rounding (it is stored in float32)."""
    X, _ = gaussian_clusters(n_per=60, seed=2)
    P_ref = tsne.reference_affinities(X, 30.0)
    assert torch.equal(P_ref, P_ref.T) and abs(P_ref.sum().item() - 1) < 1e-12 and torch.all(P_ref.diagonal() == 0)
    P = tsne.joint_affinities(X, 30.0)
    assert P.dtype == torch.float32
    assert torch.allclose(P.double(), P_ref, rtol=4 * F32, atol=TINY)


def test_sparse_P_is_the_symmetrised_neighbour_P():
    X, _ = gaussian_clusters(n_per=40, seed=5)
    N, k = 200, 31
    P = tsne.joint_affinities(X, 10.0, neighbours=k)
    assert P.is_sparse and abs(P.values().sum().item() - 1) < 1e-5
    # the k nearest neighbours by brute force, and the bisection on their distances only
    D = ((X[:, None].double() - X[None].double()) ** 2).sum(-1).fill_diagonal_(math.inf)
    d, nbr = D.topk(k, largest=False)
    C, _ = tsne.conditional_affinities(d, 10.0)
    dense = torch.zeros(N, N, dtype=torch.float64).scatter_(1, nbr, C)
    expected = (dense + dense.T) / (2 * N)
    assert torch.allclose(P.to_dense().double(), expected, rtol=4 * F32, atol=TINY)


# ---------------------------------------------------------------------------------------------------------------
# the fast path's gradient and KL against the reference's


@pytest.mark.parametrize("scale", [1e-6, 1.0, 30.0])
@pytest.mark.parametrize("exaggeration", [1.0, 12.0])
@pytest.mark.parametrize("sparse", [False, True])
def test_fast_gradient_matches_reference(sparse, exaggeration, scale):
    """Float32 rounding only, at every map scale: the start (1e-6), mid-run (1) and a wide final map (30), where
    |y_i|² + |y_j|² − 2 y_i·y_j would have lost three digits. Strips of 16 rows exercise the pair bookkeeping."""
    X, _ = gaussian_clusters(n_per=30, seed=6)
    N = len(X)
    if sparse:
        P = tsne.neighbour_affinities(X, 10.0, 31)
        P_dense = tsne.sparse_joint(*P).to_dense().double()
    else:
        P = tsne.joint_affinities(X, 10.0)
        P_dense = P.double()
    Y = spread_map(N, scale)
    grad_ref, kl_ref = tsne.reference_objective(P_dense, Y, exaggeration)
    buffers = [torch.empty(2 * 16 * N) for _ in range(2)]
    grad, p_log_q = tsne.gradient(P, Y.float(), exaggeration, buffers, with_kl=True)
    kl = torch.xlogy(P_dense, P_dense).sum().item() - p_log_q
    assert grad.dtype == torch.float32
    assert (grad.double() - grad_ref).abs().max() <= 20 * F32 * grad_ref.abs().max()
    assert abs(kl - kl_ref) <= 1e-5 * kl_ref


def test_strip_size_changes_nothing_but_rounding():
    X, _ = gaussian_clusters(n_per=25, seed=7)
    P = tsne.neighbour_affinities(X, 15.0, 46)
    Y = spread_map(125, 5.0).float()
    one, _ = tsne.gradient(P, Y, 12.0)
    for rows in (1, 16, 50):
        strips, _ = tsne.gradient(P, Y, 12.0, [torch.empty(2 * rows * 125) for _ in range(2)])
        assert (strips - one).abs().max() <= 20 * F32 * one.abs().max()


def test_lagrange_weights_reproduce_quadratics():
    """p = 3 nodes reproduce every polynomial of degree 2 exactly, the reason the error falls as (box width)³."""
    t = torch.linspace(0, 1, 11, dtype=torch.float64)
    L = tsne.lagrange_weights(t, 3)  # (11, 3)
    nodes = torch.tensor([1 / 6, 1 / 2, 5 / 6], dtype=torch.float64)
    for f in (lambda x: 1 + 0 * x, lambda x: x, lambda x: 3 * x ** 2 - x):
        assert torch.allclose(L @ f(nodes), f(t), atol=1e-12)
    assert not torch.allclose(L @ nodes ** 3, t ** 3, atol=1e-3)  # but not a cubic


def box_width(Y):
    width = (Y.max(0).values - Y.min(0).values).max().item()  # along the wider axis
    return width / tsne.fft_size(max(tsne.MIN_BOXES, math.ceil(width / tsne.BOX_WIDTH)))


@pytest.mark.parametrize("scale", [1e-4, 1.0, 30.0])
@pytest.mark.parametrize("exaggeration", [1.0, 12.0])
def test_interpolated_gradient_matches_reference(exaggeration, scale):
    """The FFT-interpolated repulsion on an early-exaggeration map (1e-4 wide), tight clusters (about 3 wide) and a
    wide map (about 100, boxes 1 wide). Interpolating K = (1 + r²)⁻² with degree-2 polynomials on boxes h wide errs
    by O(h³ max|K‴|); measured, the gradient's largest error is 0.055–0.09 h³ of its largest component, so the
    bound is 0.15 h³ (with a float32 floor). The KL's error comes from Z alone, whose self-pairs are removed as
    interpolated."""
    X, _ = gaussian_clusters(n_per=100, seed=6)
    N = len(X)
    P = tsne.neighbour_affinities(X, 30.0, 91)
    P_dense = tsne.sparse_joint(*P).to_dense().double()
    Y = spread_map(N, scale)
    grad_ref, kl_ref = tsne.reference_objective(P_dense, Y, exaggeration)
    grad, p_log_q = tsne.gradient(P, Y.float(), exaggeration, with_kl=True, interpolate=True)
    kl = torch.xlogy(P_dense, P_dense).sum().item() - p_log_q
    bound = max(0.15 * box_width(Y) ** 3, 50 * F32)
    assert grad.dtype == torch.float32
    assert (grad.double() - grad_ref).abs().max() <= bound * grad_ref.abs().max()
    assert abs(kl - kl_ref) <= 1e-3 * kl_ref


@pytest.mark.parametrize("data", ["swiss roll", "clusters"])
@pytest.mark.parametrize("exact", [False, True, "interpolated"])
def test_fast_kl_after_300_iterations_matches_reference(data, exact):
    """The whole run: both paths take the same optimiser (descend) from the same start with the same P. Rounding
    makes the paths part, so the KLs agree to 1%, not to the last digit. The interpolated repulsion is checked
    against the exact one with the same P, by its map's exact KL: its own KL has the error of its Z, which in
    tight clusters is dominated by the nearest pairs (1.3% here)."""
    X = swiss_roll(300) if data == "swiss roll" else gaussian_clusters(n_per=30, n_clusters=10, seed=1)[0]
    Y0 = tsne.start_map(X, "pca")
    P = tsne.joint_affinities(X, 30.0, None if exact else tsne.default_neighbours(300, 30.0))
    if exact == "interpolated":
        # against the exact repulsion with the same P: a map no worse by 1% (on the clusters, whose KL is small,
        # it is 1.2% better)
        _, kl_exact = tsne.tsne(X, n_iter=300, init=Y0, interpolate=False)
        Y, _ = tsne.tsne(X, n_iter=300, init=Y0, interpolate=True)
        kl = tsne.reference_objective(P.to_dense().double(), Y.double())[1]
        assert kl <= 1.01 * kl_exact, (kl, kl_exact)
        return
    _, kl_ref, _ = tsne.tsne_reference(X, Y0, n_iter=300, P=(P if exact else P.to_dense()).double())
    _, kl = tsne.tsne(X, n_iter=300, init=Y0, exact=exact, interpolate=False)
    assert abs(kl - kl_ref) <= 0.01 * kl_ref, (kl, kl_ref)


def test_sparse_P_and_interpolation_cost_little_quality():
    """At N = 2000: keeping P over the 3·perplexity nearest neighbours, as the fast path does, against the exact P
    costs at most 0.003 of trustworthiness; the interpolated repulsion (the default from FFT_FROM_N on) against
    the exact one with the same P, at most 0.003 of trustworthiness and 0.005 of 10-NN agreement."""
    X, labels = gaussian_clusters(n_per=200, n_clusters=10, dim=50, spread=3.0, seed=11)
    Y_interpolated, _ = tsne.tsne(X, interpolate=True)
    Y_sparse, _ = tsne.tsne(X, interpolate=False)
    Y_exact, _ = tsne.tsne(X, exact=True)
    T_interpolated, T_sparse, T_exact = (tsne.trustworthiness(X, Y) for Y in (Y_interpolated, Y_sparse, Y_exact))
    assert T_sparse >= T_exact - 0.003, (T_sparse, T_exact)
    assert abs(T_interpolated - T_sparse) <= 0.003, (T_interpolated, T_sparse)
    A_interpolated, A_sparse = (tsne.knn_agreement(Y, labels) for Y in (Y_interpolated, Y_sparse))
    assert abs(A_interpolated - A_sparse) <= 0.005, (A_interpolated, A_sparse)


# ---------------------------------------------------------------------------------------------------------------
# the optimiser


def quadratic(target, c=1.0, calls=None):
    """An objective for descend: C = c/2 Σ (y − t)², whose gradient, exaggerated, is α c (y − t); KL := C."""

    def objective(Y, exaggeration, with_kl):
        if calls is not None:
            calls.append(exaggeration)
        return exaggeration * c * (Y - target), (0.5 * c * ((Y - target) ** 2).sum().item() if with_kl else None)

    return objective


Y0 = torch.tensor([[1.0, -2.0], [-1.0, 2.0]], dtype=torch.float64)


def test_first_steps_by_hand():
    """Two points, so η = 50. Each coordinate, by hand: g = α (y − t); gains ×0.8 when g and the last update have
    the same sign (or the update is 0), +0.2 when they differ; Δ = μ Δ − η gains g; y += Δ; then the map is
    centred."""
    target = torch.tensor([[0.5, -1.0], [-0.5, 1.0]], dtype=torch.float64)
    Y = tsne.descend(quadratic(target), Y0, n_iter=2)
    # step 1 (α = 12, μ = 0.5): g = 12 (y − t) = (6, −12) and (−6, 12); gains 0.8; Δ = −50 · 0.8 · g
    # y = (1 − 240, −2 + 480) and (−1 + 240, 2 − 480) = (−239, 478) and (239, −478), already centred
    # step 2: g = 12 (y − t) = 12 (−239.5, 479) for the first point: the same sign as Δ, so gains 0.8 · 0.8
    dx = 0.5 * -240 - 50 * 0.64 * 12 * (-239 - 0.5)
    dy = 0.5 * 480 - 50 * 0.64 * 12 * (478 + 1.0)
    expected = torch.tensor([[-239 + dx, 478 + dy], [239 - dx, -478 - dy]], dtype=torch.float64)
    assert torch.allclose(Y, expected, rtol=1e-15)
    # a gradient that flips sign against the last update raises the gain by 0.2: step 2 from a target beyond y
    Y = tsne.descend(quadratic(torch.tensor([[-1000.0, 2000.0], [1000.0, -2000.0]], dtype=torch.float64), 1e-3),
                     Y0, n_iter=2)
    # step 1: g = 0.012 (1001, −2002); Δ = −50 · 0.8 · g = (−480.48, 960.96); y = (−479.48, 958.96)
    # step 2: g = 0.012 (520.52, −1041.04), opposite to Δ: gains 0.8 + 0.2 = 1
    y1, update1 = torch.tensor([[-479.48, 958.96], [-480.48, 960.96]], dtype=torch.float64)
    g = 0.012 * (y1 - torch.tensor([-1000.0, 2000.0], dtype=torch.float64))
    assert torch.allclose(Y[0], y1 + 0.5 * update1 - 50 * 1.0 * g, rtol=1e-12)


def test_stages_restart_and_stop():
    """A stage ends when |gains ⊙ ∇C| < 1e-7 at a check (every 50 iterations), or when the KL has not improved
    for its patience; the second stage starts from zero update and unit gains, with P no longer exaggerated."""
    calls = []
    tsne.descend(quadratic(Y0.clone(), calls=calls), Y0, n_iter=1000)  # at the minimum from the start: ∇C = 0
    # the first check (iteration 50) ends each stage: 50 exaggerated iterations, then 50 plain ones
    assert calls == [12.0] * 50 + [1.0] * 50
    calls = []
    tsne.descend(quadratic(Y0.clone(), calls=calls), Y0, n_iter=1000, stop_early=False)
    assert calls == [12.0] * 250 + [1.0] * 750

    # a KL that never improves: the first stage's patience (250) cannot run out in its 250 iterations; the second
    # stage's last improvement is its first check (iteration 300), and at 650 more than 300 iterations have passed
    calls = []

    def flat(Y, exaggeration, with_kl):
        calls.append(exaggeration)
        return torch.ones_like(Y), (1.0 if with_kl else None)

    tsne.descend(flat, Y0, n_iter=1000)
    assert calls == [12.0] * 250 + [1.0] * 400

    # the second stage's first step starts from zero update and unit gains: Δ = −η · 0.8 · g = −50 · 0.8 · c y
    seen = []

    def record(Y, exaggeration, with_kl):
        seen.append(Y.clone())
        return quadratic(torch.zeros(2, 2), 1e-3)(Y, exaggeration, with_kl)

    Y = tsne.descend(record, Y0, n_iter=251, stop_early=False)
    assert torch.allclose(Y - seen[-1], -50 * 0.8 * 1e-3 * seen[-1], rtol=1e-12)


def test_pca_start_keeps_the_aspect_ratio():
    X, _ = gaussian_clusters(n_per=40, seed=12)
    Y = tsne.start_map(X, "pca")
    projection = tsne.pca(X)
    assert abs(Y[:, 0].std().item() - tsne.INIT_STD) < 1e-12
    # both columns divided by the first one's std, as scikit-learn does
    assert torch.allclose(Y, projection / projection[:, 0].std() * tsne.INIT_STD)
    assert Y[:, 1].std() < Y[:, 0].std()


# ---------------------------------------------------------------------------------------------------------------
# float32 and structureless data


def test_float32_loses_a_shrinking_map_unless_centred_or_stopped():
    """Samples of an isotropic Gaussian (what Part 4 embeds) have no clusters: run through all 250 exaggerated
    iterations, their map shrinks from 1e-4 to about 1e-21 before it regrows. Two things then break in float32:
    - the per-coordinate gains move the map's mean (here to about 6e-7); once the map is narrower than ε₃₂ × that
      mean, float32 cannot tell its points apart, and they merge for good. Centring the map after every step (the
      default; the cost ignores the origin) keeps float32's digits for the map itself.
    - the gains test the sign of grad · update, a product of two numbers near 1e-22, which underflows to 0: the
      gains then only shrink and the map cannot regrow. The optimiser compares the signs instead.
    scikit-learn's stopping rule avoids both: it ends the exaggeration at iteration 50, when the map is 1e-9 wide."""
    grad, update = torch.tensor([3e-24]), torch.tensor([-2e-22])
    assert grad * update == 0 and grad.sign() * update.sign() < 0
    X = torch.randn(2000, 20, generator=torch.Generator().manual_seed(0))
    merged, _ = tsne.tsne(X, n_iter=350, stop_early=False, centre=False, interpolate=False)  # exact pair forces
    assert merged.mean(0).abs().max() > 1e-7 and merged.std(0).min() < 1e-6 and len(merged[:, 0].unique()) < 10
    for kwargs in ({"stop_early": True, "centre": False}, {"stop_early": False, "centre": True}):
        Y, _ = tsne.tsne(X, n_iter=350, **kwargs)
        assert (Y.std(0) > 0.5).all(), (kwargs, Y.std(0))


# ---------------------------------------------------------------------------------------------------------------
# quality measures against brute force


def trustworthiness_brute_force(X, Y, k):
    X, Y = np.asarray(X, dtype=np.float64), np.asarray(Y, dtype=np.float64)
    N = len(X)
    total = 0.0
    for i in range(N):
        dX = [((X[i] - X[j]) ** 2).sum() for j in range(N)]
        dY = [((Y[i] - Y[j]) ** 2).sum() for j in range(N)]
        by_X = sorted((j for j in range(N) if j != i), key=lambda j: dX[j])
        by_Y = sorted((j for j in range(N) if j != i), key=lambda j: dY[j])
        rank = {j: r + 1 for r, j in enumerate(by_X)}
        for j in by_Y[:k]:
            if j not in by_X[:k]:
                total += rank[j] - k
    return 1 - 2 / (N * k * (2 * N - 3 * k - 1)) * total


@pytest.mark.parametrize("k", [3, 5])
@pytest.mark.parametrize("chunk_size", [None, 4])
def test_trustworthiness_matches_brute_force(k, chunk_size):
    g = torch.Generator().manual_seed(4)
    X = torch.randn(25, 4, generator=g, dtype=torch.float64)
    Y = torch.randn(25, 2, generator=g, dtype=torch.float64)
    T = tsne.trustworthiness(X, Y, k=k, chunk_size=chunk_size)
    assert abs(T - trustworthiness_brute_force(X, Y, k)) < 1e-12
    assert T < 0.9  # a random embedding is not trustworthy
    assert tsne.trustworthiness(X, X, k=k) == 1.0


def test_knn_agreement_matches_brute_force():
    g = torch.Generator().manual_seed(5)
    Z = torch.randn(40, 2, generator=g)
    labels = torch.randint(0, 3, (40,), generator=g)
    D = ((Z[:, None] - Z[None]) ** 2).sum(-1).fill_diagonal_(math.inf)
    expected = sum((labels[D[i].argsort()[:6]] == labels[i]).sum().item() for i in range(40)) / (40 * 6)
    assert abs(tsne.knn_agreement(Z, labels, k=6) - expected) < 1e-12
    assert abs(tsne.knn_agreement(Z, labels, k=6, chunk_size=9) - expected) < 1e-12


# ---------------------------------------------------------------------------------------------------------------
# the embedding


def test_separated_clusters_stay_apart():
    X, labels = gaussian_clusters(n_per=40)
    Y, kl = tsne.tsne(X, perplexity=20.0)
    assert tsne.knn_agreement(Y, labels, k=10) >= 0.99
    assert tsne.knn_agreement(X, labels, k=10) == 1.0  # the reference: they are apart in the input


def test_manifold_is_embedded_trustworthily():
    X = swiss_roll(400)
    Y, _ = tsne.tsne(X, perplexity=20.0)
    assert tsne.trustworthiness(X, Y, k=10) >= 0.9
    # a random 2-D scatter of the same points is far less trustworthy, so the bar above means something
    noise = torch.randn(400, 2, generator=torch.Generator().manual_seed(0))
    assert tsne.trustworthiness(X, noise, k=10) < 0.7


@pytest.mark.parametrize("init", ["pca", "random"])
def test_same_seed_same_embedding(init):
    X, _ = gaussian_clusters(n_per=20, seed=6)
    Y1, kl1 = tsne.tsne(X, n_iter=300, seed=0, init=init)
    Y2, kl2 = tsne.tsne(X, n_iter=300, seed=0, init=init)
    assert torch.equal(Y1, Y2) and kl1 == kl2
    if init == "random":
        Y3, _ = tsne.tsne(X, n_iter=300, seed=1, init=init)
        assert not torch.allclose(Y1, Y3)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_output_shape_device_dtype(device, dtype):
    X, _ = gaussian_clusters(n_per=10, seed=8)
    X = X.to(device, dtype)
    Y, kl = tsne.tsne(X, perplexity=5.0, n_iter=100)
    assert Y.shape == (50, 2) and Y.dtype == torch.float32
    assert Y.device.type == torch.device(device).type
    assert torch.isfinite(Y).all() and math.isfinite(kl) and isinstance(kl, float)


def test_nearest_distances_match_a_brute_force_loop():
    g = torch.Generator().manual_seed(9)
    Q, R = torch.randn(37, 5, generator=g), torch.randn(23, 5, generator=g)
    by_hand = [min(((q - r) ** 2).sum().sqrt().item() for r in R) for q in Q]
    assert np.allclose(tsne.nearest_distances(Q, R, chunk=8).numpy(), by_hand, atol=1e-5)
    assert tsne.nearest_distances(R, R).abs().max() < 1e-3      # every point is its own nearest


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_interpolated_repulsion_on_cuda_matches_cpu():
    """The same FFT interpolation on a GPU: float32 rounding apart, the CPU's gradient; and a whole run there."""
    X, _ = gaussian_clusters(n_per=100, seed=6)
    P = tsne.neighbour_affinities(X, 30.0, 91)
    Y = spread_map(len(X), 10.0).float()
    grad_cpu, p_log_q_cpu = tsne.gradient(P, Y, 12.0, with_kl=True, interpolate=True)
    grad, p_log_q = tsne.gradient(tuple(t.cuda() for t in P), Y.cuda(), 12.0, with_kl=True, interpolate=True)
    assert grad.device.type == "cuda"
    assert (grad.cpu() - grad_cpu).abs().max() <= 1e-4 * grad_cpu.abs().max()
    assert abs(p_log_q - p_log_q_cpu) <= 1e-5 * abs(p_log_q_cpu)
    Y, kl = tsne.tsne(X.cuda(), n_iter=300, interpolate=True)
    assert Y.device.type == "cuda" and torch.isfinite(Y).all() and (Y.std(0) > 0.5).all() and math.isfinite(kl)


def test_neighbours_far_from_the_origin_are_searched_again_in_float64():
    """Points 1000 from the origin and 0.01 apart: float32's |x|² + |y|² − 2 x·y cannot rank them, so every row
    is unsure and searched again; the neighbours are still the exact ones."""
    g = torch.Generator().manual_seed(2)
    X = 1000 + 0.01 * torch.randn(60, 5, generator=g, dtype=torch.float64)
    D = ((X[:, None] - X[None]) ** 2).sum(-1).fill_diagonal_(math.inf)
    d_ref, i_ref = D.topk(7, dim=1, largest=False)
    d, i = tsne.nearest_neighbours(X, 7, rows=16)
    assert torch.equal(i, i_ref) and torch.allclose(d, d_ref, rtol=1e-12, atol=0)

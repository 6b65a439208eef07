"""Checks of tsne.py against references: the same quantity computed another way must agree.

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


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    # the problems here are tiny; a second thread only adds waits when the machine is busy
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


# ---------------------------------------------------------------------------------------------------------------
# affinities


@pytest.mark.parametrize("perplexity", [5.0, 30.0])
def test_conditional_affinities_have_the_target_perplexity(perplexity):
    X = torch.randn(300, 5, generator=torch.Generator().manual_seed(1), dtype=torch.float64) * 3
    D = tsne.pairwise_sq_dists(X)
    P, beta = tsne.conditional_affinities(D, perplexity)
    assert P.dtype == torch.float64 and P.shape == (300, 300)
    assert torch.all(P.diagonal() == 0)
    assert torch.allclose(P.sum(1), torch.ones(300, dtype=torch.float64))
    # H(P_i) = -Σ_j p_j|i log p_j|i, perplexity = exp(H)
    H = -(P * torch.where(P > 0, P.log(), torch.zeros_like(P))).sum(1)
    assert torch.all((H.exp() - perplexity).abs() < 1e-3)
    # and P really is the Gaussian exp(-β_i d_ij) / Σ_k exp(-β_i d_ik) for the returned β_i
    D_ref = ((X[:, None, :] - X[None, :, :]) ** 2).sum(-1).fill_diagonal_(math.inf)
    E = torch.exp(-beta[:, None] * D_ref)
    assert torch.allclose(P, E / E.sum(1, keepdim=True), atol=1e-9)


def test_joint_affinities_are_symmetrised_conditionals():
    X = torch.randn(120, 4, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    P = tsne.joint_affinities(X, 10.0)
    P_cond, _ = tsne.conditional_affinities(tsne.pairwise_sq_dists(X), 10.0)
    assert torch.allclose(P.double(), (P_cond + P_cond.T) / (2 * 120), atol=1e-9)
    assert torch.equal(P, P.T)
    assert abs(P.sum().item() - 1) < 1e-5


# ---------------------------------------------------------------------------------------------------------------
# the cost and its gradient


def kl_reference(P, Y, exaggeration=1.0):
    """KL(P || Q) from the definitions, plus the cost whose gradient is the exaggerated t-SNE gradient."""
    N = len(Y)
    off = ~torch.eye(N, dtype=torch.bool)
    w = 1 / (1 + ((Y[:, None, :] - Y[None, :, :]) ** 2).sum(-1))
    Q = w[off] / w[off].sum()
    p = P[off]
    kl = (p * (p / Q).log()).sum()
    # -α Σ p log w + log Z has gradient 4 Σ_j (α p_ij - q_ij) w_ij (y_i - y_j)
    exaggerated = -exaggeration * (p * w[off].log()).sum() + w[off].sum().log()
    return kl, exaggerated


@pytest.mark.parametrize("chunk_size", [None, 7])
@pytest.mark.parametrize("exaggeration", [1.0, 12.0])
def test_analytic_gradient_matches_autograd(chunk_size, exaggeration):
    g = torch.Generator().manual_seed(3)
    N = 30
    A = torch.rand(N, N, generator=g, dtype=torch.float64) ** 4
    P = A + A.T
    P.fill_diagonal_(0)
    P /= P.sum()
    Y = torch.randn(N, 2, generator=g, dtype=torch.float64, requires_grad=True)

    kl_ref, cost = kl_reference(P, Y, exaggeration)
    (grad_ref,) = torch.autograd.grad(cost, Y)
    kl, grad = tsne.kl_and_grad(P, Y.detach(), exaggeration=exaggeration, chunk_size=chunk_size)
    assert torch.allclose(kl, kl_ref, rtol=1e-10)
    assert torch.allclose(grad, grad_ref, rtol=1e-8, atol=1e-12)


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


def test_chunked_matches_unchunked():
    # the optimisation amplifies any rounding difference, so the chunked path does the same arithmetic row by row;
    # chunks of 16 rows (125 = 7 * 16 + 13) stay 64-byte aligned and give the un-chunked result
    X, _ = gaussian_clusters(n_per=25, seed=7)
    P = tsne.joint_affinities(X, 15.0)
    P_chunked = tsne.joint_affinities(X, 15.0, chunk_size=16)
    assert torch.allclose(P, P_chunked, rtol=1e-6, atol=1e-12)
    Y, kl = tsne.tsne(X, perplexity=15.0)
    Y_chunked, kl_chunked = tsne.tsne(X, perplexity=15.0, chunk_size=16)
    assert torch.allclose(Y, Y_chunked, rtol=1e-4, atol=1e-4)
    assert abs(kl - kl_chunked) < 1e-5


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_output_shape_device_dtype(device, dtype):
    X, _ = gaussian_clusters(n_per=10, seed=8)
    X = X.to(device, dtype)
    Y, kl = tsne.tsne(X, perplexity=5.0, n_iter=100)
    assert Y.shape == (50, 2) and Y.dtype == torch.float32
    assert Y.device.type == torch.device(device).type
    assert torch.isfinite(Y).all() and math.isfinite(kl) and isinstance(kl, float)


def test_structureless_data_is_not_lost_to_float32():
    """Samples of an isotropic Gaussian (what Part 4 embeds) have no clusters: early exaggeration shrinks their map
    by many orders of magnitude before it regrows. In float32 it collapsed to a line or a point."""
    X = torch.randn(2000, 20, generator=torch.Generator().manual_seed(0))
    Y, _ = tsne.tsne(X, perplexity=30.0, n_iter=1000)
    assert (Y.std(0) > 1.0).all(), Y.std(0)
    assert tsne.trustworthiness(X, Y) > 0.75

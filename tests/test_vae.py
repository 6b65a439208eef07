"""Part 1 and the shared base: the model, the loss against references, the loader, training, the command line."""
import json
import math

import pytest
import torch

import bookkeeping
import vae
from conftest import IDX_NAMES, make_tiny_mnist, run, tiny_digits


@pytest.mark.parametrize("hidden", vae.HIDDEN_CONFIGS)
def test_mlp_layer_sizes(hidden):
    model = vae.MLPVAE(hidden, latent_dim=20)
    h1, h2 = hidden
    linear = lambda seq: [(m.in_features, m.out_features) for m in seq if isinstance(m, torch.nn.Linear)]
    assert linear(model.encoder) == [(784, h1), (h1, h2)]
    assert linear([model.mu, model.logvar]) == [(h2, 20), (h2, 20)]
    assert linear(model.decoder) == [(20, h2), (h2, h1), (h1, 784)]
    logits, mu, logvar = model(torch.rand(3, 1, 28, 28))
    assert logits.shape == (3, 1, 28, 28) and mu.shape == logvar.shape == (3, 20)


def test_kl_matches_monte_carlo():
    torch.manual_seed(0)
    mu, logvar = torch.randn(4, 20, dtype=torch.float64), torch.randn(4, 20, dtype=torch.float64)
    std = torch.exp(0.5 * logvar)
    z = mu + std * torch.randn(200_000, 4, 20, dtype=torch.float64)
    q = torch.distributions.Normal(mu, std)
    p = torch.distributions.Normal(0.0, 1.0)
    # KL(q || p) = E_q[log q(z) − log p(z)], estimated by sampling
    monte_carlo = (q.log_prob(z) - p.log_prob(z)).sum(-1).mean(0)
    torch.testing.assert_close(vae.kl_divergence(mu, logvar), monte_carlo, rtol=0.02, atol=0.05)


def test_reconstruction_is_summed_bernoulli_nll():
    torch.manual_seed(0)
    logits, x = torch.randn(5, 1, 28, 28), torch.rand(5, 1, 28, 28)
    p = torch.sigmoid(logits)
    by_hand = -(x * torch.log(p) + (1 - x) * torch.log(1 - p)).flatten(1).sum(1)
    torch.testing.assert_close(vae.reconstruction(logits, x), by_hand, rtol=1e-4, atol=1e-3)


def test_importance_weighted_bound():
    """IW with k = 1 is a single-sample ELBO, so on average it equals −(−ELBO); with k large it is tighter."""
    torch.manual_seed(0)
    model = vae.MLPVAE((50, 50))
    x = torch.rand(256, 1, 28, 28).round()
    elbo = -vae.evaluate(model, x.repeat(20, 1, 1, 1))["neg_elbo"]
    iw_1 = sum(vae.iw_log_likelihood(model, x, k=1) for _ in range(20)) / 20
    iw_100 = vae.iw_log_likelihood(model, x, k=100)
    assert abs(iw_1 - elbo) < 0.01 * abs(elbo)
    assert iw_100 > elbo + 1.0


def test_importance_weighted_estimate_is_exact_when_log_px_is_known():
    """A decoder that ignores z and an encoder that returns the prior: every importance weight is exactly p(x),
    so log (1/k) Σ_i w_i = log p(x) for every k. Dropping the −log k would be off by log k (4.6 nats at k = 100)."""
    torch.manual_seed(0)
    model = vae.MLPVAE((30, 30))
    with torch.no_grad():
        for layer in (model.mu, model.logvar, model.decoder[0]):    # μ = 0, log σ² = 0: q(z|x) = N(0, I) = p(z)
            layer.weight.zero_()
        model.mu.bias.zero_()
        model.logvar.bias.zero_()
    x = torch.rand(16, 1, 28, 28).round()
    with torch.no_grad():
        logits = model.decode(torch.zeros(16, 20))                   # the same for every z
    log_px = -vae.reconstruction(logits, x).mean().item()           # log p(x) = Σ_pixels log Bernoulli(x | σ(ℓ))
    for k in (1, 7, 100):
        assert abs(vae.iw_log_likelihood(model, x, k=k) - log_px) < 1e-3


def test_loss_falls_on_a_tiny_batch():
    torch.manual_seed(0)
    model = vae.MLPVAE((100, 100))
    opt = vae.make_optimizer(model, 1e-3)
    x = torch.as_tensor(tiny_digits(64, 0)[0]).float().div(255).unsqueeze(1)
    losses = []
    for _ in range(100):
        loss, stats = vae.vae_loss(model, x)
        torch.testing.assert_close(loss.detach(), stats["rec"] + stats["kl"])
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.6 * losses[0]


def test_loader_reads_idx_through_torchvision(tmp_path):
    make_tiny_mnist(tmp_path, n_train=30, n_test=20)
    train_x, train_y, test_x, test_y = vae.load_mnist(tmp_path, torch.device("cpu"))
    images, labels = tiny_digits(30, 0)
    assert train_x.shape == (30, 1, 28, 28) and test_x.shape == (20, 1, 28, 28)
    torch.testing.assert_close(train_x[:, 0], torch.as_tensor(images).float() / 255)
    assert train_y.tolist() == labels.tolist()
    assert 0 <= test_x.min() and test_x.max() <= 1


def test_damaged_idx_file_is_named(tmp_path):
    make_tiny_mnist(tmp_path, n_train=30, n_test=20)
    damaged = tmp_path / "MNIST" / "raw" / IDX_NAMES["test"][0]
    damaged.write_bytes(damaged.read_bytes()[:-100])
    with pytest.raises(bookkeeping.UserError, match=f"{IDX_NAMES['test'][0]} is damaged"):
        vae.load_mnist(tmp_path, torch.device("cpu"))


def test_cosine_schedule_is_stepped_per_epoch():
    """The rate is set once per epoch e = 0 … E − 1, so the last epoch runs at ½(1 + cos(π(E − 1)/E)) of the peak,
    0.4% for E = 25, never at zero."""
    lrs = [vae.cosine_lr(3e-3, e, 25) for e in range(25)]
    assert lrs[0] == 3e-3
    assert all(a > b > 0 for a, b in zip(lrs, lrs[1:]))
    assert math.isclose(lrs[-1] / 3e-3, 0.5 * (1 + math.cos(math.pi * 24 / 25)))
    assert 0.0039 < lrs[-1] / 3e-3 < 0.0040


def without_timings(metrics):
    metrics = dict(metrics, seconds_per_epoch=None)
    metrics["history"] = [dict(h, seconds=None) for h in metrics["history"]]
    return metrics


def test_same_seed_same_metrics(tiny_data, tmp_path):
    for out in ("a", "b"):
        result = run("vae.py", "--quick", "--hidden", "20", "20", "--epochs", "2", "--data-dir", tiny_data,
                     "--out", tmp_path / out)
        assert result.returncode == 0, result.stderr
    a, b = (json.loads((tmp_path / out / "mlp_20_20_metrics.json").read_text()) for out in ("a", "b"))
    assert without_timings(a) == without_timings(b)
    assert len(a["history"]) == 2 and a["test"]["neg_elbo"] > 0


def interrupt_in_epoch(monkeypatch, epoch):
    """Ctrl-C during the given epoch's test evaluation, after its training steps and before its checkpoint."""
    real_evaluate, calls = vae.evaluate, []

    def evaluate(*a, **k):
        calls.append(1)
        if len(calls) == epoch:
            raise KeyboardInterrupt
        return real_evaluate(*a, **k)

    monkeypatch.setattr(vae, "evaluate", evaluate)


def test_interrupted_training_resumes_to_the_same_result(tiny_data, tmp_path, monkeypatch, capsys):
    args = ["--quick", "--hidden", "20", "20", "--epochs", "3", "--data-dir", str(tiny_data)]
    vae.main(args + ["--out", str(tmp_path / "straight")])

    with monkeypatch.context() as m:
        interrupt_in_epoch(m, 3)
        with pytest.raises(bookkeeping.Interrupted, match="epoch 2 is saved in .*mlp_20_20.pt; run the same command"):
            vae.main(args + ["--out", str(tmp_path / "resumed")])
    assert not (tmp_path / "resumed" / "mlp_20_20_metrics.json").exists()
    vae.main(args + ["--out", str(tmp_path / "resumed")])
    assert "resuming after epoch 2" in capsys.readouterr().out
    a, b = (json.loads((tmp_path / d / "mlp_20_20_metrics.json").read_text()) for d in ("straight", "resumed"))
    assert without_timings(a) == without_timings(b)


def test_resume_restores_the_random_state_after_the_graph_warm_up(tiny_data, tmp_path, monkeypatch):
    """On CUDA the graph's warm-up draws random numbers before the first epoch. A resumed run must restore the
    saved random state after that, or its noise differs from the uninterrupted run's. Here a stand-in for the
    graph wrapper draws from the CPU generator the same way, so the order is checked without a GPU."""
    def warm_up_then_plain(step, model, opt, batch):
        torch.randn(1000)                       # what a warm-up's reparameterisation noise does to the RNG
        return step

    monkeypatch.setattr(vae, "use_cuda_graph", lambda args, device: True)
    monkeypatch.setattr(vae, "make_optimizer", lambda model, lr, capturable=False: torch.optim.Adam(
        model.parameters(), lr=lr))
    monkeypatch.setattr(vae, "cuda_graph_or_plain", warm_up_then_plain)
    args = ["--quick", "--hidden", "20", "20", "--epochs", "3", "--data-dir", str(tiny_data)]
    vae.main(args + ["--out", str(tmp_path / "straight")])
    with monkeypatch.context() as m:
        interrupt_in_epoch(m, 2)
        with pytest.raises(bookkeeping.Interrupted):
            vae.main(args + ["--out", str(tmp_path / "resumed")])
    vae.main(args + ["--out", str(tmp_path / "resumed")])
    a, b = (json.loads((tmp_path / d / "mlp_20_20_metrics.json").read_text()) for d in ("straight", "resumed"))
    assert without_timings(a) == without_timings(b)


def test_checkpoint_loads_with_weights_only(tiny_data, tmp_path):
    vae.main(["--quick", "--hidden", "20", "20", "--data-dir", str(tiny_data), "--out", str(tmp_path)])
    ckpt = torch.load(tmp_path / "mlp_20_20.pt", weights_only=True)
    assert ckpt["complete"] and ckpt["model"] == {"arch": "mlp", "hidden": [20, 20], "latent_dim": 20}
    assert ckpt["metrics"]["test"]["neg_elbo"] > 0
    model, _ = bookkeeping.load_trained(tmp_path / "mlp_20_20.pt", vae.MLPVAE, ckpt["model"], "python vae.py")
    assert torch.equal(model.mu.weight, ckpt["state_dict"]["mu.weight"])


def test_missing_data_is_one_line_and_exit_2(tmp_path):
    result = run("vae.py", "--quick", "--data-dir", tmp_path / "nowhere", "--out", tmp_path / "out")
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr
    assert str(tmp_path / "nowhere" / "MNIST" / "raw") in lines[0]
    assert all(name in lines[0] for name in vae.MNIST_FILES)


@pytest.mark.parametrize("flags", [["--epochs", "0"], ["--hidden", "-5", "100"], ["--lr", "0"],
                                   ["--batch-size", "-1"], ["--no-such-flag"]])
def test_bad_flags_give_the_argparse_error(flags, tmp_path):
    result = run("vae.py", *flags, "--out", tmp_path)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "error:" in lines[0] and "Traceback" not in result.stderr


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_graph_step_matches_the_plain_loop(tiny_data, tmp_path):
    curves = []
    for graph in ([], ["--no-cuda-graph"]):
        out = tmp_path / ("plain" if graph else "graph")
        vae.main(["--quick", "--hidden", "100", "100", "--epochs", "5", "--device", "cuda", "--data-dir",
                  str(tiny_data), "--out", str(out), *graph])
        metrics = json.loads((out / "mlp_100_100_metrics.json").read_text())
        assert metrics["train_path"] == ("eager" if graph else "cuda-graph")
        curves.append([h["test_loss"] for h in metrics["history"]])
    for graph, plain in zip(*curves):
        assert abs(graph - plain) < 0.02 * plain


def test_a_model_is_the_same_alone_or_after_the_others(tiny_data, tmp_path):
    """Each model starts from the seed, so a rerun that skips the first models trains the rest identically."""
    vae.main(["--quick", "--data-dir", str(tiny_data), "--out", str(tmp_path / "all")])
    vae.main(["--quick", "--hidden", "300", "300", "--data-dir", str(tiny_data), "--out", str(tmp_path / "one")])
    a, b = (json.loads((tmp_path / d / "mlp_300_300_metrics.json").read_text()) for d in ("all", "one"))
    assert without_timings(a) == without_timings(b)


# ---------------------------------------------------------------------------------------------------------------
# KL per unit: posterior collapse, unit by unit

class FixedPosterior(vae.VAE):
    """A VAE whose encoder ignores nothing but returns a chosen μ(x), log σ²(x): some units forced to N(0, 1)."""

    def __init__(self, mu, logvar):
        super().__init__()
        self.config = {"arch": "fixed", "latent_dim": mu.shape[1]}
        self.mu_x, self.logvar_x = mu, logvar
        self.decoder = torch.nn.Sequential(torch.nn.Linear(mu.shape[1], 784), torch.nn.Unflatten(1, (1, 28, 28)))

    def encode(self, x):
        index = x.flatten(1)[:, 0].long()   # the test images carry their row number in their first pixel
        return self.mu_x[index], self.logvar_x[index]


def indexed_images(n):
    x = torch.zeros(n, 1, 28, 28)
    x[:, 0, 0, 0] = torch.arange(n).float()
    return x


def test_kl_per_unit_is_zero_on_units_forced_to_the_prior_and_sums_to_the_kl_term():
    g = torch.Generator().manual_seed(0)
    n = 300
    mu, logvar = torch.randn(n, 5, generator=g), torch.randn(n, 5, generator=g) * 0.5
    mu[:, [1, 3]], logvar[:, [1, 3]] = 0.0, 0.0          # q(z_u|x) = N(0, 1) for every x on units 1 and 3
    model = FixedPosterior(mu, logvar)
    x = indexed_images(n)
    kl = vae.kl_per_unit(model, x, batch_size=64)
    assert kl.shape == (5,) and kl[1] == 0 and kl[3] == 0 and (kl[[0, 2, 4]] > 0.1).all()
    # the units add up to the KL term of the −ELBO on the same images
    assert kl.sum().item() == pytest.approx(vae.evaluate(model, x)["kl"], rel=1e-5)
    # one unit against a Monte-Carlo estimate of E_x E_q[log q(z_u|x) − log N(z_u; 0, 1)]
    std = torch.exp(0.5 * logvar[:, 0])
    z = mu[:, 0] + std * torch.randn(4000, n, generator=g)
    log_q = torch.distributions.Normal(mu[:, 0], std).log_prob(z)
    log_p = torch.distributions.Normal(0.0, 1.0).log_prob(z)
    assert kl[0].item() == pytest.approx((log_q - log_p).mean().item(), rel=0.02)


def test_a_trained_models_units_add_up_to_its_kl(tiny_data):
    train_x, _, test_x, _ = vae.load_mnist(tiny_data, "cpu", quick=True)
    torch.manual_seed(0)
    model = vae.MLPVAE((16, 16), 6)
    kl = vae.kl_per_unit(model, test_x)
    assert kl.sum().item() == pytest.approx(vae.evaluate(model, test_x)["kl"], rel=1e-5)

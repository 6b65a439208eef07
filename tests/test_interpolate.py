"""Checks of interpolate.py: the paths against their formulas, the metrics against hand computations, and the
script end to end on tiny data with tiny models.

    python -m pytest tests/test_interpolate.py -q
"""
import json
import shutil

import numpy as np
import pytest
import torch

import interpolate
from classifier import classify, load_classifier
from conftest import run
from conv_vae import load_conv_vae
from vae import load_mnist


@pytest.fixture
def models(quick_models):
    return quick_models


def fresh_out(models, tmp_path):
    """A new --out holding only the two trained models, so that no test sees another's outputs."""
    for name in ("conv.pt", "classifier.pt"):
        shutil.copy(models / name, tmp_path / name)
    return tmp_path


def decode_and_classify(out, z):
    """The reference pipeline, written out: σ(decoder(z)) → classifier probabilities."""
    vae, classifier = load_conv_vae(out, "cpu", 20), load_classifier(out, "cpu")
    with torch.no_grad():
        images = torch.sigmoid(vae.decode(z))
    return images, classify(classifier, images)


# ---------------------------------------------------------------------------------------------------------------
# The paths

def test_interpolate_is_evenly_spaced_from_end_to_end():
    z_a, z_b = torch.tensor([0.0, 2.0, -1.0]), torch.tensor([4.0, -2.0, 3.0])
    z = interpolate.interpolate(z_a, z_b, 5)
    # by hand: t = 0, 1/4, 1/2, 3/4, 1
    expected = torch.tensor([[0.0, 2.0, -1.0], [1.0, 1.0, 0.0], [2.0, 0.0, 1.0], [3.0, -1.0, 2.0], [4.0, -2.0, 3.0]])
    assert z.shape == (5, 3)
    assert torch.allclose(z, expected, atol=1e-6)
    g = torch.Generator().manual_seed(0)
    z_a, z_b = torch.randn(20, generator=g), torch.randn(20, generator=g)
    z = interpolate.interpolate(z_a, z_b, 7)
    assert torch.equal(z[0], z_a) and torch.equal(z[-1], z_b)
    assert torch.allclose(z[1:] - z[:-1], ((z_b - z_a) / 6).expand(6, 20), atol=1e-6)


def slerp_reference(a, b, steps):
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    omega = np.arccos(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))
    return np.stack([(np.sin((1 - t) * omega) * a + np.sin(t * omega) * b) / np.sin(omega)
                     for t in np.linspace(0, 1, steps)])


def test_slerp_follows_the_great_circle():
    g = torch.Generator().manual_seed(1)
    z_a, z_b = torch.randn(20, generator=g), torch.randn(20, generator=g)
    z = interpolate.slerp(z_a, z_b, 9)
    assert z.shape == (9, 20)
    assert torch.allclose(z[0], z_a, atol=1e-6) and torch.allclose(z[-1], z_b, atol=1e-6)
    assert np.allclose(z.numpy(), slerp_reference(z_a, z_b, 9), atol=1e-5)

    # ends of equal norm: slerp keeps that norm all the way, while the straight line cuts inside the sphere
    z_b = z_b / z_b.norm() * z_a.norm()
    norms, linear_norms = interpolate.slerp(z_a, z_b, 9).norm(dim=1), interpolate.interpolate(z_a, z_b, 9).norm(dim=1)
    assert torch.allclose(norms, z_a.norm().expand(9), rtol=1e-5)
    assert linear_norms[4] < 0.9 * z_a.norm()

    # parallel ends (Ω = 0): no circle to follow, so the straight line
    z_b = 3 * z_a
    assert torch.allclose(interpolate.slerp(z_a, z_b, 6), interpolate.interpolate(z_a, z_b, 6), atol=1e-5)
    assert torch.isfinite(interpolate.slerp(torch.zeros(20), z_a, 4)).all()


# ---------------------------------------------------------------------------------------------------------------
# The metrics, on hand-made frames and probabilities

def test_path_metrics_by_hand():
    # 5 frames from a 4 to a 7, passing through a 9 and a 1
    probs = torch.full((5, 10), 0.01)
    for step, (digit, p) in enumerate([(4, 0.9), (4, 0.6), (9, 0.4), (1, 0.5), (7, 0.95)]):
        probs[step, digit] = p
    # frame i is a constant image of brightness b_i: ‖x_{i+1} − x_i‖₂ = 28 |b_{i+1} − b_i|
    brightness = [0.0, 0.5, 0.5, 0.25, 1.0]
    images = torch.tensor(brightness)[:, None, None, None].expand(5, 1, 28, 28)
    m = interpolate.path_metrics(images, probs, (4, 7))

    assert m["labels"] == [4, 4, 9, 1, 7]
    assert np.allclose(m["confidences"], [0.9, 0.6, 0.4, 0.5, 0.95])
    assert m["t"] == [0, 0.25, 0.5, 0.75, 1]
    assert m["changes"] == [{"step": 2, "t": 0.5, "from": 4, "to": 9}, {"step": 3, "t": 0.75, "from": 9, "to": 1},
                            {"step": 4, "t": 1.0, "from": 1, "to": 7}]
    assert m["intermediate_digits"] == [9, 1]
    assert m["min_confidence"]["step"] == 2 and m["min_confidence"]["t"] == 0.5
    assert m["min_confidence"]["value"] == pytest.approx(0.4)
    assert m["mean_frame_l2"] == pytest.approx(28 * (0.5 + 0 + 0.25 + 0.75) / 4, rel=1e-6)
    json.dumps(m)                                  # plain values, ready for the metrics file

    steady = interpolate.path_metrics(images[:2], probs[:2], (4, 7))
    assert steady["changes"] == [] and steady["intermediate_digits"] == []


def test_third_digit_frames_on_hand_made_paths():
    pairs = [(4, 7), (0, 1), (2, 9)]
    labels = torch.tensor([[4, 4, 9, 9, 1, 7],     # a 9 and a 1 between: 3 frames
                           [0, 0, 0, 1, 1, 1],     # straight: none
                           [3, 3, 3, 3, 3, 3]])    # never either end: all 6
    expected = [sum(label not in pair for label in row) for pair, row in zip(pairs, labels.tolist())]
    assert expected == [3, 0, 6]
    assert interpolate.third_digit_frames(labels, pairs).tolist() == expected


def test_all_pairs_matches_one_path_at_a_time(models):
    """The 45 pairs are one batched decode and classify; each must equal its own path decoded alone."""
    vae, classifier = load_conv_vae(models, "cpu", 20), load_classifier(models, "cpu")
    g = torch.Generator().manual_seed(5)
    ends = {d: {"z": torch.randn(20, generator=g)} for d in range(10)}
    results, pairs = interpolate.all_pairs(vae, classifier, ends, 6)
    assert len(pairs) == 45 and pairs[0] == (0, 1) and pairs[-1] == (8, 9)
    for kind, path in (("linear", interpolate.interpolate), ("slerp", interpolate.slerp)):
        for i, (a, b) in enumerate(pairs):
            _, probs = decode_and_classify(models, path(ends[a]["z"], ends[b]["z"], 6))
            confidence, label = probs.max(1)
            assert results[kind]["third_digit_frames"][i] == sum(d not in (a, b) for d in label.tolist())
            assert results[kind]["min_confidence"][i] == pytest.approx(confidence.min().item(), abs=1e-5)


def test_traversal_sweeps_one_unit_and_ignored_units_do_not_change(models):
    vae = load_conv_vae(models, "cpu", 20)
    with torch.no_grad():
        vae.decoder[0].weight[:, 3] = 0          # the decoder now ignores z_3
    values = [-3.0, 0.0, 1.5, 3.0]
    images = interpolate.traverse(vae, values)
    assert images.shape == (20, 4, 1, 28, 28)
    for u in (0, 3, 19):                         # the reference: decode the sweep of unit u by hand
        z = torch.zeros(4, 20)
        z[:, u] = torch.tensor(values)
        with torch.no_grad():
            torch.testing.assert_close(images[u], torch.sigmoid(vae.decode(z)))
    change = interpolate.traversal_change(images)
    assert change[3] == 0 and (change[torch.arange(20) != 3] > 0).all()
    by_hand = sum((images[0, i + 1] - images[0, i]).norm() for i in range(3))
    assert change[0].item() == pytest.approx(by_hand.item(), rel=1e-5)


# ---------------------------------------------------------------------------------------------------------------
# The ends

def test_prior_ends_are_the_most_confident_draws(models, monkeypatch):
    vae, classifier = load_conv_vae(models, "cpu", 20), load_classifier(models, "cpu")
    monkeypatch.setattr(interpolate, "DRAW_BATCH", 64)
    batches = [64, 64, 64, 64, 44]
    g = torch.Generator().manual_seed(3)
    _, probs = decode_and_classify(models, torch.cat([torch.randn(n, 20, generator=g) for n in batches]))
    confidence, label = probs.max(1)
    seen = label.unique().tolist()
    absent = next(d for d in range(10) if d not in seen) if len(seen) < 10 else None
    digits = (seen[0], absent) if absent is not None else (seen[0], seen[1])
    # a threshold digits[1] never reaches, so that every batch is drawn
    threshold = 0.0 if absent is not None else confidence[label == digits[1]].max().item() + 1e-6

    ends, drawn = interpolate.prior_ends(vae, classifier, digits, threshold, 300, torch.Generator().manual_seed(3),
                                         "cpu", per_digit=3)
    assert drawn == 300 and ends[digits[1]] == []
    # the reference: the three most confident draws of digits[0] at or above the threshold, by a sort of all 300
    ok = ((label == digits[0]) & (confidence >= threshold)).nonzero().squeeze(1)
    best = ok[confidence[ok].argsort(descending=True)][:3].tolist()
    assert [end["draw"] for end in ends[digits[0]]] == best
    assert all(end["source"] == "prior" for end in ends[digits[0]])
    assert [end["confidence"] for end in ends[digits[0]]] == pytest.approx(confidence[best].tolist(), abs=1e-5)

    # once both digits have enough samples at threshold 0, no more batches are drawn
    first = label[:64].tolist()
    two = [d for d in dict.fromkeys(first) if first.count(d) >= 2][:2]
    if len(two) == 2:
        ends, drawn = interpolate.prior_ends(vae, classifier, two, 0.0, 300, torch.Generator().manual_seed(3), "cpu",
                                             per_digit=2)
        assert drawn == 64 and all(end["draw"] < 64 for d in two for end in ends[d])


# ---------------------------------------------------------------------------------------------------------------
# The script, end to end

def test_cli_writes_outputs_then_skips(models, tiny_data, tmp_path):
    out = fresh_out(models, tmp_path)
    args = ["interpolate.py", "--quick", "--data-dir", tiny_data, "--out", out, "--steps", "6", "--max-draws", "300"]
    first = run(*args)
    assert first.returncode == 0, first.stderr
    assert (out / "interpolation.png").stat().st_size > 0 and (out / "interpolation_probs.png").stat().st_size > 0
    m = json.loads((out / "interpolation_metrics.json").read_text())
    assert m["config"]["steps"] == 6 and set(m["config"]["models"]) == {"conv.pt", "classifier.pt"}
    assert [m["ends"]["from"]["digit"], m["ends"]["to"]["digit"]] == [4, 7]
    assert sorted(m["all_ends"]) == [str(d) for d in range(10)]
    for key, digit in (("from", 4), ("to", 7)):     # the featured path uses the ends of the shared search
        assert m["ends"][key]["confidence"] == m["all_ends"][str(digit)][0]["confidence"]
    sets = m["sets_of_ends"]
    assert sets == min(len(e) for e in m["all_ends"].values()) and len(m["spread"]["linear"]["min_confidence"]) == sets
    assert m["spread"]["linear"]["min_confidence"][0] == m["linear"]["min_confidence"]["value"]
    frames = m["pairs"]["linear"]["third_digit_frames"]
    assert len(frames) == sets and all(len(f) == 45 for f in frames) and len(m["traversal"]["change"]) == 20
    assert m["pairs"]["linear"]["paths_with_third_digit"] == [sum(n > 0 for n in f) for f in frames]
    assert (out / "interpolation_pairs.png").is_file() and (out / "traversal.png").is_file()

    # the reference: rebuild both paths from the recorded ends by the formulas, decode and classify them again
    z_a, z_b = (torch.tensor(m["ends"][key]["z"]) for key in ("from", "to"))
    assert m["latent_distance"] == pytest.approx((z_a - z_b).norm().item(), rel=1e-5)
    t = torch.tensor([i / 5 for i in range(6)], dtype=torch.float64)[:, None]
    paths = {"linear": ((1 - t) * z_a.double() + t * z_b.double()).float(),
             "slerp": torch.tensor(slerp_reference(z_a, z_b, 6), dtype=torch.float32)}
    for name, z in paths.items():
        images, probs = decode_and_classify(out, z)
        assert len(m[name]["labels"]) == 6
        assert np.allclose(m[name]["confidences"], probs.max(1).values.numpy(), atol=1e-4)
        assert m[name]["mean_frame_l2"] == pytest.approx(
            (images[1:] - images[:-1]).flatten(1).norm(dim=1).mean().item(), rel=1e-3)
    _, probs = decode_and_classify(out, torch.stack([z_a, z_b]))
    assert m["ends"]["from"]["confidence"] == pytest.approx(probs[0, 4].item(), abs=1e-4)
    assert m["ends"]["to"]["confidence"] == pytest.approx(probs[1, 7].item(), abs=1e-4)

    again = run(*args)
    assert again.returncode == 0 and "interpolate: skipped" in again.stdout

    finished = (out / "interpolation_metrics.json").read_bytes()
    refused = run(*args[:-4], "--steps", "4", "--max-draws", "300")   # other settings: finished work is kept
    assert refused.returncode == 2 and "--force" in refused.stderr
    assert (out / "interpolation_metrics.json").read_bytes() == finished
    changed = run(*args[:-4], "--steps", "4", "--max-draws", "300", "--force")
    assert changed.returncode == 0 and "skipped" not in changed.stdout
    assert len(json.loads((out / "interpolation_metrics.json").read_text())["linear"]["labels"]) == 4


def test_unreachable_confidence_falls_back_to_test_images(models, tiny_data, tmp_path):
    out = fresh_out(models, tmp_path)
    # one prior draw has one label, so at least one end must come from the test images
    result = run("interpolate.py", "--quick", "--data-dir", tiny_data, "--out", out, "--confidence", "0.9999",
                 "--max-draws", "1", "--steps", "3")
    assert result.returncode == 0, result.stderr
    ends = json.loads((out / "interpolation_metrics.json").read_text())["ends"]
    fallbacks = [end for end in ends.values() if end["source"] == "test image"]
    assert fallbacks

    # the reference: encode every test image of that digit and take the best decoding by hand
    _, _, test_x, test_y = load_mnist(tiny_data, "cpu", quick=True)
    vae = load_conv_vae(out, "cpu", 20)
    for end in fallbacks:
        digit = end["digit"]
        assert f"falling back to test image {end['test_index']}" in result.stdout
        assert f"decodes to digit {digit} with confidence ≥ 0.9999" in result.stdout
        index = (test_y == digit).nonzero().squeeze(1)
        with torch.no_grad():
            mu = vae.encode(test_x[index])[0]
        _, probs = decode_and_classify(out, mu)
        best = int(probs[:, digit].argmax())
        assert end["test_index"] == int(index[best]) and test_y[end["test_index"]] == digit
        assert np.allclose(end["z"], mu[best].numpy(), atol=1e-5)
        assert end["confidence"] == pytest.approx(probs[best, digit].item(), abs=1e-5)
        assert end["confident"] == (end["confidence"] >= 0.9999)
        if not end["confident"]:
            assert "below the threshold" in result.stdout


@pytest.mark.parametrize("bad", [["--from", "4", "--to", "4"], ["--from", "11"], ["--steps", "1"]])
def test_bad_input_is_one_line(bad, tmp_path):
    result = run("interpolate.py", "--out", tmp_path, *bad)
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2 and len(lines) == 1 and lines[0].strip()
    assert "Traceback" not in result.stderr and bad[-2] in lines[0]
    assert not (tmp_path / "interpolation_metrics.json").exists()


def test_missing_model_names_the_step_to_run(tmp_path):
    result = run("interpolate.py", "--out", tmp_path)
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2 and len(lines) == 1 and "Traceback" not in result.stderr
    assert "python conv_vae.py" in lines[0]

"""Part 2: the convolutional VAE is exactly the assignment's architecture, layer for layer."""
import json
import shutil

import pytest
import torch
import torch.nn as nn

from classifier import load_classifier
from conv_vae import ConvVAE, decode_saved_models, first_of_each_digit, load_conv_vae
from vae import load_mnist

# (layer type, its hyper-parameters, the shape after it) for a batch of 2, as the assignment writes it
ENCODER = [(nn.Conv2d, (1, 32, 4, 2, 1), (2, 32, 14, 14)),
           (nn.Conv2d, (32, 64, 4, 2, 1), (2, 64, 7, 7)),
           (nn.Flatten, None, (2, 64 * 7 * 7)),
           (nn.Linear, (64 * 7 * 7, 256), (2, 256)),
           (nn.Linear, (256, 128), (2, 128))]
DECODER = [(nn.Linear, (20, 128), (2, 128)),
           (nn.Linear, (128, 256), (2, 256)),
           (nn.Linear, (256, 64 * 7 * 7), (2, 64 * 7 * 7)),
           (nn.Unflatten, None, (2, 64, 7, 7)),
           (nn.ConvTranspose2d, (64, 32, 4, 2, 1), (2, 32, 14, 14)),
           (nn.ConvTranspose2d, (32, 1, 4, 2, 1), (2, 1, 28, 28))]


def hyper(layer):
    if isinstance(layer, (nn.Conv2d, nn.ConvTranspose2d)):
        return (layer.in_channels, layer.out_channels, layer.kernel_size[0], layer.stride[0], layer.padding[0])
    if isinstance(layer, nn.Linear):
        return (layer.in_features, layer.out_features)
    return None


def trace(sequential, x):
    """(type, hyper-parameters, output shape) of every layer that is not an activation."""
    seen = []
    for layer in sequential:
        x = layer(x)
        if not isinstance(layer, nn.ELU):
            seen.append((type(layer), hyper(layer), tuple(x.shape)))
    return seen, x


def test_layers_and_shapes_match_the_assignment():
    model = ConvVAE(latent_dim=20)
    encoder, h = trace(model.encoder, torch.rand(2, 1, 28, 28))
    assert encoder == ENCODER
    assert hyper(model.mu) == hyper(model.logvar) == (128, 20)
    assert model.mu(h).shape == model.logvar(h).shape == (2, 20)
    decoder, _ = trace(model.decoder, torch.randn(2, 20))
    assert decoder == DECODER


def test_forward_gives_logits_and_posterior_parameters():
    logits, mu, logvar = ConvVAE()(torch.rand(3, 1, 28, 28))
    assert logits.shape == (3, 1, 28, 28) and mu.shape == logvar.shape == (3, 20)


def test_first_of_each_digit():
    labels = torch.tensor([3, 1, 3, 0, 1, 9, 0])
    assert first_of_each_digit(labels) == [3, 1, 0, 5]    # 0 at 3, 1 at 1, 3 at 0, 9 at 5


def test_part_3_writes_reconstructions_and_their_error(quick_models, tiny_data, tmp_path):
    """The reconstruction error is the Bernoulli term at z = μ(x), checked against the formula on the test set."""
    out = tmp_path / "out"
    shutil.copytree(quick_models, out)
    data = load_mnist(tiny_data, "cpu", quick=True)
    decode_saved_models(out, torch.device("cpu"), 20, 0, data[2:], force=True, quick=True)
    saved = json.loads((out / "saved_models.json").read_text())
    assert (out / "reconstructions.png").is_file() and saved["models"] == ["conv"]
    model = load_conv_vae(out, "cpu", 20)
    x = data[2]
    with torch.no_grad():
        p = torch.sigmoid(model.decode(model.encode(x)[0])).clamp(1e-7, 1 - 1e-7)
    by_hand = -(x * p.log() + (1 - x) * (1 - p).log()).flatten(1).sum(1).mean().item()
    assert saved["reconstruction_error"]["conv"] == pytest.approx(by_hand, rel=1e-3)


def test_classifier_judges_each_models_reconstructions(quick_models, tiny_data):
    acc = json.loads((quick_models / "reconstruction_accuracy.json").read_text())["accuracy"]
    assert set(acc) == {"test_images", "conv"}
    # the reference: classify σ(decode(μ(x))) image by image and count the hits
    _, _, test_x, test_y = load_mnist(tiny_data, "cpu", quick=True)
    vae, classifier = load_conv_vae(quick_models, "cpu", 20), load_classifier(quick_models, "cpu")
    with torch.no_grad():
        hits = [int(classifier(torch.sigmoid(vae.decode(vae.encode(x[None])[0]))).argmax()) == int(y)
                for x, y in zip(test_x, test_y)]
        plain = [int(classifier(x[None]).argmax()) == int(y) for x, y in zip(test_x, test_y)]
    assert acc["conv"] == pytest.approx(sum(hits) / len(hits), abs=1e-6)
    assert acc["test_images"] == pytest.approx(sum(plain) / len(plain), abs=1e-6)

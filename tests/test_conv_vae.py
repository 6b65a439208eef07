"""Part 2: the convolutional VAE is exactly the assignment's architecture, layer for layer."""
import torch
import torch.nn as nn

from conv_vae import ConvVAE

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

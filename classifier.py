"""
Part 4, first step — the digit classifier that judges what the VAE decodes.

    python classifier.py                   # trains the CNN, 8 epochs
    python classifier.py --quick           # a smoke test: every code path in seconds, into results-quick/

The assignment asks for labels handled as one-hot vectors, so the targets are one-hot rows t and the loss is the
cross-entropy written against them. It trains with the same loop as the VAEs (vae.train), so it also saves a
checkpoint every epoch and resumes after an interruption. Outputs under --out: classifier.pt and
classifier_metrics.json. The later steps load the model with `load_classifier` and score images with `classify`.
Then it judges how much digit identity survives each saved VAE's bottleneck: its accuracy on each model's
reconstructions σ(decode(μ(x))) of the whole test set, in reconstruction_accuracy.json.
"""
import functools

import torch
import torch.nn as nn
import torch.nn.functional as F

from bookkeeping import TrainingCheckpoint, cli, device_name, file_digest, load_trained, make_parser, parse, \
    save_json, start, up_to_date
from conv_vae import load_saved_models, saved_model_digests
from vae import add_latent_dim_arg, add_training_args, load_mnist, reconstruct, train

EPOCHS = 8
BATCH_SIZE = 128
LR = 2e-3            # peak Adam learning rate, cosine decay as for the VAEs


# ---------------------------------------------------------------------------------------------------------------
# Model

class Classifier(nn.Module):
    """Three 3×3 conv blocks with batch norm, each halving the image, then two linear layers."""

    def __init__(self):
        super().__init__()
        self.config = {"arch": "cnn"}
        self.net = nn.Sequential(                                                  # (B, 1, 28, 28)
            nn.Conv2d(1, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(), nn.MaxPool2d(2),     # (B, 32, 14, 14)
            nn.Conv2d(32, 64, 3, padding=1), nn.BatchNorm2d(64), nn.ReLU(), nn.MaxPool2d(2),    # (B, 64, 7, 7)
            nn.Conv2d(64, 128, 3, padding=1), nn.BatchNorm2d(128), nn.ReLU(), nn.MaxPool2d(2),  # (B, 128, 3, 3)
            nn.Flatten(),                                                          # (B, 1152)
            nn.Linear(128 * 3 * 3, 128), nn.ReLU(), nn.Dropout(0.3),
            nn.Linear(128, 10))                                                    # (B, 10) logits

    def forward(self, x):
        return self.net(x)


# ---------------------------------------------------------------------------------------------------------------
# Loss, on one-hot targets

def one_hot_cross_entropy(logits, targets):
    # H(t, p) = −Σ_c t_c log softmax(f(x))_c, with t the one-hot label
    return -(targets * F.log_softmax(logits, dim=1)).sum(1).mean()


def classifier_loss(model, x, t):
    """The batch's mean cross-entropy, to minimise, and its accuracy, to report."""
    logits = model(x)
    accuracy = (logits.argmax(1) == t.argmax(1)).float().mean()
    return one_hot_cross_entropy(logits, t), {"accuracy": accuracy.detach()}


# ---------------------------------------------------------------------------------------------------------------
# Using the trained classifier

@torch.no_grad()
def classify(model, images, batch_size=2000):
    """Class probabilities (N, 10) for images (N, 1, 28, 28) in [0, 1]."""
    model.eval()
    return torch.cat([F.softmax(model(xb), dim=1) for xb in images.split(batch_size)])


def accuracy(model, images, labels):
    return (classify(model, images).argmax(1) == labels).float().mean().item()


def load_classifier(out, device):
    """The trained classifier from --out, for the later steps."""
    model, _ = load_trained(out / "classifier.pt", Classifier, Classifier().config, "python classifier.py")
    return model.to(device)


# ---------------------------------------------------------------------------------------------------------------
# How much digit identity survives each VAE's bottleneck

def reconstruction_accuracy(out, device, args, data):
    """The classifier's accuracy on each saved VAE's reconstructions σ(decode(μ(x))) of the whole test set,
    beside its accuracy on the test images themselves. Writes reconstruction_accuracy.json."""
    path = out / "reconstruction_accuracy.json"
    config = {"classifier": file_digest(out / "classifier.pt"), "models": saved_model_digests(out, args.latent_dim),
              "quick": args.quick}
    if not config["models"]:
        print(f"classifier: no saved VAE in {out} whose reconstructions to judge; run vae.py and conv_vae.py first")
        return
    if up_to_date("reconstruction accuracy", path, config, force=args.force):
        return
    _, _, test_x, test_y = data()
    classifier = load_classifier(out, device)
    models = load_saved_models(out, args.latent_dim, device, "classifier")
    result = {"test_images": accuracy(classifier, test_x, test_y),
              **{name: accuracy(classifier, torch.sigmoid(reconstruct(model, test_x)), test_y)
                 for name, model in models.items()}}
    save_json(path, {"config": config, "accuracy": result})
    print("classifier: accuracy on the test images and on each model's reconstructions: "
          + ", ".join(f"{name} {a:.4f}" for name, a in result.items()))


# ---------------------------------------------------------------------------------------------------------------

def main(argv=None):
    p = make_parser("Part 4: train the CNN digit classifier on MNIST, with one-hot labels.")
    add_training_args(p, EPOCHS, BATCH_SIZE, LR)
    add_latent_dim_arg(p)   # which VAEs' reconstructions to judge
    args = parse(p, argv)
    args.epochs = args.epochs or (1 if args.quick else EPOCHS)
    device, out = start(args, vars(args))
    ckpt_path, metrics_path = out / "classifier.pt", out / "classifier_metrics.json"
    torch.manual_seed(args.seed)
    model = Classifier().to(device)
    config = {"model": model.config, "epochs": args.epochs, "batch_size": args.batch_size, "lr": args.lr,
              "seed": args.seed, "quick": args.quick}
    ckpt = TrainingCheckpoint(ckpt_path, model.config, config, force=args.force)

    @functools.cache
    def data():   # MNIST, loaded once, and only if a step below needs it
        return load_mnist(args.data_dir, device, args.quick)

    if not (ckpt.complete and up_to_date("classifier", metrics_path, config, [ckpt_path], args.force)):
        train_x, train_y, test_x, test_y = data()
        train_t = F.one_hot(train_y, 10).float()                  # labels as one-hot rows, (N, 10)
        history = train(model, classifier_loss, (train_x, train_t),
                        lambda model: {"test_accuracy": accuracy(model, test_x, test_y)}, args, ckpt, device)
        metrics = {"config": config, "device": device_name(device), "torch": str(torch.__version__),
                   "history": history, "test_accuracy": history[-1]["test_accuracy"],
                   "train_seconds": sum(h["seconds"] for h in history)}
        ckpt.finish(model, history, metrics)
        save_json(metrics_path, metrics)
        print(f"classifier: test accuracy {metrics['test_accuracy']:.4f}, trained in {metrics['train_seconds']:.1f}s")
    reconstruction_accuracy(out, device, args, data)


if __name__ == "__main__":
    cli(main)

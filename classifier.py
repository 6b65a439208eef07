"""
Part 4, first step — the digit classifier that judges what the VAE decodes.

    python classifier.py                   # trains the CNN, 8 epochs
    python classifier.py --quick           # every code path in seconds on a CPU

The assignment asks for labels handled as one-hot vectors, so the targets are one-hot rows t and the loss is the
cross-entropy written against them. Outputs under --out: classifier.pt and classifier_metrics.json. The later
steps load the model with `load_classifier` and score images with `classify`.
"""
import math
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

from vae import (UserError, add_training_args, cli, cosine_lr, device_name, load_mnist, load_trained, make_optimizer,
                 make_parser, make_step, outputs_complete, parse, read_checkpoint, save_checkpoint, save_json,
                 set_lr, start, train_epoch)

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


def one_hot_cross_entropy(logits, targets):
    # H(t, p) = −Σ_c t_c log softmax(f(x))_c, with t the one-hot label
    return -(targets * F.log_softmax(logits, dim=1)).sum(1).mean()


@torch.no_grad()
def classify(model, images, batch_size=2000):
    """Class probabilities (N, 10) for images (N, 1, 28, 28) in [0, 1]."""
    model.eval()
    return torch.cat([F.softmax(model(xb), dim=1) for xb in images.split(batch_size)])


def load_classifier(out, device):
    """The trained classifier from --out, for the later steps."""
    model, _ = load_trained(out / "classifier.pt", Classifier, Classifier().config, "python classifier.py")
    return model.to(device)


def classifier_step(model, opt, xb, tb):
    opt.zero_grad(set_to_none=True)
    logits = model(xb)
    loss = one_hot_cross_entropy(logits, tb)
    loss.backward()
    opt.step()
    accuracy = (logits.argmax(1) == tb.argmax(1)).float().mean()
    return torch.stack([loss, accuracy]).detach()


# ---------------------------------------------------------------------------------------------------------------

def main(argv=None):
    p = make_parser("Part 4: train the CNN digit classifier on MNIST, with one-hot labels.")
    add_training_args(p, EPOCHS, BATCH_SIZE, LR)
    args = parse(p, argv)
    args.epochs = args.epochs or (1 if args.quick else EPOCHS)
    device, out = start(args, vars(args))
    ckpt_path, metrics_path = out / "classifier.pt", out / "classifier_metrics.json"
    config = {"model": Classifier().config, "epochs": args.epochs, "batch_size": args.batch_size, "lr": args.lr,
              "seed": args.seed, "quick": args.quick}
    if not args.force and outputs_complete(metrics_path, config, [ckpt_path]) and read_checkpoint(ckpt_path):
        print("classifier: skipped, outputs are complete and match the settings (--force redoes it)")
        return

    train_x, train_y, test_x, test_y = load_mnist(args.data_dir, device, args.quick)
    train_t = F.one_hot(train_y, 10).float()                  # labels as one-hot rows, (N, 10)
    batch_size = min(args.batch_size, len(train_x))

    torch.manual_seed(args.seed)
    generator = torch.Generator().manual_seed(args.seed)
    model = Classifier().to(device)
    opt = make_optimizer(model, args.lr, capturable=device.type == "cuda")
    step = make_step(lambda xb, tb: classifier_step(model, opt, xb, tb), model, opt, (train_x, train_t), batch_size)
    history, t_start = [], time.perf_counter()
    for epoch in range(args.epochs):
        set_lr(opt, cosine_lr(args.lr, epoch, args.epochs))
        t0 = time.perf_counter()
        model.train()
        loss, train_acc = train_epoch(step, len(train_x), batch_size, generator, device)
        if not math.isfinite(loss):
            raise UserError(f"classifier: the loss became {loss} in epoch {epoch + 1}; nothing was saved; "
                            f"try a smaller --lr")
        test_acc = (classify(model, test_x).argmax(1) == test_y).float().mean().item()
        seconds = time.perf_counter() - t0
        history.append({"epoch": epoch + 1, "train_loss": loss, "train_accuracy": train_acc,
                        "test_accuracy": test_acc, "seconds": seconds})
        print(f"classifier epoch {epoch + 1}/{args.epochs}  loss {loss:.4f}  train acc {train_acc:.4f}  "
              f"test acc {test_acc:.4f}  {seconds:.2f}s")

    metrics = {"config": config, "device": device_name(device), "history": history,
               "test_accuracy": history[-1]["test_accuracy"], "train_seconds": time.perf_counter() - t_start}
    save_checkpoint(ckpt_path, {"model": model.config, "train": config, "complete": True,
                                "state_dict": model.state_dict(), "metrics": metrics})
    save_json(metrics_path, metrics)
    print(f"classifier: test accuracy {metrics['test_accuracy']:.4f}, trained in {metrics['train_seconds']:.1f}s")


if __name__ == "__main__":
    cli(main)

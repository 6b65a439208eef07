"""The classifier's parts against references: the one-hot loss against PyTorch's, and one training step."""
import torch
import torch.nn.functional as F

import classifier
from conftest import tiny_digits


def test_one_hot_cross_entropy_matches_cross_entropy_on_class_indices():
    torch.manual_seed(0)
    logits, labels = torch.randn(32, 10), torch.randint(0, 10, (32,))
    one_hot = F.one_hot(labels, 10).float()
    torch.testing.assert_close(classifier.one_hot_cross_entropy(logits, one_hot), F.cross_entropy(logits, labels))


def test_accuracy_counts_argmax_hits():
    torch.manual_seed(0)
    model = classifier.Classifier()
    images = torch.rand(50, 1, 28, 28)
    labels = torch.randint(0, 10, (50,))
    by_hand = sum(int(model.eval()(x[None]).argmax() == y) for x, y in zip(images, labels)) / 50
    assert abs(classifier.accuracy(model, images, labels) - by_hand) < 1e-9


def test_one_step_lowers_the_loss_on_a_tiny_batch():
    torch.manual_seed(0)
    model = classifier.Classifier().train()
    opt = torch.optim.Adam(model.parameters(), lr=2e-3)
    images, labels = tiny_digits(64, 0)
    x = torch.as_tensor(images).float().div(255).unsqueeze(1)
    t = F.one_hot(torch.as_tensor(labels).long(), 10).float()

    def eval_loss():
        with torch.no_grad():
            return classifier.one_hot_cross_entropy(model.eval()(x), t).item()

    before = eval_loss()
    model.train()
    loss, stats = classifier.classifier_loss(model, x, t)
    assert 0 <= stats["accuracy"] <= 1
    opt.zero_grad()
    loss.backward()
    opt.step()
    assert eval_loss() < before

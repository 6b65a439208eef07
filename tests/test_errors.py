"""Every mistake in the table of bad inputs gets a non-zero exit, one line on stderr that says what to do, no
traceback, and leaves the files of earlier steps as they were."""
import math
import pickle
import shutil

import pytest
import torch

import bookkeeping
import vae
from conftest import IDX_NAMES, make_tiny_mnist, run


def snapshot(folder):
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file()}


def one_line_error(result, *expected):
    """The run failed with exactly one stderr line that holds each expected piece of text."""
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    for text in expected:
        assert str(text) in lines[0], lines[0]
    return lines[0]


@pytest.fixture
def out(quick_models, tmp_path):
    """An --out holding the earlier steps' outputs (conv.pt, classifier.pt and their files)."""
    folder = tmp_path / "out"
    shutil.copytree(quick_models, folder)
    return folder


def test_mnist_absent(out, tmp_path):
    before = snapshot(out)
    result = run("conv_vae.py", "--quick", "--force", "--data-dir", tmp_path / "empty", "--out", out)
    one_line_error(result, tmp_path / "empty" / "MNIST" / "raw", *vae.MNIST_FILES, "--data-dir")
    assert snapshot(out) == before


@pytest.mark.parametrize("damage", ["truncate", "garbage"])
def test_damaged_idx_file(out, tmp_path, damage):
    data = make_tiny_mnist(tmp_path / "data", n_train=40, n_test=20)
    path = data / "MNIST" / "raw" / IDX_NAMES["train"][1]
    path.write_bytes(path.read_bytes()[:-7] if damage == "truncate" else b"not an idx file at all")
    before = snapshot(out)
    result = run("classifier.py", "--quick", "--force", "--data-dir", data, "--out", out)
    one_line_error(result, path, "damaged")
    assert snapshot(out) == before


@pytest.mark.parametrize("script, first", [("interpolate.py", "python conv_vae.py"),
                                           ("tsne.py", "python conv_vae.py"),
                                           ("report.py", "python vae.py")])
def test_later_step_before_its_model_exists(tmp_path, script, first):
    one_line_error(run(script, "--quick", "--out", tmp_path), first)


def test_classifier_missing_names_its_step(out):
    (out / "classifier.pt").unlink()
    one_line_error(run("interpolate.py", "--quick", "--out", out), "python classifier.py")


def test_checkpoint_of_another_architecture(out, tiny_data, tmp_path):
    mlp = tmp_path / "mlp"
    assert run("vae.py", "--quick", "--hidden", "20", "20", "--data-dir", tiny_data, "--out", mlp).returncode == 0
    shutil.copy(mlp / "mlp_20_20.pt", out / "conv.pt")
    before = snapshot(out)
    line = one_line_error(run("interpolate.py", "--quick", "--data-dir", tiny_data, "--out", out),
                          out / "conv.pt", "'arch': 'mlp'", "'hidden': [20, 20]", "'arch': 'conv'")
    assert "holds" in line and "asked for" in line
    assert snapshot(out) == before


@pytest.mark.parametrize("content", [b"\x00\x01 definitely not a checkpoint", pickle.dumps({"a": 1})],
                         ids=["garbage", "foreign-pickle"])
def test_corrupt_checkpoint(out, tiny_data, content):
    (out / "classifier.pt").write_bytes(content)
    before = snapshot(out)
    one_line_error(run("interpolate.py", "--quick", "--data-dir", tiny_data, "--out", out),
                   out / "classifier.pt", "cannot be read safely")
    assert snapshot(out) == before


class RunsCode:
    """A pickle that runs code when loaded: what a malicious .pt file would carry."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


def test_pickle_carrying_code_is_refused_not_run(tmp_path):
    marker, evil = tmp_path / "was-run", tmp_path / "evil.pt"
    torch.save({"model": {}, "state_dict": RunsCode(marker), "complete": True}, evil)
    with pytest.raises(bookkeeping.UserError, match="cannot be read safely"):
        bookkeeping.read_checkpoint(evil)
    assert not marker.exists()
    torch.load(evil, weights_only=False)   # the same file, loaded unsafely, does run it: the test can fail
    assert marker.exists()


def test_nan_loss_keeps_the_last_good_checkpoint(tiny_data, tmp_path, monkeypatch):
    real_loss, calls = vae.vae_loss, []

    def nan_from_epoch_2(model, x):      # 320 tiny training images: 2 batches of 128 per epoch
        calls.append(1)
        loss, stats = real_loss(model, x)
        return (loss * math.nan if len(calls) > 2 else loss), stats

    monkeypatch.setattr(vae, "vae_loss", nan_from_epoch_2)
    args = ["--quick", "--hidden", "20", "20", "--epochs", "3", "--data-dir", str(tiny_data), "--out", str(tmp_path)]
    with pytest.raises(bookkeeping.UserError,
                       match=r"became nan in epoch 2; the last good checkpoint .* \(epoch 1\) was kept"):
        vae.main(args)
    ckpt = bookkeeping.read_checkpoint(tmp_path / "mlp_20_20.pt")
    assert not ckpt["complete"] and len(ckpt["history"]) == 1
    assert all(torch.isfinite(v).all() for v in ckpt["state_dict"].values())


def test_nan_loss_from_the_command_line(tiny_data, tmp_path):
    result = run("vae.py", "--quick", "--hidden", "20", "20", "--lr", "1e9", "--data-dir", tiny_data,
                 "--out", tmp_path)
    one_line_error(result, "became nan in epoch 1", "--lr")


def test_out_that_cannot_be_written(tiny_data, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    one_line_error(run("vae.py", "--quick", "--data-dir", tiny_data, "--out", blocker / "results"),
                   blocker / "results", "--out")


@pytest.mark.parametrize("device", ["cuda", "mps"])
def test_device_that_is_not_there(tiny_data, tmp_path, device):
    if device == "cuda" and torch.cuda.is_available() or device == "mps" and torch.backends.mps.is_available():
        pytest.skip(f"this machine has {device}")
    one_line_error(run("vae.py", "--quick", "--device", device, "--data-dir", tiny_data, "--out", tmp_path),
                   f"--device {device}", "available: cpu")


@pytest.mark.parametrize("script, flags", [
    ("vae.py", ["--epochs", "0"]), ("vae.py", ["--hidden", "100", "-3"]), ("conv_vae.py", ["--batch-size", "0"]),
    ("classifier.py", ["--lr", "-1"]), ("tsne.py", ["--n-samples", "0"]), ("interpolate.py", ["--steps", "1"]),
    ("interpolate.py", ["--from", "10"]), ("interpolate.py", ["--from", "3", "--to", "3"]),
    ("vae.py", ["--lr", "abc"]), ("classifier.py", ["--epochs", "two"])])
def test_invalid_flags(tmp_path, script, flags):
    line = one_line_error(run(script, *flags, "--out", tmp_path), "error: argument")
    assert result_names_flag(line, flags[0])
    assert "positive_" not in line, line   # "must be a positive number, got abc", not the type function's name


def result_names_flag(line, flag):
    return flag in line or flag.lstrip("-") in line

"""Shared test fixtures: a tiny MNIST written in IDX format, so that tests never need the real data set."""
import os
import signal
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

# A shell that starts a job in the background without job control makes it ignore SIGINT, and its children inherit
# that; then no Ctrl-C test could interrupt anything. Tests run as from a terminal: SIGINT raises KeyboardInterrupt
# here, and the programs they start get the default action.
signal.signal(signal.SIGINT, signal.default_int_handler)

IDX_NAMES = {"train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
             "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")}


def write_idx(path, array):
    """The IDX format: two zero bytes, the type code 0x08 (uint8), the number of dims, each dim as a big-endian
    uint32, then the data."""
    array = np.ascontiguousarray(array, dtype=np.uint8)
    header = bytes([0, 0, 0x08, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    Path(path).write_bytes(header + array.tobytes())


def tiny_digits(n, seed):
    """n fake 'digits': class c is a bright bar at row 4 + 2c and one at column 4 + 2c, plus noise, so that a
    classifier can learn them in a few steps and a VAE has structure to model."""
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % 10
    rng.shuffle(labels)
    images = rng.integers(0, 40, size=(n, 28, 28))
    for i, c in enumerate(labels):
        images[i, 4 + 2 * c: 6 + 2 * c, 4:24] = 255
        images[i, 4:24, 4 + 2 * c: 6 + 2 * c] = 220
    return images.astype(np.uint8), labels.astype(np.uint8)


def make_tiny_mnist(root, n_train=320, n_test=160):
    raw = Path(root) / "MNIST" / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    for split, n, seed in (("train", n_train, 0), ("test", n_test, 1)):
        images, labels = tiny_digits(n, seed)
        write_idx(raw / IDX_NAMES[split][0], images)
        write_idx(raw / IDX_NAMES[split][1], labels)
    return Path(root)


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory):
    return make_tiny_mnist(tmp_path_factory.mktemp("mnist"))


def run(*args, cwd=ROOT, timeout=300):
    """Run a command as a student would (python script.py ... or bash run_all.sh ...); returns CompletedProcess."""
    # PYTHON: run_all.sh starts each step with this interpreter, the one running the tests
    env = dict(os.environ, MPLBACKEND="Agg", PYTHONUNBUFFERED="1", PYTHON=sys.executable)
    cmd = [sys.executable, *map(str, args)] if str(args[0]).endswith(".py") else list(map(str, args))
    return subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="session")
def quick_models(tiny_data, tmp_path_factory):
    """A folder with conv.pt and classifier.pt, quick-trained on the tiny data, for the Part 4 steps.
    Copy what you need out of it: tests must not change it."""
    out = tmp_path_factory.mktemp("models")
    for script in ("conv_vae.py", "classifier.py"):
        result = run(script, "--quick", "--data-dir", tiny_data, "--out", out)
        assert result.returncode == 0, result.stderr
    return out

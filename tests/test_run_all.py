"""The whole chain end to end on the tiny data: every output appears, a rerun skips every step and leaves the
files byte for byte as they were, and a run killed mid-way completes when run again."""
import json
import os
import signal
import subprocess
import sys
import time

import pytest

from conftest import ROOT, run

EXPECTED = ["mlp_100_100.pt", "mlp_200_200.pt", "mlp_300_300.pt", "conv.pt", "classifier.pt",
            "mlp_100_100_metrics.json", "mlp_200_200_metrics.json", "mlp_300_300_metrics.json", "conv_metrics.json",
            "classifier_metrics.json", "tsne_metrics.json", "interpolation_metrics.json",
            "mlp_100_100_samples.png", "mlp_200_200_samples.png", "mlp_300_300_samples.png", "conv_samples.png",
            "mlp_losses.png", "conv_losses.png", "saved_models_samples.png", "tsne.png", "interpolation.png",
            "interpolation_probs.png", "interpolation_pairs.png", "traversal.png", "reconstructions.png", "latent_distances.png",
            "reconstruction_accuracy.json", "saved_models.json", "REPORT.md", "REPORT.pdf", "kl_per_unit.png",
            "mlp_200_200_z2.pt", "mlp_200_200_z2_metrics.json", "mlp_200_200_z2_samples.png", "latent_2d.png"]


def contents(folder):
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file()}


@pytest.fixture(scope="module")
def chain(tiny_data, tmp_path_factory):
    """One quick run of the whole chain: (its --out, the CompletedProcess)."""
    out = tmp_path_factory.mktemp("chain") / "results"
    return out, run("bash", "run_all.sh", "--quick", "--data-dir", tiny_data, "--out", out)


def test_quick_chain_writes_every_output(chain):
    out, result = chain
    assert result.returncode == 0, result.stderr[-2000:]
    missing = [name for name in EXPECTED if not (out / name).is_file()]
    assert not missing
    report = (out / "REPORT.md").read_text()
    for heading in ("## Parts 1–3: the models", "### Observations on the latent space",
                    "### Observations on the interpolation", "](tsne.png)", "Smoke test (`--quick`)"):
        assert heading in report
    assert "SMOKE TEST" in result.stdout
    assert (out / "REPORT.pdf").read_bytes().startswith(b"%PDF")
    assert "all steps done" in result.stdout and result.stdout.count("done in") == 7


def test_rerun_skips_every_step_and_changes_no_file(chain, tiny_data):
    out, _ = chain
    before = contents(out)
    again = run("bash", "run_all.sh", "--quick", "--data-dir", tiny_data, "--out", out)
    assert again.returncode == 0, again.stderr[-2000:]
    for step in ("mlp_100_100", "mlp_200_200", "mlp_300_300", "mlp_200_200_z2", "conv", "Part 3", "classifier", "tsne",
                 "interpolate", "report"):
        assert f"{step}: skipped" in again.stdout, step
    assert contents(out) == before


def test_force_redoes_one_step(chain, tiny_data):
    out, _ = chain
    mtime = (out / "classifier.pt").stat().st_mtime_ns
    result = run("classifier.py", "--quick", "--force", "--data-dir", tiny_data, "--out", out)
    assert result.returncode == 0 and "skipped" not in result.stdout
    assert (out / "classifier.pt").stat().st_mtime_ns > mtime


def test_killed_run_completes_when_rerun(tiny_data, tmp_path):
    out = tmp_path / "results"
    env = dict(os.environ, MPLBACKEND="Agg", PYTHON=sys.executable)
    cmd = ["bash", "run_all.sh", "--quick", "--data-dir", str(tiny_data), "--out", str(out)]
    process = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                               start_new_session=True)
    deadline = time.monotonic() + 240
    while not (out / "mlp_losses.png").exists():   # Part 1 is done: kill the chain inside the next step
        assert process.poll() is None and time.monotonic() < deadline, "run_all.sh ended before it could be killed"
        time.sleep(0.05)
    time.sleep(1.0)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    # as if the kill had struck mid-write: a temporary file of a process that no longer exists
    (out / f".conv.pt.{process.pid}.tmp").write_bytes(b"half a checkpoint")
    done = {name: data for name, data in contents(out).items() if name.startswith("mlp_")}
    assert not (out / "REPORT.md").exists()

    rerun = run("bash", "run_all.sh", "--quick", "--data-dir", tiny_data, "--out", out)
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    for model in ("mlp_100_100", "mlp_200_200", "mlp_300_300"):
        assert f"{model}: skipped" in rerun.stdout
    after = contents(out)
    assert {name: after[name] for name in done} == done
    assert all((out / name).is_file() for name in EXPECTED)
    assert not [p.name for p in out.iterdir() if p.name.endswith(".tmp")]   # atomic_write's are .NAME.PID.tmp


@pytest.fixture(scope="module", params=[1, 2])
def small_latent(request, tiny_data, tmp_path_factory):
    """One quick run of the whole chain with a z of 1 or 2 units: (K, its --out, the CompletedProcess)."""
    out = tmp_path_factory.mktemp(f"z{request.param}") / "results"
    return request.param, out, run("bash", "run_all.sh", "--quick", "--latent-dim", request.param, "--data-dir",
                                   tiny_data, "--out", out)


def test_every_step_works_for_any_latent_size(small_latent):
    k, out, result = small_latent
    assert result.returncode == 0, result.stderr[-2000:]
    assert all((out / name).is_file() for name in EXPECTED)
    conv = json.loads((out / "conv_metrics.json").read_text())
    assert conv["config"]["model"]["latent_dim"] == k
    tsne = json.loads((out / "tsne_metrics.json").read_text())
    assert tsne["latent_dim"] == k
    interpolation = json.loads((out / "interpolation_metrics.json").read_text())
    assert len(interpolation["traversal"]["change"]) == k
    assert ("slerp" in interpolation["spread"]) == (k >= 2)
    if k == 1:   # slerp needs a plane: one line says so, and the report leaves it out
        assert result.stdout.count("slerp is left out") == 1
    report = (out / "REPORT.md").read_text()
    assert f"all {k} unit" in report and "(20-D)" not in report


def test_unknown_option_is_one_line(tmp_path):
    result = run("bash", "run_all.sh", "--epochs", "3", "--out", tmp_path)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "unknown option --epochs" in lines[0]

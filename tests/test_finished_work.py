"""Finished work is replaced only when the user asks: a step that meets finished outputs made with other settings
stops with one line (exit code 2) and leaves every file as it was; --force or another --out are the ways on. A step
whose input models changed redoes its outputs, which are stale. The report refuses inputs of different runs, and an
error that names a flag or a step to run names one that fits the case."""
import json
import shutil

import pytest
import torch

import bookkeeping
import report
from conftest import run
from conv_vae import ConvVAE
from test_report import write_metrics


def snapshot(folder):
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file()}


def one_line_error(result, *expected):
    assert result.returncode == 2, (result.stdout[-2000:], result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    for text in expected:
        assert str(text) in lines[0], lines[0]
    return lines[0]


MLP = ["vae.py", "--hidden", "20", "20"]


@pytest.fixture(scope="module")
def full_mlp(tiny_data, tmp_path_factory):
    """A finished "full" run (no --quick, 2 epochs) of a (20,20) MLP. Copy it: tests must not change it."""
    out = tmp_path_factory.mktemp("full") / "results"
    result = run(*MLP, "--epochs", "2", "--data-dir", tiny_data, "--out", out)
    assert result.returncode == 0, result.stderr
    return out


@pytest.fixture
def study(full_mlp, tmp_path):
    out = tmp_path / "results"
    shutil.copytree(full_mlp, out)
    return out


def test_a_quick_run_does_not_replace_a_finished_full_model(study, tiny_data):
    before = snapshot(study)
    line = one_line_error(run(*MLP, "--quick", "--data-dir", tiny_data, "--out", study),
                          study / "mlp_20_20.pt", "a finished full 2-epoch mlp_20_20", "a quick 1-epoch",
                          "another --out", "--force")
    assert "training again" not in line
    assert snapshot(study) == before


def test_a_new_lr_is_refused_then_replaces_the_model_with_force(study, tiny_data):
    before = snapshot(study)
    one_line_error(run(*MLP, "--epochs", "2", "--lr", "0.001", "--data-dir", tiny_data, "--out", study),
                   "a finished full 2-epoch mlp_20_20", "lr 0.003", "lr 0.001", "--force")
    assert snapshot(study) == before
    forced = run(*MLP, "--epochs", "2", "--lr", "0.001", "--force", "--data-dir", tiny_data, "--out", study)
    assert forced.returncode == 0, forced.stderr
    assert bookkeeping.read_checkpoint(study / "mlp_20_20.pt")["train"]["lr"] == 0.001


def test_an_unfinished_run_with_other_settings_is_kept(study, tiny_data):
    """A killed run's epochs are work too: other settings do not start over it without --force."""
    ckpt = bookkeeping.read_checkpoint(study / "mlp_20_20.pt")
    bookkeeping.save_checkpoint(study / "mlp_20_20.pt", dict(ckpt, complete=False, history=ckpt["history"][:1]))
    before = snapshot(study)
    one_line_error(run(*MLP, "--quick", "--data-dir", tiny_data, "--out", study),
                   "an unfinished full 2-epoch mlp_20_20 (1 of 2 epochs;", "--force")
    assert snapshot(study) == before


@pytest.fixture
def part4(quick_models, tmp_path):
    out = tmp_path / "results"
    shutil.copytree(quick_models, out)
    return out


TSNE = ["tsne.py", "--quick", "--n-samples", "60", "--n-iter", "60"]


def test_a_quick_tsne_does_not_replace_another_and_stale_ones_are_redone(part4, tiny_data):
    assert run(*TSNE, "--data-dir", tiny_data, "--out", part4).returncode == 0
    before = snapshot(part4)
    one_line_error(run("tsne.py", "--quick", "--data-dir", tiny_data, "--out", part4),
                   part4 / "tsne_metrics.json", "n_samples 60", "n_samples 300", "another --out", "--force")
    assert snapshot(part4) == before

    # the same settings, but a new conv.pt: the t-SNE of the old one is stale, and is redone
    ckpt = bookkeeping.read_checkpoint(part4 / "conv.pt")
    ckpt["state_dict"]["mu.bias"] += 0.5
    bookkeeping.save_checkpoint(part4 / "conv.pt", ckpt)
    again = run(*TSNE, "--data-dir", tiny_data, "--out", part4)
    assert again.returncode == 0, again.stderr
    assert "skipped" not in again.stdout and "conv.pt changed" in again.stdout
    config = json.loads((part4 / "tsne_metrics.json").read_text())["config"]
    assert config["models"]["conv.pt"] == bookkeeping.file_digest(part4 / "conv.pt")


def save_conv_with_latent_dim(out, latent_dim):
    """Replace conv.pt by a finished conv VAE of another latent size (untrained weights do for loading)."""
    ckpt = bookkeeping.read_checkpoint(out / "conv.pt")
    model = ConvVAE(latent_dim)
    bookkeeping.save_checkpoint(out / "conv.pt", dict(ckpt, model=model.config, state_dict=model.state_dict()))


@pytest.mark.parametrize("script", ["tsne.py", "interpolate.py", "classifier.py"])
def test_a_model_of_another_latent_size_gives_the_flag_that_matches_it(part4, tiny_data, script):
    save_conv_with_latent_dim(part4, 2)
    before = snapshot(part4)
    line = one_line_error(run(script, "--quick", "--data-dir", tiny_data, "--out", part4),
                          part4 / "conv.pt", "latent_dim 2", "--latent-dim 2")
    assert "first" not in line and "rerun" not in line    # no advice to train again over the 2-D model
    assert snapshot(part4) == before


# ---------------------------------------------------------------------------------------------------------------
# The report never mixes runs

def edit_config(path, **change):
    metrics = json.loads(path.read_text())
    metrics["config"].update(change)
    path.write_text(json.dumps(metrics))


@pytest.fixture
def metrics(tmp_path):
    """A full run's metrics, and a report of them already there."""
    out = write_metrics(tmp_path / "results")
    (out / "REPORT.md").write_text("an earlier report")
    (out / "REPORT.pdf").write_bytes(b"%PDF an earlier report")
    return out


def test_the_report_refuses_a_quick_tsne_among_full_runs(metrics):
    edit_config(metrics / "tsne_metrics.json", quick=True)
    before = snapshot(metrics)
    line = one_line_error(run("report.py", "--out", metrics), "tsne_metrics.json", "quick",
                          f"python tsne.py --force --out {metrics}")
    assert "conv_metrics.json" in line        # the files on the other side are named too
    assert snapshot(metrics) == before


def test_the_report_refuses_models_of_two_latent_sizes(metrics):
    conv = json.loads((metrics / "conv_metrics.json").read_text())
    conv["config"]["model"]["latent_dim"] = 2
    (metrics / "conv_metrics.json").write_text(json.dumps(conv))
    before = snapshot(metrics)
    with pytest.raises(bookkeeping.UserError, match=r"conv_metrics\.json latent_dim 2.*"
                                                    r"`python conv_vae.py --latent-dim 20 --force --out"):
        report.main(["--out", str(metrics)])
    assert snapshot(metrics) == before


def test_the_report_refuses_two_seeds(metrics):
    for name, seed in (("tsne_metrics.json", 0), ("interpolation_metrics.json", 0), ("classifier_metrics.json", 3)):
        edit_config(metrics / name, seed=seed)
    before = snapshot(metrics)
    with pytest.raises(bookkeeping.UserError, match=r"classifier_metrics\.json seed 3.*"
                                                    r"`python classifier.py --seed 0 --force --out"):
        report.main(["--out", str(metrics)])
    assert snapshot(metrics) == before


def test_the_report_refuses_a_tsne_of_another_conv_model(metrics):
    (metrics / "conv.pt").write_bytes(b"the conv VAE of now")
    edit_config(metrics / "tsne_metrics.json", models={"conv.pt": "0123456789abcdef"})
    before = snapshot(metrics)
    with pytest.raises(bookkeeping.UserError, match=r"tsne_metrics\.json.*conv\.pt.*python tsne.py"):
        report.main(["--out", str(metrics)])
    assert snapshot(metrics) == before


# ---------------------------------------------------------------------------------------------------------------
# --out

def test_a_step_that_cannot_start_leaves_no_empty_folder(tmp_path):
    out = tmp_path / "new" / "results"
    one_line_error(run("tsne.py", "--quick", "--out", out), "python conv_vae.py")
    assert not (tmp_path / "new").exists()


def test_out_that_is_a_file_says_so(tmp_path):
    path = tmp_path / "results"
    path.write_text("a file of the user's")
    one_line_error(run("tsne.py", "--quick", "--out", path), path, "is a file, not a folder")
    assert path.read_text() == "a file of the user's"

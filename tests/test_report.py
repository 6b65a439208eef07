"""report.py writes its observations from the metrics: change a number and the text changes with it."""
import json

import pytest

import report

MODELS = {"mlp_100_100": 104.5, "mlp_200_200": 98.9, "mlp_300_300": 97.0, "conv": 93.4}


def write_metrics(out, conv_loss=93.4, counts=(500, 700, 480, 450, 460, 400, 520, 560, 430, 500), low_share=0.08):
    """A full set of metrics files of the shape the steps write, with a few numbers to vary."""
    out.mkdir(exist_ok=True)
    losses = dict(MODELS, conv=conv_loss)
    for i, (name, loss) in enumerate(losses.items()):
        kl = 18.0 + i
        history = [{"epoch": e, "train_loss": loss + 3 - e, "test_loss": loss + 2.5 - e, "train_rec": 0,
                    "train_kl": 0, "test_rec": 0, "test_kl": 0, "seconds": 1.0} for e in (1, 2)]
        metrics = {"name": name, "config": {"model": {"latent_dim": 20}, "eval": {"iw_samples": 200, "iw_images": 1000}},
                   "device": "cpu: test", "history": history, "test": {"neg_elbo": loss, "rec": loss - kl, "kl": kl},
                   "iw_log_likelihood": -(loss - 3.5), "active_units": 10 + i, "seconds_per_epoch": 1.0}
        (out / f"{name}_metrics.json").write_text(json.dumps(metrics))
    (out / "classifier_metrics.json").write_text(json.dumps({"test_accuracy": 0.9942}))
    tsne = {"n_samples": sum(counts), "class_counts": list(counts), "mean_confidence": 0.93,
            "low_confidence_share": low_share,
            "knn_agreement": {"latent": 0.81, "latent_embedding": 0.84, "image_embedding": 0.90},
            "trustworthiness": {"latent_embedding": 0.95, "image_embedding": 0.97},
            "kl": {"latent": 1.5, "image": 1.3}, "seconds": {"latent": 10.0, "image": 11.0}}
    (out / "tsne_metrics.json").write_text(json.dumps(tsne))
    path = {"labels": [4, 4, 9, 7, 7], "changes": [{"step": 2, "t": 0.5, "from": 4, "to": 9},
                                                   {"step": 3, "t": 0.75, "from": 9, "to": 7}],
            "intermediate_digits": [9], "min_confidence": {"value": 0.55, "step": 2, "t": 0.5},
            "mean_frame_l2": 3.2, "z_norms": [4.5, 3.9, 3.4, 3.9, 4.4]}
    interpolation = {"config": {"from": 4, "to": 7},
                     "ends": {"from": {"source": "prior", "confidence": 0.99, "z": [0.0] * 20},
                              "to": {"source": "prior", "confidence": 0.98, "z": [0.0] * 20}},
                     "latent_distance": 6.1, "linear": path,
                     "slerp": dict(path, mean_frame_l2=3.4, z_norms=[4.5, 4.5, 4.5, 4.5, 4.4])}
    (out / "interpolation_metrics.json").write_text(json.dumps(interpolation))
    return out


def test_report_cites_the_metrics(tmp_path):
    out = write_metrics(tmp_path / "out")
    report.main(["--out", str(out)])
    text = (out / "REPORT.md").read_text()
    assert "| conv | 93.40 |" in text and "99.4%" in text
    assert "The convolutional VAE fits best: its test −ELBO is 93.40 nats per image, 3.60 below the best MLP" in text
    assert "calls 14.0% of them 1" in text                      # 700 of 5000
    assert "predicted digit changes 4→9 at t = 0.50, 9→7 at t = 0.75" in text
    assert "passes through 9 on the way" in text
    assert "|z| falls to 3.40, against 4.40 for slerp" in text and "cuts through the centre" in text
    assert (out / "REPORT.pdf").read_bytes().startswith(b"%PDF")


@pytest.mark.parametrize("change, before, after", [
    ({"conv_loss": 101.0}, "The convolutional VAE fits best", "mlp_300_300 fits best with a test −ELBO of 97.00"),
    ({"counts": (500,) * 10}, "spread unevenly", "spread roughly evenly"),
    ({"low_share": 0.31}, "8.0% of them get less than 0.5", "31.0% of them get less than 0.5")])
def test_report_changes_when_the_metrics_change(tmp_path, change, before, after):
    out = write_metrics(tmp_path / "out")
    report.main(["--out", str(out)])
    first = (out / "REPORT.md").read_text()
    write_metrics(out, **change)
    report.main(["--out", str(out)])        # not skipped: its inputs changed
    second = (out / "REPORT.md").read_text()
    assert before in first and before not in second
    assert after in second and after not in first


def test_unchanged_inputs_are_skipped(tmp_path, capsys):
    out = write_metrics(tmp_path / "out")
    report.main(["--out", str(out)])
    pdf = (out / "REPORT.pdf").read_bytes()
    report.main(["--out", str(out)])
    assert "report: skipped" in capsys.readouterr().out
    report.main(["--out", str(out), "--force"])
    assert (out / "REPORT.pdf").read_bytes() == pdf      # no date inside: the same inputs give the same bytes

"""report.py writes its observations from the metrics: change a number and the text changes with it, and a
verdict that its numbers cannot carry is not drawn."""
import json

import pytest

import report

MODELS = {"mlp_100_100": 104.5, "mlp_200_200": 98.9, "mlp_300_300": 97.0, "conv": 93.4}


def write_metrics(out, conv_loss=93.4, counts=(500, 700, 480, 450, 460, 400, 520, 560, 430, 500), low_share=0.08,
                  epochs=25, accuracy=0.9942, quick=False, knn_image=0.90, iw_neg_elbo_offset=1.0):
    """A full set of metrics files of the shape the steps write, with a few numbers to vary."""
    out.mkdir(parents=True, exist_ok=True)
    losses = dict(MODELS, conv=conv_loss)
    for i, (name, loss) in enumerate(losses.items()):
        kl = 18.0 + i
        history = [{"epoch": e, "train_loss": loss + 3 - e / epochs, "test_loss": loss + 2.5 - e / epochs,
                    "train_rec": 0, "train_kl": 0, "test_rec": 0, "test_kl": 0, "seconds": 1.0}
                   for e in range(1, epochs + 1)]
        # the IW subset's −ELBO differs from the whole test set's: the gap must use the subset's
        iw = {"log_likelihood": -(loss - 3.5), "neg_elbo": loss + iw_neg_elbo_offset, "samples": 200, "images": 1000}
        metrics = {"name": name, "config": {"model": {"latent_dim": 20}, "train": {"quick": quick},
                                            "eval": {"iw_samples": 200, "iw_images": 1000}},
                   "device": "cpu: test", "torch": "2.14.1", "history": history,
                   "test": {"neg_elbo": loss, "rec": loss - kl, "kl": kl, "images": 10000}, "iw": iw,
                   "active_units": 10 + i, "seconds_per_epoch": 1.0}
        (out / f"{name}_metrics.json").write_text(json.dumps(metrics))
    (out / "classifier_metrics.json").write_text(json.dumps({"config": {"quick": quick},
                                                             "test_accuracy": accuracy}))
    tsne = {"config": {"quick": quick}, "n_samples": sum(counts), "class_counts": list(counts),
            "mean_confidence": 0.93, "low_confidence_share": low_share,
            "knn_agreement": {"latent": 0.31, "latent_embedding": 0.84, "image_embedding": knn_image},
            "trustworthiness": {"latent_embedding": 0.95, "image_embedding": 0.97},
            "kl": {"latent": 1.5, "image": 1.3}, "seconds": {"latent": 10.0, "image": 11.0}}
    (out / "tsne_metrics.json").write_text(json.dumps(tsne))
    path = {"labels": [4, 4, 9, 7, 7], "changes": [{"step": 2, "t": 0.5, "from": 4, "to": 9},
                                                   {"step": 3, "t": 0.75, "from": 9, "to": 7}],
            "intermediate_digits": [9], "min_confidence": {"value": 0.55, "step": 2, "t": 0.5},
            "mean_frame_l2": 3.2, "z_norms": [4.5, 3.9, 3.4, 3.9, 4.4]}
    interpolation = {"config": {"from": 4, "to": 7, "confidence": 0.9, "quick": quick},
                     "ends": {"from": {"source": "prior", "confidence": 0.99, "z": [0.0] * 20},
                              "to": {"source": "prior", "confidence": 0.98, "z": [0.0] * 20}},
                     "latent_distance": 6.1, "linear": path,
                     "slerp": dict(path, mean_frame_l2=3.4, z_norms=[4.5, 4.5, 4.5, 4.5, 4.4])}
    (out / "interpolation_metrics.json").write_text(json.dumps(interpolation))
    return out


def report_text(tmp_path, **change):
    out = write_metrics(tmp_path / "out", **change)
    report.main(["--out", str(out)])
    return (out / "REPORT.md").read_text()


def test_report_cites_the_metrics(tmp_path):
    text = report_text(tmp_path)
    assert "| conv | 25 | 93.40 |" in text and "99.4%" in text
    assert "conv fits best, with a test −ELBO of 93.40 nats per image, 3.60 below the next model (mlp_300_300" in text
    assert "calls 14.0% of them 1" in text                      # 700 of 5000
    assert "predicted digit changes 4→9 at t = 0.50, 9→7 at t = 0.75" in text
    assert "passes through 9 on the way" in text
    assert "|z| falls to 3.40, against 4.40 for slerp" in text and "cuts through the centre" in text
    assert "Smoke test" not in text
    assert (tmp_path / "out" / "REPORT.pdf").read_bytes().startswith(b"%PDF")


def test_the_bound_gap_compares_the_same_images(tmp_path):
    """IW log-likelihood −(loss − 3.5) on the subset whose −ELBO is loss + 1: the gap is 4.5 nats, not 3.5 (what
    the −ELBO of the whole test set would give)."""
    text = report_text(tmp_path)
    assert "lies 4.50 to 4.50 nats above the ELBO" in text
    assert "lies 5.50 to 5.50" in report_text(tmp_path / "b", iw_neg_elbo_offset=2.0)


@pytest.mark.parametrize("change, before, after", [
    ({"conv_loss": 101.0}, "conv fits best", "mlp_300_300 fits best, with a test −ELBO of 97.00"),
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


def test_a_tie_is_called_a_tie(tmp_path):
    text = report_text(tmp_path, conv_loss=97.2)                   # 0.2 nats from mlp_300_300's 97.0
    assert "fits best" not in text
    assert "mlp_300_300 (97.00) and conv (97.20) tie for the best test −ELBO" in text
    text = report_text(tmp_path / "b", knn_image=0.85)             # 0.85 against 0.84
    assert "a tie, within 0.02" in text and "separate more cleanly" not in text


def test_one_epoch_models_are_not_compared(tmp_path):
    text = report_text(tmp_path, epochs=1)
    assert "fits best" not in text and "overfit" in text and "no model overfits" not in text
    assert "No model is called the best: some trained for only 1 epoch" in text


def test_a_weak_classifier_labels_nothing(tmp_path):
    text = report_text(tmp_path, accuracy=0.137)
    assert "only 13.7% test accuracy" in text
    for claim in ("spread unevenly", "contiguous regions", "passes through 9", "separate more cleanly"):
        assert claim not in text
    assert "the path says nothing about how a 4 turns into a 7" in text


def test_a_smoke_test_says_so_at_the_top(tmp_path):
    text = report_text(tmp_path, quick=True)
    assert "Smoke test (`--quick`)" in text.split("## Parts 1–3")[0]


def test_unchanged_inputs_are_skipped(tmp_path, capsys):
    out = write_metrics(tmp_path / "out")
    report.main(["--out", str(out)])
    pdf = (out / "REPORT.pdf").read_bytes()
    report.main(["--out", str(out)])
    assert "report: skipped" in capsys.readouterr().out
    report.main(["--out", str(out), "--force"])
    assert (out / "REPORT.pdf").read_bytes() == pdf      # no date inside: the same inputs give the same bytes

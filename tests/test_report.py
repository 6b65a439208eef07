"""report.py writes its observations from the metrics: change a number and the text changes with it, and a
verdict that its numbers cannot carry is not drawn. REPORT.pdf is typeset: every artist inside the margins, tables
drawn as tables, each figure numbered, and the code of every script in an appendix."""
import json
import re
import shutil
import subprocess

import matplotlib
import numpy as np
import pytest
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.image import imsave

import report
import typeset

MODELS = {"mlp_100_100": 104.5, "mlp_200_200": 98.9, "mlp_300_300": 97.0, "conv": 93.4, "mlp_200_200_z2": 140.0}


def write_metrics(out, conv_loss=93.4, counts=(500, 700, 480, 450, 460, 400, 520, 560, 430, 500), low_share=0.08,
                  epochs=25, accuracy=0.9942, quick=False, knn_image=0.90, iw_neg_elbo_offset=1.0,
                  ratio=(1.03, 1.01, 1.05), ratio_active=(1.12, 1.09, 1.15), third_digit=(2, 0),
                  recon_accuracy=(0.93, 0.97, 0.975, 0.985, 0.80), pairs_per_set=None, inactive_kl=0.001):
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
        latent = 2 if name == "mlp_200_200_z2" else 20
        metrics = {"name": name, "config": {"model": {"latent_dim": latent}, "train": {"quick": quick},
                                            "eval": {"iw_samples": 200, "iw_images": 1000}},
                   "device": "cpu: test", "torch": "2.14.1", "history": history,
                   "test": {"neg_elbo": loss, "rec": loss - kl, "kl": kl, "images": 10000}, "iw": iw,
                   "active_units": 2 if latent == 2 else 10 + i, "seconds_per_epoch": 1.0,
                   "unit_variance": [0.9] * 2 if latent == 2 else [0.9] * (10 + i) + [0.001] * (10 - i)}
        (out / f"{name}_metrics.json").write_text(json.dumps(metrics))
    units = {name: {"kl": [2.0] * 2, "variance": [0.9] * 2} if name == "mlp_200_200_z2" else
             {"kl": [1.5] * (10 + i) + [inactive_kl] * (10 - i), "variance": [0.9] * (10 + i) + [0.001] * (10 - i)}
             for i, name in enumerate(losses)}
    (out / "saved_models.json").write_text(json.dumps({"config": {}, "models": list(losses), "units": units,
                                                       "reconstruction_error": {n: l - 20 for n, l in losses.items()}}))
    (out / "reconstruction_accuracy.json").write_text(json.dumps({"config": {}, "accuracy": {
        "test_images": accuracy, **dict(zip(losses, recon_accuracy))}}))
    (out / "classifier_metrics.json").write_text(json.dumps({"config": {"quick": quick},
                                                             "test_accuracy": accuracy}))
    distance = lambda r, units: {"units": units, "half_size": 5000, "median_prior_to_a": 2.0 * r[0],  # noqa: E731
                                 "median_b_to_a": 2.0, "ratio": r[0], "ratio_95": list(r[1:])}
    tsne = {"config": {"quick": quick}, "n_samples": sum(counts), "class_counts": list(counts), "latent_dim": 20,
            "active_units": 13, "mean_confidence": 0.93, "low_confidence_share": low_share,
            "knn_agreement": {"prior": 0.31, "prior_active": 0.42, "posterior": 0.35, "posterior_active": 0.60,
                              "encoded": 0.85, "latent_map": 0.23, "latent_active_map": 0.84,
                              "image_map": knn_image, "encoded_map": 0.94},
            "trustworthiness": {"latent": 0.85, "latent_active": 0.95, "image": 0.97, "encoded": 0.98},
            "kl": {"latent": 1.5, "latent_active": 1.4, "image": 1.3, "encoded": 1.2},
            "seconds": {"latent": 10.0, "latent_active": 10.0, "image": 11.0, "encoded": 9.0}, "n_encoded": 5000,
            "distances": {"all": distance(ratio, 20), "active": distance(ratio_active, 13)},
            "direct_2d": {"knn_agreement": {"direct_2d": 0.75, "encoded_map": 0.94},
                          "trustworthiness_to_images": {"direct_2d": 0.91, "encoded_map": 0.93}}}
    (out / "tsne_metrics.json").write_text(json.dumps(tsne))
    path = {"labels": [4, 4, 9, 7, 7], "changes": [{"step": 2, "t": 0.5, "from": 4, "to": 9},
                                                   {"step": 3, "t": 0.75, "from": 9, "to": 7}],
            "intermediate_digits": [9], "min_confidence": {"value": 0.55, "step": 2, "t": 0.5},
            "mean_frame_l2": 3.2, "z_norms": [4.5, 3.9, 3.4, 3.9, 4.4]}
    pairs_per_set = pairs_per_set or {"linear": [2, 3, 2, 1, 2], "slerp": [third_digit[1]] * 5}
    first = {"linear": [3, 1] + [0] * 43, "slerp": [1] * third_digit[1] + [0] * (45 - third_digit[1])}
    spread = {"min_confidence": [0.55, 0.6, 0.5, 0.7, 0.65], "min_confidence_t": [0.5] * 5,
              "intermediate_digits": [[9], [9], [], [9, 8], []], "min_norm": [3.4] * 5}
    interpolation = {"config": {"from": 4, "to": 7, "confidence": 0.9, "quick": quick},
                     "ends": {"from": {"source": "prior", "confidence": 0.99, "z": [0.0] * 20},
                              "to": {"source": "prior", "confidence": 0.98, "z": [0.0] * 20}},
                     "latent_distance": 6.1, "linear": path, "sets_of_ends": 5,
                     "ends_from_prior": {str(d): 5 for d in range(10)},
                     "slerp": dict(path, mean_frame_l2=3.4, z_norms=[4.5, 4.5, 4.5, 4.5, 4.4]),
                     "spread": {"linear": spread, "slerp": spread},
                     "all_ends": {str(d): [{"source": "prior", "confidence": 0.95}] * 5 for d in range(10)},
                     # set 0: linear pairs 0 and 1 pass a third digit (3 and 1 frames); slerp the first third_digit[1]
                     "pairs": {"steps": 10, "pairs": [[a, b] for a in range(10) for b in range(a + 1, 10)],
                               **{kind: {"third_digit_frames": [first[kind]] * 5, "min_confidence": [[0.5] * 45] * 5,
                                         "paths_with_third_digit": pairs_per_set[kind]} for kind in first}},
                     "traversal": {"values": [-3, 0, 3], "change": [12.0] * 13 + [0.5] * 7, "order": list(range(20))}}
    (out / "interpolation_metrics.json").write_text(json.dumps(interpolation))
    return out


def report_text(tmp_path, **change):
    """REPORT.md's text for the test metrics with `change`: the filled template, without typesetting the PDF."""
    out = write_metrics(tmp_path / "out", **change)
    return report.markdown(report.load_metrics(out), out)


def test_report_cites_the_metrics(tmp_path):
    text = report_text(tmp_path)
    assert "| conv | 25 | 93.40 |" in text and "99.4%" in text
    assert "conv fits best, with a test −ELBO of 93.40 nats per image, 3.60 below the next model (mlp_300_300" in text
    assert "calls 14.0% of them 1" in text                      # 700 of 5000
    assert "predicted digit changes 4→9 at t = 0.50, 9→7 at t = 0.75" in text
    assert "passes through 9 on the way" in text
    assert "|z| falls to 3.40, against 4.40 for slerp" in text and "cuts through the centre" in text
    assert "Smoke test" not in text
    assert "Full run · cpu: test · torch 2.14.1" in text.split("##")[0]


def test_the_latent_space_observations_cite_their_numbers(tmp_path):
    text = report_text(tmp_path)
    # all units: ratio 1.03, interval 1.01 to 1.05: excludes 1, but within the 5% tie
    assert ("In all 20 units, the median distance from a prior sample to its nearest posterior sample of test half A "
            "is 2.06, against 2.00 from a posterior sample of half B: a ratio of 1.03 (95% interval 1.01 to 1.05): "
            "it is within 5% of 1, so the prior matches the aggregate posterior there.") in text
    # active units: 1.12, beyond its interval and the tie, but short of holes
    assert "a ratio of 1.12 (95% interval 1.09 to 1.15): beyond its interval, prior samples land 12% farther" in text
    assert "fall in holes" not in text
    assert "and 60.0% of a posterior sample's 10 nearest posterior samples share its digit: the encoded data" in text
    assert "of prior samples is 31.0% in all 20 units and 42.0% in the 13 active ones" in text
    # 45 pairs over 5 sets of ends: linear 2, 3, 2, 1, 2 pairs; slerp 0 in each: means 2.0 and 0.0, spread 2
    assert "linear paths pass through a third digit in 2.0 (from 1 to 3) of 45 pairs, slerp paths in 0" in text
    assert "a tie; the means differ by 2.0 pairs, no more than the larger of the spread over the sets of ends (2 pairs)" \
        in text
    assert "ranges from 0.50 to 0.70, and 3 of the 5 paths pass through a third digit (8, 9)." in text
    # traversal: the conv VAE has 13 active units (variance 0.9), each changing the image by 12.0, 7 inactive by 0.5
    assert "(variance of μ above 0.01; 13 of 20)" in text and "by 12.0 on average" in text
    assert "an inactive unit by 0.5" in text and "the decoder reads the units the encoder uses" in text
    # posterior collapse: 13 active units of 1.5 nats, 7 inactive of 0.001
    assert "| conv | 13 of 20 | 19.50 | 0.01 | 0.00 |" in text
    assert "each of the 13 active units carries 1.50 nats of KL, each of the 7 inactive units at most 0.00" in text
    assert "Those units have collapsed" in text and "The traversal below agrees" in text
    # the 2-D model against the t-SNE map of μ(x)
    assert "| μ(x) of mlp_200_200_z2, drawn directly | 0.750 | 0.910 |" in text
    assert "the t-SNE map of the richer latent space separates the digits more cleanly" in text
    # reconstructions: conv keeps the digit best, 98.5% against 99.42% on the test images
    assert "| conv | 73.40 | 98.50% |" in text and "conv keeps the digit best, losing 0.9%" in text


def test_latent_space_verdicts_follow_their_numbers(tmp_path):
    assert "its interval holds 1, so the prior matches" in report_text(tmp_path, ratio_active=(1.2, 0.98, 1.4))
    text = report_text(tmp_path / "h", ratio_active=(2.1, 1.9, 2.3))
    assert "many prior samples fall in holes of the aggregate posterior" in text
    text = report_text(tmp_path / "b", third_digit=(2, 9))
    assert "slerp paths in 9, over 5 sets of ends: linear paths pass through other digits less often" in text
    text = report_text(tmp_path / "c", recon_accuracy=(0.93, 0.97, 0.982, 0.985, 0.8))
    assert "conv and mlp_300_300 keep the digit about equally well" in text
    text = report_text(tmp_path / "d", quick=True)
    assert "fall in holes" not in text and "says nothing about how its prior covers the data" in text
    assert "the decoder reads the units" not in text and "Those units have collapsed" not in text
    # inactive units that still carry KL have not collapsed
    text = report_text(tmp_path / "e", inactive_kl=0.2)
    assert "Those units have collapsed" not in text and "none has fully collapsed" in text


def test_the_old_posterior_mean_measure_would_see_holes_the_new_one_does_not(tmp_path):
    """The null case, end to end through the measure and the verdict: a model whose inactive units are exactly
    N(0, 1) and whose prior equals its aggregate posterior. Compared with posterior means (the old measure), prior
    samples look far from the data; compared with posterior samples, they do not."""
    import torch
    import tsne
    g = torch.Generator().manual_seed(0)
    n, active, inactive = 4000, 4, 8
    # active units: μ ~ N(0, 1 − s²) and σ = s, so that μ + σ ε ~ N(0, 1); inactive: μ = 0, σ = 1
    s = 0.3
    mu = torch.cat([torch.randn(n, active, generator=g) * (1 - s * s) ** 0.5, torch.zeros(n, inactive)], 1)
    sigma = torch.cat([torch.full((n, active), s), torch.ones(n, inactive)], 1)
    posterior = mu + sigma * torch.randn(n, active + inactive, generator=g)
    prior = torch.randn(n // 2, active + inactive, generator=g)
    every = torch.ones(active + inactive, dtype=torch.bool)
    old, _ = tsne.prior_against_posterior(prior, mu, every, seed=0)
    new, _ = tsne.prior_against_posterior(prior, posterior, every, seed=0)
    assert old["ratio_95"][0] > report.HOLES_RATIO          # the old measure: "holes", from the noise units alone
    assert new["ratio_95"][0] <= 1 + report.TIE_DISTANCE and new["ratio_95"][1] >= 1 - report.TIE_DISTANCE
    assert "holes" in report.prior_coverage("all units", old, firm=True)
    assert "the prior matches the aggregate posterior" in report.prior_coverage("all units", new, firm=True)


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
    first, second = report_text(tmp_path / "a"), report_text(tmp_path / "b", **change)
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
    assert "the path says nothing about how a digit 4 turns into a digit 7" in text


def test_a_smoke_test_says_so_at_the_top(tmp_path):
    text = report_text(tmp_path, quick=True)
    top = text.split("## Parts 1–3")[0]
    assert "Smoke test (`--quick`)" in top and "Quick run" in top


def test_each_figure_sits_in_its_section_before_its_observations(tmp_path):
    text = report_text(tmp_path)
    assert "(mlp_losses.png is missing" in text and "![" not in text   # a figure not written is named, not shown
    for name in report.FIGURES:
        imsave(tmp_path / "out" / name, np.zeros((2, 2)))
    text = report_text(tmp_path)
    assert "## Figures" not in text
    sections = {s.split("\n")[0]: s for s in text.split("\n## ")}
    models, latent = sections["Parts 1–3: the models"], sections["Part 4: the latent space of the conv VAE"]
    assert models.index("](mlp_losses.png)") < models.index("](saved_models_samples.png)") < \
        models.index("### Observations")
    assert latent.index("](tsne.png)") < latent.index("### Observations on the latent space") < \
        latent.index("](interpolation.png)") < latent.index("### Observations on the interpolation")


# ---------------------------------------------------------------------------------------------------------------
# REPORT.pdf, typeset

FIGURE_SHAPES = {"mlp_losses.png": (40, 120), "tsne.png": (300, 60), "interpolation.png": (20, 110)}  # wide, tall


@pytest.fixture(scope="module")
def quick(tmp_path_factory):
    """A quick run's report, typeset once: (its folder, its Markdown, the appendix's code, its pages as figures).
    The code gets one extra file with lines far too long for the page; tsne.png is taller than a page."""
    out = write_metrics(tmp_path_factory.mktemp("quick") / "results", quick=True)
    rng = np.random.default_rng(0)
    for name, shape in FIGURE_SHAPES.items():
        imsave(out / name, rng.random(shape))
    report.main(["--out", str(out)])
    text = (out / "REPORT.md").read_text()
    code = dict(report.study_code(), **{"long_lines.py": "x = '" + "y" * 300 + "'\n" + "z = 1  # " + "word " * 60})
    return out, text, code, list(typeset.pages(text, out, code))


def texts(fig):
    return [t.get_text() for t in fig.texts]


def appendix_start(pages):
    return next(i for i, fig in enumerate(pages) if typeset.APPENDIX in texts(fig))


def test_every_artist_lies_inside_the_margins(quick):
    """Lay the report out, then ask the renderer where each text, image and rule landed on every page."""
    *_, pages = quick
    frame = (typeset.MARGIN - 0.5, typeset.MARGIN - 0.5, typeset.WIDTH - typeset.MARGIN + 0.5,
             typeset.HEIGHT - typeset.MARGIN + 0.5)
    images = 0
    with matplotlib.rc_context({"text.hinting": "no_hinting"}):   # measure as the PDF draws: unhinted
        for number, fig in enumerate(pages, 1):
            renderer = FigureCanvasAgg(fig).get_renderer()   # 72 dpi: a pixel is a point
            images += sum(len(ax.images) for ax in fig.axes)
            for artist in fig.texts + fig.axes + fig.artists:
                box = artist.get_window_extent(renderer)
                assert (box.x0 >= frame[0] and box.y0 >= frame[1] and box.x1 <= frame[2] and box.y1 <= frame[3]), \
                    (number, getattr(artist, "get_text", lambda: artist)(), box)
    assert images == len(FIGURE_SHAPES)


def test_a_figure_taller_than_a_page_is_scaled_to_fit_and_the_wide_ones_fill_the_text_width(quick):
    *_, pages = quick
    boxes = {ax.images[0].get_array().shape[:2]: ax.get_position() for fig in pages for ax in fig.axes}
    text_width = (typeset.RIGHT - typeset.LEFT) / typeset.WIDTH
    assert boxes[FIGURE_SHAPES["mlp_losses.png"]].width == pytest.approx(text_width)
    assert boxes[FIGURE_SHAPES["tsne.png"]].height < (typeset.TOP - typeset.BOTTOM) / typeset.HEIGHT
    assert boxes[FIGURE_SHAPES["tsne.png"]].width < text_width


def test_title_block_figures_and_page_numbers(quick):
    out, text, code, pages = quick
    first = texts(pages[0])
    assert first[0] == "Variational autoencoders on MNIST"
    assert any("Quick run" in t and "cpu: test" in t and "torch 2.14.1" in t for t in first)
    every = [t for fig in pages for t in texts(fig)]
    assert not any(re.search(r"\b20\d\d-\d\d-\d\d\b", t) for t in every)              # no date
    assert not any(str(out) in t for t in every) and str(out) not in text        # the folder is never printed
    captions = [t for t in every if re.fullmatch(r"Figure \d+\.", t)]
    assert captions == [f"Figure {n}." for n in range(1, len(FIGURE_SHAPES) + 1)]
    for number, fig in enumerate(pages, 1):
        assert f"{number} / {len(pages)}" in texts(fig)


def test_tables_are_drawn_as_tables(quick):
    """No Markdown source before the appendix: neither in the artists nor, where pdftotext is installed, in the
    PDF's text. The cells are artists of their own, numbers right-aligned on their row's baseline."""
    out, _, _, pages = quick
    body = pages[:appendix_start(pages)]
    for t in [t for fig in body for t in texts(fig)]:
        assert "| ---" not in t and "|---" not in t and not t.lstrip().startswith("#"), t
    cells = {t.get_text(): t for t in body[0].texts}
    assert cells["model"].get_fontweight() == "bold"
    assert cells["93.40"].get_horizontalalignment() == "right"
    assert cells["93.40"].get_position()[1] == cells["conv"].get_position()[1]
    if shutil.which("pdftotext"):   # the fixture's extra code file comes after this point: the PDF's pages agree
        shown = subprocess.run(["pdftotext", "-l", str(appendix_start(pages)), "-layout", str(out / "REPORT.pdf"), "-"],
                               capture_output=True, text=True, check=True).stdout
        assert "mlp_100_100" in shown and "93.40" in shown
        assert "| ---" not in shown and not any(line.lstrip().startswith("#") for line in shown.splitlines())


def test_the_appendix_holds_every_script(quick):
    out, _, code, pages = quick
    assert {"run_all.sh", "vae.py", "conv_vae.py", "classifier.py", "tsne.py", "interpolate.py", "report.py",
            "bookkeeping.py", "typeset.py"} <= code.keys()
    start = appendix_start(pages)
    assert texts(pages[start])[0] == typeset.APPENDIX                        # on a page of its own
    lines = [t for fig in pages[start:] for t in texts(fig)]
    files = {}                                                               # file → its lines, rebuilt
    for t in lines:
        if t in code:
            files[t] = current = []
        elif m := re.fullmatch(r" *(\d+|↪)(?:  (.*))?", t):
            if m[1] == "↪":
                current[-1] += " " + m[2]
            else:
                current.append(m[2] or "")
    assert files.keys() == code.keys()
    for name, source in code.items():                                       # wrapping only moves whitespace
        assert ["".join(line.split()) for line in files[name]] == \
            ["".join(line.split()) for line in source.rstrip("\n").split("\n")], name
    if shutil.which("pdftotext"):
        shown = subprocess.run(["pdftotext", str(out / "REPORT.pdf"), "-"], capture_output=True, text=True,
                               check=True).stdout
        assert "Appendix: the code" in shown
        shown = "".join(shown.split())
        for name, source in report.study_code().items():
            longest = max((line for line in source.split("\n") if len(line) < 100), key=len)
            assert name in shown and "".join(longest.split()) in shown, (name, longest)


@pytest.mark.skipif(not shutil.which("pdftotext"), reason="needs pdftotext (poppler-utils)")
def test_the_pdf_text_keeps_every_character(tmp_path):
    # Beyond Latin-1, matplotlib before 3.11 draws Type 3 glyphs as shapes without text: pdftotext finds no ∂ or α
    line = "∂C/∂Y from full N×N matrices, α ≥ 1 → ℓ_k"   # ℓ is not in the monospace font: its fallback too
    typeset.write_pdf(f"# Title\n\nIn the text: {line}\n", tmp_path, tmp_path / "t.pdf", code={"x.py": f"# {line}\n"})
    shown = subprocess.run(["pdftotext", str(tmp_path / "t.pdf"), "-"], capture_output=True, text=True,
                           check=True).stdout
    assert f"In the text: {line}" in shown and f"# {line}" in shown, shown


def test_unchanged_inputs_are_skipped_and_give_the_same_bytes(quick, tmp_path, capsys):
    """Another folder with the same inputs: the same bytes (no date inside). A rerun is skipped; the skip config
    holds a digest of every script in the appendix, so a changed script writes a new report."""
    first, *_ = quick
    out = write_metrics(tmp_path / "out", quick=True)
    for name in FIGURE_SHAPES:
        shutil.copy(first / name, out / name)
    report.main(["--out", str(out)])
    assert (out / "REPORT.pdf").read_bytes() == (first / "REPORT.pdf").read_bytes()
    capsys.readouterr()
    report.main(["--out", str(out)])
    assert "report: skipped" in capsys.readouterr().out
    config = json.loads((out / "report_metrics.json").read_text())["config"]
    assert config["code"] == {name: report.file_digest(report.ROOT / name) for name in report.study_code()}
    write_metrics(out, quick=True, conv_loss=90.0)
    report.main(["--out", str(out)])
    assert "report: wrote" in capsys.readouterr().out and "| conv | 25 | 90.00 |" in (out / "REPORT.md").read_text()

"""
The last step — one report of the whole study, written from the metrics files and figures under --out.

    python report.py                       # after the other steps; writes results/REPORT.md and REPORT.pdf
    python report.py --out results-quick

Every observation is computed from a number in the metrics files and cites it; nothing here is canned text, so a
different run gives a different report. REPORT.pdf holds the same text and every figure (matplotlib's PdfPages).
"""
import math
import textwrap

import matplotlib.pyplot as plt
from matplotlib.backends.backend_pdf import PdfPages

from vae import UserError, atomic_write, cli, file_digest, make_parser, outputs_complete, parse, prepare_out, \
    read_metrics, save_json

MODELS = ["mlp_100_100", "mlp_200_200", "mlp_300_300", "conv"]
STEPS = {**{name: "python vae.py" for name in MODELS[:3]}, "conv": "python conv_vae.py",
         "classifier": "python classifier.py", "tsne": "python tsne.py", "interpolation": "python interpolate.py"}
FIGURES = [("mlp_losses.png", "Part 1: losses of the three MLP VAEs (train solid, test dashed)"),
           *[(f"{m}_samples.png", f"Part 1: {m}, 15 samples from the prior") for m in MODELS[:3]],
           ("conv_losses.png", "Part 2: losses of the convolutional VAE"),
           ("conv_samples.png", "Part 2: conv VAE, 15 samples from the prior"),
           ("saved_models_samples.png", "Part 3: every saved model decodes the same 15 prior samples"),
           ("tsne.png", "Part 4: t-SNE of prior samples, coloured by predicted digit"),
           ("interpolation.png", "Part 4: interpolation, linear (top) and spherical (bottom)"),
           ("interpolation_probs.png", "Part 4: class probabilities along the path")]


def load_metrics(out):
    """Every step's metrics, or a one-line error naming the step to run first."""
    metrics = {}
    for name, step in STEPS.items():
        path = out / f"{name}_metrics.json"
        metrics[name] = read_metrics(path)
        if metrics[name] is None:
            raise UserError(f"{path} is missing or unreadable: run `{step}` first (with the same --out)")
    return metrics


def pct(x):
    return f"{100 * x:.1f}%"


# ---------------------------------------------------------------------------------------------------------------
# Observations: each sentence is computed from the numbers it cites

def model_observations(m):
    models = {name: m[name] for name in MODELS}
    loss = {name: mm["test"]["neg_elbo"] for name, mm in models.items()}
    best = min(loss, key=loss.get)
    best_mlp = min(MODELS[:3], key=loss.get)
    notes = []
    if best == "conv":
        notes.append(f"The convolutional VAE fits best: its test −ELBO is {loss['conv']:.2f} nats per image, "
                     f"{loss[best_mlp] - loss['conv']:.2f} below the best MLP ({best_mlp}, {loss[best_mlp]:.2f}).")
    else:
        notes.append(f"{best} fits best with a test −ELBO of {loss[best]:.2f} nats per image; the convolutional "
                     f"VAE reaches {loss['conv']:.2f}.")
    mlp = [loss[name] for name in MODELS[:3]]
    trend = "falls" if mlp[0] > mlp[1] > mlp[2] else "does not fall steadily"
    notes.append(f"Among the MLPs, the test −ELBO {trend} with width: {mlp[0]:.2f} (100,100), {mlp[1]:.2f} "
                 f"(200,200), {mlp[2]:.2f} (300,300).")
    kl = {name: mm["test"]["kl"] for name, mm in models.items()}
    most_kl = max(kl, key=kl.get)
    kl_list = ", ".join(f"{n} {v:.2f}" for n, v in kl.items())
    notes.append(f"Reconstruction is most of the loss: the KL term is {pct(kl[best] / loss[best])} of {best}'s "
                 f"total ({kl[best]:.2f} of {loss[best]:.2f} nats). "
                 + (f"The best model also spends the most KL ({kl_list}): a better decoder is worth more "
                    f"information in z." if most_kl == best else
                    f"The best model is not the one that spends the most KL ({kl_list}): {most_kl} puts more "
                    f"information in z and still fits worse."))
    gaps = {name: mm["test"]["neg_elbo"] + mm["iw_log_likelihood"] for name, mm in models.items()}
    k = models["conv"]["config"]["eval"]["iw_samples"]
    notes.append(f"The importance-weighted estimate of log p(x) (k = {k}) lies {min(gaps.values()):.2f} to "
                 f"{max(gaps.values()):.2f} nats above the ELBO: that gap is what the single-sample bound loses "
                 f"because q(z|x) is not the true posterior.")
    active = {name: mm["active_units"] for name, mm in models.items()}
    latent = models["conv"]["config"]["model"]["latent_dim"]
    notes.append(f"Not every latent dimension is used: {', '.join(f'{n} {a}' for n, a in active.items())} "
                 f"of {latent} units are active (variance of the posterior mean above 0.01); the others collapse "
                 f"to the prior and carry nothing about x.")
    final_gap = {name: mm["history"][-1]["test_loss"] - mm["history"][-1]["train_loss"] for name, mm in models.items()}
    worst = max(final_gap, key=final_gap.get)
    verdict = ("so no model overfits within this schedule" if final_gap[worst] < 1.0
               else f"so {worst} has started to overfit")
    notes.append(f"At the last epoch test −ELBO minus train −ELBO is at most {final_gap[worst]:.2f} nats "
                 f"({worst}), {verdict}.")
    return notes


def latent_observations(t):
    counts = t["class_counts"]
    n = sum(counts)
    share = [c / n for c in counts]
    top, low = max(range(10), key=share.__getitem__), min(range(10), key=share.__getitem__)
    chance = sum(s * s for s in share)
    knn = t["knn_agreement"]
    even = share[low] > 0 and share[top] / share[low] < 1.5
    notes = [
        f"Decoded prior samples are spread {'roughly evenly' if even else 'unevenly'} over the digits: the "
        f"classifier calls {pct(share[top])} of them {top} and {pct(share[low])} {low}, where MNIST has about 10% of "
        f"each" + ("." if even else "; the prior's mass is shared unevenly between the classes."),
        f"The classifier's mean confidence on the {n} decoded samples is {t['mean_confidence']:.3f}, and "
        f"{pct(t['low_confidence_share'])} of them get less than 0.5: those decode to shapes the classifier cannot "
        f"place, blends that lie between digit regions.",
        f"The 10 nearest neighbours of a sample in the 20-dimensional latent space share its predicted digit "
        f"{pct(knn['latent'])} of the time, against {pct(chance)} by chance ({knn['latent'] / chance:.1f}×): "
        + ("digits occupy contiguous regions of the latent space." if knn["latent"] > 1.5 * chance else
           "the digits are hardly separated in the latent space."),
    ]
    emb_lat, emb_img = knn["latent_embedding"], knn["image_embedding"]
    clearer = "decoded images" if emb_img > emb_lat else "latent vectors"
    notes.append(f"In 2-D, the t-SNE of the latent vectors keeps {pct(emb_lat)} 10-NN agreement "
                 f"(trustworthiness {t['trustworthiness']['latent_embedding']:.3f}), the t-SNE of the decoded images "
                 f"{pct(emb_img)} (trustworthiness {t['trustworthiness']['image_embedding']:.3f}): the classes "
                 f"separate more cleanly in the map of the {clearer}.")
    return notes


def interpolation_observations(i):
    a, b = i["config"]["from"], i["config"]["to"]
    ends = i["ends"]
    notes = [f"The ends are {a} ({ends['from']['source']}, confidence {ends['from']['confidence']:.3f}) and {b} "
             f"({ends['to']['source']}, confidence {ends['to']['confidence']:.3f}), {i['latent_distance']:.2f} apart "
             f"in latent space."]
    for kind in ("linear", "slerp"):
        p = i[kind]
        where = ", ".join(f"{c['from']}→{c['to']} at t = {c['t']:.2f}" for c in p["changes"]) or "never"
        inter = p["intermediate_digits"]
        path = (f"passes through {', '.join(map(str, inter))} on the way" if inter
                else f"goes from {a} to {b} with no other digit between")
        low = p["min_confidence"]
        notes.append(f"{kind.capitalize()} path: the predicted digit changes {where}; the path {path}. "
                     f"The lowest confidence is {low['value']:.3f} at t = {low['t']:.2f}, and consecutive frames "
                     f"differ by {p['mean_frame_l2']:.2f} in pixel L2 on average.")
    norm = {kind: min(i[kind]["z_norms"]) for kind in ("linear", "slerp")}
    latent = len(ends["from"]["z"])
    dips = norm["linear"] < norm["slerp"] - 0.1
    notes.append(f"Along the linear path |z| falls to {norm['linear']:.2f}, against {norm['slerp']:.2f} for slerp and "
                 f"about √{latent} = {math.sqrt(latent):.2f} for a typical prior sample"
                 + (": the straight line cuts through the centre of the latent space, where prior samples hardly "
                    "ever fall." if dips else "; here the two paths stay equally far from the centre."))
    return notes


# ---------------------------------------------------------------------------------------------------------------
# The report

def model_table(m):
    rows = ["| model | test −ELBO | reconstruction | KL | IW log-likelihood | active units | s / epoch |",
            "| --- | --- | --- | --- | --- | --- | --- |"]
    for name in MODELS:
        mm = m[name]
        rows.append(f"| {name} | {mm['test']['neg_elbo']:.2f} | {mm['test']['rec']:.2f} | {mm['test']['kl']:.2f} | "
                    f"{mm['iw_log_likelihood']:.2f} | {mm['active_units']} | {mm['seconds_per_epoch']:.2f} |")
    ev = m["conv"]["config"]["eval"]
    rows.append("")
    rows.append(f"All in nats per image on the MNIST test set. IW log-likelihood: k = {ev['iw_samples']} importance "
                f"samples on {ev['iw_images']} test images. Device: {m['conv']['device']}.")
    return rows


def markdown(m, out):
    t, c = m["tsne"], m["classifier"]
    lines = ["# VAEs on MNIST: the report", "",
             f"Written by report.py from the metrics under `{out}`. Every observation cites the number it follows from.",
             "", "## Parts 1–3: the models", "", *model_table(m), "", "### Observations", "",
             *[f"- {s}" for s in model_observations(m)], "",
             "## Part 4: the latent space of the conv VAE", "",
             f"The classifier reaches {pct(c['test_accuracy'])} test accuracy. {t['n_samples']} vectors z ~ N(0, I) "
             f"were decoded and classified; class counts 0–9: {', '.join(map(str, t['class_counts']))}.", "",
             "| measure | latent vectors (20-D) | t-SNE of latents | t-SNE of decoded images |",
             "| --- | --- | --- | --- |",
             f"| 10-NN agreement of predicted digits | {t['knn_agreement']['latent']:.3f} | "
             f"{t['knn_agreement']['latent_embedding']:.3f} | {t['knn_agreement']['image_embedding']:.3f} |",
             f"| trustworthiness (k = 10) | | {t['trustworthiness']['latent_embedding']:.3f} | "
             f"{t['trustworthiness']['image_embedding']:.3f} |",
             f"| final KL(P‖Q) | | {t['kl']['latent']:.3f} | {t['kl']['image']:.3f} |",
             f"| t-SNE seconds | | {t['seconds']['latent']:.1f} | {t['seconds']['image']:.1f} |", "",
             "### Observations on the latent space", "", *[f"- {s}" for s in latent_observations(t)], "",
             "### Observations on the interpolation", "",
             *[f"- {s}" for s in interpolation_observations(m["interpolation"])], "", "## Figures", ""]
    for file, caption in FIGURES:
        lines += [f"### {caption}", "", f"![{caption}]({file})" if (out / file).is_file() else "(figure missing)", ""]
    return "\n".join(lines)


def write_pdf(text, out, path):
    """The report's text on A4 pages in a monospace font, then one page per figure."""
    wrapped = []
    for line in text.split("\n"):
        if line.startswith("!["):   # the figures follow as pages of their own
            continue
        wrapped += textwrap.wrap(line, 100, subsequent_indent="  ") or [""]
    per_page = 70

    def write(tmp):
        with PdfPages(tmp, metadata={"CreationDate": None}) as pdf:   # no date: the same inputs, the same bytes
            for start in range(0, len(wrapped), per_page):
                fig = plt.figure(figsize=(8.27, 11.69))
                fig.text(0.05, 0.97, "\n".join(wrapped[start:start + per_page]), va="top", family="monospace",
                         fontsize=7)
                pdf.savefig(fig)
                plt.close(fig)
            for file, caption in FIGURES:
                if (out / file).is_file():
                    fig, ax = plt.subplots(figsize=(11.69, 8.27))
                    ax.imshow(plt.imread(out / file))
                    ax.set_title(caption)
                    ax.axis("off")
                    pdf.savefig(fig)
                    plt.close(fig)
    atomic_write(path, write)


def main(argv=None):
    p = make_parser("Write REPORT.md and REPORT.pdf from the metrics and figures of the other steps.")
    args = parse(p, argv)
    out = prepare_out(args.out)
    m = load_metrics(out)
    inputs = [f"{name}_metrics.json" for name in STEPS] + [f for f, _ in FIGURES if (out / f).is_file()]
    config = {"inputs": {f: file_digest(out / f) for f in inputs}}
    if not args.force and outputs_complete(out / "report_metrics.json", config, [out / "REPORT.md", out / "REPORT.pdf"]):
        print("report: skipped, REPORT.md and REPORT.pdf are up to date (--force redoes it)")
        return
    text = markdown(m, out)
    atomic_write(out / "REPORT.md", lambda tmp: tmp.write_text(text))
    write_pdf(text, out, out / "REPORT.pdf")
    save_json(out / "report_metrics.json", {"config": config})
    print(f"report: wrote {out / 'REPORT.md'} and {out / 'REPORT.pdf'}")


if __name__ == "__main__":
    cli(main)

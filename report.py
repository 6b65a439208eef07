"""
The last step — one report of the whole study, written from the metrics files and figures under --out.

    python report.py                       # after the other steps; writes results/REPORT.md and REPORT.pdf
    python report.py --quick               # the smoke test's report, in results-quick/

The report is a Markdown template with the measured numbers filled in, plus a few named verdicts (`best_fit`,
`overfitting`, …). Each verdict is computed from the numbers it cites, and it is left out, or says that it cannot
tell, when those numbers are too weak to carry it: a tie, a model trained for a single epoch, a classifier too
inaccurate to label digits. A --quick run says at the top that its numbers mean nothing.

REPORT.pdf is the same Markdown typeset on A4 pages (typeset.py, with matplotlib alone), each figure beside the text
that discusses it, followed by an appendix with the code of every script the study runs.
"""
import ast
import json
import math
import re
from pathlib import Path

from bookkeeping import (SEED, UserError, atomic_write, cli, file_digest, make_parser, parse, plural, prepare_out,
                         read_metrics, save_json, up_to_date)
from typeset import write_pdf
from tsne import BOOTSTRAP
from vae import ACTIVE_VARIANCE, LATENT_DIM, add_latent_dim_arg

MODELS = ["mlp_100_100", "mlp_200_200", "mlp_300_300", "conv"]   # the assignment's models, compared with each other
MODEL_2D = "mlp_200_200_z2"   # beyond the assignment: vae.py's MLP with a 2-D z, shown beside them
STEPS = {**{f"{name}_metrics.json": "python vae.py" for name in [*MODELS[:3], MODEL_2D]},
         "conv_metrics.json": "python conv_vae.py",
         "saved_models.json": "python conv_vae.py", "classifier_metrics.json": "python classifier.py",
         "reconstruction_accuracy.json": "python classifier.py", "tsne_metrics.json": "python tsne.py",
         "interpolation_metrics.json": "python interpolate.py"}   # the metrics files, and the step that writes each
ROOT = Path(__file__).resolve().parent

# How strong the numbers must be before a verdict is drawn from them
TIE_NATS = 0.5           # −ELBO differences below this are a tie: seeds alone move a model by about this much
MIN_EPOCHS = 5           # a model trained for fewer epochs is not compared with the others
MIN_ACCURACY = 0.90      # below this test accuracy, the classifier's labels are not read as digits
TIE_AGREEMENT = 0.02     # 10-NN agreements closer than this are a tie
CONFIDENT_SHARE = 1.5    # "clustered" when 10-NN agreement is this many times chance
TIE_ACCURACY = 0.005     # accuracies closer than half a point are a tie
TIE_DISTANCE = 0.05      # median distances within 5% of each other are a tie
HOLES_RATIO = 1.5        # prior samples this much farther from the data than held-out data are: holes
COLLAPSED_KL = 0.01      # nats: an inactive unit whose KL is below this has q(z_u|x) = N(0, 1) for every x
TIE_PAIRS = 2            # counts of pairs (of 45) within 2 are a tie

TEMPLATE = """\
# Variational autoencoders on MNIST

{run}
{smoke_test}
Written by report.py from the metrics files and figures in this folder; every sentence below cites the numbers it
follows from. REPORT.pdf adds the code of every script as an appendix.

## Parts 1–3: the models

| model | epochs | test −ELBO | reconstruction | KL | IW log-likelihood | −ELBO on the IW images | active units | s / epoch |
| --- | --- | --- | --- | --- | --- | --- | --- | --- |
{model_rows}

All in nats per image. The test −ELBO is the single-sample bound on all {n_test} test images. The IW
log-likelihood uses k = {iw_k} importance samples on the first {iw_n} test images; the −ELBO on those same images
stands beside it, so the two bounds compare like with like.

The train and test −ELBO, epoch by epoch, of the three MLP VAEs (Part 1) and of the convolutional VAE (Part 2):

![Losses of the three MLP VAEs (train solid, test dashed)](mlp_losses.png)

![Losses of the convolutional VAE](conv_losses.png)

Fifteen vectors z ~ N(0, I) decoded by each model. In Part 3 every saved model decodes the same fifteen vectors, one
model to a row:

![mlp_100_100, 15 samples from the prior](mlp_100_100_samples.png)

![mlp_200_200, 15 samples from the prior](mlp_200_200_samples.png)

![mlp_300_300, 15 samples from the prior](mlp_300_300_samples.png)

![The conv VAE, 15 samples from the prior](conv_samples.png)

![Every saved model decodes the same 15 prior samples](saved_models_samples.png)

Part 3 also reconstructs the first test image of each digit with every saved model, decode(μ(x)), below the inputs.
On the whole test set, the reconstruction error −log p(x | z = μ(x)), and how often the classifier of Part 4 still
recognises the digit in the reconstruction:

| model | reconstruction error (nats per image) | classifier accuracy on the reconstructions |
| --- | --- | --- |
{recon_rows}
| the test images themselves | | {recon_accuracy[test_images]:.2%} |

![Test images (top) and each saved model's reconstruction decode(μ(x))](reconstructions.png)

### Observations

{model_notes}

### Posterior collapse: which latent units each model uses

A latent unit u is active when its posterior mean μ_u(x) moves with the image (its variance over the test set is
above 0.01). An inactive unit has q(z_u|x) = N(0, 1), the prior, for every image: its KL per unit,
E_x KL(q(z_u|x) ‖ N(0, 1)), is zero, so it costs the ELBO nothing and tells the decoder nothing about x. That is
posterior collapse, one unit at a time. It follows from the loss: the KL term charges every unit for each nat it
carries about x, and a unit pays its way only if it lowers the reconstruction term by more. Once a few units
describe the digit, one more unit of information buys the decoder less than it costs, so the model switches the
rest off. The units add up: the KL of the −ELBO is the sum of the KL per unit.

| model | active units | KL of the active units | KL of the inactive units | largest KL of an inactive unit |
| --- | --- | --- | --- | --- |
{collapse_rows}

![KL per unit of each saved model; dark bars are the active units](kl_per_unit.png)

{collapse_notes}

## Part 4: the latent space of the conv VAE

The classifier reaches {accuracy} test accuracy. {n_samples} vectors z ~ N(0, I) were decoded and classified;
class counts 0–9: {class_counts}. The conv VAE has {latent} latent units, {active} of them active.

Beside the prior samples stands the encoded test set. Its posterior samples z ~ q(z|x), one per test image, are
draws from the aggregate posterior q(z) = E_x q(z|x), the distribution that the prior should match; prior samples
are compared with them, samples with samples. The posterior means μ(x) are not: on an inactive unit μ_u(x) ≈ 0,
while prior and posterior samples alike carry N(0, 1) noise there, so a prior sample would sit far from every μ(x)
because of units the decoder ignores. Each measure is also taken in the active units alone, the ones the decoder
reads. The 10-NN agreement counts how many of a point's 10 nearest neighbours share its digit: the classifier's
digit for prior and posterior samples (read from their decodings), the true digit for μ(x).

| 10-NN agreement in the latent space | all {latent_units} | the {active_units} |
| --- | --- | --- |
| prior samples z ~ N(0, I) | {knn[prior]:.3f} | {knn[prior_active]:.3f} |
| posterior samples, one for each of {n_encoded} test images | {knn[posterior]:.3f} | {knn[posterior_active]:.3f} |
| posterior means μ(x), true digits | {knn[encoded]:.3f} | |

The four t-SNE maps: prior samples in all their units (what the assignment asks for) and in the active units
alone, the images they decode to, all coloured by the classifier's digit, and the posterior means of as many test
images, in the active units, coloured by their true digit:

| t-SNE map | prior z, all units | prior z, active units | decoded images | μ(x), active units |
| --- | --- | --- | --- | --- |
| 10-NN agreement | {knn[latent_map]:.3f} | {knn[latent_active_map]:.3f} | {knn[image_map]:.3f} | {knn[encoded_map]:.3f} |
| trustworthiness (k = 10) | {trust[latent]:.3f} | {trust[latent_active]:.3f} | {trust[image]:.3f} | {trust[encoded]:.3f} |
| final KL(P‖Q) | {tsne_kl[latent]:.3f} | {tsne_kl[latent_active]:.3f} | {tsne_kl[image]:.3f} | {tsne_kl[encoded]:.3f} |
| t-SNE seconds | {tsne_seconds[latent]:.1f} | {tsne_seconds[latent_active]:.1f} | {tsne_seconds[image]:.1f} | {tsne_seconds[encoded]:.1f} |

![t-SNE of prior samples (all units, active units), of their decodings, and of encoded test images](tsne.png)

Does the prior match the aggregate posterior? The test set's posterior samples are split into halves A and B. For
each prior sample, the distance to its nearest posterior sample of A; for each posterior sample of B, held out,
the same. If the prior matched the aggregate posterior, the two distributions would coincide and the ratio of their
medians would be 1; its 95% interval comes from {bootstrap} bootstrap resamples of both sets of distances.

| units | median, prior sample → A | median, posterior sample of B → A | ratio | 95% interval |
| --- | --- | --- | --- | --- |
{distance_rows}

![Distances to the nearest posterior sample of test half A, from prior samples and from posterior samples of half B](latent_distances.png)

### Observations on the latent space

{latent_notes}

### Beyond the assignment: a latent space of two dimensions

The MLP (200, 200) of Part 1 trained again with z of 2 units ({model_2d_loss}). Its latent space needs no t-SNE:
the encoded test set is drawn as it is, and its decoder's whole manifold as a grid of z at the quantiles of
N(0, 1). Against the t-SNE map of the conv VAE's μ(x), on the same {n_encoded} test images, with the
trustworthiness of both measured against the test images themselves:

| view of the test set | 10-NN agreement of true digits | trustworthiness (k = 10) against the images |
| --- | --- | --- |
{direct_rows}

![The 2-D MLP: its encoded test set and its decoded manifold](latent_2d.png)

{direct_notes}

### The interpolation

The decoded frames along the straight (linear) and the spherical (slerp) path between two latent vectors, with the
classifier's verdict on each frame, and then its class probabilities along the path:

![Interpolation, linear (top) and spherical (bottom)](interpolation.png)

![Class probabilities along the path](interpolation_probs.png)

{ends_text} For each of the 45 pairs, how many of the {pair_steps} frames the classifier calls a digit that is
neither end, the mean over the sets of ends:

![Frames that are a third digit, for every pair of digits, linear and slerp](interpolation_pairs.png)

Last, a traversal of the latent space: each unit in turn swept from −3 to 3 with the others at 0, sorted by how much
the decoded image changes:

![Latent traversal, one unit per row](traversal.png)

### Observations on the interpolation

{path_notes}
"""
FIGURES = re.findall(r"!\[.*\]\((.+)\)", TEMPLATE)   # the PNG files that the template shows

SMOKE_TEST = """
> **Smoke test (`--quick`).** Every model here trained for one epoch on a sliver of MNIST. This report shows that
> the code runs end to end; its numbers mean nothing, and it draws no conclusions from them.
"""


def pct(x):
    return f"{100 * x:.1f}%"


def num(x, digits=2):
    """A number as the report prints it: fixed decimals, and a true minus sign."""
    return f"{x:.{digits}f}".replace("-", "−")


def span(xs):
    """'1.02 to 2.80', or '2.60' when there is one value."""
    return num(xs[0]) if len(xs) == 1 or num(min(xs)) == num(max(xs)) else f"{num(min(xs))} to {num(max(xs))}"


def bullets(sentences):
    return "\n".join(f"- {s}" for s in sentences if s) or "- (no observation: see the numbers above)"


# ---------------------------------------------------------------------------------------------------------------
# Verdicts: each returns a sentence computed from the numbers it cites, or "" when they cannot carry one

def best_fit(loss, epochs):
    """Which model fits best, if the models trained long enough and the best one is not tied."""
    if min(epochs.values()) < MIN_EPOCHS:
        return (f"No model is called the best: some trained for only {plural(min(epochs.values()), 'epoch')}, "
                f"fewer than the {MIN_EPOCHS} a comparison needs.")
    ranked = sorted(loss, key=loss.get)
    best, second = ranked[0], ranked[1]
    if loss[second] - loss[best] < TIE_NATS:
        return (f"{best} ({loss[best]:.2f}) and {second} ({loss[second]:.2f}) tie for the best test −ELBO: "
                f"they differ by less than {TIE_NATS} nats.")
    return (f"{best} fits best, with a test −ELBO of {loss[best]:.2f} nats per image, {loss[second] - loss[best]:.2f} "
            f"below the next model ({second}, {loss[second]:.2f}).")


def width_trend(loss, epochs):
    """Whether the MLP's test −ELBO falls as the hidden layers widen."""
    mlp = [loss[name] for name in MODELS[:3]]
    numbers = f"{mlp[0]:.2f} (100,100), {mlp[1]:.2f} (200,200), {mlp[2]:.2f} (300,300)"
    if min(epochs[name] for name in MODELS[:3]) < MIN_EPOCHS:
        return f"Among the MLPs the test −ELBO is {numbers}; too short a training to read a trend."
    steps = [a - b for a, b in zip(mlp, mlp[1:])]
    if all(s >= TIE_NATS for s in steps):
        trend = "falls with every step in width"
    elif all(abs(s) < TIE_NATS for s in steps):
        trend = "hardly changes with width (every step under half a nat)"
    else:
        trend = "does not fall steadily with width"
    return f"Among the MLPs the test −ELBO {trend}: {numbers}."


def overfitting(models):
    """Whether the last epoch's test loss has pulled away from its train loss."""
    gap = {name: m["history"][-1]["test_loss"] - m["history"][-1]["train_loss"] for name, m in models.items()}
    worst = max(gap, key=gap.get)
    numbers = f"At the last epoch, test −ELBO minus train −ELBO is at most {num(gap[worst])} nats ({worst})"
    if min(len(m["history"]) for m in models.values()) < MIN_EPOCHS:
        return f"{numbers}; too few epochs to speak of overfitting."
    return numbers + (", so no model overfits within this schedule." if gap[worst] < 1.0
                      else f", so {worst} has started to overfit.")


def classifier_trusted(accuracy):
    return accuracy >= MIN_ACCURACY


def class_balance(share):
    top, low = max(range(10), key=share.__getitem__), min(range(10), key=share.__getitem__)
    even = share[low] > 0 and share[top] / share[low] < 1.5
    return (f"Decoded prior samples are spread {'roughly evenly' if even else 'unevenly'} over the digits: the "
            f"classifier calls {pct(share[top])} of them {top} and {pct(share[low])} {low}, where MNIST has about "
            f"10% of each" + ("." if even else "; the prior's mass is shared unevenly between the classes."))


def latent_clustering(knn, chance, active):
    clustered = knn > CONFIDENT_SHARE * chance
    return (f"The 10 nearest neighbours of a prior sample, in the {plural(active, 'active unit')} of the latent space, "
            f"share its predicted digit {pct(knn)} of the time, against {pct(chance)} by chance ({knn / chance:.1f}×): "
            + ("digits occupy contiguous regions of the latent space." if clustered else
               "the digits are hardly separated in the latent space."))


def map_comparison(knn, trust):
    """The t-SNE map of prior samples in the units the decoder reads, against the map of what it decodes them to."""
    lat, img = knn["latent_active_map"], knn["image_map"]
    numbers = (f"In 2-D, the t-SNE of the prior samples' active units keeps {pct(lat)} 10-NN agreement "
               f"(trustworthiness {trust['latent_active']:.3f}), the t-SNE of their decoded images {pct(img)} "
               f"(trustworthiness {trust['image']:.3f})")
    if abs(img - lat) < TIE_AGREEMENT:
        return f"{numbers}: a tie, within {TIE_AGREEMENT:.2f}; neither map separates the classes more cleanly."
    return f"{numbers}: the classes separate more cleanly in the map of the " + \
        ("decoded images." if img > lat else "latent vectors.")


def path_story(kind, p, a, b):
    where = ", ".join(f"{c['from']}→{c['to']} at t = {c['t']:.2f}" for c in p["changes"]) or "never"
    inter = p["intermediate_digits"]
    path = (f"passes through {', '.join(map(str, inter))} on the way" if inter
            else f"goes from {a} to {b} with no other digit between")
    low = p["min_confidence"]
    return (f"{kind.capitalize()} path: the predicted digit changes {where}; the path {path}. The lowest confidence "
            f"is {low['value']:.3f} at t = {low['t']:.2f}, and consecutive frames differ by {p['mean_frame_l2']:.2f} "
            f"in pixel L2 on average.")


def norm_dip(i):
    norm = {kind: min(i[kind]["z_norms"]) for kind in ("linear", "slerp")}
    latent = len(i["ends"]["from"]["z"])
    dips = norm["linear"] < norm["slerp"] - 0.1
    return (f"Along the linear path |z| falls to {norm['linear']:.2f}, against {norm['slerp']:.2f} for slerp and "
            f"about √{latent} = {math.sqrt(latent):.2f} for a typical prior sample"
            + (": the straight line cuts through the centre of the latent space, where prior samples hardly "
               "ever fall." if dips else "; here the two paths stay equally far from the centre."))


def prior_vs_posterior(knn):
    """Are prior samples as clustered by digit as posterior samples are? Samples against samples, both labelled by
    the classifier's reading of their decodings, in the active units."""
    prior, posterior = knn["prior_active"], knn["posterior_active"]
    numbers = (f"In the active units, {pct(prior)} of a prior sample's 10 nearest prior samples share its digit, "
               f"and {pct(posterior)} of a posterior sample's 10 nearest posterior samples share its digit")
    if abs(prior - posterior) < TIE_AGREEMENT:
        return numbers + f": a tie, within {TIE_AGREEMENT:.2f}; prior samples are as clustered as the data's codes."
    return numbers + (": the encoded data cluster by digit more tightly than prior samples do; between the clusters "
                      "the prior decodes blends." if posterior > prior else
                      ": prior samples cluster by digit more than the encoded data do.")


def noise_units(knn, latent, active):
    """What the inactive units do to the 10-NN agreement of prior samples."""
    if active in (0, latent):
        return ""
    return (f"The {plural(latent - active, 'inactive unit')} add noise that the decoder ignores: the 10-NN agreement "
            f"of prior samples is {pct(knn['prior'])} in all {latent} units and {pct(knn['prior_active'])} in the "
            f"{active} active ones, and their t-SNE map keeps {pct(knn['latent_map'])} against "
            f"{pct(knn['latent_active_map'])}.")


def bottleneck(accuracy, recon_accuracy, epochs):
    """How much digit identity survives each model's reconstruction, against the test images themselves."""
    models = {name: a for name, a in recon_accuracy.items() if name != "test_images"}
    numbers = (f"The classifier labels {pct(recon_accuracy['test_images'])} of the test images correctly, and of "
               f"their reconstructions decode(μ(x)): " + ", ".join(f"{n} {pct(a)}" for n, a in models.items()))
    if not classifier_trusted(accuracy) or min(epochs.values()) < MIN_EPOCHS:
        return numbers + "; too weak a classifier or too short a training to say which bottleneck keeps the digit."
    ranked = sorted(models, key=models.get, reverse=True)
    lost = recon_accuracy["test_images"] - models[ranked[0]]
    if len(ranked) > 1 and models[ranked[0]] - models[ranked[1]] < TIE_ACCURACY:
        best = f"{ranked[0]} and {ranked[1]} keep the digit about equally well (within {pct(TIE_ACCURACY)})"
    else:
        best = f"{ranked[0]} keeps the digit best"
    return f"{numbers}: {best}, losing {pct(lost)} of the accuracy to the bottleneck."


def prior_coverage(units, d, firm):
    """Do prior samples land farther from the aggregate posterior than held-out posterior samples do? A verdict only
    beyond the ratio's 95% interval and the tie."""
    low, high = d["ratio_95"]
    numbers = (f"In {units}, the median distance from a prior sample to its nearest posterior sample of test half A "
               f"is {num(d['median_prior_to_a'])}, against {num(d['median_b_to_a'])} from a posterior sample of half "
               f"B: a ratio of {num(d['ratio'])} (95% interval {num(low)} to {num(high)})")
    if not firm:
        return numbers + "; a model this briefly trained says nothing about how its prior covers the data."
    if low <= 1 <= high or abs(d["ratio"] - 1) < TIE_DISTANCE:
        within = "its interval holds 1" if low <= 1 <= high else f"it is within {TIE_DISTANCE:.0%} of 1"
        return numbers + f": {within}, so the prior matches the aggregate posterior there."
    if d["ratio"] < 1:
        return numbers + ": prior samples land closer to the data than held-out data do; the aggregate posterior is " \
                         "wider than the prior."
    if low > HOLES_RATIO:
        return numbers + ": many prior samples fall in holes of the aggregate posterior, where the decoder has seen " \
                         "no data."
    return numbers + (f": beyond its interval, prior samples land {d['ratio'] - 1:.0%} farther from the data than "
                      f"held-out data do. The aggregate posterior covers the prior unevenly, without large holes.")


def collapse(units, unit_variance, change, firm):
    """Ties three views of the conv VAE's units together: the variance of μ, the KL per unit and the traversal."""
    kl = units["conv"]["kl"]
    active = [k for k, v in zip(kl, unit_variance) if v > ACTIVE_VARIANCE]
    inactive = [k for k, v in zip(kl, unit_variance) if v <= ACTIVE_VARIANCE]
    if not active or not inactive:
        return (f"All {len(kl)} units of the conv VAE are {'active' if active else 'inactive'}, with a KL of "
                f"{num(min(kl))} to {num(max(kl))} nats each.")
    numbers = (f"In the conv VAE, each of the {plural(len(active), 'active unit')} carries {span(active)} nats "
               f"of KL, each of the {plural(len(inactive), 'inactive unit')} at most {num(max(inactive))}")
    if not firm:
        return numbers + "; a model this briefly trained says nothing about which units collapse."
    if max(inactive) < COLLAPSED_KL:
        sweep = ""
        if change is not None:
            mean = lambda xs: sum(xs) / len(xs)
            moved = [c for c, v in zip(change, unit_variance) if v > ACTIVE_VARIANCE]
            still = [c for c, v in zip(change, unit_variance) if v <= ACTIVE_VARIANCE]
            sweep = (f" The traversal below agrees: sweeping an active unit changes the decoded image by "
                     f"{mean(moved):.1f} on average, an inactive one by {mean(still):.1f}.")
        return (numbers + f": every inactive unit is below {COLLAPSED_KL} nats, so its posterior is the prior for "
                f"every image. Those units have collapsed; the encoder sends nothing through them, and the decoder "
                f"has learned to ignore them." + sweep)
    return numbers + ": the inactive units still carry some information, so none has fully collapsed."


def direct_2d(d, accuracy_ok):
    """The 2-D model seen directly against the t-SNE map of the conv VAE's μ(x)."""
    k, t = d["knn_agreement"], d["trustworthiness_to_images"]
    numbers = (f"Drawn directly, the 2-D latent space keeps {pct(k['direct_2d'])} 10-NN agreement of true digits "
               f"(trustworthiness {t['direct_2d']:.3f} against the images); the t-SNE map of the conv VAE's μ(x) "
               f"keeps {pct(k['encoded_map'])} ({t['encoded_map']:.3f})")
    if not accuracy_ok:
        return numbers + "; models this briefly trained say nothing about which view separates the digits."
    if abs(k["direct_2d"] - k["encoded_map"]) < TIE_AGREEMENT:
        return numbers + f": a tie, within {TIE_AGREEMENT:.2f}."
    better = "t-SNE map of the richer latent space" if k["encoded_map"] > k["direct_2d"] else "2-D latent space"
    return numbers + f": the {better} separates the digits more cleanly."


def traversal_use(change, variance, firm):
    """Does sweeping an active unit change the image more than sweeping an inactive one?"""
    active = [c for c, v in zip(change, variance) if v > ACTIVE_VARIANCE]
    inactive = [c for c, v in zip(change, variance) if v <= ACTIVE_VARIANCE]
    mean = lambda xs: sum(xs) / len(xs)
    if not active or not inactive:
        return (f"All {len(change)} units are {'active' if active else 'inactive'}; sweeping them changes the image "
                f"by {min(change):.1f} to {max(change):.1f} (pixel L2 along the sweep).")
    numbers = (f"Sweeping an active unit (variance of μ above 0.01; {len(active)} of {len(change)}) from −3 to 3 "
               f"changes the decoded image by {mean(active):.1f} on average (pixel L2 along the sweep), an inactive "
               f"unit by {mean(inactive):.1f}")
    if not firm:
        return numbers + "; a model this briefly trained says nothing about which units its decoder uses."
    return numbers + (": the decoder reads the units the encoder uses, and ignores the collapsed ones."
                      if mean(active) > 2 * mean(inactive) else ": the two groups are not clearly apart.")


def spread_of(counts):
    """A count over the sets of ends: the one value, or its mean and range."""
    if len(counts) == 1 or min(counts) == max(counts):
        return f"{counts[0]}"
    return f"{sum(counts) / len(counts):.1f} (from {min(counts)} to {max(counts)})"


def pair_paths(pairs, kinds, accuracy, confident):
    """Which kind of path passes through a third digit less often, judged against the spread over the sets of
    ends."""
    counts = {kind: pairs[kind]["paths_with_third_digit"] for kind in kinds}
    sets = len(counts["linear"])
    total = len(pairs["pairs"])
    numbers = (f"Over all {total} digit pairs, linear paths pass through a third digit in {spread_of(counts['linear'])}"
               f" of {total} pairs" + (f", slerp paths in {spread_of(counts['slerp'])}" if "slerp" in counts else "")
               + (f", over {sets} sets of ends" if sets > 1 else ", with one set of ends"))
    if not classifier_trusted(accuracy) or not confident:
        return numbers + "; the classifier or the ends are not confident enough to read this as digits."
    if "slerp" not in counts:
        return numbers + "."
    if sets < 2:
        return numbers + "; with one set of ends there is no spread to judge a difference by."
    mean = {kind: sum(c) / sets for kind, c in counts.items()}
    spread = max(max(c) - min(c) for c in counts.values())
    if abs(mean["linear"] - mean["slerp"]) <= max(spread, TIE_PAIRS):
        return numbers + (f": a tie; the means differ by {abs(mean['linear'] - mean['slerp']):.1f} pairs, no more than "
                          f"the larger of the spread over the sets of ends ({spread} pairs) and the tie of "
                          f"{TIE_PAIRS} pairs.")
    fewer = "slerp" if mean["slerp"] < mean["linear"] else "linear"
    return numbers + f": {fewer} paths pass through other digits less often, beyond the spread over the sets of ends."


def path_spread(kind, s, a, b):
    """The featured path's statistics over every set of ends."""
    sets = len(s["min_confidence"])
    if sets < 2:
        return ""
    third = sum(bool(d) for d in s["intermediate_digits"])
    digits = sorted({d for ds in s["intermediate_digits"] for d in ds})
    return (f"Over the {sets} sets of ends, the lowest confidence along the {kind} path from {a} to {b} ranges from "
            f"{min(s['min_confidence']):.2f} to {max(s['min_confidence']):.2f}, and {third} of the {sets} paths pass "
            f"through a third digit" + (f" ({', '.join(map(str, digits))})." if digits else "."))


# ---------------------------------------------------------------------------------------------------------------
# The three groups of observations

def model_notes(models, recon_accuracy, accuracy):
    """Parts 1–3, over the assignment's four models; the 2-D model stands beside them in the tables only."""
    models = {name: models[name] for name in MODELS}
    loss = {name: m["test"]["neg_elbo"] for name, m in models.items()}
    epochs = {name: len(m["history"]) for name, m in models.items()}
    kl = {name: m["test"]["kl"] for name, m in models.items()}
    gap = {name: m["iw"]["neg_elbo"] + m["iw"]["log_likelihood"] for name, m in models.items()}
    active = ", ".join(f"{name} {m['active_units']} of {m['config']['model']['latent_dim']}"
                       for name, m in models.items())
    return [
        best_fit(loss, epochs),
        width_trend(loss, epochs),
        f"The KL term is {min(kl[n] / loss[n] for n in kl):.0%} to {max(kl[n] / loss[n] for n in kl):.0%} of the "
        f"test −ELBO ({', '.join(f'{n} {v:.2f}' for n, v in kl.items())} nats); reconstruction is the rest.",
        f"On the same test images, the importance-weighted estimate of log p(x) lies {num(min(gap.values()))} to "
        f"{num(max(gap.values()))} nats above the ELBO: that gap is what the single-sample bound loses because q(z|x) "
        f"is not the true posterior.",
        f"Active latent units (variance of the posterior mean above 0.01): {active}; the others collapse to the "
        f"prior and carry nothing about x (see the KL per unit below).",
        overfitting(models),
        bottleneck(accuracy, {n: a for n, a in recon_accuracy.items() if n in [*MODELS, "test_images"]}, epochs),
    ]


def collapse_rows(units):
    rows = []
    for name, u in units.items():
        active = [k for k, v in zip(u["kl"], u["variance"]) if v > ACTIVE_VARIANCE]
        inactive = [k for k, v in zip(u["kl"], u["variance"]) if v <= ACTIVE_VARIANCE]
        rows.append(f"| {name} | {len(active)} of {len(u['kl'])} | {num(sum(active))} | {num(sum(inactive))} | "
                    f"{num(max(inactive)) if inactive else ''} |")
    return rows


def latent_notes(t, accuracy, firm):
    counts = t["class_counts"]
    share = [c / sum(counts) for c in counts]
    confidence = (f"The classifier's mean confidence on the {sum(counts)} decoded samples is "
                  f"{t['mean_confidence']:.3f}, and {pct(t['low_confidence_share'])} of them get less than 0.5.")
    coverage = [prior_coverage(f"all {plural(t['latent_dim'], 'unit')}", t["distances"]["all"], firm)]
    if t["distances"]["active"]["units"] != t["distances"]["all"]["units"]:
        coverage.append(prior_coverage(f"the {plural(t['distances']['active']['units'], 'active unit')}",
                                       t["distances"]["active"], firm))
    if not classifier_trusted(accuracy):
        return [f"The classifier reaches only {pct(accuracy)} test accuracy, below the {pct(MIN_ACCURACY)} needed "
                f"to read its labels as digits, so no conclusion is drawn from them.", confidence, *coverage]
    knn = t["knn_agreement"]
    return [class_balance(share),
            confidence + " Those decode to shapes the classifier cannot place, blends between digit regions.",
            latent_clustering(knn["prior_active"], sum(s * s for s in share), t["active_units"]),
            noise_units(knn, t["latent_dim"], t["active_units"]),
            map_comparison(knn, t["trustworthiness"]),
            prior_vs_posterior(knn), *coverage]


def path_notes(i, accuracy, unit_variance, firm, threshold=0.9):
    a, b = i["config"]["from"], i["config"]["to"]
    ends = i["ends"]
    kinds = list(i["spread"])
    notes = [f"The ends are {a} ({ends['from']['source']}, confidence {ends['from']['confidence']:.3f}) and {b} "
             f"({ends['to']['source']}, confidence {ends['to']['confidence']:.3f}), {i['latent_distance']:.2f} apart "
             f"in latent space. Every statistic below is measured over {plural(i['sets_of_ends'], 'set')} of ends."]
    threshold = i["config"].get("confidence", threshold)
    if not classifier_trusted(accuracy) or min(e["confidence"] for e in ends.values()) < threshold:
        notes.append(f"The classifier is not confident that the ends are digits {a} and {b} (it needs {threshold} "
                     f"and {pct(MIN_ACCURACY)} test accuracy), so the path says nothing about how a digit {a} turns "
                     f"into a digit {b}.")
    else:
        notes += [path_story(kind, i[kind], a, b) for kind in kinds]
        notes += [path_spread(kind, i["spread"][kind], a, b) for kind in kinds]
    confident = all(e["confidence"] >= threshold for end in i["all_ends"].values() for e in end)
    return notes + [norm_dip(i) if "slerp" in kinds else "", pair_paths(i["pairs"], kinds, accuracy, confident),
                    traversal_use(i["traversal"]["change"], unit_variance, firm)]


def ends_text(i):
    """What the search for ends found, as the interpolation section introduces it."""
    from_prior = i["ends_from_prior"]
    if all(n > 0 for n in from_prior.values()):
        return (f"The same search found confident prior samples for each of the ten digits, "
                f"{plural(i['sets_of_ends'], 'set')} of ends, and the same kinds of path join every pair of them.")
    found = [d for d, n in from_prior.items() if n > 0]
    if not found:
        return ("The search found no confident prior sample of any digit, so every end is the posterior mean of the "
                "digit's best test image. The same kinds of path join every pair of ends.")
    return (f"The search found confident prior samples for {len(found)} of the ten digits ({', '.join(found)}); "
            f"every other digit's end is the posterior mean of its best test image. The same kinds of path join "
            f"every pair of ends.")


# ---------------------------------------------------------------------------------------------------------------
# The report

def load_metrics(out):
    """Every step's metrics, or a one-line error naming the step to run first."""
    metrics = {}
    for name, step in STEPS.items():
        path = out / name
        name = name.removesuffix(".json").removesuffix("_metrics")
        metrics[name] = read_metrics(path)
        if metrics[name] is None:
            raise UserError(f"{path} is missing or unreadable: run `{step}` first, with the same --out (and --quick or "
                            f"--latent-dim, if this run has them)")
    return metrics


AGREE = {"quick": (False, lambda v: "--quick" if v else ""), "latent_dim": (LATENT_DIM, lambda v: f"--latent-dim {v}"),
         "seed": (SEED, lambda v: f"--seed {v}")}   # what all inputs must agree on: the default, the flag for a value


def setting(config, key):
    """The first value of `key` anywhere in a nested config, or None."""
    if isinstance(config, dict):
        for k, v in config.items():
            found = v if k == key else setting(v, key)
            if found is not None:
                return found
    return None


def check_one_run(m, out):
    """Refuse inputs that mix runs: quick and full, two latent sizes or two seeds, or a step's outputs made from
    other models than the ones now in the folder. The line names the files and the commands that make them agree."""
    files = {name: name.removesuffix(".json").removesuffix("_metrics") for name in STEPS}
    usual, flags, mixed = {}, [], None
    for key, (default, flag) in AGREE.items():
        groups = {}
        for file, name in files.items():
            if key == "latent_dim" and name == MODEL_2D:   # its z has 2 units in every run
                continue
            value = setting(config_of(m[name]), key)
            if value is not None:
                groups.setdefault(json.dumps(value), []).append(file)
        if groups:
            usual[key] = json.loads(max(groups, key=lambda v: len(groups[v])))   # most files have it
        if len(groups) > 1 and mixed is None:
            mixed = key, groups
        if len(groups) > 1 or usual.get(key, default) != default:
            flags.append(flag(usual[key]))
    if mixed:
        key, groups = mixed
        odd = [f for v, group in groups.items() if v != json.dumps(usual[key]) for f in group]
        sides = "; ".join(f"{', '.join(group)} {key} {v}" for v, group in groups.items())
        raise UserError(f"the inputs in {out} are not from one run ({sides}): run "
                        f"{commands(odd, flags + ['--force'], out)} so that they agree, or write each run into its own "
                        f"--out")
    stale = [(file, model) for file, name in files.items() for model, digest in input_digests(m[name]).items()
             if (out / model).is_file() and file_digest(out / model) != digest]
    if stale:
        raise UserError(f"in {out}, " + ", ".join(f"{f} was made from another {model}" for f, model in stale)
                        + f" than the one there now: run {commands([f for f, _ in stale], flags, out)}; a step redoes "
                        f"outputs whose models changed")


def commands(files, flags, out):
    """The commands that rewrite `files`: their steps, with one MLP's --hidden when not all three need it."""
    mlps = [f for f in files if f.startswith("mlp_")]
    steps = [STEPS[f] + (" --hidden " + " ".join(f.split("_")[1:3]) if f in mlps and len(mlps) < 3 else "")
             for f in files]
    return " and ".join(f"`{' '.join(filter(None, [step, *flags]))} --out {out}`" for step in dict.fromkeys(steps))


def config_of(metrics):
    """A metrics file's config, or {} where it has none."""
    config = metrics.get("config") if isinstance(metrics, dict) else None
    return config if isinstance(config, dict) else {}


def input_digests(metrics):
    """{model file: its digest} for the models a step's outputs were made from, as its config records them."""
    config = config_of(metrics)
    digests = {k if "." in k else f"{k}.pt": v for k, v in (config.get("models") or {}).items()}
    if isinstance(config.get("classifier"), str):
        digests["classifier.pt"] = config["classifier"]
    return digests


def is_smoke_test(m):
    return any(m[name]["config"].get("quick") or m[name]["config"].get("train", {}).get("quick")
               for name in ("conv", "classifier", "tsne", "interpolation"))


def run_line(m):
    """The title block's second line: which run this report is of."""
    conv = m["conv"]
    kind = "Quick run (--quick, a smoke test)" if is_smoke_test(m) else "Full run"
    return f"{kind} · {conv['device']} · torch {conv.get('torch', 'unknown')}"


def markdown(m, out):
    models = {name: m[name] for name in [*MODELS, MODEL_2D]}
    t, accuracy = m["tsne"], m["classifier"]["test_accuracy"]
    iw = models["conv"]["iw"]
    rows = [f"| {name} | {len(mm['history'])} | {mm['test']['neg_elbo']:.2f} | {mm['test']['rec']:.2f} | "
            f"{mm['test']['kl']:.2f} | {num(mm['iw']['log_likelihood'])} | {mm['iw']['neg_elbo']:.2f} | "
            f"{mm['active_units']} of {mm['config']['model']['latent_dim']} | {mm['seconds_per_epoch']:.2f} |"
            for name, mm in models.items()]
    # the conv VAE's own verdicts need a model that trained for real
    firm = not is_smoke_test(m) and len(models["conv"]["history"]) >= MIN_EPOCHS
    recon = m["reconstruction_accuracy"]["accuracy"]
    recon_rows = [f"| {name} | {error:.2f} | {recon[name]:.2%} |"
                  for name, error in m["saved_models"]["reconstruction_error"].items() if name in recon]
    units = m["saved_models"]["units"]
    distance_rows = [f"| {plural(d['units'], 'unit')} | {d['median_prior_to_a']:.2f} | {d['median_b_to_a']:.2f} | "
                     f"{d['ratio']:.2f} | {d['ratio_95'][0]:.2f} to {d['ratio_95'][1]:.2f} |"
                     for key, d in t["distances"].items() if key == "all" or d["units"] != t["distances"]["all"]["units"]]
    direct = t["direct_2d"]
    direct_rows = [f"| μ(x) of {MODEL_2D}, drawn directly | {direct['knn_agreement']['direct_2d']:.3f} | "
                   f"{direct['trustworthiness_to_images']['direct_2d']:.3f} |",
                   f"| t-SNE map of the conv VAE's μ(x) | {direct['knn_agreement']['encoded_map']:.3f} | "
                   f"{direct['trustworthiness_to_images']['encoded_map']:.3f} |"] if direct else \
        ["| (the 2-D model was not found) | | |"]
    z2 = models[MODEL_2D]["test"]
    interpolation = m["interpolation"]
    change = interpolation["traversal"]["change"]
    text = TEMPLATE.format(
        run=run_line(m), smoke_test=SMOKE_TEST if is_smoke_test(m) else "", model_rows="\n".join(rows),
        n_test=models["conv"]["test"]["images"], iw_k=iw["samples"], iw_n=iw["images"],
        model_notes=bullets(model_notes(models, recon, accuracy)), accuracy=pct(accuracy),
        collapse_rows="\n".join(collapse_rows(units)),
        collapse_notes=bullets([collapse(units, m["conv"]["unit_variance"], change, firm)]),
        n_samples=t["n_samples"], n_encoded=t["n_encoded"], recon_rows="\n".join(recon_rows), recon_accuracy=recon,
        latent=t["latent_dim"], active=t["active_units"], latent_units=plural(t["latent_dim"], "unit"),
        active_units=plural(t["active_units"], "active unit"), bootstrap=BOOTSTRAP, distance_rows="\n".join(distance_rows),
        model_2d_loss=f"test −ELBO {z2['neg_elbo']:.2f} nats, of which KL {z2['kl']:.2f}",
        direct_rows="\n".join(direct_rows),
        direct_notes=bullets([direct_2d(direct, firm and classifier_trusted(accuracy))] if direct else []),
        pair_steps=interpolation["pairs"]["steps"], ends_text=ends_text(interpolation),
        class_counts=", ".join(map(str, t["class_counts"])), knn=t["knn_agreement"], trust=t["trustworthiness"],
        tsne_kl=t["kl"], tsne_seconds=t["seconds"], latent_notes=bullets(latent_notes(t, accuracy, firm)),
        path_notes=bullets(path_notes(interpolation, accuracy, m["conv"]["unit_variance"], firm)))
    # A figure that a step did not write is named, not shown as a broken image
    return re.sub(r"!\[(.*)\]\((.+)\)", lambda f: f[0] if (out / f[2]).is_file() else f"({f[2]} is missing: {f[1]})",
                  text)


def study_code():
    """{file: its text} for every file the study runs, for the appendix: run_all.sh, the script of each of its
    steps, then the modules of this folder that those import (found by ast, so a new step or module joins in)."""
    files = ["run_all.sh"] + re.findall(r"^step .* (\S+\.py)$", (ROOT / "run_all.sh").read_text(), re.M)
    for name in files[1:]:   # the list grows as modules are found, and they are read in turn
        for node in ast.walk(ast.parse((ROOT / name).read_text())):
            imported = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module] if isinstance(node, ast.ImportFrom) and node.module and not node.level else []
            for module in imported:
                file = module.split(".")[0] + ".py"
                if (ROOT / file).is_file() and file not in files:
                    files.append(file)
    return {name: (ROOT / name).read_text() for name in files}


def main(argv=None):
    p = make_parser("Write REPORT.md and REPORT.pdf from the metrics and figures of the other steps.")
    add_latent_dim_arg(p)   # the latent size of the run whose outputs to report on
    args = parse(p, argv)
    out = prepare_out(args.out)
    m = load_metrics(out)
    check_one_run(m, out)
    code = study_code()
    inputs = list(STEPS) + [f for f in FIGURES if (out / f).is_file()]
    config = {"inputs": {f: file_digest(out / f) for f in inputs},
              "code": {name: file_digest(ROOT / name) for name in code}}   # new code, a new report and appendix
    if up_to_date("report", out / "report_metrics.json", config, [out / "REPORT.md", out / "REPORT.pdf"], args.force):
        return
    text = markdown(m, out)
    atomic_write(out / "REPORT.md", lambda tmp: tmp.write_text(text))
    atomic_write(out / "REPORT.pdf", lambda tmp: write_pdf(text, out, tmp, code))
    save_json(out / "report_metrics.json", {"config": config})
    if is_smoke_test(m):
        print("report: a SMOKE TEST (--quick): the report says its numbers mean nothing")
    print(f"report: wrote {out / 'REPORT.md'} and {out / 'REPORT.pdf'}")


if __name__ == "__main__":
    cli(main)

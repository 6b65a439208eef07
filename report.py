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

from bookkeeping import (SEED, UserError, atomic_write, cli, file_digest, make_parser, parse, prepare_out,
                         read_metrics, save_json, up_to_date)
from typeset import write_pdf
from vae import LATENT_DIM

MODELS = ["mlp_100_100", "mlp_200_200", "mlp_300_300", "conv"]
STEPS = {**{f"{name}_metrics.json": "python vae.py" for name in MODELS[:3]}, "conv_metrics.json": "python conv_vae.py",
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

## Part 4: the latent space of the conv VAE

The classifier reaches {accuracy} test accuracy. {n_samples} vectors z ~ N(0, I) were decoded and classified;
class counts 0–9: {class_counts}.

Beside them, the encoded test set: the posterior means μ(x) of {n_encoded} test images, whose true digits are known.
The 10-NN agreement counts how many of a point's 10 nearest neighbours share its digit: the predicted digit for
prior samples, the true digit for encoded test images.

| measure | prior z (20-D) | map of prior z | map of decoded images | encoded μ(x) (20-D) | map of μ(x) |
| --- | --- | --- | --- | --- | --- |
| 10-NN agreement | {knn[latent]:.3f} | {knn[latent_embedding]:.3f} | {knn[image_embedding]:.3f} | {knn[encoded_latent]:.3f} | {knn[encoded_embedding]:.3f} |
| trustworthiness (k = 10) | | {trust[latent_embedding]:.3f} | {trust[image_embedding]:.3f} | | {trust[encoded_embedding]:.3f} |
| final KL(P‖Q) | | {tsne_kl[latent]:.3f} | {tsne_kl[image]:.3f} | | {tsne_kl[encoded]:.3f} |
| t-SNE seconds | | {tsne_seconds[latent]:.1f} | {tsne_seconds[image]:.1f} | | {tsne_seconds[encoded]:.1f} |

The three t-SNE maps: the prior samples' latent vectors and the images they decode to, coloured by the digit the
classifier predicts, and the encoded test images, coloured by their true digit:

![t-SNE of prior samples (left, middle) and of encoded test images (right)](tsne.png)

How far prior samples land from the encoded data: the distance from each prior sample to the nearest μ(x) of test
half A, against the same distance from the μ(x) of test half B, held out:

![Distance to the nearest encoded test image, from prior samples and from held-out encoded images](latent_distances.png)

### Observations on the latent space

{latent_notes}

### The interpolation

The decoded frames along the straight (linear) and the spherical (slerp) path between two latent vectors, with the
classifier's verdict on each frame, and then its class probabilities along the path:

![Interpolation, linear (top) and spherical (bottom)](interpolation.png)

![Class probabilities along the path](interpolation_probs.png)

The same search found an end for each of the ten digits, and the same two kinds of path join every pair of them.
For each of the 45 pairs, how many of the {pair_steps} frames the classifier calls a digit that is neither end:

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


def bullets(sentences):
    return "\n".join(f"- {s}" for s in sentences if s) or "- (no observation: see the numbers above)"


# ---------------------------------------------------------------------------------------------------------------
# Verdicts: each returns a sentence computed from the numbers it cites, or "" when they cannot carry one

def best_fit(loss, epochs):
    """Which model fits best, if the models trained long enough and the best one is not tied."""
    if min(epochs.values()) < MIN_EPOCHS:
        return (f"No model is called the best: some trained for only {min(epochs.values())} epoch(s), "
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
    numbers = f"At the last epoch, test −ELBO minus train −ELBO is at most {gap[worst]:.2f} nats ({worst})"
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


def latent_clustering(knn, chance):
    clustered = knn > CONFIDENT_SHARE * chance
    return (f"The 10 nearest neighbours of a sample in the 20-dimensional latent space share its predicted digit "
            f"{pct(knn)} of the time, against {pct(chance)} by chance ({knn / chance:.1f}×): "
            + ("digits occupy contiguous regions of the latent space." if clustered else
               "the digits are hardly separated in the latent space."))


def map_comparison(knn, trust):
    lat, img = knn["latent_embedding"], knn["image_embedding"]
    numbers = (f"In 2-D, the t-SNE of the latent vectors keeps {pct(lat)} 10-NN agreement (trustworthiness "
               f"{trust['latent_embedding']:.3f}), the t-SNE of the decoded images {pct(img)} (trustworthiness "
               f"{trust['image_embedding']:.3f})")
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
    """Do digits separate more in the map of encoded test images than in the map of prior samples?"""
    prior, posterior = knn["latent_embedding"], knn["encoded_embedding"]
    numbers = (f"In the map of prior samples, {pct(prior)} of a point's 10 nearest neighbours share its predicted "
               f"digit; in the map of encoded test images, {pct(posterior)} share its true digit")
    if abs(prior - posterior) < TIE_AGREEMENT:
        return numbers + f": a tie, within {TIE_AGREEMENT:.2f}."
    return numbers + (": the digits live where the encoder puts the data; the isotropic prior spreads them out."
                      if posterior > prior else ": the prior's map separates the digits more than the encoded data's.")


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


def prior_holes(holes, firm):
    """Do prior samples land farther from the encoded data than held-out encoded data does?"""
    prior, held_out = holes["median_prior_to_a"], holes["median_b_to_a"]
    numbers = (f"The median distance from a prior sample to its nearest posterior mean μ(x) of test half A is "
               f"{prior:.2f}, against {held_out:.2f} from a posterior mean of half B")
    if not firm:
        return numbers + "; a model this briefly trained says nothing about the prior's holes."
    if abs(prior - held_out) < TIE_DISTANCE * held_out:
        return numbers + f": within {TIE_DISTANCE:.0%}, so the prior covers the encoded data without visible holes."
    if prior > held_out:
        return (numbers + f" ({prior / held_out:.1f}×): many prior samples fall in holes between the encoded digits, "
                f"where the decoder has seen no data.")
    return numbers + ": prior samples lie closer to the encoded data than held-out digits do."


def traversal_use(change, variance, firm):
    """Does sweeping an active unit change the image more than sweeping an inactive one?"""
    active = [c for c, v in zip(change, variance) if v > 0.01]
    inactive = [c for c, v in zip(change, variance) if v <= 0.01]
    mean = lambda xs: sum(xs) / len(xs)
    if not active or not inactive:
        return (f"All {len(change)} units are {'active' if active else 'inactive'}; sweeping them changes the image "
                f"by {min(change):.1f} to {max(change):.1f} (pixel L2 along the sweep).")
    numbers = (f"Sweeping one of the {len(active)} active units (variance of μ above 0.01) from −3 to 3 changes the "
               f"decoded image by {mean(active):.1f} on average (pixel L2 along the sweep), one of the "
               f"{len(inactive)} inactive units by {mean(inactive):.1f}")
    if not firm:
        return numbers + "; a model this briefly trained says nothing about which units its decoder uses."
    return numbers + (": the decoder reads the units the encoder uses, and ignores the collapsed ones."
                      if mean(active) > 2 * mean(inactive) else ": the two groups are not clearly apart.")


def pair_paths(pairs, accuracy, confident):
    counts = {kind: sum(n > 0 for n in pairs[kind]["third_digit_frames"]) for kind in ("linear", "slerp")}
    frames = {kind: sum(pairs[kind]["third_digit_frames"]) for kind in ("linear", "slerp")}
    total = len(pairs["linear"]["third_digit_frames"])
    numbers = (f"Over all {total} digit pairs, linear paths pass through a third digit in {counts['linear']} of "
               f"{total} pairs ({frames['linear']} frames in all), slerp paths in {counts['slerp']} "
               f"({frames['slerp']} frames)")
    if not classifier_trusted(accuracy) or not confident:
        return numbers + "; the classifier or the ends are not confident enough to read this as digits."
    if abs(counts["linear"] - counts["slerp"]) <= TIE_PAIRS:
        return numbers + f": a tie (within {TIE_PAIRS} pairs); the kind of path hardly matters here."
    fewer = "slerp" if counts["slerp"] < counts["linear"] else "linear"
    return numbers + f": {fewer} paths pass through other digits less often."


# ---------------------------------------------------------------------------------------------------------------
# The three groups of observations

def model_notes(models, recon_accuracy, accuracy):
    loss = {name: m["test"]["neg_elbo"] for name, m in models.items()}
    epochs = {name: len(m["history"]) for name, m in models.items()}
    kl = {name: m["test"]["kl"] for name, m in models.items()}
    gap = {name: m["iw"]["neg_elbo"] + m["iw"]["log_likelihood"] for name, m in models.items()}
    active = ", ".join(f"{name} {m['active_units']}" for name, m in models.items())
    latent = models["conv"]["config"]["model"]["latent_dim"]
    return [
        best_fit(loss, epochs),
        width_trend(loss, epochs),
        f"The KL term is {min(kl[n] / loss[n] for n in kl):.0%} to {max(kl[n] / loss[n] for n in kl):.0%} of the "
        f"test −ELBO ({', '.join(f'{n} {v:.2f}' for n, v in kl.items())} nats); reconstruction is the rest.",
        f"On the same test images, the importance-weighted estimate of log p(x) lies {min(gap.values()):.2f} to "
        f"{max(gap.values()):.2f} nats above the ELBO: that gap is what the single-sample bound loses because q(z|x) "
        f"is not the true posterior.",
        f"Active latent units (variance of the posterior mean above 0.01), of {latent}: {active}; the others "
        f"collapse to the prior and carry nothing about x.",
        overfitting(models),
        bottleneck(accuracy, recon_accuracy, epochs),
    ]


def latent_notes(t, accuracy, firm):
    counts = t["class_counts"]
    share = [c / sum(counts) for c in counts]
    confidence = (f"The classifier's mean confidence on the {sum(counts)} decoded samples is "
                  f"{t['mean_confidence']:.3f}, and {pct(t['low_confidence_share'])} of them get less than 0.5.")
    if not classifier_trusted(accuracy):
        return [f"The classifier reaches only {pct(accuracy)} test accuracy, below the {pct(MIN_ACCURACY)} needed "
                f"to read its labels as digits, so no conclusion is drawn from them.", confidence,
                prior_holes(t["holes"], firm)]
    return [class_balance(share),
            confidence + " Those decode to shapes the classifier cannot place, blends between digit regions.",
            latent_clustering(t["knn_agreement"]["latent"], sum(s * s for s in share)),
            map_comparison(t["knn_agreement"], t["trustworthiness"]),
            prior_vs_posterior(t["knn_agreement"]), prior_holes(t["holes"], firm)]


def path_notes(i, accuracy, unit_variance, firm, threshold=0.9):
    a, b = i["config"]["from"], i["config"]["to"]
    ends = i["ends"]
    notes = [f"The ends are {a} ({ends['from']['source']}, confidence {ends['from']['confidence']:.3f}) and {b} "
             f"({ends['to']['source']}, confidence {ends['to']['confidence']:.3f}), {i['latent_distance']:.2f} apart "
             f"in latent space."]
    threshold = i["config"].get("confidence", threshold)
    if not classifier_trusted(accuracy) or min(e["confidence"] for e in ends.values()) < threshold:
        notes.append(f"The classifier is not confident that the ends are a {a} and a {b} (it needs {threshold} "
                     f"and {pct(MIN_ACCURACY)} test accuracy), so the path says nothing about how a {a} turns "
                     f"into a {b}.")
    else:
        notes += [path_story(kind, i[kind], a, b) for kind in ("linear", "slerp")]
    confident = all(end["confidence"] >= threshold for end in i["all_ends"].values())
    return notes + [norm_dip(i), pair_paths(i["pairs"], accuracy, confident),
                    traversal_use(i["traversal"]["change"], unit_variance, firm)]


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
    models = {name: m[name] for name in MODELS}
    t, accuracy = m["tsne"], m["classifier"]["test_accuracy"]
    iw = models["conv"]["iw"]
    rows = [f"| {name} | {len(mm['history'])} | {mm['test']['neg_elbo']:.2f} | {mm['test']['rec']:.2f} | "
            f"{mm['test']['kl']:.2f} | {mm['iw']['log_likelihood']:.2f} | {mm['iw']['neg_elbo']:.2f} | "
            f"{mm['active_units']} | {mm['seconds_per_epoch']:.2f} |" for name, mm in models.items()]
    # the conv VAE's own verdicts need a model that trained for real
    firm = not is_smoke_test(m) and len(models["conv"]["history"]) >= MIN_EPOCHS
    recon = m["reconstruction_accuracy"]["accuracy"]
    recon_rows = [f"| {name} | {error:.2f} | {recon[name]:.2%} |"
                  for name, error in m["saved_models"]["reconstruction_error"].items() if name in recon]
    text = TEMPLATE.format(
        run=run_line(m), smoke_test=SMOKE_TEST if is_smoke_test(m) else "", model_rows="\n".join(rows),
        n_test=models["conv"]["test"]["images"], iw_k=iw["samples"], iw_n=iw["images"],
        model_notes=bullets(model_notes(models, recon, accuracy)), accuracy=pct(accuracy),
        n_samples=t["n_samples"], n_encoded=t["n_encoded"], recon_rows="\n".join(recon_rows), recon_accuracy=recon,
        pair_steps=m["interpolation"]["pairs"]["steps"],
        class_counts=", ".join(map(str, t["class_counts"])), knn=t["knn_agreement"], trust=t["trustworthiness"],
        tsne_kl=t["kl"], tsne_seconds=t["seconds"], latent_notes=bullets(latent_notes(t, accuracy, firm)),
        path_notes=bullets(path_notes(m["interpolation"], accuracy, m["conv"]["unit_variance"], firm)))
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

"""
Part 4 — walking through the conv VAE's latent space from one digit to another.

    python interpolate.py                          # a 4 turning into a 7, 10 frames per path
    python interpolate.py --from 1 --to 8 --steps 12
    python interpolate.py --quick                  # a smoke test: every code path in seconds, into results-quick/
    python interpolate.py --data-dir ../shared/data --device cpu --out results

It reads conv.pt and classifier.pt from --out, so run `python conv_vae.py` and `python classifier.py` first.

One search finds ends for each of the ten digits: the five prior samples z ~ N(0, I) whose decodings the classifier
most confidently calls that digit (at least --confidence). Taking them from the prior means the path starts and ends
where the generative model actually puts its mass, the same distribution the t-SNE of Part 4 looks at; only when no
prior sample among --max-draws is confidently that digit does an end fall back to the posterior mean μ(x) of a test
image x of it. Every path is measured once for each set of ends (the most confident end of every digit, then the
second most confident, …), so that each statistic comes with its spread over the choice of ends.
Between the ends the path is linear, z_t = (1 − t) z_a + t z_b, and, for comparison, spherical (slerp), which keeps
the norm that a Gaussian sample in 20 dimensions almost always has (slerp needs at least 2 dimensions). Every frame is decoded and classified.
The same ends give paths between all 45 pairs of digits, decoded and classified in one batch: how many frames of
each path does the classifier call a third digit? Last, a traversal: each latent unit in turn sweeps from −3 to 3
with the others at 0, showing which units the decoder uses.

Outputs under --out: interpolation.png (the featured path's frames, with the classifier's digit and confidence
under each), interpolation_probs.png (the 10 class probabilities along t), interpolation_pairs.png (two 10 × 10
heat maps of third-digit frames, linear and slerp), traversal.png (a 20 × 9 grid, units sorted by how much the
image changes) and interpolation_metrics.json.
"""
import argparse
import itertools

import matplotlib.pyplot as plt
import torch

from classifier import classify, load_classifier
from conv_vae import load_conv_vae
from bookkeeping import (UserError, cli, file_digest, make_parser, parse, plural, positive_int, save_figure, save_json,
                         start, up_to_date)
from vae import add_latent_dim_arg, figure_title, load_mnist, show_images

FROM_DIGIT = 4       # the path starts at this digit ...
TO_DIGIT = 7         # ... and ends at this one
STEPS = 10           # frames per path, both ends included
CONFIDENCE = 0.9     # an end must be its digit with at least this classifier probability
ENDS_PER_DIGIT = 5   # the most confident prior samples kept for each digit: the sets of ends a statistic is spread over
MAX_DRAWS = 20000    # cap on prior samples searched for the ends; --quick uses QUICK_MAX_DRAWS
QUICK_MAX_DRAWS = 2000
DRAW_BATCH = 1000    # prior samples decoded and classified at a time
PARALLEL_EPS = 1e-6  # sin Ω below this: the ends point the same (or opposite) way and slerp falls back to linear
PAIR_STEPS = 10      # frames per path for each of the 45 digit pairs
TRAVERSAL = [-3.0, -2.25, -1.5, -0.75, 0.0, 0.75, 1.5, 2.25, 3.0]   # values one latent unit sweeps, the others at 0


# ---------------------------------------------------------------------------------------------------------------
# Paths between two latent vectors

def interpolate(z_a, z_b, steps):
    """`steps` points from z_a to z_b (both (d,)), evenly spaced in t and both ends included → (steps, d)."""
    t = torch.linspace(0, 1, steps, dtype=z_a.dtype, device=z_a.device)[:, None]   # (steps, 1)
    # z_t = (1 − t) z_a + t z_b,  t = 0, 1/(steps − 1), …, 1
    return (1 - t) * z_a + t * z_b                                                  # (steps, d)


def slerp(z_a, z_b, steps):
    """Spherical interpolation: the same t, but along the great circle through z_a and z_b → (steps, d)."""
    norms = z_a.norm() * z_b.norm()
    if norms == 0:                       # a zero vector has no direction to turn from
        return interpolate(z_a, z_b, steps)
    # cos Ω = z_a·z_b / (|z_a| |z_b|)
    omega = torch.acos((z_a @ z_b / norms).clamp(-1, 1))
    if torch.sin(omega) < PARALLEL_EPS:  # Ω ≈ 0 (or π): no plane to turn in
        return interpolate(z_a, z_b, steps)
    t = torch.linspace(0, 1, steps, dtype=z_a.dtype, device=z_a.device)[:, None]   # (steps, 1)
    # z_t = sin((1 − t)Ω)/sin Ω · z_a + sin(tΩ)/sin Ω · z_b
    w_a, w_b = torch.sin((1 - t) * omega) / torch.sin(omega), torch.sin(t * omega) / torch.sin(omega)
    return w_a * z_a + w_b * z_b                                                    # (steps, d)


PATHS = {"linear": interpolate, "slerp": slerp}


def path_kinds(latent_dim):
    """The kinds of path a latent space of `latent_dim` units allows: slerp needs a plane to turn in."""
    if latent_dim >= 2:
        return PATHS
    print(f"interpolate: z has {latent_dim} unit, so there is no sphere to follow; slerp is left out")
    return {"linear": interpolate}


# ---------------------------------------------------------------------------------------------------------------
# The ends: prior samples the classifier is sure of, else encoded test images

@torch.no_grad()
def decode_and_classify(vae, classifier, z):
    """Images x = σ(decoder logits) in [0, 1], (N, 1, 28, 28), and the classifier's p(digit | x), (N, 10)."""
    vae.eval()
    images = torch.sigmoid(vae.decode(z))
    return images, classify(classifier, images)


def prior_ends(vae, classifier, digits, threshold, max_draws, generator, device, per_digit=ENDS_PER_DIGIT):
    """For each digit, up to `per_digit` prior samples whose decodings the classifier calls that digit with
    confidence ≥ threshold, the most confident first. Batches are drawn until every digit has `per_digit` of them
    or max_draws are spent. Returns ({digit: [end, …], possibly empty}, the number of samples drawn)."""
    latent_dim = vae.config["latent_dim"]
    ends, drawn = {digit: [] for digit in digits}, 0
    while drawn < max_draws and min(map(len, ends.values())) < per_digit:
        n = min(DRAW_BATCH, max_draws - drawn)
        z = torch.randn(n, latent_dim, generator=generator).to(device)   # z ~ N(0, I): (n, d), same on every device
        _, probs = decode_and_classify(vae, classifier, z)               # (n, 10)
        confidence, label = probs.max(1)
        for digit in digits:
            found = ((label == digit) & (confidence >= threshold)).nonzero().squeeze(1).tolist()
            candidates = ends[digit] + [{"source": "prior", "draw": drawn + i, "z": z[i],
                                         "confidence": confidence[i].item()} for i in found]
            ends[digit] = sorted(candidates, key=lambda end: -end["confidence"])[:per_digit]
        drawn += n
    return ends, drawn


@torch.no_grad()
def test_image_end(vae, classifier, test_x, test_y, digit):
    """The posterior mean μ(x) of the test image x of `digit` whose decoding the classifier gives the highest
    p(digit | decoded image), whether or not that reaches the threshold."""
    index = (test_y == digit).nonzero().squeeze(1)
    if len(index) == 0:
        raise UserError(f"the test set has no image of digit {digit} to fall back on; use the full MNIST (no --quick)")
    mu = torch.cat([vae.encode(xb)[0] for xb in test_x[index].split(DRAW_BATCH)])   # (n, 20)
    _, probs = decode_and_classify(vae, classifier, mu)
    i = int(probs[:, digit].argmax())
    return {"source": "test image", "test_index": int(index[i]), "z": mu[i], "confidence": probs[i, digit].item()}


# ---------------------------------------------------------------------------------------------------------------
# What the classifier sees along a path

def path_metrics(images, probs, ends):
    """Labels and confidences along a path of decoded frames images (S, 1, 28, 28) with class probabilities
    probs (S, 10); ends = (first digit, last digit). Returns plain Python values, ready for JSON."""
    steps = len(probs)
    t = [i / (steps - 1) for i in range(steps)]
    confidence, label = probs.max(1)
    labels, confidences = label.tolist(), confidence.tolist()
    changes = [{"step": i, "t": t[i], "from": labels[i - 1], "to": labels[i]}
               for i in range(1, steps) if labels[i] != labels[i - 1]]
    low = int(confidence.argmin())
    # mean over the S − 1 steps of ‖x_{i+1} − x_i‖₂, over the 784 pixels
    step_l2 = (images[1:] - images[:-1]).flatten(1).norm(dim=1)
    return {"t": t, "labels": labels, "confidences": confidences, "changes": changes,
            "intermediate_digits": list(dict.fromkeys(d for d in labels if d not in ends)),
            "min_confidence": {"value": confidences[low], "step": low, "t": t[low]},
            "mean_frame_l2": step_l2.mean().item()}


def third_digit_frames(labels, pairs):
    """For paths between the digit pairs (a, b) with frame labels (P, S): how many frames are neither a nor b."""
    ab = torch.tensor(pairs, device=labels.device)                  # (P, 2)
    return ((labels != ab[:, :1]) & (labels != ab[:, 1:])).sum(1)   # (P,)


@torch.no_grad()
def all_pairs(vae, classifier, ends, steps, kinds=None):
    """Every pair a < b of the digits in ends ({digit: end}), along each kind of path (default linear and slerp),
    decoded and classified in one batch per kind.
    Returns {kind: {"third_digit_frames": [45 counts], "min_confidence": [45 values]}} and the pairs."""
    pairs = list(itertools.combinations(sorted(ends), 2))
    results = {}
    for kind, path in (kinds or PATHS).items():
        z = torch.stack([path(ends[a]["z"], ends[b]["z"], steps) for a, b in pairs])   # (45, S, 20)
        _, probs = decode_and_classify(vae, classifier, z.flatten(0, 1))              # (45·S, 10)
        confidence, label = probs.view(len(pairs), steps, 10).max(2)                  # (45, S) each
        results[kind] = {"third_digit_frames": third_digit_frames(label, pairs).tolist(),
                         "min_confidence": confidence.min(1).values.tolist()}
    return results, pairs


@torch.no_grad()
def traverse(vae, values):
    """Decoded images as each latent unit u in turn sweeps `values`, the others at 0 → (d, V, 1, 28, 28)."""
    vae.eval()
    d = vae.config["latent_dim"]
    device = next(vae.parameters()).device
    z = torch.zeros(d, len(values), d, device=device)
    z[torch.arange(d), :, torch.arange(d)] = torch.tensor(values, device=device)   # row u: z_u = v, z_≠u = 0
    return torch.sigmoid(vae.decode(z.flatten(0, 1))).view(d, len(values), 1, 28, 28)


def traversal_change(images):
    # change_u = Σ_i ‖x_u(v_{i+1}) − x_u(v_i)‖₂ over the sweep, in pixel L2: zero for a unit the decoder ignores
    return (images[:, 1:] - images[:, :-1]).flatten(2).norm(dim=2).sum(1)


# ---------------------------------------------------------------------------------------------------------------
# Figures

def plot_pairs(results, pairs, steps, path, title):
    """One 10 × 10 heat map per kind of path: how many of a pair's frames the classifier calls a third digit, the
    mean over the sets of ends."""
    fig, axes = plt.subplots(1, len(results), figsize=(5.5 * len(results), 5), squeeze=False)
    for ax, (kind, r) in zip(axes.flat, results.items()):
        frames = torch.tensor(r["third_digit_frames"], dtype=torch.float32).mean(0)   # (45,): mean over the sets
        grid = torch.full((10, 10), float("nan"))
        for (a, b), n in zip(pairs, frames.tolist()):
            grid[a, b] = grid[b, a] = n
        ax.imshow(grid, cmap="Reds", vmin=0, vmax=steps)
        for (a, b), n in zip(pairs, frames.tolist()):
            for i, j in ((a, b), (b, a)):
                ax.text(j, i, f"{n:.1f}".removesuffix(".0"), ha="center", va="center", fontsize=7,
                        color="white" if n > steps / 2 else "black")
        counts = r["paths_with_third_digit"]
        spread = f"{min(counts)}–{max(counts)}" if min(counts) < max(counts) else f"{counts[0]}"
        ax.set(title=f"{kind}: {spread} of {len(pairs)} paths pass a third digit", xticks=range(10),
               yticks=range(10), xlabel="to digit", ylabel="from digit")
    fig.suptitle(title, fontsize=10)
    save_figure(fig, path)


def plot_probs(probs, digits, path, title):
    """One panel per path: the classifier's 10 probabilities against t, the two end digits drawn bold."""
    fig, axes = plt.subplots(1, len(probs), figsize=(6 * len(probs), 4), sharey=True, squeeze=False)
    for ax, (name, p) in zip(axes.flat, probs.items()):
        t = torch.linspace(0, 1, len(p))
        colors = dict(zip([*digits, *(c for c in range(10) if c not in digits)], (f"C{i}" for i in range(10))))
        for c in range(10):
            end = c in digits
            ax.plot(t, p[:, c].cpu(), color=colors[c], lw=2.5 if end else 1, alpha=1 if end else 0.45,
                    marker="o" if end else None, ms=3, label=f"{c} (end)" if end else str(c))
        ax.set(title=f"{name}: p(digit | decoded frame)", xlabel="t", ylim=(-0.02, 1.02))
    axes[0, 0].set_ylabel("classifier probability")
    axes[0, -1].legend(title="digit", fontsize=8, loc="center left", bbox_to_anchor=(1, 0.5))
    fig.suptitle(title, fontsize=10)
    save_figure(fig, path)


# ---------------------------------------------------------------------------------------------------------------

def probability(text):
    value = float(text)
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError(f"must be a probability between 0 and 1, got {text}")
    return value


def parse_args(argv):
    p = make_parser("Part 4: interpolate between two digits in the conv VAE's latent space.")
    add_latent_dim_arg(p)
    p.add_argument("--from", dest="from_digit", type=int, choices=range(10), default=FROM_DIGIT, metavar="DIGIT",
                   help=f"digit at the start of the path (default: {FROM_DIGIT})")
    p.add_argument("--to", dest="to_digit", type=int, choices=range(10), default=TO_DIGIT, metavar="DIGIT",
                   help=f"digit at the end of the path (default: {TO_DIGIT})")
    p.add_argument("--steps", type=positive_int, default=STEPS,
                   help=f"frames per path, both ends included, at least 2 (default: {STEPS})")
    p.add_argument("--confidence", type=probability, default=CONFIDENCE,
                   help=f"classifier probability an end must reach (default: {CONFIDENCE})")
    p.add_argument("--max-draws", type=positive_int, default=None,
                   help=f"prior samples searched for the ends (default: {MAX_DRAWS}; {QUICK_MAX_DRAWS} with --quick)")
    args = parse(p, argv)
    if args.steps < 2:
        p.error(f"argument --steps: must be at least 2 (the two ends), got {args.steps}")
    if args.from_digit == args.to_digit:
        p.error(f"arguments --from and --to: must be two different digits, both are {args.from_digit}")
    args.max_draws = args.max_draws or (QUICK_MAX_DRAWS if args.quick else MAX_DRAWS)
    return args


def find_ends(vae, classifier, args, device):
    """Up to ENDS_PER_DIGIT ends for each of the ten digits, the most confident first, and the number of prior
    samples drawn. A digit with no confident prior sample gets one end: its best encoded test image."""
    generator = torch.Generator().manual_seed(args.seed)
    ends, draws = prior_ends(vae, classifier, range(10), args.confidence, args.max_draws, generator, device)
    test = None
    for digit in range(10):
        if not ends[digit]:
            test = test or load_mnist(args.data_dir, device, args.quick)
            end = test_image_end(vae, classifier, test[2], test[3], digit)
            ends[digit] = [end]
            below = "" if end["confidence"] >= args.confidence else ", below the threshold but the best there is"
            print(f"interpolate: no prior sample among {draws} decodes to digit {digit} with confidence ≥ "
                  f"{args.confidence}; falling back to test image {end['test_index']}, encoded (μ), whose decoding "
                  f"is digit {digit} with confidence {end['confidence']:.3f}{below}")
    return ends, draws


def featured_path(vae, classifier, ends, digits, steps, kinds):
    """The path between the two digits for every set of ends: ({kind: metrics of the first set's path, with
    z_norms}, {kind: the statistics of every set}, the first set's images and probabilities)."""
    first, spread, images, probs = {}, {}, {}, {}
    for kind, path in kinds.items():
        runs = []
        for r in range(sets_of_ends(ends)):
            z = path(ends[digits[0]][r]["z"], ends[digits[1]][r]["z"], steps)
            frames, p = decode_and_classify(vae, classifier, z)
            runs.append({**path_metrics(frames, p, digits), "z_norms": z.norm(dim=1).tolist()})
            if r == 0:
                images[kind], probs[kind] = frames, p
        first[kind] = runs[0]
        spread[kind] = {"min_confidence": [m["min_confidence"]["value"] for m in runs],
                        "min_confidence_t": [m["min_confidence"]["t"] for m in runs],
                        "intermediate_digits": [m["intermediate_digits"] for m in runs],
                        "min_norm": [min(m["z_norms"]) for m in runs]}
    return first, spread, images, probs


def sets_of_ends(ends):
    # set r takes the r-th most confident end of every digit, so there are as many sets as the scarcest digit has
    return min(map(len, ends.values()))


def pair_paths(vae, classifier, ends, kinds):
    """All 45 pairs for every set of ends: {kind: third-digit frames and lowest confidences per set, and how many
    of the 45 paths pass through a third digit, per set}."""
    runs = [all_pairs(vae, classifier, {d: e[r] for d, e in ends.items()}, PAIR_STEPS, kinds)
            for r in range(sets_of_ends(ends))]
    pairs = runs[0][1]
    results = {kind: {"third_digit_frames": [run[kind]["third_digit_frames"] for run, _ in runs],
                      "min_confidence": [run[kind]["min_confidence"] for run, _ in runs],
                      "paths_with_third_digit": [sum(n > 0 for n in run[kind]["third_digit_frames"])
                                                 for run, _ in runs]}
               for kind in kinds}
    return results, pairs


def main(argv=None):
    args = parse_args(argv)
    device, out = start(args, vars(args))
    vae = load_conv_vae(out, device, args.latent_dim)
    classifier = load_classifier(out, device)

    digits = (args.from_digit, args.to_digit)
    paths = {"frames": out / "interpolation.png", "probs": out / "interpolation_probs.png",
             "pairs": out / "interpolation_pairs.png", "traversal": out / "traversal.png",
             "metrics": out / "interpolation_metrics.json"}
    config = {"from": args.from_digit, "to": args.to_digit, "steps": args.steps, "confidence": args.confidence,
              "max_draws": args.max_draws, "ends_per_digit": ENDS_PER_DIGIT, "pair_steps": PAIR_STEPS,
              "traversal": TRAVERSAL, "seed": args.seed, "quick": args.quick,
              "models": {"conv.pt": file_digest(out / "conv.pt"), "classifier.pt": file_digest(out / "classifier.pt")}}
    if up_to_date("interpolate", paths["metrics"], config, [p for p in paths.values() if p.suffix == ".png"],
                  args.force):
        return
    kinds = path_kinds(vae.config["latent_dim"])
    title = lambda text: figure_title(text, args.quick)  # noqa: E731

    # --- confident ends for each of the ten digits, shared by the featured path and the 45 pairs
    ends, draws = find_ends(vae, classifier, args, device)
    confident = all(ends[d][0]["confidence"] >= args.confidence for d in digits)
    journey = (f"From a {digits[0]} to a {digits[1]}" if confident else
               f"Towards {digits[0]} → {digits[1]}, but the ends are not confidently those digits "
               f"({ends[digits[0]][0]['confidence']:.2f}, {ends[digits[1]][0]['confidence']:.2f})")

    # --- the featured path, decoded and classified, for every set of ends; the figures show the first set
    results, spread, images, probs = featured_path(vae, classifier, ends, digits, args.steps, kinds)
    captions = [f"{kind}\n{d} ({c:.2f})" if i == 0 else f"{d} ({c:.2f})"
                for kind, m in results.items() for i, (d, c) in enumerate(zip(m["labels"], m["confidences"]))]
    show_images(torch.cat(list(images.values())), paths["frames"], title(
        f"{journey} in the conv VAE's latent space, {' (top) and '.join(kinds)}{' (bottom)' if len(kinds) > 1 else ''}"
        f"; under each frame the classifier's digit (confidence)"), captions=captions, ncols=args.steps)
    plot_probs(probs, digits, paths["probs"], title(journey))

    # --- all 45 digit pairs, for every set of ends
    pair_results, pairs = pair_paths(vae, classifier, ends, kinds)
    all_confident = all(e["confidence"] >= args.confidence for d in ends.values() for e in d)
    plot_pairs(pair_results, pairs, PAIR_STEPS, paths["pairs"], title(
        f"Frames (of {PAIR_STEPS}) on the path between two digits that the classifier calls a third digit, "
        f"mean over {plural(sets_of_ends(ends), 'set')} of ends" + ("" if all_confident else
                                                             "; some ends are not confidently their digit")))

    # --- the traversal of every latent unit
    sweep = traverse(vae, TRAVERSAL)                                        # (d, 9, 1, 28, 28)
    change = traversal_change(sweep)                                        # (d,)
    order = change.argsort(descending=True).tolist()
    show_images(sweep[order].flatten(0, 1), paths["traversal"], title(
        f"Each row: one latent unit swept from {TRAVERSAL[0]:g} to {TRAVERSAL[-1]:g}, the others at 0; sorted by "
        f"how much the image changes (pixel L2 along the row)"),
        captions=[(f"z{u}: {change[u]:.1f}" if j == 0 else "") + (f"\n{v:+g}" if i == 0 else "")
                  for i, u in enumerate(order) for j, v in enumerate(TRAVERSAL)], ncols=len(TRAVERSAL))

    z_a, z_b = ends[digits[0]][0]["z"], ends[digits[1]][0]["z"]
    as_json = lambda end: {k: v for k, v in end.items() if k != "z"}  # noqa: E731
    metrics = {
        "config": config,
        "ends": {key: {"digit": digit, **as_json(ends[digit][0]), "confident": ends[digit][0]["confidence"] >=
                       args.confidence, "z": ends[digit][0]["z"].tolist()} for key, digit in zip(("from", "to"), digits)},
        "prior_draws": draws, "sets_of_ends": sets_of_ends(ends),
        "ends_from_prior": {str(d): sum(e["source"] == "prior" for e in end) for d, end in ends.items()},
        "latent_distance": (z_a - z_b).norm().item(),
        **results,
        "spread": spread,
        "all_ends": {str(d): [as_json(e) for e in end] for d, end in ends.items()},
        "pairs": {"pairs": pairs, "steps": PAIR_STEPS, **pair_results},
        "traversal": {"values": TRAVERSAL, "change": change.tolist(), "order": order},
    }
    save_json(paths["metrics"], metrics)
    report_numbers(metrics, digits)
    print(f"wrote {', '.join(str(p) for p in paths.values())}")


def report_numbers(m, digits):
    """The step's main numbers, one line each."""
    ends = m["ends"]
    print(f"ends: {digits[0]} from {ends['from']['source']} ({ends['from']['confidence']:.2f}), {digits[1]} from "
          f"{ends['to']['source']} ({ends['to']['confidence']:.2f}); |z_a − z_b| = {m['latent_distance']:.2f}; "
          f"{plural(m['sets_of_ends'], 'set')} of ends")
    for kind, s in m["spread"].items():
        changes = ", ".join(f"{c['from']}→{c['to']} at t={c['t']:.2f}" for c in m[kind]["changes"])
        low = ", ".join(f"{v:.2f}" for v in s["min_confidence"])
        print(f"{kind}: {'label changes ' + changes if changes else 'no label change'}; lowest confidence per set "
              f"of ends {low}")
    for kind, r in m["pairs"].items():
        if kind in m["spread"]:
            counts = ", ".join(map(str, r["paths_with_third_digit"]))
            print(f"{kind} paths between the 45 digit pairs passing through a third digit, per set of ends: {counts}")
    change, order = m["traversal"]["change"], m["traversal"]["order"]
    print("traversal: image change per latent unit, largest first: " + ", ".join(f"z{u} {change[u]:.1f}" for u in order))


if __name__ == "__main__":
    cli(main)

"""`semhpc calibrate`: how far a model's top score can be trusted, measured on labelled data.

The analyses of docs/background.md: Classification policy (Aversa §4.3.2), on one split of an ingested dataset:
  * histogram of the top-1 score, each image counted as `top_correct` (top-1 is the label),
    `second_correct` (top-2 is) or `neither`;
  * P(top-1 correct | score) and P(top-1 or top-2 correct | score), per score bin with 95% Wilson
    intervals, and the scores where each crosses 0.5 with 95% bootstrap intervals -- where the
    "right" and "wrong" histograms cross. The thesis found 0.5 for the top-1 curve and 0.35 for the
    top-two curve, and took the second as its `suggest` threshold: below it, not even the top two
    labels are more likely right than wrong;
  * how often the second label is right when the first is wrong (thesis: 55%), the reason the
    `suggest` decision shows two labels;
  * suggested thresholds:
      auto    = the lowest top-1 score t such that images with score >= t have top-1 precision
                >= the target (`--target-precision`); the lowest such t automates the most images;
      suggest = the lowest score s (< auto) such that images with s <= score < auto have the right
                label among the top two with rate >= `--suggest-precision`;
    crossing thresholds (the thesis' derivation): suggest = the top-two crossing, auto = the
    precision threshold above (the thesis' ~0.9 is where the top-1 curve is "high confidence",
    far above its 0.5 crossing, which is where the top label is as likely wrong as right);
    and what each policy (current, suggested, crossing) does on this split: share of auto /
    suggest / manual, precision of auto, top-2 hit rate of suggest.
Images are read through the same `pipeline.make_dataset` as `semhpc eval`, with the bundle's
input size and scaling.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from semhpc.classify.bundle import Bundle
from semhpc.classify.policy import DECISIONS, Thresholds
from semhpc.classify.preprocess import scale_fn
from semhpc.utils.atomic import atomic_path
from semhpc.utils.errors import SemhpcError

SCORE_BINS = 20
OUTCOMES = ("top_correct", "second_correct", "neither")
BOOTSTRAP_RESAMPLES = 1000
_Z95 = 1.959964  # standard normal quantile of a two-sided 95% interval


def score_split(bundle: Bundle, data_dir: str | Path, split: str, batch_size: int = 32):
    """(probabilities [N, C], labels [N]) of every image of `split`."""
    import tensorflow as tf

    from semhpc.data import pipeline

    classes = list(pipeline.load_manifest(data_dir)["classes"])
    if classes != bundle.classes:
        raise SemhpcError(f"{data_dir}: the dataset's classes {classes} differ from the bundle's "
                          f"{bundle.classes}; labels would be compared in the wrong order")
    model = bundle.load_model()
    dataset = pipeline.make_dataset(data_dir, split, bundle.input_size, batch_size, training=False,
                                    preprocess_fn=scale_fn(bundle.preprocessing["scaling"]), augment=False)
    probabilities, labels = [], []
    for images, batch_labels in dataset:
        probabilities.append(tf.nn.softmax(model(images, training=False)).numpy())
        labels.append(batch_labels.numpy())
    if not labels:
        raise SemhpcError(f"{data_dir}: the {split} split holds no images")
    return np.concatenate(probabilities), np.concatenate(labels)


def analyse(probabilities: np.ndarray, labels: np.ndarray, current: Thresholds,
            target_precision: float = 0.95, suggest_precision: float = 0.8, seed: int = 0) -> dict:
    """The calibration report (JSON-serialisable) of scores [N, C] against true labels [N];
    `seed` seeds the bootstrap of the crossings' intervals."""
    ranked = np.argsort(-probabilities, axis=1, kind="stable")
    scores = probabilities[np.arange(len(labels)), ranked[:, 0]]
    top_correct = ranked[:, 0] == labels
    top2_correct = top_correct | (ranked[:, 1] == labels)
    outcome = np.where(top_correct, 0, np.where(top2_correct, 1, 2))

    edges = np.linspace(0.0, 1.0, SCORE_BINS + 1)
    in_bin = np.clip(np.digitize(scores, edges) - 1, 0, SCORE_BINS - 1)  # a score of 1.0 joins the last bin
    counts = np.array([np.bincount(in_bin[outcome == k], minlength=SCORE_BINS) for k in range(3)])
    centres = (edges[:-1] + edges[1:]) / 2

    top_wrong = int((~top_correct).sum())
    suggested = _suggested_thresholds(scores, top_correct, top2_correct, target_precision, suggest_precision)
    crossings = _crossings_with_intervals(in_bin, outcome, centres, seed)
    top2_crossing = crossings["top2"]["score"]
    by_crossing = {"auto": suggested["auto"],
                   "suggest": top2_crossing if top2_crossing is not None and suggested["auto"] is not None
                   and top2_crossing < suggested["auto"] else None}
    return {
        "images": int(len(labels)),
        "top1_accuracy": float(top_correct.mean()),
        "top2_accuracy": float(top2_correct.mean()),
        "second_correct_when_top_wrong": float(counts[1].sum() / top_wrong) if top_wrong else None,
        "histogram": {"bin_edges": edges.tolist(),
                      **{name: counts[k].tolist() for k, name in enumerate(OUTCOMES)}},
        "p_top_correct": _curve(centres, counts[0], counts.sum(axis=0)),
        "p_top2_correct": _curve(centres, counts[0] + counts[1], counts.sum(axis=0)),
        "crossings": crossings,
        "target_precision": target_precision,
        "suggest_precision": suggest_precision,
        "suggested_thresholds": suggested,
        "crossing_thresholds": by_crossing,
        "policy": {
            "current": _policy_outcome(scores, top_correct, top2_correct, current),
            **{name: (_policy_outcome(scores, top_correct, top2_correct,
                                      Thresholds(thresholds["auto"], thresholds["suggest"]))
                      if thresholds["auto"] is not None and thresholds["suggest"] is not None else None)
               for name, thresholds in (("suggested", suggested), ("crossing", by_crossing))},
        },
    }


def _curve(centres: np.ndarray, hits: np.ndarray, totals: np.ndarray) -> dict:
    """Per-bin probability hits/totals with its 95% Wilson interval (None for empty bins)."""
    rows = [_wilson(hit, total) if total else (None, None, None) for hit, total in zip(hits, totals)]
    probability, low, high = (list(column) for column in zip(*rows))
    return {"bin_centres": centres.tolist(), "probability": probability, "ci95_low": low, "ci95_high": high}


def _wilson(hits: int, total: int) -> tuple[float, float, float]:
    """(hits/total, low, high): the 95% Wilson score interval, sound for the few images of a bin."""
    p = hits / total
    spread = _Z95 ** 2 / total
    centre = (p + spread / 2) / (1 + spread)
    half = _Z95 * np.sqrt(p * (1 - p) / total + spread / (4 * total)) / (1 + spread)
    return float(p), float(max(0.0, centre - half)), float(min(1.0, centre + half))


def _crossings_with_intervals(in_bin: np.ndarray, outcome: np.ndarray, centres: np.ndarray, seed: int) -> dict:
    """The 0.5 crossings of P(top-1 correct) and P(top-1 or top-2 correct), each with the 95%
    interval of its bootstrap distribution (images resampled with replacement) and the share of
    resamples in which the curve crosses at all."""
    def crossing(bins, hits):
        totals = np.bincount(bins, minlength=SCORE_BINS)
        right = np.bincount(bins[hits], minlength=SCORE_BINS)
        return _crossing(centres, [r / t if t else None for r, t in zip(right, totals)])

    hits = {"top1": outcome == 0, "top2": outcome <= 1}
    rng = np.random.default_rng(seed)
    resamples = [rng.integers(0, len(in_bin), len(in_bin)) for _ in range(BOOTSTRAP_RESAMPLES)]
    result = {}
    for name, hit in hits.items():
        boot = [crossing(in_bin[idx], hit[idx]) for idx in resamples]
        crossed = np.array([value for value in boot if value is not None])
        result[name] = {
            "score": crossing(in_bin, hit),
            "ci95": [float(np.percentile(crossed, 2.5)), float(np.percentile(crossed, 97.5))] if len(crossed) else None,
            "resamples_crossing": float(len(crossed) / BOOTSTRAP_RESAMPLES),
        }
    return result


def _crossing(centres: np.ndarray, p_correct: list) -> float | None:
    """Score where P(top correct) first rises through 0.5, interpolated between bin centres;
    None when it never crosses (always above, always below, or too few binned images)."""
    points = [(c, p) for c, p in zip(centres, p_correct) if p is not None]
    for (c0, p0), (c1, p1) in zip(points, points[1:]):
        if p0 < 0.5 <= p1:
            return float(c0 + (0.5 - p0) / (p1 - p0) * (c1 - c0))
    return None


def lowest_threshold(scores: np.ndarray, hits: np.ndarray, target: float) -> float | None:
    """The lowest score t (among `scores`) with mean(hits[scores >= t]) >= target, else None."""
    if len(scores) == 0:
        return None
    order = np.argsort(-scores, kind="stable")
    sorted_scores = scores[order]
    precision = np.cumsum(hits[order]) / np.arange(1, len(scores) + 1)
    # a threshold keeps every image tied with it: evaluate only at the last of each run of ties
    last_of_tie = np.append(sorted_scores[1:] != sorted_scores[:-1], True)
    meeting = np.flatnonzero(last_of_tie & (precision >= target))
    return float(sorted_scores[meeting[-1]]) if len(meeting) else None


def _suggested_thresholds(scores, top_correct, top2_correct, target_precision, suggest_precision) -> dict:
    auto = lowest_threshold(scores, top_correct, target_precision)
    below_auto = scores < auto if auto is not None else np.ones_like(scores, bool)
    suggest = lowest_threshold(scores[below_auto], top2_correct[below_auto], suggest_precision)
    if auto is not None and suggest is None:
        suggest = auto  # no band below auto is good enough to suggest: everything else is manual
    return {"auto": auto, "suggest": suggest}


def _policy_outcome(scores, top_correct, top2_correct, thresholds: Thresholds) -> dict:
    decisions = np.array([thresholds.decide(float(score)) for score in scores])
    auto, suggest = decisions == "auto", decisions == "suggest"
    return {
        "auto": thresholds.auto, "suggest": thresholds.suggest,
        "share": {decision: float((decisions == decision).mean()) for decision in DECISIONS},
        "auto_precision": float(top_correct[auto].mean()) if auto.any() else None,
        "suggest_top2_rate": float(top2_correct[suggest].mean()) if suggest.any() else None,
    }


def plot(report: dict, png_path: Path, title: str) -> None:
    """Histogram by outcome (left); P(top-1 correct) and P(top two correct) vs score with 95% bands,
    their 0.5 crossings with 95% intervals, and the thresholds (right)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    histogram = report["histogram"]
    edges = np.array(histogram["bin_edges"])
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2))
    bottom = np.zeros(len(edges) - 1)
    for name, colour in zip(OUTCOMES, ("tab:green", "tab:orange", "tab:red")):
        left.bar(edges[:-1], histogram[name], width=np.diff(edges), bottom=bottom, align="edge",
                 color=colour, label=name.replace("_", " "), edgecolor="white", linewidth=0.5)
        bottom += histogram[name]
    left.set(xlabel="top-1 score", ylabel="images", title="Top-1 score by outcome")
    left.legend()

    for key, crossing, colour, label in (("p_top_correct", "top1", "tab:blue", "P(top-1 correct)"),
                                         ("p_top2_correct", "top2", "tab:purple", "P(top-1 or top-2 correct)")):
        curve = report[key]
        points = [(c, p, lo, hi) for c, p, lo, hi in zip(curve["bin_centres"], curve["probability"],
                                                          curve["ci95_low"], curve["ci95_high"]) if p is not None]
        centres, probability, low, high = zip(*points)
        right.plot(centres, probability, "o-", color=colour, label=label)
        right.fill_between(centres, low, high, color=colour, alpha=0.15, linewidth=0)
        found = report["crossings"][crossing]
        if found["score"] is not None:
            interval = found["ci95"]
            right.plot([found["score"]], [0.5], "D", color=colour, label=f"crosses 0.5 at {found['score']:.2f}"
                       + (f" [{interval[0]:.2f}, {interval[1]:.2f}]" if interval else ""))
            if interval:
                right.plot(interval, [0.5, 0.5], "-", color=colour, linewidth=4, alpha=0.5)
    right.plot([0, 1], [0.5, 0.5], ":", color="gray")
    for name, policy, style in (("current", report["policy"]["current"], "--"),
                                ("suggested", report["policy"]["suggested"], "-"),
                                ("crossing", report["policy"]["crossing"], "-.")):
        if policy is not None:
            right.axvline(policy["auto"], color="tab:green", linestyle=style, label=f"{name} auto {policy['auto']:.2f}")
            right.axvline(policy["suggest"], color="tab:orange", linestyle=style,
                          label=f"{name} suggest {policy['suggest']:.2f}")
    right.set(xlabel="top-1 score", ylabel="probability", xlim=(0, 1), ylim=(0, 1.02),
              title="Are the top labels right?")
    right.legend(fontsize=7, loc="lower right")
    fig.suptitle(title)
    fig.tight_layout()
    with atomic_path(png_path) as tmp:
        fig.savefig(tmp, dpi=120, format="png")
    plt.close(fig)

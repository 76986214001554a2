"""Every figure of the notebooks and of `semhpc report`, one function each, from the monitor's tables.

Functions return a `matplotlib.figure.Figure` that is not registered with pyplot: a notebook
shows it with `display(fig)` (or as a cell's last value), the report saves it as PNG, and no
figure is drawn twice or leaks between calls.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from semhpc.monitor.classification import AUTO_THRESHOLD, OUTCOMES, SUGGEST_THRESHOLD, per_class_table
from semhpc.monitor.layer_timing import LAYER_PHASES
from semhpc.monitor.run import spread_column
from semhpc.utils.errors import SemhpcError

OUTCOME_COLOURS = {"top1 correct": "tab:green", "top2 correct": "tab:orange", "neither": "tab:red"}


def _figure(rows: int = 1, cols: int = 1, size: tuple[float, float] = (6.4, 4.0)):
    fig = Figure(figsize=size, layout="constrained")
    return fig, fig.subplots(rows, cols, squeeze=False)


# --- training (01, report) ---------------------------------------------------------------------

def training_curves(steps: pd.DataFrame, epochs: pd.DataFrame) -> Figure:
    """Loss, accuracy, learning rate and images/sec against the step: step intervals as lines,
    epoch ends (training, and the evaluation split: `eval_split`, validation in older runs) as markers."""
    fig, axes = _figure(2, 2, (11, 6.5))
    panels = [("loss", "loss", "val_loss"), ("accuracy", "accuracy", "val_accuracy"),
              ("learning rate", "lr", None), ("images/sec (all ranks)", "images_per_sec", None)]
    for ax, (title, column, validation) in zip(axes.flat, panels):
        ax.plot(steps["step"], steps[column], label="train (interval)", color="tab:blue")
        if column in ("loss", "accuracy"):
            ax.plot(epochs["step"], epochs[column], "o", label="train (epoch)", color="tab:blue")
        if validation:
            ax.plot(epochs["step"], epochs[validation], "s-", label=evaluated_split(epochs), color="tab:orange")
        ax.set(title=title, xlabel="step")
        ax.grid(alpha=0.3)
        if column in ("loss", "accuracy"):
            ax.legend(fontsize="small")
    return fig


def evaluated_split(epochs: pd.DataFrame) -> str:
    """The split the epoch-end evaluations scored (train.eval_split; runs before the key: validation)."""
    splits = epochs["eval_split"].dropna() if "eval_split" in epochs else []
    return str(splits.iloc[-1]) if len(splits) else "validation"


def rank_step_spread(rank_times: pd.DataFrame) -> Figure:
    """Compute time of each rank over the run (left) and its distribution per rank (right): a slow
    rank makes every rank wait at the allreduce, so only the part before that wait tells which
    rank is slow (`run.spread_column`: the step time for runs recorded without it)."""
    column = spread_column(rank_times)
    label = "compute time (before the allreduce)" if column == "compute_time" else "step time"
    fig, axes = _figure(1, 2, (11, 3.8))
    ranks = sorted(rank_times["rank"].unique())
    for rank in ranks:
        mine = rank_times[rank_times["rank"] == rank]
        axes[0, 0].plot(mine["step"], mine[column], label=f"rank {rank}")
    axes[0, 0].set(title=f"{label} per rank", xlabel="step", ylabel="seconds")
    if ranks:  # a run opened before its first step record has no ranks to label yet
        axes[0, 0].legend(fontsize="small")
    axes[0, 1].boxplot([rank_times.loc[rank_times["rank"] == r, column] for r in ranks])
    axes[0, 1].set_xticks(range(1, len(ranks) + 1), [f"rank {r}" for r in ranks])
    axes[0, 1].set(title="spread", ylabel="seconds")
    return fig


# --- evaluation (04, report) -------------------------------------------------------------------

def confusion_matrix(evaluation: dict) -> Figure:
    """Row-normalised confusion matrix (true class rows) with the image counts written in."""
    counts = np.asarray(evaluation["confusion"], dtype=float)
    classes = evaluation["classes"]
    share = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)
    fig, axes = _figure(1, 1, (8, 7))
    ax = axes[0, 0]
    image = ax.imshow(share, cmap="Blues", vmin=0, vmax=1)
    for (row, col), n in np.ndenumerate(counts):
        if n:
            ax.text(col, row, int(n), ha="center", va="center", fontsize=8,
                    color="white" if share[row, col] > 0.5 else "black")
    ax.set_xticks(range(len(classes)), classes, rotation=60, ha="right", fontsize=8)
    ax.set_yticks(range(len(classes)), classes, fontsize=8)
    ax.set(xlabel="predicted", ylabel="true", title=f"confusion (accuracy {evaluation['accuracy']:.3f})")
    fig.colorbar(image, ax=ax, label="share of the true class")
    return fig


def per_class_metrics(evaluation: dict) -> Figure:
    table = per_class_table(evaluation)[["precision", "recall", "f1"]]
    fig, axes = _figure(1, 1, (10, 4))
    table.plot.bar(ax=axes[0, 0], ylim=(0, 1.05), rot=45)
    axes[0, 0].set(title="per-class metrics", ylabel="")
    axes[0, 0].tick_params(axis="x", labelsize=8)
    return fig


# --- classification review (04) ----------------------------------------------------------------

def score_histogram(predictions: pd.DataFrame, bins: int = 20) -> Figure:
    """Top-1 scores stacked by outcome: top label right, second right, neither (docs/background.md: Classification policy)."""
    fig, axes = _figure(1, 1, (7, 4))
    groups = [predictions.loc[predictions["outcome"] == o, "top1_score"] for o in OUTCOMES]
    axes[0, 0].hist(groups, bins=np.linspace(0, 1, bins + 1), stacked=True, label=list(OUTCOMES),
                    color=[OUTCOME_COLOURS[o] for o in OUTCOMES])
    axes[0, 0].set(title="top-1 score by outcome", xlabel="top-1 score", ylabel="images")
    axes[0, 0].legend()
    return fig


def probability_correct(by_score: pd.DataFrame, auto: float = AUTO_THRESHOLD,
                        suggest: float = SUGGEST_THRESHOLD) -> Figure:
    """P(top label correct) per score bin against the policy thresholds and the diagonal."""
    fig, axes = _figure(1, 1, (7, 4))
    ax = axes[0, 0]
    centres = (by_score["score_low"] + by_score["score_high"]) / 2
    ax.plot(centres, by_score["p_correct"], "o-", label="P(top-1 correct)")
    ax.plot([0, 1], [0, 1], ":", color="grey", label="calibrated")
    ax.axvline(auto, color="tab:green", linestyle="--", label=f"auto >= {auto:g}")
    ax.axvline(suggest, color="tab:orange", linestyle="--", label=f"suggest >= {suggest:g}")
    for x, y, n in zip(centres, by_score["p_correct"], by_score["images"]):
        ax.annotate(str(n), (x, y), textcoords="offset points", xytext=(0, 6), ha="center", fontsize=7)
    ax.set(xlim=(0, 1), ylim=(-0.05, 1.1), xlabel="top-1 score", ylabel="share correct",
           title="probability correct vs score (n per bin)")
    ax.legend(fontsize="small", loc="lower right")
    return fig


def image_grid(images: list[np.ndarray], titles: list[str], columns: int = 4) -> Figure:
    """Grayscale thumbnails with a caption each (confident errors, samples)."""
    rows = max(1, -(-len(images) // columns))
    fig, axes = _figure(rows, columns, (2.6 * columns, 2.6 * rows))
    for ax in axes.flat:
        ax.axis("off")
    for ax, image, title in zip(axes.flat, images, titles):
        ax.imshow(image, cmap="gray", vmin=0, vmax=255)
        ax.set_title(title, fontsize=7)
    return fig


# --- dataset (05) ------------------------------------------------------------------------------

def class_balance(balance: pd.DataFrame) -> Figure:
    fig, axes = _figure(1, 1, (10, 4))
    balance.plot.bar(ax=axes[0, 0], stacked=True, rot=45)
    axes[0, 0].set(title="images per class and split", ylabel="images", xlabel="")
    axes[0, 0].tick_params(axis="x", labelsize=8)
    return fig


def metadata_distributions(images: pd.DataFrame, fields: list[str]) -> Figure:
    """One histogram per numeric field (log-spaced when it spans decades, like magnification
    250x-500,000x) or a bar chart of counts per text field (vendor, detector)."""
    if not fields:
        raise SemhpcError("no instrument metadata to show (the images carry none of the requested fields)")
    fig, axes = _figure(1, len(fields), (3.6 * len(fields), 3.4))
    for ax, field in zip(axes.flat, fields):
        values = images[field].dropna()
        if pd.api.types.is_numeric_dtype(values) and values.nunique() > 1:
            spans_decades = values.min() > 0 and values.max() / values.min() > 100
            ax.hist(values, bins=np.geomspace(values.min(), values.max(), 21) if spans_decades else 20)
            if spans_decades:
                ax.set_xscale("log")
        else:
            values.astype(str).value_counts().plot.bar(ax=ax, rot=30)
        ax.set(title=field, ylabel="images")
    return fig


# --- scaling (02) ------------------------------------------------------------------------------

def scaling(sweep: pd.DataFrame, thesis: pd.DataFrame) -> Figure:
    """Speedup and efficiency against the number of workers: this machine's sweep (solid), the
    thesis' GPUs (dashed, docs/background.md: Scaling) and ideal linear scaling (dotted)."""
    fig, axes = _figure(1, 2, (12, 4.5))
    most = int(max(sweep["workers"].max(), thesis["workers"].max()))
    for ax, column in zip(axes.flat, ("speedup", "efficiency")):
        ideal = [1] * 2 if column == "efficiency" else [1, most]
        ax.plot([1, most], ideal, ":", color="black", label="ideal")
        for (model, device), rows in thesis.groupby(["model", "device"]):
            ax.plot(rows["workers"], rows[column], "--", marker=".", alpha=0.6, label=f"thesis {model} {device}")
        for (model, phase), rows in sweep.groupby(["model", "phase"]):
            ax.plot(rows["workers"], rows[column], "o-", linewidth=2.5, label=f"this machine: {model} {phase}")
        ax.set(xlabel="workers (ranks / GPUs)", ylabel=column, title=f"{column} vs 1 worker")
        ax.set_xticks(range(1, most + 1))
        ax.grid(alpha=0.3)
    axes[0, 1].set_ylim(0, 1.1)
    axes[0, 1].legend(fontsize="x-small", loc="lower left")
    return fig


# --- per-layer profile (03) --------------------------------------------------------------------

def layer_times(times: pd.DataFrame, top: int = 20) -> Figure:
    """Forward, backward and weight-update seconds per iteration of the `top` slowest layer blocks."""
    shown = times.head(top).iloc[::-1]
    fig, axes = _figure(1, 1, (8, 0.3 * len(shown) + 1.5))
    shown[list(LAYER_PHASES)].plot.barh(stacked=True, ax=axes[0, 0])
    axes[0, 0].set(xlabel="seconds per iteration", ylabel="",
                   title=f"slowest {len(shown)} of {len(times)} layer blocks")
    return fig


def layer_time_vs_iteration(by_iteration: pd.DataFrame, top: int = 8) -> Figure:
    """Time of the `top` slowest layer blocks at each profiled iteration (is it steady?)."""
    slowest = by_iteration.sum().sort_values(ascending=False).index[:top]
    fig, axes = _figure(1, 1, (8, 4))
    by_iteration[slowest].plot(ax=axes[0, 0], marker=".")
    axes[0, 0].set(xlabel="iteration", ylabel="seconds (forward + backward)", title="layer time per iteration")
    axes[0, 0].legend(fontsize="x-small")
    return fig


def step_coverage(breakdown: pd.Series, summary: dict) -> Figure:
    """The mean step split into layers (by phase) and what is not a layer, with the coverage,
    layer share and profiling overhead of the run."""
    fig, axes = _figure(1, 1, (10, 2.8))
    ax = axes[0, 0]
    left = 0.0
    for name, seconds in breakdown.items():
        ax.barh(0, seconds, left=left, label=f"{name} {seconds * 1e3:.1f} ms")
        left += seconds
    ax.set_yticks([])
    # No overhead when the profile was re-read from a bare trace (nothing ran without the profiler).
    overhead = "n/a" if summary["overhead"] is None else f"{summary['overhead']:.3f}x"
    ax.set(xlabel="seconds per iteration", title=f"coverage {summary['coverage']:.3f}, layer share "
                                                 f"{summary['layer_share']:.3f}, overhead {overhead}")
    ax.legend(fontsize="small", ncol=3, loc="upper center", bbox_to_anchor=(0.5, -0.35))
    return fig

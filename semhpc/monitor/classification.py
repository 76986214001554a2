"""`semhpc classify` output (OUT/predictions.csv) joined with the true labels, for the analyses
of docs/background.md: Classification policy: which scores can be trusted, and where the confidence policy should cut.

The true label of an image is the category folder it sits in (`SRC/<Category>/name.tif`, the
layout `semhpc ingest` reads), so classifying a labelled tree is all a review needs.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from semhpc.classify.policy import PREDICTION_FIELDS, Thresholds
from semhpc.data.categories import CATEGORIES
from semhpc.utils.errors import SemhpcError

# The default confidence policy of `semhpc classify` (docs/background.md: Classification policy).
AUTO_THRESHOLD = Thresholds().auto
SUGGEST_THRESHOLD = Thresholds().suggest
# How the true label relates to the top two (docs/background.md: Classification policy: "when the top label is wrong, the
# second is right in 55% of cases").
OUTCOMES = ("top1 correct", "top2 correct", "neither")


def load_predictions(path: str | Path) -> pd.DataFrame:
    """predictions.csv (or its folder) with `true_label` (the category folder, NaN when the image
    is not in one) and `outcome` (see OUTCOMES)."""
    csv = Path(path) / "predictions.csv" if Path(path).is_dir() else Path(path)
    if not csv.is_file():
        raise SemhpcError(f"{csv}: predictions file not found (run `semhpc classify ... --out DIR`)")
    table = pd.read_csv(csv)
    missing = [c for c in PREDICTION_FIELDS if c not in table.columns]
    if missing:
        raise SemhpcError(f"{csv}: missing columns {', '.join(missing)}")
    table["true_label"] = [_category_folder(p) for p in table["path"]]
    table["outcome"] = np.select(
        [table["top1_label"] == table["true_label"], table["top2_label"] == table["true_label"]],
        OUTCOMES[:2], OUTCOMES[2])
    table.loc[table["true_label"].isna(), "outcome"] = None
    return table


def per_class_table(evaluation: dict) -> pd.DataFrame:
    """precision, recall, f1 and support per class of an eval.json / test_metrics.json."""
    return pd.DataFrame(evaluation["per_class"]).T[["precision", "recall", "f1", "support"]]


def labelled(predictions: pd.DataFrame) -> pd.DataFrame:
    """The rows with a known true label; an error when there are none (nothing to review)."""
    rows = predictions[predictions["true_label"].notna()]
    if rows.empty:
        raise SemhpcError("no prediction has a true label: classify a tree laid out as SRC/<Category>/<image>")
    return rows


def accuracy_by_score(predictions: pd.DataFrame, bins: int = 10) -> pd.DataFrame:
    """Probability that the top label is right, per top-score bin (empty bins are dropped)."""
    rows = labelled(predictions)
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.digitize(rows["top1_score"], edges) - 1, 0, bins - 1)
    correct = (rows["outcome"] == OUTCOMES[0]).to_numpy()
    out = pd.DataFrame({"bin": which, "correct": correct}).groupby("bin")["correct"].agg(["size", "mean"])
    return pd.DataFrame({"score_low": edges[out.index], "score_high": edges[out.index + 1],
                         "images": out["size"].to_numpy(), "p_correct": out["mean"].to_numpy()})


def confident_errors(predictions: pd.DataFrame, count: int = 8) -> pd.DataFrame:
    """The wrong top-1 predictions with the highest scores: what the policy would auto-assign wrongly."""
    rows = labelled(predictions)
    wrong = rows[rows["outcome"] != OUTCOMES[0]]
    return wrong.sort_values("top1_score", ascending=False).head(count).reset_index(drop=True)


def decision_table(predictions: pd.DataFrame) -> pd.DataFrame:
    """Images and top-1 accuracy per policy decision (auto / suggest / manual)."""
    rows = labelled(predictions)
    return rows.groupby("decision").agg(images=("path", "size"),
                                        top1_accuracy=("outcome", lambda o: float((o == OUTCOMES[0]).mean())))


def _category_folder(path: str) -> str | None:
    folder = Path(path).parent.name
    return folder if folder in CATEGORIES else None

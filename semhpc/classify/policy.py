"""The confidence policy: from an image's class scores to its top-5 and a decision.

docs/background.md: Classification policy (Aversa §4.3.2): a top score >= ~0.9 is reliable enough to assign the label
automatically (`auto`); between ~0.35 and 0.9 the right label is usually among the top two, so
both are suggested to a person (`suggest`); below that a person labels it (`manual`).
`semhpc calibrate` measures where these thresholds should sit for a given model.

Scores are rounded to `SCORE_DECIMALS` places *before* the decision is taken, so the decision
can always be re-derived from the score written in predictions.csv: a score printed as 0.900000
is `auto` at the default threshold, never a float32 0.8999999762 that silently fell below it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from semhpc.utils.errors import SemhpcError

TOP_K = 5
SCORE_DECIMALS = 6
DECISIONS = ("auto", "suggest", "manual")
# The columns of predictions.csv, in order.
PREDICTION_FIELDS = ("path", *(f"top{rank}_{kind}" for rank in range(1, TOP_K + 1) for kind in ("label", "score")),
                     "decision", "model_version")


@dataclass(frozen=True)
class Thresholds:
    """Top-1 score limits: `auto` when score >= auto, `suggest` when score >= suggest, else `manual`."""

    auto: float = 0.9
    suggest: float = 0.35

    def __post_init__(self):
        if not 0.0 <= self.suggest <= self.auto <= 1.0:
            raise SemhpcError(f"thresholds must satisfy 0 <= --suggest <= --auto <= 1, "
                              f"got --suggest {self.suggest:g} --auto {self.auto:g}")

    def decide(self, top1_score: float) -> str:
        if top1_score >= self.auto:
            return "auto"
        if top1_score >= self.suggest:
            return "suggest"
        return "manual"


def top_k(probabilities: np.ndarray, classes: list[str], k: int = TOP_K) -> list[tuple[str, float]]:
    """The k best (label, rounded score) pairs of one image, best first (ties: lower class index)."""
    order = np.argsort(-probabilities, kind="stable")[: min(k, len(classes))]
    return [(classes[i], round(float(probabilities[i]), SCORE_DECIMALS)) for i in order]


def prediction(path: str, probabilities: np.ndarray, classes: list[str], thresholds: Thresholds,
               model_version: str) -> dict:
    """One row of predictions.csv: path, top1_label, top1_score, ..., top5_score, decision, model_version.

    With fewer than five classes the missing ranks hold None (empty cells in the CSV).
    """
    best = top_k(probabilities, classes)
    row: dict = {"path": path}
    for rank in range(TOP_K):
        label, score = best[rank] if rank < len(best) else (None, None)
        row[f"top{rank + 1}_label"] = label
        row[f"top{rank + 1}_score"] = score
    row["decision"] = thresholds.decide(best[0][1])
    row["model_version"] = model_version
    return row

"""Evaluation metrics from a confusion matrix, and the thesis' mean ± std of the last evaluations."""

import json

import numpy as np
import pytest

from semhpc.runtime.evaluation import format_report, summarize
from semhpc.runtime.run_evaluation import last_evaluations


def test_metrics_of_a_known_confusion_matrix():
    # rows = true class, columns = predicted: class a 2 right 1 wrong, class b 3 right.
    result = summarize(np.array([[2, 1], [0, 3]]), loss_sum=1.2, top5_hits=6, class_names=["a", "b"])
    assert result["accuracy"] == pytest.approx(5 / 6)
    assert result["per_class"]["a"] == pytest.approx({"precision": 1.0, "recall": 2 / 3, "f1": 0.8, "support": 3})
    assert result["per_class"]["b"] == pytest.approx({"precision": 0.75, "recall": 1.0, "f1": 6 / 7, "support": 3})
    assert result["loss"] == pytest.approx(0.2) and result["top5_accuracy"] == 1.0
    table = format_report(result)
    assert table.splitlines()[-1].split()[:2] == ["overall", "0.833"]


def test_a_class_never_predicted_has_zero_precision_not_nan():
    result = summarize(np.array([[0, 2], [0, 2]]), 0.0, 4, ["a", "b"])
    assert result["per_class"]["a"]["precision"] == 0.0 and result["per_class"]["a"]["f1"] == 0.0


def test_last_ten_evaluations(tmp_path):
    values = [0.1 * i for i in range(1, 13)]
    lines = [json.dumps({"kind": "epoch", "step": i, "val_accuracy": v}) for i, v in enumerate(values)]
    (tmp_path / "metrics.jsonl").write_text("\n".join(lines) + "\n{\"kind\": \"ep")   # half-written line
    last = last_evaluations(tmp_path / "metrics.jsonl")
    assert last["count"] == 10
    assert last["mean"] == pytest.approx(np.mean(values[2:]))
    assert last["std"] == pytest.approx(np.std(values[2:]))
    assert last["split"] == "validation"  # records before train.eval_split scored the validation split
    assert last_evaluations(tmp_path / "missing.jsonl")["count"] == 0


def test_last_evaluations_name_their_split_and_do_not_mix_splits(tmp_path):
    records = [{"kind": "epoch", "step": i, "val_accuracy": 0.5, "eval_split": "validation"} for i in range(3)]
    records += [{"kind": "epoch", "step": 3 + i, "val_accuracy": 0.9 + 0.01 * i, "eval_split": "test"} for i in range(4)]
    (tmp_path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    last = last_evaluations(tmp_path / "metrics.jsonl")
    assert (last["split"], last["count"]) == ("test", 4)
    assert last["mean"] == pytest.approx(0.915)

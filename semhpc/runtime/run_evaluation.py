"""Evaluate a finished (or running) training run on one split, over all Horovod ranks.

Besides the metrics of `evaluation.evaluate`, the result carries the thesis' reported figure
(De Nobili 2017, §3): mean ± standard deviation of the last ten evaluations during training, read
from the run's metrics.jsonl: the accuracy at each epoch end on `train.eval_split`, the test split
in the thesis' protocol, the validation split by default. The result names the split.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from semhpc.config import load_config
from semhpc.runtime.distributed import init_horovod
from semhpc.runtime.evaluation import evaluate
from semhpc.runtime.recipe import split_dataset
from semhpc.runtime.run_artifacts import load_trained_model, trained_weights
from semhpc.runtime.stack import require_supported_stack
from semhpc.utils import atomic
from semhpc.utils.errors import SemhpcError
from semhpc.utils.metrics_log import read_metrics

LAST_EVALUATIONS = 10


def evaluate_run(run_dir: Path, split: str = "test", data_dir: str | None = None,
                 batch_size: int = 32) -> dict | None:
    """Evaluate; rank 0 writes RUN/eval.json (eval-<split>.json for other splits) and gets the
    result, other ranks get None."""

    require_supported_stack()
    if not (run_dir / "config.yaml").is_file():
        raise SemhpcError(f"{run_dir}: no config.yaml (not a semhpc run directory)")
    cfg = load_config(run_dir / "config.yaml", [f"data.dir={data_dir}"] if data_dir else [])

    world = init_horovod(cfg.train.threads)
    import horovod.tensorflow as hvd

    from semhpc.data import pipeline

    classes = list(pipeline.load_manifest(cfg.data.dir)["classes"])
    model = load_trained_model(run_dir, cfg, len(classes))
    dataset = split_dataset(cfg, split, training=False, rank=world.rank, world_size=world.size,
                            batch_size=batch_size, cache=False)
    result = evaluate(model, dataset, len(classes), hvd, class_names=classes)
    if not world.is_root:
        return None
    result.update(split=split, run_dir=str(run_dir), weights=trained_weights(run_dir).name, ranks=world.size,
                  last_evaluations=last_evaluations(run_dir / "metrics.jsonl"))
    atomic.write_json(run_dir / ("eval.json" if split == "test" else f"eval-{split}.json"), result)
    return result


def last_evaluations(metrics_path: Path, count: int = LAST_EVALUATIONS) -> dict:
    """Mean and standard deviation of the last `count` epoch-end accuracies, and their `split`
    (records without `eval_split` predate the key and scored the validation split). Only the
    newest split's records count: a run resumed with another eval_split does not mix them."""
    epochs = [r for r in read_metrics(metrics_path) if r.get("kind") == "epoch"] if metrics_path.is_file() else []
    split = epochs[-1].get("eval_split", "validation") if epochs else None
    values = [r["val_accuracy"] for r in epochs if r.get("eval_split", "validation") == split][-count:]
    return {"split": split, "count": len(values), "mean": float(np.mean(values)) if values else None,
            "std": float(np.std(values)) if values else None, "values": values}

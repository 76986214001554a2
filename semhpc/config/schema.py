"""The run-configuration schema: every key a YAML config may hold, its type, default and meaning.

One table, so the defaults, the validation and the documentation cannot drift apart.
`semhpc.config.loader` validates YAML files and `--set` overrides against it.
Relative paths in a config are relative to the current working directory.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from semhpc.utils.options import MAX_BATCH, MAX_CORES, MAX_GPUS_PER_NODE, MAX_INPUT_SIZE, MAX_RANKS, MAX_SIDE, MIN_SIDE


@dataclass(frozen=True)
class Field:
    """One config key. `kind` is one of: int, float, str, bool, list[int], list[float].

    Every number has a range, checked when the config is loaded (for a list: each item), so a
    typo such as `data.image_size=99999999` is one line at once, not an out-of-memory error on a
    shared node an hour later. `length` is the number of items a list must hold."""

    kind: str
    default: Any
    help: str
    choices: tuple | None = None
    minimum: float | None = None
    maximum: float | None = None
    length: int | None = None


MAX_SEED = 2**31 - 1  # TensorFlow and NumPy take it

SCHEMA: dict[str, dict[str, Field]] = {
    "run": {
        "dir": Field("str", "runs/demo", "Run directory: config, metrics.jsonl, checkpoints, results."),
    },
    "synth": {
        "out": Field("str", "runs/demo-data/sem-tiffs", "Where `semhpc demo` writes the synthetic SEM TIFF tree."),
        "per_class": Field("int", 80, "Synthetic images per category.", minimum=1, maximum=100_000),
        "size": Field("list[int]", [256, 192], "Synthetic image area [width, height] in pixels.",
                      minimum=MIN_SIDE, maximum=MAX_SIDE, length=2),
        "seed": Field("int", 0, "Seed: the same seed gives byte-identical images.", minimum=0, maximum=MAX_SEED),
        "imbalance": Field("bool", False, "Mimic the archive's class imbalance (docs/background.md: Data)."),
    },
    "ingest": {
        "size": Field("list[int]", [128, 96], "Stored image size [width, height] in the TFRecords.",
                      minimum=MIN_SIDE, maximum=MAX_SIDE, length=2),
        "split": Field("list[float]", [0.8, 0.1, 0.1], "Train/validation/test fractions (hash-stable).",
                       minimum=0.0, maximum=1.0, length=3),
        "shards_per_split": Field("int", 2, "TFRecord shards per split.", minimum=1, maximum=10_000),
    },
    "data": {
        "dir": Field("str", "runs/demo-data/dataset", "Ingested dataset folder (holds manifest.json)."),
        "image_size": Field("int", 64, "Model input size in pixels (square).",
                            minimum=MIN_SIDE, maximum=MAX_INPUT_SIZE),
        "augment": Field("bool", True, "Train-time augmentation (crop, flips, brightness/contrast)."),
        "cache": Field("bool", True, "Cache decoded images in memory (small datasets only)."),
    },
    "model": {
        "name": Field("str", "densenet28", "Model from the registry (`semhpc models`)."),
        "dropout": Field("float", 0.0, "Dropout before the classifier (0 = the model's default).",
                         minimum=0.0, maximum=0.9),
        "bn_momentum": Field("float", 0.9, "BatchNorm moving-average momentum. Keras' 0.99 lags the weights "
                             "in runs of a few hundred steps (evaluation then sees stale statistics).",
                             minimum=0.0, maximum=1.0),
        "aux_logits": Field("bool", True, "Train with the auxiliary head when the model has one (Inception-v3)."),
    },
    "train": {
        "epochs": Field("int", 10, "Passes over the training split.", minimum=1, maximum=100_000),
        "mode": Field("str", "scratch", "scratch, fine_tune (restore all but the logits, train all) or "
                      "feature_extraction (restore all but the logits, train only them).",
                      choices=("scratch", "feature_extraction", "fine_tune")),
        "init_weights": Field("str", "", "Initial weights: a Keras .h5 weights file, a semhpc run dir, or "
                              "'imagenet' (pre-staged in $KERAS_HOME/models); logits are not restored."),
        "batch_size": Field("int", 16, "Images per rank per step.", minimum=1, maximum=MAX_BATCH),
        "optimizer": Field("str", "rmsprop", "Optimiser.", choices=("rmsprop", "sgd", "adam")),
        "lr": Field("float", 0.01, "Base learning rate for one rank.", minimum=0.0, maximum=10.0),
        "scale_lr": Field("bool", True, "Multiply the base LR by the number of ranks."),
        "warmup_epochs": Field("float", 1.0, "Linear LR warmup from lr to lr x ranks.", minimum=0.0, maximum=1000.0),
        "lr_decay": Field("float", 0.94, "Exponential decay factor per decay period.", minimum=0.0, maximum=1.0),
        "num_epochs_per_decay": Field("float", 3.0, "Epochs per decay period (docs/background.md: Training recipe).",
                                      minimum=0.01, maximum=100_000.0),
        "staircase": Field("bool", False, "Decay in steps instead of smoothly."),
        "momentum": Field("float", 0.9, "Momentum (sgd, rmsprop).", minimum=0.0, maximum=1.0),
        "rmsprop_decay": Field("float", 0.9, "RMSProp moving-average decay (TF-Slim default).",
                               minimum=0.0, maximum=1.0),
        "epsilon": Field("float", 1.0, "RMSProp epsilon (TF-Slim default 1.0).", minimum=0.0, maximum=10.0),
        "weight_decay": Field("float", 1e-4, "L2 penalty on conv/dense kernels.", minimum=0.0, maximum=1.0),
        "label_smoothing": Field("float", 0.0, "Label smoothing of the cross-entropy.", minimum=0.0, maximum=1.0),
        "clip_norm": Field("float", 0.0, "Clip the allreduced gradients to this global norm (0 = off).",
                           minimum=0.0, maximum=1e6),
        "precision": Field("str", "fp32", "fp32, or mixed: float16 + loss scaling on GPUs, bfloat16 on CPUs "
                           "with AVX512_BF16/AMX, else float32 with a note.", choices=("fp32", "mixed")),
        "xla": Field("bool", False, "XLA auto-clustering (compiles what it can around Horovod's ops)."),
        "fp16_allreduce": Field("bool", False, "Compress gradients to float16 for the allreduce."),
        "seed": Field("int", 0, "Seed for weights init and data shuffling.", minimum=0, maximum=MAX_SEED),
        "log_every": Field("int", 10, "Steps between metrics.jsonl step records.", minimum=1, maximum=1_000_000),
        "steps_per_execution": Field("int", 10, "Training steps per call into TensorFlow (one Python round trip "
                                     "for several steps); logs and checkpoints keep their step counts.",
                                     minimum=1, maximum=10_000),
        "threads": Field("int", 0, "Intra-op threads per rank; 0 = the cores this rank is bound to.",
                         minimum=0, maximum=MAX_CORES),
        "eval_split": Field("str", "validation", "Split scored at every epoch end (metrics.jsonl val_loss and "
                            "val_accuracy; `semhpc eval`'s mean ± std of the last ten): validation keeps the test "
                            "split unseen until the end; test is the thesis' protocol.", choices=("validation", "test")),
        "checkpoint_every": Field("int", 0, "Also checkpoint every N steps (0 = at epoch ends only).",
                                  minimum=0, maximum=10**9),
        "keep_checkpoints": Field("int", 3, "Checkpoints kept in run_dir/checkpoints.", minimum=1, maximum=1000),
    },
    "launch": {
        "np": Field("int", 2, "Ranks for `semhpc demo` / `semhpc launch` when -np is not given.",
                    minimum=1, maximum=MAX_RANKS),
        "gpus": Field("int", 0, "GPUs (one rank each) that `semhpc submit --job train` asks for when "
                      "--gpus-per-node is not given; 0 = all of the profile's GPU node.", minimum=0,
                      maximum=MAX_GPUS_PER_NODE),
    },
}


def defaults() -> dict[str, dict[str, Any]]:
    """A fresh nested dict of every default value."""
    return {
        section: {key: _copy(field.default) for key, field in fields.items()}
        for section, fields in SCHEMA.items()
    }


def _copy(value: Any) -> Any:
    return list(value) if isinstance(value, list) else value

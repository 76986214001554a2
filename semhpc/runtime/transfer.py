"""Transfer learning with TF-Slim semantics (docs/background.md: Training recipe): where initial weights come from, which
layers they fill, and which layers train.

- `train.init_weights`: a Keras HDF5 weights file, a semhpc run directory (its `final_weights.h5`,
  else the `latest_weights.h5` written at every epoch end), or `imagenet`, resolved to the file
  Keras itself caches in `$KERAS_HOME/models` (default `~/.keras/models`). Nothing is downloaded
  at run time: compute nodes usually have no internet, so a missing file is one error line
  saying which file to stage where.
- Restoring copies weights layer by layer, by name, skipping the model's logits scopes
  (`checkpoint_exclude_scopes`): the 10-class head starts fresh.
- `train.mode`: `scratch` (init_weights optional), `fine_tune` (everything trains) or
  `feature_extraction` (only the logits scopes train: `trainable_scopes`). Frozen layers are
  marked non-trainable, which in Keras 2 also runs their BatchNormalization in inference mode,
  so the batch-norm statistics stay exactly as restored.
"""

from __future__ import annotations

import os
from pathlib import Path

import h5py
import numpy as np

from semhpc.utils.errors import SemhpcError

MODES = ("scratch", "feature_extraction", "fine_tune")

# The Keras ImageNet weight files (without the 1000-class top) that semhpc models can start from.
IMAGENET_FILES = {
    "densenet121": "densenet121_weights_tf_dim_ordering_tf_kernels_notop.h5",
    "inception_v3": "inception_v3_weights_tf_dim_ordering_tf_kernels_notop.h5",
}
IMAGENET_URL = "https://storage.googleapis.com/tensorflow/keras-applications/"


def keras_cache_dir() -> Path:
    return Path(os.environ.get("KERAS_HOME", Path.home() / ".keras")) / "models"


def resolve_init_weights(value: str, model_name: str) -> Path | None:
    """The HDF5 weights file `train.init_weights` names, or None when it is empty."""
    if not value:
        return None
    if value == "imagenet":
        if model_name not in IMAGENET_FILES:
            raise SemhpcError(f"train.init_weights=imagenet: no ImageNet weights for {model_name} "
                              f"(available for {', '.join(IMAGENET_FILES)})")
        path = keras_cache_dir() / IMAGENET_FILES[model_name]
        if not path.is_file():
            kind = "densenet" if model_name.startswith("densenet") else "inception_v3"
            raise SemhpcError(f"train.init_weights=imagenet: stage {path.name} at {path} "
                              f"(from {IMAGENET_URL}{kind}/{path.name}; set KERAS_HOME to use another cache)")
        return path
    path = Path(value)
    if path.is_dir():
        for name in ("final_weights.h5", "latest_weights.h5"):
            if (path / name).is_file():
                return path / name
        raise SemhpcError(f"train.init_weights: {path} has no final_weights.h5 or latest_weights.h5")
    if not path.is_file():
        raise SemhpcError(f"train.init_weights: {path} does not exist")
    return path


def is_logits_layer(layer_name: str, logits_scopes) -> bool:
    return any(layer_name == scope or layer_name.startswith(scope + "/") or layer_name.startswith(scope + "_")
               for scope in logits_scopes)


def restore_except_logits(model, weights_file: Path, logits_scopes) -> int:
    """Copy weights from a Keras HDF5 weights file (classic format, with layer names) into `model`
    by layer name, skipping the logits scopes; returns how many layers were restored. Shape
    mismatches are errors, not skips."""
    restored = 0
    try:
        with h5py.File(weights_file, "r") as h5:
            group = h5["model_weights"] if "model_weights" in h5 else h5
            stored = {_text(name) for name in group.attrs.get("layer_names", [])}
            for layer in model.layers:
                if not layer.weights or layer.name not in stored or is_logits_layer(layer.name, logits_scopes):
                    continue
                layer_group = group[layer.name]
                values = [np.asarray(layer_group[_text(n)]) for n in layer_group.attrs["weight_names"]]
                expected = [tuple(w.shape) for w in layer.weights]
                if [v.shape for v in values] != expected:
                    raise SemhpcError(f"{weights_file}: layer {layer.name} has shapes {[v.shape for v in values]}, "
                                      f"the model expects {expected}")
                layer.set_weights(values)
                restored += 1
    except OSError as exc:
        raise SemhpcError(f"{weights_file}: not a readable Keras HDF5 weights file ({exc})") from None
    if restored == 0:
        raise SemhpcError(f"{weights_file}: no layer name matches the model (is it weights of another architecture?)")
    return restored


def freeze_for_mode(model, mode: str, logits_scopes) -> None:
    """Mark layers (non-)trainable for `mode`; see the module docstring."""
    if mode not in MODES:
        raise SemhpcError(f"train.mode: '{mode}' is not one of {', '.join(MODES)}")
    for layer in model.layers:
        layer.trainable = mode != "feature_extraction" or is_logits_layer(layer.name, logits_scopes)


def _text(value) -> str:
    return value.decode("utf8") if isinstance(value, bytes) else str(value)

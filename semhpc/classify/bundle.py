"""Inference bundles: everything `semhpc classify` needs from a training run, in one folder.

A run directory is tied to the code and dataset that trained it (the config names a registry
model and a dataset folder). A bundle is self-contained, so it can be copied to another cluster:

  BUNDLE/bundle.json         format version, model_version, class names, input size,
                             preprocessing, provenance (run, weights file, semhpc and TF versions)
  BUNDLE/model.keras         the whole Keras model (graph + weights; outputs logits)
  BUNDLE/config.yaml         the training config, copied unchanged
  BUNDLE/test_metrics.json   the run's test-split evaluation, when the run has one

`bundle_format` is bumped whenever a change would make an old bundle be read wrongly (a renamed
key, a different preprocessing); `read_bundle` refuses formats it does not know with a one-line
message saying whether to re-export or to upgrade semhpc, instead of classifying with the wrong
inputs. `model_version` ("<model>-<first 12 hex of the weights' SHA-256>") names the trained
weights and is written next to every prediction.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from semhpc import __version__
from semhpc.classify.preprocess import model_input, preprocessing_record
from semhpc.runtime.run_artifacts import load_trained_model, trained_weights
from semhpc.utils.errors import WRITE_FAILURES, SemhpcError, write_failure
from semhpc.utils.files import read_input_text

BUNDLE_FORMAT = 1
SUPPORTED_FORMATS = (1,)
MANIFEST = "bundle.json"
MODEL_FILE = "model.keras"
CONFIG_FILE = "config.yaml"
TEST_METRICS_FILE = "test_metrics.json"
_REQUIRED_KEYS = ("model_version", "model", "classes", "input_size", "preprocessing")
_REQUIRED_PREPROCESSING = ("stored_size", "scaling")


@dataclass(frozen=True)
class Bundle:
    """A validated bundle.json; `load_model()` does the slow part (TensorFlow)."""

    path: Path
    model_version: str
    model_name: str
    classes: list[str]
    input_size: int
    preprocessing: dict
    manifest: dict

    def load_model(self):
        import tensorflow as tf

        model_path = self.path / MODEL_FILE
        try:
            model = tf.keras.models.load_model(model_path, compile=False)
        except Exception as exc:  # Keras raises many types for a file it cannot read
            made_with = self.manifest.get("created_with", {}).get("tensorflow", "unknown")
            raise SemhpcError(f"{model_path}: cannot load the model (saved with TensorFlow {made_with}, "
                              f"running {tf.__version__}): {type(exc).__name__}: {exc}") from None
        expected = (self.input_size, self.input_size, 3)
        if tuple(model.input_shape[1:]) != expected or model.output_shape[-1] != len(self.classes):
            raise SemhpcError(f"{model_path}: model takes {model.input_shape[1:]} and gives "
                              f"{model.output_shape[-1]} scores, but {MANIFEST} says {expected} and "
                              f"{len(self.classes)} classes")
        return model

    def model_input(self, pixels):
        """float32 [S, S, 3] in [0, 1] of a 2-D uint8 image, prepared as for training (preprocess.py)."""
        return model_input(pixels, self.input_size, self.preprocessing["stored_size"])

    def test_metrics(self) -> dict | None:
        path = self.path / TEST_METRICS_FILE
        return json.loads(path.read_text()) if path.is_file() else None


def read_bundle(path: str | Path) -> Bundle:
    """The bundle at `path`, or SemhpcError saying why it cannot be used (no TensorFlow needed)."""
    path = Path(path)
    manifest_path = path / MANIFEST
    if not manifest_path.exists():
        raise SemhpcError(f"{path}: not a semhpc model bundle (no {MANIFEST}); "
                          "create one with `semhpc export RUN_DIR OUT`")
    try:
        manifest = json.loads(read_input_text(manifest_path, "bundle manifest"))
    except json.JSONDecodeError as exc:
        raise SemhpcError(f"{manifest_path}: not valid JSON ({exc})") from None
    _check_format(manifest, manifest_path)
    missing = [key for key in _REQUIRED_KEYS if key not in manifest]
    preprocessing = manifest.get("preprocessing", {})
    missing += [f"preprocessing.{key}" for key in _REQUIRED_PREPROCESSING if key not in preprocessing]
    if missing:
        raise SemhpcError(f"{manifest_path}: missing key(s) {', '.join(missing)}; re-export with "
                          "`semhpc export RUN_DIR OUT`")
    if not (path / MODEL_FILE).is_file():
        raise SemhpcError(f"{path}: {MODEL_FILE} is missing; re-export with `semhpc export RUN_DIR OUT`")
    return Bundle(path=path, model_version=manifest["model_version"], model_name=manifest["model"]["name"],
                  classes=list(manifest["classes"]), input_size=int(manifest["input_size"]),
                  preprocessing=dict(manifest["preprocessing"]), manifest=manifest)


def _check_format(manifest: dict, manifest_path: Path) -> None:
    found = manifest.get("bundle_format")
    if found in SUPPORTED_FORMATS:
        return
    if isinstance(found, int) and found > BUNDLE_FORMAT:
        raise SemhpcError(f"{manifest_path}: bundle format {found} was written by a newer semhpc "
                          f"(semhpc {__version__} reads format {BUNDLE_FORMAT}); upgrade semhpc")
    raise SemhpcError(f"{manifest_path}: bundle format {found!r} is not supported by semhpc {__version__} "
                      f"(it reads format {BUNDLE_FORMAT}); re-export the run with `semhpc export RUN_DIR OUT`")


def export_bundle(run_dir: str | Path, out: str | Path, force: bool = False) -> Bundle:
    """Write the bundle of training run `run_dir` to `out` (all or nothing) and return it."""
    run_dir, out = Path(run_dir), Path(out)
    if out.exists() and not force:
        raise SemhpcError(f"{out}: already exists; choose a new folder or pass --force to replace it")
    cfg, weights, test_metrics = _read_run(run_dir)
    dataset = _dataset_manifest(cfg)
    classes = _class_names(run_dir, cfg, test_metrics, dataset)

    model = load_trained_model(run_dir, cfg, len(classes))
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".partial", dir=out.parent))
    staging.chmod(0o777 & ~_umask())  # mkdtemp makes it private; a bundle is meant to be shared
    try:
        model.save(staging / MODEL_FILE)
        shutil.copyfile(run_dir / CONFIG_FILE, staging / CONFIG_FILE)
        if test_metrics is not None:
            shutil.copyfile(run_dir / TEST_METRICS_FILE, staging / TEST_METRICS_FILE)
        # No atomic write needed inside the staging folder: the folder rename is the commit.
        manifest = _manifest(run_dir, cfg, weights, classes, test_metrics, dataset)
        (staging / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
        _replace_folder(staging, out)
    except OSError as exc:  # Keras' HDF5 writer names no file: the bundle folder is the one to name
        if exc.errno not in WRITE_FAILURES:
            raise
        raise write_failure(exc.filename or out, exc) from None
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return read_bundle(out)


def _read_run(run_dir: Path):
    """(config, trained weights file, test metrics or None) of a run directory."""
    from semhpc.config import load_config

    if not (run_dir / CONFIG_FILE).is_file():
        raise SemhpcError(f"{run_dir}: no {CONFIG_FILE} (not a semhpc run directory)")
    cfg = load_config(run_dir / CONFIG_FILE)
    weights = trained_weights(run_dir)
    metrics_path = run_dir / TEST_METRICS_FILE
    test_metrics = json.loads(metrics_path.read_text()) if metrics_path.is_file() else None
    return cfg, weights, test_metrics


def _dataset_manifest(cfg) -> dict | None:
    """The manifest of the dataset the run was trained on, when it is still there."""
    path = Path(cfg.data.dir) / "manifest.json"
    return json.loads(path.read_text()) if path.is_file() else None


def _class_names(run_dir: Path, cfg, test_metrics: dict | None, dataset: dict | None) -> list[str]:
    """The label order the run was trained with: from its test metrics, else its dataset manifest."""
    if test_metrics and test_metrics.get("classes"):
        return list(test_metrics["classes"])
    if dataset is not None:
        return list(dataset["classes"])
    raise SemhpcError(f"{run_dir}: cannot tell the class names: no {TEST_METRICS_FILE} in the run and no "
                      f"dataset manifest at {Path(cfg.data.dir) / 'manifest.json'}")


def _stored_size(cfg, dataset: dict | None) -> tuple[list[int] | None, str]:
    """(width, height) the training images were stored at, and where that was read from.

    The manifest knows the size `semhpc ingest` really used; the config's ingest.size is only
    what `semhpc demo` passes to ingest, so it is the fallback when the dataset has moved."""
    if dataset is not None:
        return dataset.get("image_size"), "dataset manifest"
    return list(cfg.ingest.size), "config ingest.size (dataset manifest not found)"


def _manifest(run_dir: Path, cfg, weights: Path, classes: list[str], test_metrics: dict | None,
              dataset: dict | None) -> dict:
    import tensorflow as tf

    from semhpc.model.registry import get_spec

    stored_size, stored_size_from = _stored_size(cfg, dataset)
    return {
        "bundle_format": BUNDLE_FORMAT,
        "model_version": f"{cfg.model.name}-{_sha256(weights)[:12]}",
        "model": {"name": cfg.model.name, "file": MODEL_FILE, "outputs": "logits"},
        "classes": classes,
        "input_size": cfg.data.image_size,
        "preprocessing": {**preprocessing_record(get_spec(cfg.model.name).preprocessing, stored_size),
                          "stored_size_from": stored_size_from},
        "training": {
            "run_dir": str(run_dir.resolve()),
            "weights": weights.name,
            "config": CONFIG_FILE,
            "test_metrics": TEST_METRICS_FILE if test_metrics is not None else None,
            "test_accuracy": test_metrics.get("accuracy") if test_metrics else None,
            "test_top5_accuracy": test_metrics.get("top5_accuracy") if test_metrics else None,
        },
        "created_with": {"semhpc": __version__, "tensorflow": tf.__version__},
        "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _replace_folder(staging: Path, out: Path) -> None:
    """Move the finished `staging` folder to `out`; an existing `out` is removed only afterwards."""
    if not out.exists():
        staging.rename(out)
        return
    retired = out.with_name(f".{out.name}.replaced-{time.time_ns()}")
    out.rename(retired)
    staging.rename(out)
    shutil.rmtree(retired, ignore_errors=True)

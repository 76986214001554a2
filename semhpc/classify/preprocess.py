"""From an SEM file to the model's input: exactly the pixels the trained model saw in evaluation.

A training image went SEM file -> `semhpc ingest` (semhpc/data/ingest.py: read_sem_tiff, then
Pillow bilinear resize of the whole frame to the dataset's stored size, stored as lossless PNG)
-> the tf.data pipeline (semhpc/data/pipeline.py, evaluation: TensorFlow bilinear antialiased
resize of the whole frame to input_size x input_size, rounded to uint8, / 255, gray repeated to 3
channels) -> the model's scaling (`registry.PREPROCESSING`). `model_input` repeats the same steps
on a file, so `semhpc classify` gives a file the scores `semhpc eval` gives its ingested record
(a test checks the pixels are identical). The bundle records the parameters (stored size, resize,
scaling) in `preprocessing`.

Steps 1-3 run in the reader thread, per image; the scaling (`scale_fn`) runs on the whole batch
inside the inference function.
"""

from __future__ import annotations

import numpy as np

from semhpc.utils.errors import SemhpcError

RESIZE_METHOD = "bilinear"


def preprocessing_record(scaling: str, stored_size: list[int] | None) -> dict:
    """What `semhpc export` writes into bundle.json; `model_input` and `scale_fn` follow it."""
    return {"stored_size": list(stored_size) if stored_size else None, "resize": RESIZE_METHOD,
            "antialias": True, "crop": None, "input_range": [0.0, 1.0], "channels": 3, "scaling": scaling}


def model_input(pixels: np.ndarray, input_size: int, stored_size: list[int] | None) -> np.ndarray:
    """float32 [S, S, 3] in [0, 1] from a 2-D uint8 image, as ingest + the pipeline prepare it."""
    import tensorflow as tf

    stored = _as_ingested(pixels, stored_size)
    resized = tf.image.resize(tf.convert_to_tensor(stored[:, :, np.newaxis], tf.float32), (input_size, input_size),
                              method=RESIZE_METHOD, antialias=True)
    base = np.clip(np.round(resized.numpy()), 0, 255).astype(np.uint8)  # the pipeline's uint8 base image
    return np.repeat(base.astype(np.float32) / 255.0, 3, axis=-1)


def _as_ingested(pixels: np.ndarray, stored_size: list[int] | None) -> np.ndarray:
    """The image at the dataset's stored (width, height), resized as `semhpc ingest` does."""
    if stored_size is None or (pixels.shape[1], pixels.shape[0]) == tuple(stored_size):
        return pixels
    from PIL import Image

    return np.asarray(Image.fromarray(pixels).resize(tuple(stored_size), Image.Resampling.BILINEAR))


def scale_fn(scaling: str):
    """The batch function of the last step, from the name stored in the bundle."""
    from semhpc.model.registry import PREPROCESSING

    if scaling not in PREPROCESSING:
        raise SemhpcError(f"bundle preprocessing scaling '{scaling}' is unknown to this semhpc "
                          f"(known: {', '.join(PREPROCESSING)})")
    return PREPROCESSING[scaling]

"""The tf.data input pipeline over an ingested dataset (`semhpc ingest`), as the trainer reads it.

Who reads what (training=True). Epoch e of a split with n images, on `world_size` ranks of batch
B: every rank runs the same `steps_per_epoch` = floor(n / (B * world_size)) steps, so Horovod's
allreduce never waits for a rank that ran out of data. The n indices are permuted with a
generator keyed by (seed, e), identical on every rank, and rank r takes the r-th slice of
steps * B indices: the ranks' parts of an epoch are disjoint, together they cover all but
n mod (B * world_size) images, and which images are left out changes every epoch.
Evaluation (training=False) gives rank r the indices r, r + world_size, ...: every image exactly
once over all ranks, the last batch may be partial.

Per image
  1. decode the stored PNG (1 channel uint8) and resize the whole frame (bilinear, antialiased;
     the aspect ratio becomes 1:1 exactly as in `semhpc classify`) to a square base image:
     the model input S, or with augmentation S / CROP_MIN_FRACTION so the crop never upsamples;
  2. training with augmentation: random square crop of 80-100 % of the side, resized to S,
     random left-right and up-down flips (an SEM image has no "up"), brightness +-0.1 and
     contrast x0.8-1.2. The random numbers are stateless, keyed by (seed, epoch, image index):
     a run is reproducible and independent of thread timing and of `cache`;
  3. intensities to [0, 1], the gray channel repeated to 3 (the models take RGB);
  4. per batch: `preprocess_fn` (e.g. `registry.preprocess(images, spec)`) maps [0, 1] to the
     model's input range. Without it the batches stay in [0, 1].
Reading is sequential in manifest order (the image index is its position), decoding and
augmentation run in parallel (AUTOTUNE), batches are prefetched.

Order inside a rank's part (`epoch_order`): its indices in ascending order, permuted within
consecutive blocks of SHUFFLE_BLOCK images by a generator keyed by (seed, epoch), the same with and
without cache. Ingest orders every shard by a hash, so a block mixes the classes. Without cache
every rank reads all shards of the split sequentially, keeps its own records and reorders each
block; `cache=True` decodes the split's base images once per process and keeps them in memory
(uint8), for datasets that fit.

One pipeline per run: training reads all its epochs from one dataset (`epochs`); each epoch's
order is computed when the stream reaches it. A pipeline built per epoch
cost the trainer about 0.1 s of CPU and a cold start every epoch (tracing the map functions,
tf.data's graph rewrites, an empty prefetch buffer): 3-5 % of a short epoch. One stream keeps
prefetching across the epoch boundary, even while the trainer validates.

Autotuning: tf.data's autotuning model is off. Its optimisation thread, starved of CPU while
training fills the cores of a CPU node, made releasing a finished iterator block for 1-10 s
(measured in 3 epochs of 6 with a pipeline per epoch, DenseNet-28 at 64 px on 2 cores: up to
40 % of the epoch). Without it the parallel maps run as many calls as there are cores and the
prefetch buffer still grows while the consumer waits; steady-state step times were the same.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from semhpc.data import tfrecord
from semhpc.data.ingest import recorded_shard_bytes
from semhpc.data.split import SPLITS
from semhpc.data.tfrecord import parse_image_and_label
from semhpc.utils.errors import SemhpcError
from semhpc.utils.files import read_regular_bytes

CROP_MIN_FRACTION = 0.8
BRIGHTNESS_DELTA = 0.1
CONTRAST_RANGE = (0.8, 1.2)
SHUFFLE_BLOCK = 2048
RESIZE_METHOD = "bilinear"
_DECODE_BATCH = 256

_decoded_cache: dict[tuple, tuple] = {}  # (data_dir, split, base size) -> (images uint8 [N,b,b,1], labels)


def load_manifest(data_dir) -> dict:
    """DATA/manifest.json, checked for the keys the pipeline needs."""
    path = Path(data_dir) / "manifest.json"
    try:
        manifest = json.loads(read_regular_bytes(path))
    except FileNotFoundError:
        raise SemhpcError(f"{path}: not found (is {data_dir} a folder written by `semhpc ingest`?)") from None
    except (OSError, ValueError) as exc:
        raise SemhpcError(f"{path}: cannot read the manifest: {exc}") from exc
    missing = [key for key in ("format", "classes", "counts", "shards") if key not in manifest]
    if missing:
        raise SemhpcError(f"{path}: not an ingest manifest (missing {', '.join(missing)})")
    if manifest["format"] != 1:
        raise SemhpcError(f"{path}: manifest format {manifest['format']} is not supported (expected 1)")
    return manifest


def split_size(manifest: dict, split: str) -> int:
    if split not in SPLITS:
        raise SemhpcError(f"split '{split}': expected one of {', '.join(SPLITS)}")
    return sum(manifest["counts"].get(split, {}).values())


def check_split(manifest: dict, split: str, data_dir) -> None:
    """One SemhpcError line when `split` holds no image or one of its shards is missing or
    truncated: a run that reads it would otherwise train for hours and only then fail (or report
    accuracy on 0 images). Cheap: one stat per shard (the lengths ingest recorded), nothing decoded."""
    if split_size(manifest, split) == 0:
        sizes = ", ".join(f"{name} {split_size(manifest, name)}" for name in SPLITS)
        raise SemhpcError(f"{Path(data_dir) / 'manifest.json'}: the {split} split holds no images ({sizes}); "
                          "ingest again with a larger share for it (--split TRAIN,VAL,TEST) or more images")
    for name in manifest["shards"].get(split, []):
        tfrecord.check_shard(Path(data_dir) / name, recorded_shard_bytes(data_dir, name))


def steps_per_epoch(manifest: dict, split: str, batch_size: int, world_size: int) -> int:
    """Steps every rank runs per epoch: floor(n / (batch_size * world_size)); at least 1."""
    images = split_size(manifest, split)
    steps = images // (batch_size * world_size)
    if steps == 0:
        raise SemhpcError(f"the {split} split has {images} images, fewer than one global batch "
                          f"({batch_size} per rank x {world_size} ranks); lower train.batch_size or ingest more images")
    return steps


def rank_indices(manifest: dict, split: str, batch_size: int, *, training: bool, rank: int, world_size: int,
                 seed: int, epoch: int) -> np.ndarray:
    """This rank's image indices (positions in the split's shards), ascending (module docstring)."""
    if not 0 <= rank < world_size:
        raise SemhpcError(f"rank {rank} is outside a world of {world_size} ranks")
    images = split_size(manifest, split)
    if not training:
        return np.arange(rank, images, world_size)
    per_rank = steps_per_epoch(manifest, split, batch_size, world_size) * batch_size
    order = np.random.default_rng([seed, epoch]).permutation(images)
    return np.sort(order[rank * per_rank:(rank + 1) * per_rank])


def epoch_order(manifest: dict, split: str, batch_size: int, *, rank: int, world_size: int, seed: int,
                epoch: int) -> np.ndarray:
    """This rank's training indices in the order epoch `epoch` reads them: `rank_indices`, shuffled
    within consecutive blocks of SHUFFLE_BLOCK (module docstring)."""
    indices = rank_indices(manifest, split, batch_size, training=True, rank=rank, world_size=world_size,
                           seed=seed, epoch=epoch)
    rng = np.random.default_rng([seed, epoch, 1])
    return np.concatenate([rng.permutation(indices[start:start + SHUFFLE_BLOCK])
                           for start in range(0, len(indices), SHUFFLE_BLOCK)])


def make_dataset(data_dir, split: str, image_size: int, batch_size: int, *, training: bool, rank: int = 0,
                 world_size: int = 1, seed: int = 0, epoch: int = 0, epochs: int = 1, preprocess_fn=None,
                 augment: bool = True, cache: bool = False):
    """Batches (images float32 [B, S, S, 3], labels int32 [B]) of this rank's part of `split`.

    Training reads epochs `epoch` .. `epoch + epochs - 1` back to back, each exactly
    `steps_per_epoch` batches: one pipeline for a whole run, so nothing is rebuilt or restarted
    between epochs (module docstring, "One pipeline per run").
    """
    import tensorflow as tf

    manifest = load_manifest(data_dir)
    check_split(manifest, split, data_dir)
    augmenting = training and augment
    base_size = math.ceil(image_size / CROP_MIN_FRACTION) if augmenting else image_size
    if cache:
        images, labels = _decoded_split(data_dir, manifest, split, base_size)
    source = _rank_source(data_dir, manifest, split, cache)
    if training:
        per_rank = steps_per_epoch(manifest, split, batch_size, world_size) * batch_size

        def order_of(e):  # numpy, run when the stream reaches epoch e
            return epoch_order(manifest, split, batch_size, rank=rank, world_size=world_size, seed=seed,
                               epoch=int(e)).astype(np.int64)

        def one_epoch(e):
            order = tf.ensure_shape(tf.numpy_function(order_of, [e], tf.int64, stateful=False), [per_rank])
            return source(order, in_order=True).map(lambda index, *record: (e, index, *record))

        dataset = tf.data.Dataset.range(epoch, epoch + epochs).flat_map(one_epoch)
    else:
        indices = rank_indices(manifest, split, batch_size, training=False, rank=rank, world_size=world_size,
                               seed=seed, epoch=epoch)
        dataset = source(tf.constant(indices, tf.int64), in_order=False).map(
            lambda index, *record: (tf.constant(0, tf.int64), index, *record))

    def model_image(e, index, *record):
        if cache:
            image, label = tf.gather(images, index), tf.gather(labels, index)
        else:
            image, label = _decode_base(record[0], base_size)
        if augmenting:
            image = _augment(image, base_size, image_size, _epoch_key(seed, e), index)
        else:
            image = tf.cast(image, tf.float32) / 255.0
        return tf.repeat(image, 3, axis=-1), label

    dataset = dataset.map(model_image, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    dataset = dataset.batch(batch_size, drop_remainder=training)
    if preprocess_fn is not None:
        dataset = dataset.map(lambda images, labels: (preprocess_fn(images), labels),
                              num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    options = tf.data.Options()
    options.autotune.enabled = False  # module docstring: "Autotuning"
    return dataset.prefetch(tf.data.AUTOTUNE).with_options(options)


# ---------------------------------------------------------------------------------------------
# Sources: a rank's images, as (index) with `cache` or (index, serialized record) without, in
# the order of the indices given (ascending for evaluation, an `epoch_order` for training)


def _shard_paths(data_dir, manifest: dict, split: str) -> list[str]:
    return [str(Path(data_dir) / name) for name in manifest["shards"].get(split, [])]


def _rank_source(data_dir, manifest, split, cache: bool):
    """A function (int64 indices, in_order) -> dataset of this rank's (index) or (index, record).

    `in_order`: the elements come in the order of `indices` (an `epoch_order`); otherwise
    `indices` are ascending and so are the elements."""
    import tensorflow as tf

    if cache:
        return lambda indices, in_order: tf.data.Dataset.from_tensor_slices(indices)
    paths, images = _shard_paths(data_dir, manifest, split), split_size(manifest, split)

    def from_shards(indices, in_order):  # every rank reads all shards and keeps its own records
        mine = tf.scatter_nd(indices[:, None], tf.ones_like(indices, tf.bool), [images])
        records = tf.data.TFRecordDataset(paths).enumerate().filter(lambda index, record: tf.gather(mine, index))
        if not in_order:
            return records

        def as_ordered(block, ascending, record):  # a block of ascending records -> the order's block
            wanted = indices[block * SHUFFLE_BLOCK:block * SHUFFLE_BLOCK + tf.size(ascending, tf.int64)]
            at = tf.searchsorted(ascending, wanted)
            return tf.gather(ascending, at), tf.gather(record, at)

        blocks = records.batch(SHUFFLE_BLOCK).prefetch(1).enumerate()  # next block read while one is used
        return blocks.map(lambda block, pair: as_ordered(block, *pair)).unbatch()

    return from_shards


def _decoded_split(data_dir, manifest, split, base_size):
    """All base images and labels of `split`, decoded once per process (module docstring)."""
    import tensorflow as tf

    key = (str(Path(data_dir).resolve()), split, base_size, tuple(manifest["shards"].get(split, [])))
    if key not in _decoded_cache:
        dataset = tf.data.TFRecordDataset(_shard_paths(data_dir, manifest, split))
        dataset = dataset.map(lambda record: _decode_base(record, base_size),
                              num_parallel_calls=tf.data.AUTOTUNE, deterministic=True).batch(_DECODE_BATCH)
        batches = list(dataset.as_numpy_iterator())
        _decoded_cache[key] = (tf.constant(np.concatenate([images for images, _ in batches])),
                               tf.constant(np.concatenate([labels for _, labels in batches])))
    return _decoded_cache[key]


def _decode_base(record, base_size: int):
    """(uint8 [b, b, 1] whole frame resized to the base size, int32 label) of a serialized record."""
    import tensorflow as tf

    image, label = parse_image_and_label(record)
    resized = tf.image.resize(tf.cast(image, tf.float32), (base_size, base_size), method=RESIZE_METHOD,
                              antialias=True)
    return tf.cast(tf.clip_by_value(tf.round(resized), 0, 255), tf.uint8), label


# ---------------------------------------------------------------------------------------------
# Augmentation


def _epoch_key(seed: int, epoch: int):
    import tensorflow as tf

    return tf.random.experimental.stateless_fold_in(tf.constant([seed, 0], tf.int64), epoch)


def _augment(image, base_size: int, image_size: int, epoch_key, index):
    """Crop, flips, brightness, contrast of one uint8 base image -> float32 [S, S, 1] in [0, 1]."""
    import tensorflow as tf

    crop_seed, fraction_seed, flip_lr_seed, flip_ud_seed, brightness_seed, contrast_seed = tf.unstack(
        tf.random.experimental.stateless_split(tf.random.experimental.stateless_fold_in(epoch_key, index), 6))
    fraction = tf.random.stateless_uniform([], fraction_seed, minval=CROP_MIN_FRACTION, maxval=1.0)
    side = tf.maximum(tf.cast(tf.round(fraction * base_size), tf.int32), image_size)
    image = tf.cast(image, tf.float32) / 255.0
    image = tf.image.stateless_random_crop(image, tf.stack([side, side, 1]), crop_seed)
    image = tf.image.resize(image, (image_size, image_size), method=RESIZE_METHOD, antialias=True)
    image = tf.image.stateless_random_flip_left_right(image, flip_lr_seed)
    image = tf.image.stateless_random_flip_up_down(image, flip_ud_seed)
    image = tf.image.stateless_random_brightness(image, BRIGHTNESS_DELTA, brightness_seed)
    image = tf.image.stateless_random_contrast(image, *CONTRAST_RANGE, contrast_seed)
    return tf.clip_by_value(image, 0.0, 1.0)

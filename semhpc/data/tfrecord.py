"""The TFRecord record of one ingested image (CONTRACTS.md "Data on disk"), written and read here only.

Features of each tf.train.Example:
  image         PNG bytes, one channel uint8, at the stored size. PNG because it is lossless and
                tf.io.decode_png decodes it inside the tf.data graph (no Python per image).
  height, width stored size (int64)
  label         class index in the manifest's `classes` (int64)
  path          source path relative to SRC, as the raw file-name bytes (non-UTF-8 names survive)
  split         "train" | "validation" | "test" (bytes)
  pixel_sha256  hex SHA-256 of the source pixels as read (before resizing): exact-duplicate key
                for `semhpc data report`
  meta/<field>  JSON-encoded value of each normalised metadata field (vendor, pixel_size_m, ...;
                null when unknown), so instrument settings travel with the image
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re

import numpy as np

from semhpc.utils.errors import SemhpcError
from semhpc.utils.files import open_regular
from semhpc.utils.paths import display_path

META_PREFIX = "meta/"
# Pillow's default. On 1024x768 SEM images levels 1-3 encode ~40 % faster but give ~8 % larger
# records; records are read every epoch and written once, so size wins.
PNG_COMPRESS_LEVEL = 6


def png_bytes(pixels: np.ndarray) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(pixels, dtype=np.uint8)).save(
        buffer, format="PNG", compress_level=PNG_COMPRESS_LEVEL)
    return buffer.getvalue()


def png_pixels(data: bytes) -> np.ndarray:
    """The 2-D uint8 array of a PNG written by `png_bytes`."""
    from PIL import Image

    return np.asarray(Image.open(io.BytesIO(data)))


def pixel_sha256(pixels: np.ndarray) -> str:
    """Hex digest of the pixel values and shape: equal for equal images, whatever the file format."""
    digest = hashlib.sha256(str(pixels.shape).encode())
    digest.update(np.ascontiguousarray(pixels).tobytes())
    return digest.hexdigest()


def encode_example(pixels: np.ndarray, *, label: int, path, split: str, meta: dict, source_sha256: str) -> bytes:
    """One serialized tf.train.Example holding `pixels` (2-D uint8, already at the stored size)."""
    import tensorflow as tf

    def bytes_feature(value: bytes):
        return tf.train.Feature(bytes_list=tf.train.BytesList(value=[value]))

    def int_feature(value: int):
        return tf.train.Feature(int64_list=tf.train.Int64List(value=[int(value)]))

    height, width = pixels.shape
    features = {
        "image": bytes_feature(png_bytes(pixels)),
        "height": int_feature(height),
        "width": int_feature(width),
        "label": int_feature(label),
        "path": bytes_feature(os.fsencode(path)),
        "split": bytes_feature(split.encode()),
        "pixel_sha256": bytes_feature(source_sha256.encode()),
    }
    for field, value in meta.items():
        features[META_PREFIX + field] = bytes_feature(json.dumps(value).encode())
    return tf.train.Example(features=tf.train.Features(feature=features)).SerializeToString()


def decode_example(serialized: bytes) -> dict:
    """A record as Python values: image (PNG bytes), height, width, label, path (bytes), split,
    pixel_sha256 and meta ({field: value})."""
    import tensorflow as tf

    feature = tf.train.Example.FromString(serialized).features.feature

    def text(key: str) -> str:
        return feature[key].bytes_list.value[0].decode()

    return {
        "image": feature["image"].bytes_list.value[0],
        "height": feature["height"].int64_list.value[0],
        "width": feature["width"].int64_list.value[0],
        "label": feature["label"].int64_list.value[0],
        "path": feature["path"].bytes_list.value[0],
        "split": text("split"),
        "pixel_sha256": text("pixel_sha256"),
        "meta": {key[len(META_PREFIX):]: json.loads(text(key)) for key in feature if key.startswith(META_PREFIX)},
    }


def read_records(shard_path) -> list[bytes]:
    """Every serialized record of one shard, in order; a damaged shard is one SemhpcError line."""
    import tensorflow as tf

    check_shard(shard_path)
    try:
        return list(tf.data.TFRecordDataset(str(shard_path)).as_numpy_iterator())
    except tf.errors.OpError as exc:  # a bad checksum: the length is right, the bytes are not
        raise SemhpcError(f"{display_path(shard_path)}: damaged TFRecord shard ({damage_reason(exc)}); "
                          f"delete it and {_repair_advice(shard_path)}") from None


def damage_reason(exc) -> str:
    """"corrupted record at 48329" out of TensorFlow's message for a bad record."""
    message = getattr(exc, "message", None) or str(exc)
    found = re.search(r"(?:corrupted|truncated) record at \d+", message)
    return found.group(0) if found else (message.strip().splitlines() or ["damaged record"])[0]


def check_shard(shard_path, expected_bytes: int | None = None) -> None:
    """One SemhpcError line naming the shard when it is missing or truncated, without decoding it.

    With `expected_bytes` (what ingest recorded) the file's length is compared; otherwise the
    record framing is walked (8-byte length + 4-byte CRC, data, 4-byte CRC per record: one small
    read per record), which must end exactly at the end of the file.
    """
    path = os.fsdecode(shard_path)
    try:
        with open_regular(path) as handle:  # a FIFO or device is refused, never read
            size = os.fstat(handle.fileno()).st_size
            end = size if expected_bytes is not None else _framing_end(handle, size)
    except OSError as exc:
        raise SemhpcError(f"{display_path(path)}: cannot read the TFRecord shard: {exc.strerror or exc}; "
                          f"{_repair_advice(path)}") from None
    if expected_bytes is not None and size != expected_bytes:
        raise SemhpcError(f"{display_path(path)}: TFRecord shard has {size} bytes, ingest wrote {expected_bytes} "
                          f"(truncated or replaced); {_repair_advice(path)}")
    if end != size:
        raise SemhpcError(f"{display_path(path)}: TFRecord shard is truncated (its last record ends after byte "
                          f"{size}); {_repair_advice(path)}")


def _repair_advice(shard_path) -> str:
    folder = display_path(os.path.dirname(os.path.abspath(os.fsdecode(shard_path))))
    return f"rerun `semhpc ingest SRC {folder}` (same SRC and options) to rewrite it"


def _framing_end(handle, size: int) -> int:
    """Where the last complete record ends (== size for an intact shard)."""
    position = 0
    while position + 12 <= size:
        handle.seek(position)
        length = int.from_bytes(handle.read(8), "little")
        if position + 12 + length + 4 > size:
            return position
        position += 12 + length + 4
    return position


def parse_image_and_label(serialized):
    """tf.data map function: (uint8 image [H, W, 1], int32 label) of a serialized record."""
    import tensorflow as tf

    parsed = tf.io.parse_single_example(serialized, {
        "image": tf.io.FixedLenFeature([], tf.string),
        "label": tf.io.FixedLenFeature([], tf.int64),
    })
    return tf.io.decode_png(parsed["image"], channels=1), tf.cast(parsed["label"], tf.int32)


def shard_writer(path):
    """A tf.io.TFRecordWriter for `path` (a context manager: closing flushes the file). It reports
    a full disk as tf.errors.ResourceExhaustedError; `write_error_reason` says why in words."""
    import tensorflow as tf

    return tf.io.TFRecordWriter(str(path))


def write_error_reason(exc) -> str:
    """"/x/.train.tmp; No space left on device" -> "no space left on device"."""
    message = (getattr(exc, "message", None) or str(exc)).strip().splitlines()[0]
    return message.rsplit("; ", 1)[-1].lower()

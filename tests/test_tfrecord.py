"""TFRecord round trip (semhpc/data/tfrecord.py): every feature of CONTRACTS.md survives, in Python and tf.data."""

import numpy as np
import tensorflow as tf

from sem_fixtures import gradient
from semhpc.data import tfrecord

META = {"vendor": "Zeiss", "model": "Sigma-03-12", "pixel_size_m": 4.467e-09, "magnification": 25000.0,
        "hv_volts": None, "detector": "InLens µ", "width": 40, "source_height": None}
RAW_PATH = b"Particles/caf\xe9/img.tif"  # not UTF-8


def encoded(pixels, **changes):
    fields = dict(label=5, path=RAW_PATH, split="validation", meta=META, source_sha256="ab" * 32)
    return tfrecord.encode_example(pixels, **{**fields, **changes})


def test_round_trip_keeps_pixels_label_path_split_and_metadata():
    pixels = gradient(30, 40, seed=4)
    record = tfrecord.decode_example(encoded(pixels))
    assert np.array_equal(tfrecord.png_pixels(record["image"]), pixels)
    assert (record["height"], record["width"], record["label"]) == (30, 40, 5)
    assert record["path"] == RAW_PATH
    assert record["split"] == "validation"
    assert record["pixel_sha256"] == "ab" * 32
    assert record["meta"] == META


def test_features_are_the_contract_names():
    feature = tf.train.Example.FromString(encoded(gradient(16, 16))).features.feature
    assert set(feature) == {"image", "height", "width", "label", "path", "split", "pixel_sha256",
                            *(f"meta/{key}" for key in META)}
    assert feature["image"].bytes_list.value[0].startswith(b"\x89PNG")


def test_tf_data_parse_gives_the_same_image_and_label(tmp_path):
    images = [gradient(20, 24, seed=seed) for seed in range(3)]
    shard = tmp_path / "train-00000-of-00001.tfrecord"
    with tfrecord.shard_writer(shard) as writer:
        for label, pixels in enumerate(images):
            writer.write(encoded(pixels, label=label))
    parsed = list(tf.data.TFRecordDataset(str(shard)).map(tfrecord.parse_image_and_label).as_numpy_iterator())
    assert [label for _, label in parsed] == [0, 1, 2]
    for (image, _), pixels in zip(parsed, images):
        assert image.shape == (20, 24, 1) and np.array_equal(image[..., 0], pixels)
    assert len(tfrecord.read_records(shard)) == 3


def test_pixel_hash_is_equal_for_equal_images_only():
    pixels = gradient(16, 32, seed=1)
    assert tfrecord.pixel_sha256(pixels) == tfrecord.pixel_sha256(pixels.copy())
    changed = pixels.copy()
    changed[0, 0] ^= 1
    assert tfrecord.pixel_sha256(changed) != tfrecord.pixel_sha256(pixels)
    # Same bytes, other shape: another image.
    assert tfrecord.pixel_sha256(pixels.reshape(32, 16)) != tfrecord.pixel_sha256(pixels)

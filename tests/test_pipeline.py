"""tf.data pipeline (semhpc/data/pipeline.py): rank sharding, epochs, evaluation coverage, augmentation, cache.

Each source image is flat with its own gray value, so the value of any output pixel (without
augmentation) tells which image it came from.
"""

import json
import subprocess
import sys

import numpy as np
import pytest

from cli_runs import MPI_ENV
from ingest_helpers import write_image
from semhpc.data import pipeline
from semhpc.data.categories import CATEGORIES
from semhpc.data.ingest import IngestSettings, ingest
from semhpc.ranks.world import World
from semhpc.utils.errors import SemhpcError

IMAGES = 70
SIZE = 24  # model input
BATCH = 4


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    """(data dir, {gray value: label}) of an ingested tree of flat images."""
    root = tmp_path_factory.mktemp("pipeline")
    labels = {}
    for index in range(IMAGES):
        value, label = 3 * index + 20, index % len(CATEGORIES)
        write_image(root / "src" / CATEGORIES[label] / f"flat_{index:03d}.tif", np.full((24, 32), value, np.uint8))
        labels[value] = label
    code = ingest(IngestSettings(source=root / "src", out=root / "data", size=(32, 24), shards_per_split=3),
                  World(None, 0, 1))
    assert code == 0
    return root / "data", labels


def batches(data_dir, **kwargs):
    settings = dict(training=True, augment=False, seed=7, epoch=0)
    return list(pipeline.make_dataset(data_dir, "train", SIZE, BATCH, **{**settings, **kwargs}).as_numpy_iterator())


def image_values(batch_list) -> list[int]:
    """The gray value (0-255) each output image was made from, in output order."""
    return [int(round(image[0, 0, 0] * 255)) for images, _ in batch_list for image in images]


def split_count(data_dir, split):
    return sum(pipeline.load_manifest(data_dir)["counts"][split].values())


def test_batches_have_the_contract_shapes_and_gray_becomes_three_equal_channels(dataset):
    data_dir, labels = dataset
    images, batch_labels = batches(data_dir)[0]
    assert images.shape == (BATCH, SIZE, SIZE, 3) and images.dtype == np.float32
    assert batch_labels.shape == (BATCH,) and batch_labels.dtype == np.int32
    assert np.array_equal(images[..., 0], images[..., 1]) and np.array_equal(images[..., 0], images[..., 2])
    assert 0.0 <= images.min() and images.max() <= 1.0


def test_labels_belong_to_their_images(dataset):
    data_dir, labels = dataset
    output = batches(data_dir)
    assert [labels[value] for value in image_values(output)] == [int(x) for _, ls in output for x in ls]


def test_ranks_run_the_same_steps_on_disjoint_parts_of_each_epoch(dataset):
    data_dir, labels = dataset
    world = 2
    steps = pipeline.steps_per_epoch(pipeline.load_manifest(data_dir), "train", BATCH, world)
    assert steps == split_count(data_dir, "train") // (BATCH * world)
    for epoch in (0, 1):
        parts = [image_values(batches(data_dir, rank=rank, world_size=world, epoch=epoch)) for rank in range(world)]
        assert [len(part) for part in parts] == [steps * BATCH] * world
        assert not set(parts[0]) & set(parts[1])
        assert len(set(parts[0] + parts[1])) == steps * BATCH * world
        assert set(parts[0] + parts[1]) <= set(labels)


def test_each_epoch_is_a_new_reproducible_order(dataset):
    data_dir, _ = dataset
    first = image_values(batches(data_dir, epoch=0))
    assert image_values(batches(data_dir, epoch=0)) == first
    assert image_values(batches(data_dir, epoch=1)) != first
    assert image_values(batches(data_dir, epoch=0, seed=8)) != first


def test_evaluation_gives_every_image_to_exactly_one_rank(dataset):
    data_dir, _ = dataset
    values = []
    for rank in range(3):
        output = list(pipeline.make_dataset(data_dir, "test", SIZE, BATCH, training=False, rank=rank,
                                            world_size=3).as_numpy_iterator())
        values += image_values(output)
    assert len(values) == split_count(data_dir, "test") == len(set(values))


def test_augmentation_is_reproducible_in_range_and_changes_images(dataset):
    data_dir, _ = dataset
    plain = batches(data_dir)
    augmented = batches(data_dir, augment=True)
    again = batches(data_dir, augment=True)
    assert all(np.array_equal(a[0], b[0]) for a, b in zip(augmented, again))
    stacked = np.concatenate([images for images, _ in augmented])
    assert stacked.shape[1:] == (SIZE, SIZE, 3) and 0.0 <= stacked.min() and stacked.max() <= 1.0
    # Brightness/contrast moved the flat images' values; labels and order are those of the plain run.
    assert not np.allclose(stacked, np.concatenate([images for images, _ in plain]))
    assert all(np.array_equal(a[1], p[1]) for a, p in zip(augmented, plain))


def test_cache_gives_the_same_batches_as_reading_the_shards(dataset):
    data_dir, _ = dataset
    for kwargs in (dict(augment=True, rank=1, world_size=2, epoch=3), dict(augment=False)):
        streamed, cached = batches(data_dir, **kwargs), batches(data_dir, cache=True, **kwargs)
        assert len(streamed) == len(cached)
        assert all(np.array_equal(s[0], c[0]) and np.array_equal(s[1], c[1]) for s, c in zip(streamed, cached))


def test_each_epoch_reads_its_rank_part_shuffled_within_blocks(dataset, monkeypatch):
    data_dir, _ = dataset
    block = 5
    monkeypatch.setattr(pipeline, "SHUFFLE_BLOCK", block)
    manifest = pipeline.load_manifest(data_dir)
    in_split_order = image_values(list(pipeline.make_dataset(data_dir, "train", SIZE, BATCH,
                                                             training=False).as_numpy_iterator()))
    for epoch in (0, 1):
        where = dict(rank=1, world_size=2, seed=7, epoch=epoch)
        order = pipeline.epoch_order(manifest, "train", BATCH, **where)
        ascending = pipeline.rank_indices(manifest, "train", BATCH, training=True, **where)
        assert [sorted(order[i:i + block]) for i in range(0, len(order), block)] == \
               [list(ascending[i:i + block]) for i in range(0, len(ascending), block)]
        assert list(order) != list(ascending)
        for cache in (False, True):
            read = image_values(batches(data_dir, cache=cache, **where))
            assert read == [in_split_order[index] for index in order]


def test_consecutive_epochs_stream_from_one_pipeline_exactly_as_each_epoch_alone(dataset):
    data_dir, _ = dataset
    steps = pipeline.steps_per_epoch(pipeline.load_manifest(data_dir), "train", BATCH, 2)
    for cache in (False, True):
        settings = dict(augment=True, rank=1, world_size=2, cache=cache)
        streamed = batches(data_dir, epoch=2, epochs=3, **settings)
        alone = [batch for epoch in (2, 3, 4) for batch in batches(data_dir, epoch=epoch, **settings)]
        assert len(streamed) == len(alone) == 3 * steps
        assert all(np.array_equal(s[0], a[0]) and np.array_equal(s[1], a[1]) for s, a in zip(streamed, alone))
        assert not np.array_equal(streamed[0][0], streamed[steps][0])  # epochs differ: not vacuous


def test_preprocess_fn_maps_each_batch(dataset):
    data_dir, _ = dataset
    plain = batches(data_dir)
    scaled = list(pipeline.make_dataset(data_dir, "train", SIZE, BATCH, training=True, augment=False, seed=7,
                                        preprocess_fn=lambda images: images * 2.0 - 1.0).as_numpy_iterator())
    assert all(np.allclose(s[0], p[0] * 2 - 1) for s, p in zip(scaled, plain))


def test_too_few_images_for_one_global_batch_is_a_clear_error(dataset):
    data_dir, _ = dataset
    with pytest.raises(SemhpcError, match="fewer than one global batch"):
        pipeline.steps_per_epoch(pipeline.load_manifest(data_dir), "test", 64, 2)


def test_missing_manifest_names_the_path(tmp_path):
    with pytest.raises(SemhpcError, match=f"{tmp_path}/manifest.json: not found"):
        pipeline.load_manifest(tmp_path)


RANK_SCRIPT = """
import json, sys
from mpi4py import MPI
from semhpc.data import pipeline
rank, world = MPI.COMM_WORLD.Get_rank(), MPI.COMM_WORLD.Get_size()
data_dir, out = sys.argv[1], sys.argv[2]
values = {}
for epoch in (0, 1):
    dataset = pipeline.make_dataset(data_dir, "train", %d, %d, training=True, rank=rank, world_size=world,
                                    seed=7, epoch=epoch, augment=False)
    values[epoch] = [int(round(float(image[0, 0, 0]) * 255)) for images, _ in dataset for image in images]
with open(f"{out}/rank{rank}.json", "w") as handle:
    json.dump(values, handle)
""" % (SIZE, BATCH)


@pytest.mark.mpi
def test_ranks_under_mpirun_see_disjoint_parts_covering_the_epoch(dataset, tmp_path):
    data_dir, labels = dataset
    script = tmp_path / "ranks.py"
    script.write_text(RANK_SCRIPT)
    result = subprocess.run(["mpirun", "-np", "2", "--oversubscribe", sys.executable, str(script), str(data_dir),
                             str(tmp_path)], capture_output=True, text=True, timeout=300, env=MPI_ENV)
    assert result.returncode == 0, result.stderr
    parts = [json.loads((tmp_path / f"rank{rank}.json").read_text()) for rank in range(2)]
    per_rank = pipeline.steps_per_epoch(pipeline.load_manifest(data_dir), "train", BATCH, 2) * BATCH
    for epoch in ("0", "1"):
        first, second = parts[0][epoch], parts[1][epoch]
        assert len(first) == len(second) == per_rank
        assert len(set(first) | set(second)) == 2 * per_rank and set(first) | set(second) <= set(labels)
    assert parts[0]["0"] != parts[0]["1"]

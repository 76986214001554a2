"""Hash-based split (semhpc/data/split.py): stable when files are added, proportions, fraction checks."""

import math
import os

import numpy as np
import pytest

from semhpc.data.split import DEFAULT_FRACTIONS, SPLITS, check_fractions, parse_fractions, shard_of, split_of
from semhpc.utils.errors import SemhpcError

NAMES = [f"sub{index % 7}/image_{index:05d}.tif" for index in range(20_000)]


def test_adding_files_never_moves_existing_ones():
    before = {name: split_of(name) for name in NAMES[:5_000]}
    # A larger archive: the same names plus 15,000 new ones, listed in another order.
    after = {name: split_of(name) for name in reversed(NAMES)}
    assert all(after[name] == split for name, split in before.items())


def test_proportions_match_the_fractions_within_sampling_noise():
    for fractions in (DEFAULT_FRACTIONS, (0.6, 0.2, 0.2), (0.9, 0.0, 0.1)):
        counts = {split: 0 for split in SPLITS}
        for name in NAMES:
            counts[split_of(name, fractions)] += 1
        for split, fraction in zip(SPLITS, fractions):
            sigma = math.sqrt(len(NAMES) * fraction * (1 - fraction))
            assert abs(counts[split] - len(NAMES) * fraction) <= 5 * sigma + 1e-9, (split, counts)


def test_changing_fractions_moves_only_files_across_the_moved_boundary():
    old, new = (0.8, 0.1, 0.1), (0.7, 0.2, 0.1)
    moves = {(split_of(name, old), split_of(name, new)) for name in NAMES}
    assert moves == {("train", "train"), ("train", "validation"), ("validation", "validation"), ("test", "test")}


def test_the_split_depends_on_the_name_only():
    assert split_of("a/b.tif") == split_of("a/b.tif")
    # Non-UTF-8 names (surrogate-escaped str and raw bytes) hash like any other name.
    raw = b"caf\xe9.tif"
    assert split_of(os.fsdecode(raw)) == split_of(raw)
    assert {split_of(f"{index}.tif") for index in range(100)} == set(SPLITS)


def test_shards_are_all_used_and_independent_of_the_split():
    shards = np.array([shard_of(name, 4) for name in NAMES])
    counts = np.bincount(shards, minlength=4)
    assert counts.min() > 0.9 * len(NAMES) / 4
    train = np.array([split_of(name) == "train" for name in NAMES])
    # Each shard holds about the train fraction of train files (the two choices are independent).
    for shard in range(4):
        assert abs(train[shards == shard].mean() - 0.8) < 0.03


@pytest.mark.parametrize("text, message", [
    ("0.8,0.1", "need 3 fractions"),
    ("0.8,0.1,0.2", "must sum to 1"),
    ("0.8,-0.1,0.3", "must be numbers >= 0"),
    ("0,0.5,0.5", "train fraction must be > 0"),
    ("a,b,c", "need three comma-separated numbers"),
])
def test_bad_fractions_are_refused_with_the_reason(text, message):
    with pytest.raises(SemhpcError, match=message):
        parse_fractions(text)


def test_good_fractions_are_accepted():
    assert parse_fractions("0.8,0.1,0.1") == (0.8, 0.1, 0.1)
    assert check_fractions([1, 0, 0]) == (1.0, 0.0, 0.0)

"""Stable train/validation/test split: a file's split is a pure function of its own name.

Why (docs/background.md: Data, Aversa §4.2.1): the archive grows. If the split were drawn at random, or by
position in a sorted list, adding images would move old ones between train and test, and a model
trained yesterday would be evaluated on images it had trained on. Here the SHA-256 of the file's
path *relative to its category folder* becomes a number u in [0, 1); the split is the interval of
the cumulative fractions u falls into. So:
  * adding or removing other files never moves a file;
  * renaming or merging category folders (class map: Pillars -> Patterned_surface) never moves a
    file, because the category folder is not part of the hashed path;
  * proportions match the fractions up to sampling noise (each file is an independent draw).
Changing the fractions does move files, but only those whose u lies between the old and new
boundaries.

The same digest, read further, also picks the file's shard (`shard_of`), so adding a file to an
ingested dataset changes exactly one shard of its split.
"""

from __future__ import annotations

import hashlib
import math
import os

from semhpc.utils.errors import SemhpcError

SPLITS = ("train", "validation", "test")
DEFAULT_FRACTIONS = (0.8, 0.1, 0.1)
_FRACTION_TOLERANCE = 1e-6


def path_digest(path_in_category) -> bytes:
    """SHA-256 of the path relative to the category folder, '/'-separated, as the raw file-name bytes.

    Raw bytes (os.fsencode) so a non-UTF-8 name hashes like any other and the result never depends
    on the locale.
    """
    relative = os.fsencode(path_in_category).replace(os.fsencode(os.sep), b"/")
    return hashlib.sha256(relative).digest()


def split_of(path_in_category, fractions=DEFAULT_FRACTIONS) -> str:
    """"train", "validation" or "test" for a file (see the module docstring)."""
    position = int.from_bytes(path_digest(path_in_category)[:8], "big") / 2**64
    boundary = 0.0
    for name, fraction in zip(SPLITS, fractions):
        boundary += fraction
        if position < boundary:
            return name
    return [name for name, fraction in zip(SPLITS, fractions) if fraction > 0][-1]  # rounding at the top


def shard_of(path_in_category, shard_count: int) -> int:
    """The file's shard index within its split; independent of `split_of` (other digest bytes)."""
    return int.from_bytes(path_digest(path_in_category)[8:16], "big") % shard_count


def check_fractions(fractions) -> tuple[float, float, float]:
    """`fractions` as a (train, validation, test) tuple, or SemhpcError saying what is wrong."""
    fractions = tuple(float(value) for value in fractions)
    if len(fractions) != len(SPLITS):
        raise SemhpcError(f"split {list(fractions)}: need {len(SPLITS)} fractions ({'/'.join(SPLITS)})")
    if any(not math.isfinite(value) or value < 0 for value in fractions):
        raise SemhpcError(f"split {list(fractions)}: fractions must be numbers >= 0")
    if abs(sum(fractions) - 1.0) > _FRACTION_TOLERANCE:
        raise SemhpcError(f"split {list(fractions)}: fractions must sum to 1 (they sum to {sum(fractions):g})")
    if fractions[0] == 0:
        raise SemhpcError(f"split {list(fractions)}: the train fraction must be > 0")
    return fractions


def parse_fractions(text: str) -> tuple[float, float, float]:
    """"0.8,0.1,0.1" -> (0.8, 0.1, 0.1), checked."""
    try:
        values = [float(part) for part in text.split(",")]
    except ValueError:
        raise SemhpcError(f"split '{text}': need three comma-separated numbers, e.g. 0.8,0.1,0.1") from None
    return check_fractions(values)

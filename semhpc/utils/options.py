"""Range-checked argparse types for the numeric command-line options of every command.

Every number a command takes has a range, checked while the command line is parsed: a typo such
as `--size 100000x100000` or `-np 0` is one line naming the option, before any work (or any
memory) is spent. argparse prints `semhpc CMD: error: argument OPTION: ...` and exits 2.
"""

from __future__ import annotations

import argparse
import math
import re

MIN_SIDE = 16  # smallest image side the SEM reader accepts, and smallest stored or model size
MAX_SIDE = 4096  # of a stored or synthetic image: 16 MB per image already
MAX_BATCH = 4096
MAX_INPUT_SIZE = 1024  # model input side; the models here are meant for 32-299 pixels
MAX_RANKS = 4096
MAX_CORES = 1024
MAX_GPUS_PER_NODE = 64  # a node with more GPUs than this is a typo (the largest hold 8-16)

_SIZE = re.compile(r"^\s*(\d+)\s*[xX]\s*(\d+)\s*$")


def bounded_int(low: int, high: int):
    """An argparse type: a whole number in [low, high]."""
    return _bounded(int, "a whole number", low, high)


def bounded_float(low: float, high: float):
    """An argparse type: a finite number in [low, high]."""
    return _bounded(float, "a number", low, high)


def number_text(value: float) -> str:
    """2147483647 -> "2147483647", 0.9 -> "0.9": how a range bound is shown in a message."""
    return str(int(value)) if float(value).is_integer() else f"{value:g}"


def _bounded(convert, noun: str, low: float, high: float):
    def parse(text: str):
        try:
            value = convert(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not {noun}") from None
        if not (math.isfinite(value) and low <= value <= high):
            raise argparse.ArgumentTypeError(f"{text} is out of range: must be between {number_text(low)} and "
                                             f"{number_text(high)}")
        return value

    return parse


def image_size(text: str) -> tuple[int, int]:
    """An argparse type: "128x96" -> (128, 96), width then height, each side in [MIN_SIDE, MAX_SIDE]."""
    match = _SIZE.match(text)
    if match is None:
        raise argparse.ArgumentTypeError(f"{text!r}: expected WIDTHxHEIGHT in pixels, e.g. 128x96")
    width, height = int(match.group(1)), int(match.group(2))
    if not (MIN_SIDE <= width <= MAX_SIDE and MIN_SIDE <= height <= MAX_SIDE):
        raise argparse.ArgumentTypeError(f"{text!r}: each side must be between {MIN_SIDE} and {MAX_SIDE} pixels")
    return width, height

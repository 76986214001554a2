"""What is drawn over synthetic SEM images: annotations, the FEI data bar, the Zeiss data zone.

Archive images often carry scale bars, arrows, labels and measurements drawn by users
(docs/background.md: Data: the network must learn to ignore them), and the instrument's own data strip:
FEI appends a black data bar *below* the image (the reader cuts it, see sem_writer), Zeiss paints
a light data zone *over* the image's bottom rows (it stays in the image, as in real Zeiss files).

The data bar and zone are laid out once at a 512-pixel reference width (FEI's copies the Helios
sample) and scaled to the image; text uses Pillow's built-in bitmap font, whose glyphs are the
same on every machine, so the files stay byte-identical.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from semhpc.data.sem_writer import Acquisition, format_length, zeiss_magnification

SCALE_BAR_SHARE = 0.25  # of images
HAND_ANNOTATION_SHARE = 0.2
FEI_BAR_REFERENCE = (512, 29)  # (width, rows)
ZEISS_ZONE_REFERENCE = (512, 40)
MIN_BAR_ROWS = 8

FONT = ImageFont.load_default_imagefont()


@dataclass(frozen=True)
class Ink:
    """Colour and sizes of one image's annotations, scaled with the image width."""

    colour: int
    stroke: int  # line width in pixels
    text_scale: int  # bitmap font magnification


def annotate(pixels: np.ndarray, rng, acquisition: Acquisition, free_rows: int) -> np.ndarray:
    """A scale bar (above any data zone, in the top `free_rows`) and/or hand annotations (arrows,
    labels, circles, measurements) on some images."""
    image = Image.fromarray(pixels)
    draw = ImageDraw.Draw(image)
    ink = Ink(colour=int(rng.choice([0, 255])), stroke=max(1, round(acquisition.width / 256)),
              text_scale=max(1, round(acquisition.width / 320)))
    if rng.random() < SCALE_BAR_SHARE:
        _scale_bar(image, draw, rng, acquisition, ink, free_rows)
    if rng.random() < HAND_ANNOTATION_SHARE:
        for _ in range(rng.integers(1, 4)):
            (_arrow, _label, _circle, _measurement)[rng.integers(4)](image, draw, rng, acquisition, ink)
    return np.asarray(image).copy()


def _scale_bar(image, draw, rng, acquisition: Acquisition, ink: Ink, free_rows: int) -> None:
    length_m = _nice_length(0.25 * acquisition.field_width_m)
    length = length_m / acquisition.pixel_size_m
    margin = 0.05 * acquisition.width
    x = margin if rng.random() < 0.5 else acquisition.width - margin - length
    y = free_rows - margin
    draw.rectangle([x, y - 2 * ink.stroke, x + length, y], fill=ink.colour)
    label = _text_mask(format_length(length_m), ink.text_scale)
    _paste_text(image, label, x, y - 3 * ink.stroke - label.size[1], ink.colour)


def _arrow(image, draw, rng, acquisition: Acquisition, ink: Ink) -> None:
    head = rng.uniform((0, 0), (acquisition.width, acquisition.height))
    direction = rng.uniform(0, 2 * math.pi)
    length, barb = 0.15 * acquisition.width, 0.04 * acquisition.width
    tail = head + length * np.array([math.cos(direction), math.sin(direction)])
    draw.line([tuple(tail), tuple(head)], fill=ink.colour, width=ink.stroke)
    for side in (-0.5, 0.5):
        end = head + barb * np.array([math.cos(direction + side), math.sin(direction + side)])
        draw.line([tuple(head), tuple(end)], fill=ink.colour, width=ink.stroke)


def _label(image, draw, rng, acquisition: Acquisition, ink: Ink) -> None:
    text = str(rng.choice(["a", "b", "c", "1", "2", "A", "B", "*", "Au", "Si", "x"]))
    x, y = rng.uniform((0, 0), (0.9 * acquisition.width, 0.9 * acquisition.height))
    _paste_text(image, _text_mask(text, ink.text_scale), x, y, ink.colour)


def _circle(image, draw, rng, acquisition: Acquisition, ink: Ink) -> None:
    x, y = rng.uniform((0, 0), (acquisition.width, acquisition.height))
    rx, ry = rng.uniform(0.04, 0.15, 2) * acquisition.width
    draw.ellipse([x - rx, y - ry, x + rx, y + ry], outline=ink.colour, width=ink.stroke)


def _measurement(image, draw, rng, acquisition: Acquisition, ink: Ink) -> None:
    """A line with end ticks and its length, as users measure a feature."""
    x, y = rng.uniform((0.05, 0.15), (0.6, 0.95)) * (acquisition.width, acquisition.height)
    length = rng.uniform(0.1, 0.35) * acquisition.width
    tick = 3 * ink.stroke
    draw.line([(x, y), (x + length, y)], fill=ink.colour, width=ink.stroke)
    for end in (x, x + length):
        draw.line([(end, y - tick), (end, y + tick)], fill=ink.colour, width=ink.stroke)
    label = _text_mask(format_length(length * acquisition.pixel_size_m), ink.text_scale)
    _paste_text(image, label, x, y - tick - label.size[1], ink.colour)


def fei_bar_rows(width: int) -> int:
    return max(MIN_BAR_ROWS, round(FEI_BAR_REFERENCE[1] * width / FEI_BAR_REFERENCE[0]))


def zeiss_zone_rows(width: int) -> int:
    return max(MIN_BAR_ROWS, round(ZEISS_ZONE_REFERENCE[1] * width / ZEISS_ZONE_REFERENCE[0]))


def fei_data_bar(acquisition: Acquisition) -> np.ndarray:
    """FEI's data bar (white text in boxes on black: HV, mag, HFW, det, WD and a micron bar),
    laid out like the Helios sample at its 512-pixel width and scaled to the image width."""
    width, rows = FEI_BAR_REFERENCE
    bar = Image.new("L", FEI_BAR_REFERENCE, 0)
    draw = ImageDraw.Draw(bar)
    cells = (("HV", f"{acquisition.hv_volts / 1e3:.2f} kV"), ("mag", f"{acquisition.magnification:.0f} x"),
             ("HFW", format_length(acquisition.field_width_m)), ("det", acquisition.detector),
             ("WD", format_length(acquisition.working_distance_m)))
    cell_width = 62
    for column, (name, value) in enumerate(cells):
        left = 20 + column * cell_width
        draw.rectangle([left, 0, left + cell_width, rows - 1], outline=255)
        draw.text((left + 4, 2), name, fill=255, font=FONT)
        draw.text((left + 4, 15), value, fill=255, font=FONT)
    _micron_bar(draw, acquisition, left=20 + len(cells) * cell_width + 10, right=width - 10, rows=rows, ink=255)
    return _scaled(bar, acquisition.width, fei_bar_rows(acquisition.width))


def with_zeiss_data_zone(pixels: np.ndarray, acquisition: Acquisition, zone_rows: int) -> np.ndarray:
    """`pixels` with SmartSEM's data zone (black text on light gray) drawn over the bottom `zone_rows`."""
    width, rows = ZEISS_ZONE_REFERENCE
    zone = Image.new("L", ZEISS_ZONE_REFERENCE, 225)
    draw = ImageDraw.Draw(zone)
    _micron_bar(draw, acquisition, left=10, right=110, rows=rows, ink=0)
    draw.text((140, 6), f"EHT = {acquisition.hv_volts / 1e3:.2f} kV", fill=0, font=FONT)
    draw.text((140, 22), f"WD = {acquisition.working_distance_m * 1e3:.1f} mm", fill=0, font=FONT)
    draw.text((280, 6), f"Signal A = {acquisition.detector}", fill=0, font=FONT)
    draw.text((280, 22), f"Mag = {zeiss_magnification(acquisition.magnification)}", fill=0, font=FONT)
    draw.rectangle([width - 60, 8, width - 10, rows - 8], fill=0)
    draw.text((width - 52, 14), "ZEISS", fill=255, font=FONT)
    covered = pixels.copy()
    covered[-zone_rows:] = _scaled(zone, acquisition.width, zone_rows)
    return covered


def _micron_bar(draw, acquisition: Acquisition, left: int, right: int, rows: int, ink: int) -> None:
    """A scale bar of a round length fitting in [left, right] at the reference layout's width."""
    reference_pixel_m = acquisition.field_width_m / FEI_BAR_REFERENCE[0]
    length_m = _nice_length((right - left) * reference_pixel_m)
    length = length_m / reference_pixel_m
    draw.rectangle([left, rows // 2 - 2, left + length, rows // 2], fill=ink)
    draw.text((left, rows // 2 + 2), format_length(length_m), fill=ink, font=FONT)


def _scaled(image: Image.Image, width: int, rows: int) -> np.ndarray:
    return np.asarray(image.resize((width, rows), Image.BILINEAR))


def _text_mask(text: str, scale: int) -> Image.Image:
    """`text` in the bitmap font, enlarged `scale` times with square pixels (crisp at any size)."""
    left, top, right, bottom = FONT.getbbox(text)
    mask = Image.new("L", (right, bottom), 0)
    ImageDraw.Draw(mask).text((0, 0), text, fill=255, font=FONT)
    return mask.resize((right * scale, bottom * scale), Image.NEAREST)


def _paste_text(image: Image.Image, mask: Image.Image, x: float, y: float, colour: int) -> None:
    left, top = int(round(x)), int(round(y))
    image.paste(colour, (left, top, left + mask.size[0], top + mask.size[1]), mask)


def _nice_length(at_most_m: float) -> float:
    """The largest 1, 2 or 5 x 10^k metres not above `at_most_m`: what scale bars show."""
    decade = 10 ** math.floor(math.log10(at_most_m))
    return max(step * decade for step in (1, 2, 5) if step * decade <= at_most_m)

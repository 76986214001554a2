"""Synthetic SEM images of the ten categories, written as real FEI and Zeiss instruments write them.

Why: the labelled NFFA archive (docs/background.md: Data) is not public, yet the demo and the tests need a
folder-per-category tree of TIFFs that takes exactly the ingest path of real instrument files.

How one image is made (`synthesize`)
  1. The category's morphology (synth_morphology) draws a surface: a height map plus an albedo,
     at a random zoom. The metadata pixel size is the category's unit length over the pixels per
     unit, so the recorded magnification matches the feature scale drawn.
  2. SEM shading turns the surface into a secondary-electron signal: the yield rises with surface
     tilt (1/cos), so edges and thin objects glow (edge brightening), and the detector on one side
     lights the slopes that face it.
  3. The operator's contrast/brightness, focus, detector noise and scan-line jitter.
  4. Overlays (synth_overlays): vendors alternate by index, even = FEI, odd = Zeiss. Some FEI
     images get a data bar below the image, some Zeiss ones a data zone over the bottom rows;
     some images get a scale bar, arrows or labels. The file is written by sem_writer.

Determinism: each image's random generator is seeded by (seed, category index, image index), so
a file's bytes depend on those and the size only, never on what else is generated or in which
order. No clock is read: the acquisition date comes from the same generator.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np

from semhpc.data import synth_overlays as overlays
from semhpc.data.categories import ARCHIVE_COUNTS, CATEGORIES
from semhpc.data.sem_metadata import FEI, ZEISS
from semhpc.data.sem_tiff import MAX_PIXELS, MIN_SIDE
from semhpc.data.sem_writer import Acquisition, write_sem_tiff
from semhpc.data.synth_morphology import MORPHOLOGIES, Canvas, Surface, blur, smooth_noise
from semhpc.utils.errors import SemhpcError
from semhpc.utils.progress import progress as progress_bar

REFERENCE_WIDTH = 256  # image width (pixels) at which one morphology unit is one pixel at zoom 1
ZOOM_RANGE = (0.75, 1.35)  # per-image magnification spread, drawn log-uniformly
MIN_SIGNAL_RANGE = 0.6  # contrast stretch limit, in yield units: flat surface 1, saturated edge 2.2-3.5

VENDORS = (FEI, ZEISS)  # image index % 2 picks the vendor style
FEI_DATA_BAR_SHARE = 0.6  # of FEI images
ZEISS_DATA_ZONE_SHARE = 0.5  # of Zeiss images
FEI_SYSTEMS = ("Helios NanoLab 660", "Nova NanoSEM 450", "Quanta 250 FEG")
ZEISS_SERIALS = ("Merlin-61-08", "Sigma-03-12", "Supra40-26-39")
DETECTORS = {FEI: ("ETD", "TLD"), ZEISS: ("SE2", "InLens")}
HIGH_VOLTAGES_V = (1000, 2000, 3000, 5000, 10000, 15000, 20000)


@dataclass
class SyntheticImage:
    pixels: np.ndarray  # uint8 (height, width): the image area, annotations and Zeiss data zone included
    data_bar: np.ndarray | None  # uint8 rows appended below the image area (FEI only)
    acquisition: Acquisition


def generate(out_dir, per_class: int, size=(1024, 768), seed: int = 0, imbalance: bool = False,
             progress: bool = True) -> dict[str, int]:
    """Write OUT/<Category>/<category>_<index:05d>.tif for every category; return images per category.

    Numbered images of an earlier run beyond the new counts are removed, so the tree holds exactly
    this run's images.
    """
    out_dir = Path(out_dir)
    _check_arguments(out_dir, per_class, size, seed)
    counts = class_counts(per_class, imbalance)
    for category in CATEGORIES:
        _remove_stale_images(out_dir, category, counts[category])
    jobs = [(category, index) for category in CATEGORIES for index in range(counts[category])]
    for category, index in progress_bar(jobs, desc="synth", unit="img", enabled=progress):
        image = synthesize(category, index, size, seed)
        write_sem_tiff(image_path(out_dir, category, index), image.pixels, image.acquisition, image.data_bar)
    return counts


def class_counts(per_class: int, imbalance: bool = False) -> dict[str, int]:
    """Images per category: `per_class` each, or scaled to the archive's proportions (largest =
    `per_class`, at least 1) so the imbalance of docs/background.md: Data can be reproduced."""
    if not imbalance:
        return {category: per_class for category in CATEGORIES}
    largest = max(ARCHIVE_COUNTS.values())
    return {category: max(1, round(per_class * ARCHIVE_COUNTS[category] / largest)) for category in CATEGORIES}


def image_path(out_dir, category: str, index: int) -> Path:
    return Path(out_dir) / category / f"{category.lower()}_{index:05d}.tif"


def synthesize(category: str, index: int, size=(1024, 768), seed: int = 0) -> SyntheticImage:
    """Image `index` of `category` (steps in the module docstring); depends on nothing else."""
    rng = np.random.default_rng([seed, CATEGORIES.index(category), index])
    width, height = size
    zoom = math.exp(rng.uniform(*np.log(ZOOM_RANGE)))
    canvas = Canvas(height, width, unit=width / REFERENCE_WIDTH * zoom)
    morphology = MORPHOLOGIES[category]
    pixels = _detector_output(_secondary_electron_signal(morphology.draw(rng, canvas), rng, canvas), rng)
    acquisition = _acquisition(rng, VENDORS[index % 2], morphology.unit_m / canvas.unit, width, height)
    data_bar, free_rows = None, height
    if acquisition.vendor == FEI and rng.random() < FEI_DATA_BAR_SHARE:
        data_bar = overlays.fei_data_bar(acquisition)
    elif acquisition.vendor == ZEISS and rng.random() < ZEISS_DATA_ZONE_SHARE:
        zone_rows = min(overlays.zeiss_zone_rows(width), height)
        pixels = overlays.with_zeiss_data_zone(pixels, acquisition, zone_rows)
        free_rows -= zone_rows
    return SyntheticImage(overlays.annotate(pixels, rng, acquisition, free_rows), data_bar, acquisition)


def _check_arguments(out_dir: Path, per_class, size, seed) -> None:
    if out_dir.exists() and not out_dir.is_dir():
        raise SemhpcError(f"{out_dir}: output folder exists and is not a folder")
    if not isinstance(per_class, int) or per_class < 1:
        raise SemhpcError(f"per-class = {per_class!r}: need an integer >= 1")
    if not isinstance(seed, int) or seed < 0:
        raise SemhpcError(f"seed = {seed!r}: need an integer >= 0")
    width, height = size
    if min(width, height) < MIN_SIDE:
        raise SemhpcError(f"size {width}x{height}: each side must be at least {MIN_SIDE} pixels "
                          "(the SEM reader refuses smaller images)")
    if width * (height + overlays.fei_bar_rows(width)) > MAX_PIXELS:
        raise SemhpcError(f"size {width}x{height}: larger than the reader's limit of {MAX_PIXELS:,} pixels")


def _remove_stale_images(out_dir: Path, category: str, count: int) -> None:
    """Delete this category's numbered images from index `count` on; other files are left alone."""
    prefix = f"{category.lower()}_"
    for path in (out_dir / category).glob(f"{prefix}*.tif"):
        number = path.stem[len(prefix):]
        if len(number) == 5 and number.isdigit() and int(number) >= count:
            path.unlink()


# ---------------------------------------------------------------------------------------------
# SEM imaging: surface -> signal -> 8-bit pixels


def _secondary_electron_signal(surface: Surface, rng, canvas: Canvas) -> np.ndarray:
    """Secondary-electron yield of the surface as seen by a side-mounted detector."""
    roughness = rng.uniform(0.1, 0.5) * canvas.unit * smooth_noise(rng, canvas.shape, 1.5 * canvas.unit)
    smooth = blur(surface.height + roughness, max(0.6, 0.5 * canvas.unit))  # probe and interaction volume
    slope_y, slope_x = np.gradient(smooth)
    tilt = np.sqrt(1 + slope_x**2 + slope_y**2)  # 1 / cos(surface tilt)
    se_yield = np.minimum(tilt, rng.uniform(2.2, 3.5))  # edges glow, up to a saturation
    azimuth = rng.uniform(0, 2 * math.pi)
    facing = (slope_x * math.cos(azimuth) + slope_y * math.sin(azimuth)) / tilt
    return surface.albedo * se_yield * (1 + rng.uniform(0.1, 0.45) * facing)


def _detector_output(signal: np.ndarray, rng) -> np.ndarray:
    """The operator's contrast and brightness, focus, shot noise and scan-line jitter, as uint8.

    Contrast stretches the signal's 0.5-99.5 percentiles to random black and white levels (so
    global brightness says little about the class), but never amplifies a range below
    MIN_SIGNAL_RANGE: a smooth film stays smooth instead of becoming stretched noise.
    """
    signal = blur(signal, rng.uniform(0, 1.0))
    low, high = np.percentile(signal, [0.5, 99.5])
    high = max(high, low + MIN_SIGNAL_RANGE)
    black, white = rng.uniform(0, 60), rng.uniform(170, 255)
    image = black + (signal - low) * ((white - black) / (high - low))
    noise = rng.normal(0, rng.uniform(2, 12), signal.shape)
    noise = (noise + np.roll(noise, 1, axis=1)) / math.sqrt(2)  # the detector's bandwidth smears along x
    line_jitter = rng.normal(0, rng.uniform(0, 3), (signal.shape[0], 1))
    return np.clip(np.rint(image + noise + line_jitter), 0, 255).astype(np.uint8)


def _acquisition(rng, vendor: str, pixel_size_m: float, width: int, height: int) -> Acquisition:
    """Instrument settings of one image; the pixel size is rounded to the 4 digits vendors print."""
    if vendor == FEI:
        model = FEI_SYSTEMS[rng.integers(len(FEI_SYSTEMS))]
    else:
        model = ZEISS_SERIALS[rng.integers(len(ZEISS_SERIALS))]
    acquired_at = datetime(2014, 1, 1) + timedelta(days=int(rng.integers(0, 6 * 365)),
                                                   seconds=int(rng.integers(8 * 3600, 19 * 3600)))
    return Acquisition(vendor=vendor, model=model, detector=str(rng.choice(DETECTORS[vendor])), width=width,
                       height=height, pixel_size_m=float(f"{pixel_size_m:.4g}"),
                       hv_volts=float(rng.choice(HIGH_VOLTAGES_V)),
                       working_distance_m=round(float(rng.uniform(3e-3, 12e-3)), 6), acquired_at=acquired_at)

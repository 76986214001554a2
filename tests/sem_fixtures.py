"""Small SEM-like image files for tests: FEI-like, Zeiss-like, generic, multi-page, 16-bit, RGB.

Vendor blocks follow the layout of the real samples in ../shared/sem-samples (FEI ini text in
tag 34682, Zeiss CZ_SEM "KEY / Label = value unit" lines in tag 34118), written with tifffile
`extratags`. Each builder returns what a test needs to state expectations without re-deriving
them from the reader.
"""

from __future__ import annotations

import copy
import os
import struct
from pathlib import Path

import numpy as np
import tifffile

# The real FEI/Zeiss files live beside the repository, never in it; tests skip when absent.
REAL_SAMPLES = Path(__file__).resolve().parents[2] / "shared" / "sem-samples"

# Values as an FEI Helios writes them (SI units); tests compare against these numbers.
FEI_SECTIONS = {
    "User": {"Date": "06/13/2016", "Time": "05:06:40 PM", "User": "supervisor"},
    "System": {"Type": "DualBeam", "SystemType": "Helios NanoLab 660", "DisplayWidth": "0.518"},
    "Beam": {"HV": "5000", "Spot": "1"},
    "EBeam": {"HV": "5000", "HFW": "1.28e-06", "WD": "0.0041"},
    "Scan": {"PixelWidth": "2e-08", "PixelHeight": "2e-08", "HorFieldsize": "1.28e-06"},
    "Stage": {"WorkingDistance": "0.00403466"},
    "Image": {"ResolutionX": "64", "ResolutionY": "48", "MagCanvasRealWidth": "0.128"},
    "Detectors": {"Number": "1", "Name": "TLD", "Mode": "SE"},
    "PrivateFei": {"DatabarHeight": "8", "TimeOfCreation": "13.06.2016 17:06:40"},
}

# Zeiss CZ_SEM parameters: key -> "Label = value unit" exactly as SmartSEM writes the line.
ZEISS_PARAMS = {
    "dp_detector_type": "Detector = InLens",
    "dp_column_type": "Column = Gemini",
    "ap_mag": "Mag =  25.00 K X",
    "ap_image_pixel_size": "Image Pixel Size = 4.467 nm",
    "ap_actualkv": "EHT = 3.00 kV",
    "ap_manualkv": "EHT Target = 25.00 kV",
    "ap_wd": "WD =  5.1 mm",
    "ap_time": "Time :14:02:07",
    "ap_date": "Date :7 Mar 2019",
    "sv_serial_number": "Serial No. = Sigma-03-12",
}


def gradient(height: int, width: int, dtype=np.uint8, seed: int = 0) -> np.ndarray:
    """A reproducible non-flat test image using the full range of `dtype`."""
    rng = np.random.default_rng(seed)
    top = np.iinfo(dtype).max
    return rng.integers(0, top, size=(height, width), endpoint=True, dtype=dtype)


def fei_sections(**changes: dict[str, str | None]) -> dict[str, dict[str, str]]:
    """FEI_SECTIONS with per-section changes: fei_sections(Beam={"HV": "abc"}, Scan=None) drops [Scan]."""
    sections = copy.deepcopy(FEI_SECTIONS)
    for name, values in changes.items():
        if values is None:
            sections.pop(name, None)
            continue
        section = sections.setdefault(name, {})
        for key, value in values.items():
            if value is None:
                section.pop(key, None)
            else:
                section[key] = value
    return sections


def fei_ini(sections: dict[str, dict[str, str]]) -> str:
    return "".join(f"[{name}]\r\n" + "".join(f"{k}={v}\r\n" for k, v in keys.items()) + "\r\n"
                   for name, keys in sections.items())


def write_fei_tiff(path, image: np.ndarray, *, bar_rows: int = 8, sections=None) -> np.ndarray:
    """`image` with a bright `bar_rows`-high data bar below it and FEI metadata; returns the page.

    By default [Image] ResolutionX/Y and [PrivateFei] DatabarHeight match the geometry.
    """
    height, width = image.shape[:2]
    if sections is None:
        sections = fei_sections(Image={"ResolutionX": str(width), "ResolutionY": str(height)},
                                PrivateFei={"DatabarHeight": str(bar_rows)})
    bar = np.full((bar_rows, *image.shape[1:]), np.iinfo(image.dtype).max, dtype=image.dtype)
    page = np.concatenate([image, bar])
    tifffile.imwrite(path, page, extratags=[(34682, "s", 0, fei_ini(sections), True)])
    return page


def zeiss_block(params: dict[str, str]) -> bytes:
    """CZ_SEM text: a few unnamed numbers, then KEY / "Label = value" line pairs, in Latin-1."""
    lines = ["0", "0", "0", "4.467000e-009"]
    for key, line in params.items():
        lines += [key.upper(), line]
    return ("\r\n".join(lines) + "\r\n").encode("latin-1")


def write_zeiss_tiff(path, image: np.ndarray, params=None) -> None:
    """8-bit gray stored as a palette image with a gray-ramp colour map, as Zeiss SmartSEM does."""
    ramp = (np.arange(256, dtype=np.uint16) * 257)
    tifffile.imwrite(path, image, photometric="palette", colormap=np.stack([ramp] * 3),
                     extratags=[(34118, "B", 0, zeiss_block(ZEISS_PARAMS if params is None else params), True)])


def write_generic_tiff(path, image: np.ndarray, **tifffile_kwargs) -> None:
    """A TIFF with no vendor block; e.g. photometric="rgb" for an (H, W, 3) image."""
    tifffile.imwrite(path, image, **tifffile_kwargs)


def write_multipage_tiff(path, pages: list[tuple[np.ndarray, int]]) -> None:
    """One page per (image, NewSubfileType); subfiletype 1 marks a reduced-resolution thumbnail."""
    with tifffile.TiffWriter(path) as writer:
        for image, subfiletype in pages:
            writer.write(image, subfiletype=subfiletype)


def write_header_only_tiff(path, width: int, height: int) -> None:
    """A TIFF whose header declares width x height uint8 pixels but holds none of them."""
    with tifffile.TiffWriter(path) as writer:
        writer.write(shape=(height, width), dtype=np.uint8)
    with tifffile.TiffFile(path) as tif:
        data_start = tif.pages[0].dataoffsets[0]
    os.truncate(path, data_start)


def write_tiff_with_unknown_tag_type(path, image: np.ndarray) -> None:
    """A TIFF with one private tag whose data type code is invalid (tifffile skips it, logging why)."""
    tifffile.imwrite(path, image, extratags=[(65000, "H", 1, 7, True)])
    with open(path, "r+b") as handle:
        handle.seek(4)
        (ifd_offset,) = struct.unpack("<I", handle.read(4))
        handle.seek(ifd_offset)
        (entries,) = struct.unpack("<H", handle.read(2))
        for index in range(entries):
            entry = ifd_offset + 2 + 12 * index
            handle.seek(entry)
            if struct.unpack("<H", handle.read(2))[0] == 65000:
                handle.write(struct.pack("<H", 0xFFFF))


def write_pillow_image(path, image: np.ndarray, file_format: str) -> None:
    """PNG or JPEG through Pillow (whatever the file name's extension says)."""
    from PIL import Image

    Image.fromarray(image).save(path, format=file_format)

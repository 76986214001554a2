"""Write an 8-bit SEM image as an FEI or Zeiss instrument does, so it reads like a real file.

The inverse of `sem_metadata` for the fields `sem_tiff.read_sem_tiff` normalises; the layouts
follow the real samples in ../shared/sem-samples:

FEI (xT): 8-bit gray; the ini block in tag 34682; the data bar, when there is one, appended
    *below* the image, and [Image] ResolutionY = the image's own height, so the reader cuts the bar.
    Magnification is not stored: readers derive it as [Image] MagCanvasRealWidth / field width.
Zeiss (SmartSEM): 8-bit indices into a gray-ramp palette; the CZ_SEM block in tag 34118 as
    "KEY" / "Label = value unit" line pairs in Latin-1. Its data zone is drawn *over* the image's
    bottom rows, so nothing is appended.

No DateTime, Software or ImageDescription tags are written (the real samples carry none), so a
file's bytes depend only on the pixels and the `Acquisition`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import numpy as np
import tifffile

from semhpc.data.sem_metadata import FEI, FEI_CREATION_FORMAT, FEI_DATE_FORMATS, ZEISS, ZEISS_DATE_FORMAT
from semhpc.data.sem_tiff import FEI_TAGS, ZEISS_TAG
from semhpc.utils.atomic import atomic_path

# Magnification = reference width / field width. FEI records its reference ([Image]
# MagCanvasRealWidth, here the Helios sample's value); Zeiss records only the magnification, and
# the Zeiss sample's 105 X over a 2.677 mm field gives its reference.
MAG_REFERENCE_WIDTH_M = {FEI: 0.2072, ZEISS: 0.2811}
GRAY_RAMP = np.stack([np.arange(256, dtype=np.uint16) * 257] * 3)  # Zeiss palette: index i is gray i


@dataclass(frozen=True)
class Acquisition:
    """What the instrument records about one image."""

    vendor: str  # sem_metadata.FEI or sem_metadata.ZEISS
    model: str  # FEI system type, or the Zeiss serial number (Zeiss stores no model name)
    detector: str
    width: int
    height: int  # rows of the image area (an FEI data bar below it is not counted)
    pixel_size_m: float
    hv_volts: float
    working_distance_m: float
    acquired_at: datetime

    @property
    def field_width_m(self) -> float:
        return self.pixel_size_m * self.width

    @property
    def magnification(self) -> float:
        return MAG_REFERENCE_WIDTH_M[self.vendor] / self.field_width_m


def write_sem_tiff(path, pixels: np.ndarray, acquisition: Acquisition, data_bar: np.ndarray | None = None) -> None:
    """Write uint8 `pixels` (height x width) as `acquisition.vendor` does; `data_bar` rows (FEI
    only) go below the image. Atomic: a killed run leaves no torn file."""
    if data_bar is not None and acquisition.vendor != FEI:
        raise ValueError("only FEI appends a data bar below the image")
    plain = {"software": False, "metadata": None}  # no Software or ImageDescription tag
    with atomic_path(path) as tmp:
        if acquisition.vendor == FEI:
            page = pixels if data_bar is None else np.vstack([pixels, data_bar])
            block = fei_ini(acquisition, bar_rows=len(page) - len(pixels))
            tifffile.imwrite(tmp, page, photometric="minisblack", extratags=[(FEI_TAGS[0], "s", 0, block, True)],
                             **plain)
        else:
            tifffile.imwrite(tmp, pixels, photometric="palette", colormap=GRAY_RAMP,
                             extratags=[(ZEISS_TAG, "B", 0, zeiss_block(acquisition), True)], **plain)


def fei_ini(acquisition: Acquisition, bar_rows: int) -> str:
    """The FEI ini block (tag 34682) as xT writes it, with the keys `sem_metadata` reads.

    [Image] ResolutionY is the image area's height: the reader cuts the `bar_rows` data bar below.
    """
    date_format, time_format = FEI_DATE_FORMATS[0].split(" ", 1)
    field_height_m = acquisition.pixel_size_m * acquisition.height
    sections = {
        "User": {"Date": acquisition.acquired_at.strftime(date_format),
                 "Time": acquisition.acquired_at.strftime(time_format), "User": "user"},
        "System": {"SystemType": acquisition.model, "Source": "FEG"},
        "Beam": {"HV": f"{acquisition.hv_volts:g}", "Spot": "3", "Beam": "EBeam", "Scan": "EScan"},
        "EBeam": {"HV": f"{acquisition.hv_volts:g}", "HFW": f"{acquisition.field_width_m:.6g}",
                  "VFW": f"{field_height_m:.6g}", "WD": f"{acquisition.working_distance_m:g}"},
        "Scan": {"PixelWidth": f"{acquisition.pixel_size_m:g}", "PixelHeight": f"{acquisition.pixel_size_m:g}",
                 "HorFieldsize": f"{acquisition.field_width_m:.6g}", "VerFieldsize": f"{field_height_m:.6g}"},
        "Stage": {"WorkingDistance": f"{acquisition.working_distance_m:g}"},
        "Image": {"ResolutionX": str(acquisition.width), "ResolutionY": str(acquisition.height),
                  "MagCanvasRealWidth": f"{MAG_REFERENCE_WIDTH_M[FEI]:g}"},
        "Detectors": {"Number": "1", "Name": acquisition.detector, "Mode": "SE"},
        "PrivateFei": {"DatabarHeight": str(bar_rows),
                       "TimeOfCreation": acquisition.acquired_at.strftime(FEI_CREATION_FORMAT)},
    }
    return "".join(f"[{name}]\r\n" + "".join(f"{key}={value}\r\n" for key, value in keys.items()) + "\r\n"
                   for name, keys in sections.items())


def zeiss_block(acquisition: Acquisition) -> bytes:
    """The CZ_SEM block (tag 34118) as SmartSEM writes it: a few unnamed numbers, then KEY and
    "Label = value unit" line pairs, Latin-1 encoded (so "µ" is the single byte 0xB5)."""
    date_format, time_format = ZEISS_DATE_FORMAT.rsplit(" ", 1)
    params = {
        "AP_IMAGE_PIXEL_SIZE": f"Image Pixel Size = {format_length(acquisition.pixel_size_m, digits=4)}",
        "AP_MAG": f"Mag = {zeiss_magnification(acquisition.magnification)}",
        "AP_ACTUALKV": f"EHT = {acquisition.hv_volts / 1e3:.2f} kV",
        "AP_WD": f"WD = {acquisition.working_distance_m * 1e3:.3f} mm",
        "DP_DETECTOR_TYPE": f"Detector = {acquisition.detector}",
        "DP_COLUMN_TYPE": "Column = Gemini",
        "SV_SERIAL_NUMBER": f"Serial No. = {acquisition.model}",
        "AP_DATE": f"Date :{acquisition.acquired_at.strftime(date_format)}",
        "AP_TIME": f"Time :{acquisition.acquired_at.strftime(time_format)}",
    }
    lines = ["0", "0", "0", f"{acquisition.pixel_size_m:e}"]
    for key, line in params.items():
        lines += [key, line]
    return ("\r\n".join(lines) + "\r\n").encode("latin-1")


def format_length(metres: float, digits: int = 3) -> str:
    """A length as data bars and Zeiss write it: "500 nm", "1.73 mm" (`digits` significant digits)."""
    for unit, factor in (("nm", 1e-9), ("µm", 1e-6), ("mm", 1e-3)):
        number = f"{metres / factor:.{digits}g}"
        if float(number) < 1000:  # compare the printed number: 1e-6 m is "1 µm", never "1e+03 nm"
            return f"{number} {unit}"
    return f"{metres:.{digits}g} m"


def zeiss_magnification(magnification: float) -> str:
    """Magnification as SmartSEM prints it: "105 X" or "25.00 K X"."""
    return f"{magnification / 1e3:.2f} K X" if magnification >= 1000 else f"{magnification:.0f} X"

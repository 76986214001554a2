"""Vendor metadata of SEM images: parse the raw blocks, normalise them to SI units.

Microscopes write their settings into private TIFF tags, each vendor in its own text format.
This module turns that text into `raw` blocks (every value kept as the vendor wrote it, as a
string, so nothing is lost or reinterpreted) and derives the normalised fields from them:

FEI / Thermo Fisher: tag 34682 (or 34680), ini text, values already in SI units
    model               [System] SystemType, else [System] Type
    pixel_size_m        [Scan] PixelWidth, else [EScan] PixelWidth
    magnification       [Image] MagCanvasRealWidth / [Scan] HorFieldsize (else [EBeam] HFW)
    hv_volts            [Beam] HV, else [EBeam] HV
    working_distance_m  [Stage] WorkingDistance, else [EBeam] WD
    detector            [Detectors] Name
    acquired_at         [User] Date + Time, else [PrivateFei] TimeOfCreation

Zeiss: tag 34118 (CZ_SEM), "Label = value unit" lines, converted to SI
    model               sv_serial_number (e.g. "Merlin-61-08"; Zeiss stores no model name), else dp_column_type
    pixel_size_m        ap_image_pixel_size, else ap_pixel_size x 1024 / image width ("2.615 µm")
    magnification       ap_mag ("105 X", "25.00 K X")
    hv_volts            ap_actualkv, else ap_manualkv ("25.00 kV")
    working_distance_m  ap_wd ("14.808 mm")
    detector            dp_detector_type, else dp_detector_channel
    acquired_at         ap_date + ap_time ("23 Dec 2015", "9:40:32")

Zeiss `ap_pixel_size` ("Pixel Size") is given for a 1024-pixel-wide frame whatever the store
resolution; `ap_image_pixel_size` (newer SmartSEM) is the image's own. Older files carry only the
former, so a 512-wide image has twice the stated pixel size (RosettaSciIO's TIFF reader scales it
the same way).

FEI files store no magnification. We derive it as the width of FEI's magnification reference
canvas ([Image] MagCanvasRealWidth, in m) over the horizontal field width: that reproduces the
"mag" printed in the data bar ("120 x" on the Helios sample in ../shared/sem-samples), and
pynxtools-em derives it the same way. Vendors use different reference widths, so compare images
by `pixel_size_m`, never by magnification.

`acquired_at` is ISO 8601 local time without a zone ("2016-06-13T17:06:40"): the instruments
record no time zone, so we do not invent one.

A TIFF from an unknown vendor keeps `vendor: None`; `model` comes from the standard Make/Model
tags and `acquired_at` from DateTime when present, everything else is None.

Malformed metadata never stops an image from being read: a field that is missing, empty, not a
number, not positive or in an unknown unit becomes None and one warning says which key and why.
"""

from __future__ import annotations

import math
import re
from datetime import datetime

FEI = "FEI"
ZEISS = "Zeiss"
ZEISS_REFERENCE_WIDTH = 1024  # pixels of the frame Zeiss ap_pixel_size refers to

VENDOR_FIELDS = (
    "vendor",
    "model",
    "pixel_size_m",
    "magnification",
    "hv_volts",
    "working_distance_m",
    "detector",
    "acquired_at",
)

# Factor to SI for each unit spelling the vendors write ("µ" is U+00B5 in Zeiss files).
LENGTH_UNITS = {"m": 1.0, "mm": 1e-3, "µm": 1e-6, "μm": 1e-6, "um": 1e-6, "nm": 1e-9, "pm": 1e-12}
VOLTAGE_UNITS = {"V": 1.0, "kV": 1e3, "KV": 1e3, "mV": 1e-3}
MAGNIFICATION_UNITS = {"X": 1.0, "x": 1.0, "KX": 1e3, "kX": 1e3, "Kx": 1e3, "kx": 1e3}

FEI_DATE_FORMATS = ("%m/%d/%Y %I:%M:%S %p", "%m/%d/%Y %H:%M:%S")
FEI_CREATION_FORMAT = "%d.%m.%Y %H:%M:%S"
ZEISS_DATE_FORMAT = "%d %b %Y %H:%M:%S"
TIFF_DATETIME_FORMAT = "%Y:%m:%d %H:%M:%S"

_ZEISS_KEY = re.compile(r"^[A-Z][A-Z0-9_]*$")
_NUMBER_WITH_UNIT = re.compile(r"^\s*([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)\s*(.*?)\s*$")


# ---------------------------------------------------------------------------------------------
# Raw blocks: vendor text -> dicts of strings


def decode_block(data: bytes) -> str:
    """Vendor text as str: UTF-8 when valid, else Latin-1 (Zeiss writes "µ" as byte 0xB5)."""
    data = data.rstrip(b"\x00")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return data.decode("latin-1")


def parse_fei_ini(text: str) -> dict[str, dict[str, str]]:
    """FEI's ini block as {section: {key: value}}; lines outside a section or without "=" are ignored."""
    sections: dict[str, dict[str, str]] = {}
    current = None
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("[") and line.endswith("]"):
            current = sections.setdefault(line[1:-1].strip(), {})
        elif current is not None and "=" in line:
            key, value = line.split("=", 1)
            current[key.strip()] = value.strip()
    return sections


def parse_zeiss_cz_sem(text: str) -> dict:
    """Zeiss CZ_SEM text as {"params": {key: "Label = value unit"}, "unnamed": [...]}.

    The block is pairs of lines: an upper-case key ("AP_MAG") then "Label = value unit"
    ("Mag =    105 X"; date and time use "Label :value"). Keys are lower-cased as tifffile and
    RosettaSciIO name them (ap_mag). Lines before the first key are unnamed numbers.
    """
    params: dict[str, str] = {}
    unnamed: list[str] = []
    key = None
    for line in text.splitlines():
        line = line.strip()
        if not line:
            continue
        if _ZEISS_KEY.match(line):
            key = line.lower()
        elif key is not None:
            params[key] = line
            key = None
        elif not params:
            unnamed.append(line)
    return {"params": params, "unnamed": unnamed}


# ---------------------------------------------------------------------------------------------
# Normalised fields from the raw blocks


def vendor_fields(raw: dict, width: int, warnings: list[str]) -> dict:
    """The VENDOR_FIELDS for whichever vendor block `raw` holds (None where unknown); `width` is the
    image's width in pixels (Zeiss states one pixel size for a 1024-wide frame)."""
    if "fei" in raw:
        return _fei_fields(raw["fei"], warnings)
    if "zeiss" in raw:
        return _zeiss_fields(raw["zeiss"]["params"], width, warnings)
    return _generic_fields(raw.get("tiff", {}), warnings)


def declared_image_height(raw: dict, page_height: int, warnings: list[str]) -> int | None:
    """Rows of sample image the vendor declares; the rest of the page below is a data bar.

    FEI appends its data bar below the scanned image: [Image] ResolutionY is the image height;
    without it, the page height minus [PrivateFei] DatabarHeight. Other vendors: None.
    """
    fei = raw.get("fei")
    if fei is None:
        return None
    rows = _fei_integer(fei, "Image", "ResolutionY", warnings)
    if rows is not None:
        return rows
    bar_rows = _fei_integer(fei, "PrivateFei", "DatabarHeight", warnings)
    return None if bar_rows is None else page_height - bar_rows


def _fei_fields(fei: dict[str, dict[str, str]], warnings: list[str]) -> dict:
    def values(*places):
        return [(f"FEI [{section}] {key}", fei.get(section, {}).get(key)) for section, key in places]

    def number(name, *places):
        return _first_positive(name, values(*places), _plain_number, warnings)

    canvas_m = number("magnification", ("Image", "MagCanvasRealWidth"))
    field_m = number("magnification", ("Scan", "HorFieldsize"), ("EBeam", "HFW"))
    return {
        "vendor": FEI,
        "model": _first_text("model", values(("System", "SystemType"), ("System", "Type")), warnings),
        "pixel_size_m": number("pixel_size_m", ("Scan", "PixelWidth"), ("EScan", "PixelWidth")),
        "magnification": None if canvas_m is None or field_m is None else canvas_m / field_m,
        "hv_volts": number("hv_volts", ("Beam", "HV"), ("EBeam", "HV")),
        "working_distance_m": number("working_distance_m", ("Stage", "WorkingDistance"), ("EBeam", "WD")),
        "detector": _first_text("detector", values(("Detectors", "Name")), warnings),
        "acquired_at": _fei_acquired_at(fei, warnings),
    }


def _fei_acquired_at(fei: dict[str, dict[str, str]], warnings: list[str]) -> str | None:
    user = fei.get("User", {})
    candidates = (
        ("FEI [User] Date/Time", f"{user.get('Date', '')} {user.get('Time', '')}".strip(), FEI_DATE_FORMATS),
        ("FEI [PrivateFei] TimeOfCreation", fei.get("PrivateFei", {}).get("TimeOfCreation", ""),
         (FEI_CREATION_FORMAT,)),
    )
    for _, text, formats in candidates:
        parsed = _parse_datetime(text, formats) if text else None
        if parsed is not None:
            return parsed
    found = [f"{place}={text!r}" for place, text, _ in candidates if text]
    warnings.append("acquired_at unknown: " + (f"unrecognised date {', '.join(found)}" if found
                                               else " and ".join(place for place, _, _ in candidates) + " missing"))
    return None


def _fei_integer(fei: dict, section: str, key: str, warnings: list[str]) -> int | None:
    text = fei.get(section, {}).get(key)
    if not text:
        return None
    try:
        return int(text)
    except ValueError:
        warnings.append(f"FEI [{section}] {key}={text!r} is not an integer; ignored")
        return None


def _zeiss_fields(params: dict[str, str], width: int, warnings: list[str]) -> dict:
    def values(*keys):
        return [(f"Zeiss {key}", _zeiss_value(params.get(key))) for key in keys]

    def number(name, units, *keys):
        return _first_positive(name, values(*keys), lambda text: _number_in_units(text, units), warnings)

    return {
        "vendor": ZEISS,
        "model": _first_text("model", values("sv_serial_number", "dp_column_type"), warnings),
        "pixel_size_m": _zeiss_pixel_size(values("ap_image_pixel_size", "ap_pixel_size"), width, warnings),
        "magnification": number("magnification", MAGNIFICATION_UNITS, "ap_mag"),
        "hv_volts": number("hv_volts", VOLTAGE_UNITS, "ap_actualkv", "ap_manualkv"),
        "working_distance_m": number("working_distance_m", LENGTH_UNITS, "ap_wd"),
        "detector": _first_text("detector", values("dp_detector_type", "dp_detector_channel"), warnings),
        "acquired_at": _zeiss_acquired_at(params, warnings),
    }


def _zeiss_pixel_size(candidates: list[tuple[str, str | None]], width: int, warnings: list[str]) -> float | None:
    """ap_image_pixel_size as given, else ap_pixel_size (for a 1024-wide frame) scaled to `width`."""
    image, reference_frame = candidates

    def length(text):
        return _number_in_units(text, LENGTH_UNITS)

    if image[1]:
        value = _first_positive("pixel_size_m", [image], length, warnings)
        if value is not None:
            return value
    if reference_frame[1]:
        value = _first_positive("pixel_size_m", [reference_frame], length, warnings)
        return None if value is None else value * ZEISS_REFERENCE_WIDTH / width
    if not image[1]:
        warnings.append(f"pixel_size_m unknown: {image[0]} and {reference_frame[0]} missing or empty")
    return None


def _zeiss_value(line: str | None) -> str | None:
    """The value part of a Zeiss "Label = value unit" (or "Label :value") line."""
    if line is None:
        return None
    for separator in ("=", ":"):
        if separator in line:
            return line.split(separator, 1)[1].strip()
    return line.strip()


def _zeiss_acquired_at(params: dict[str, str], warnings: list[str]) -> str | None:
    date, time = _zeiss_value(params.get("ap_date")), _zeiss_value(params.get("ap_time"))
    if not date or not time:
        warnings.append("acquired_at unknown: Zeiss ap_date or ap_time is missing")
        return None
    parsed = _parse_datetime(f"{date} {time}", (ZEISS_DATE_FORMAT,))
    if parsed is None:
        warnings.append(f"acquired_at unknown: Zeiss date {date!r} {time!r} does not match {ZEISS_DATE_FORMAT!r}")
    return parsed


def _generic_fields(tiff_tags: dict[str, str], warnings: list[str]) -> dict:
    fields = dict.fromkeys(VENDOR_FIELDS)
    make_and_model = [tiff_tags.get(key, "").strip() for key in ("Make", "Model")]
    fields["model"] = " ".join(part for part in make_and_model if part) or None
    stamp = tiff_tags.get("DateTime", "").strip()
    if stamp:
        fields["acquired_at"] = _parse_datetime(stamp, (TIFF_DATETIME_FORMAT,))
        if fields["acquired_at"] is None:
            warnings.append(f"acquired_at unknown: TIFF DateTime {stamp!r} is not 'YYYY:MM:DD HH:MM:SS'")
    return fields


# ---------------------------------------------------------------------------------------------
# Value helpers


def _first_text(name: str, candidates: list[tuple[str, str | None]], warnings: list[str]) -> str | None:
    """The first non-empty candidate value, else None and a warning naming the keys tried."""
    for _, value in candidates:
        if value:
            return value
    warnings.append(f"{name} unknown: {' and '.join(place for place, _ in candidates)} missing or empty")
    return None


def _first_positive(name, candidates, to_si, warnings: list[str]) -> float | None:
    """The first candidate that `to_si(text) -> (value, problem)` turns into a positive number.

    Each unusable value adds a warning; when no candidate has a value at all, one warning says so.
    """
    for place, text in candidates:
        if not text:
            continue
        value, problem = to_si(text)
        if problem is None and not (math.isfinite(value) and value > 0):
            problem = "is not a positive number"
        if problem is None:
            return value
        warnings.append(f"{name} ignores {place}={text!r}: {problem}")
    if not any(text for _, text in candidates):
        warnings.append(f"{name} unknown: {' and '.join(place for place, _ in candidates)} missing or empty")
    return None


def _plain_number(text: str) -> tuple[float | None, str | None]:
    """FEI values are bare numbers already in SI units: (value, None) or (None, problem)."""
    try:
        return float(text), None
    except ValueError:
        return None, "is not a number"


def _number_in_units(text: str, units: dict[str, float]) -> tuple[float | None, str | None]:
    """("2.615 µm", LENGTH_UNITS) -> (2.615e-06, None); (value, None) or (None, problem)."""
    match = _NUMBER_WITH_UNIT.match(text)
    if match is None:
        return None, "is not a number"
    unit = match.group(2).replace(" ", "")
    if unit not in units:
        return None, f"unit {match.group(2)!r} is not one of {sorted(units)}"
    return float(match.group(1)) * units[unit], None


def _parse_datetime(text: str, formats) -> str | None:
    """ISO 8601 ("2016-06-13T17:06:40") from the first format that matches `text`, else None."""
    for fmt in formats:
        try:
            return datetime.strptime(" ".join(text.split()), fmt).isoformat()
        except ValueError:
            continue
    return None

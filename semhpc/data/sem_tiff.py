"""Read one SEM image as a 2-D uint8 array plus vendor metadata normalised to SI units.

`read_sem_tiff(path)` returns a `SemImage`; `read_metadata(path)` returns the same `meta`, `raw`
and warnings without decoding pixels. Anything unreadable raises `SemReadError` with the one-line
message "<path>: <reason>". The rules, and why:

Which pixels
  * The first page that is not a reduced-resolution thumbnail (NewSubfileType bit 0) and is the
    largest; other pages are skipped with a warning. SEM images are single frames, extra pages
    are previews or overlays.
  * FEI appends a data bar (scale bar, HV, mag printed as pixels) below the scanned image. It is
    not sample, so the rows below the height FEI declares ([Image] ResolutionY, else the page
    height minus [PrivateFei] DatabarHeight) are cut; `meta["source_height"]` keeps the page
    height (None when nothing was cut). A declared height that does not fit is ignored, warned.
  * Zeiss draws its data zone over the bottom rows of the image itself and records no height for
    it, so Zeiss images are kept whole, data zone included (as in the Zeiss sample).

Intensity mapping to uint8
  * uint8: unchanged.
  * uint16: the high byte (value >> 8), i.e. 0..65535 maps linearly onto 0..255. This is exactly
    the instrument's own 8-bit export (the real FEI Helios 16-bit sample is its 8-bit twin times
    256; a test checks the round trip). It keeps the contrast the operator set at the microscope
    and maps equal values to equal bytes in every image; a per-image percentile stretch would
    make a dim sample look like a bright one and turn a blank or flat image into amplified noise.
    Cost: a 16-bit file holding only 12 significant bits comes out dark.
  * Palette (Zeiss stores gray as 8-bit indices into a gray-ramp colour map): the map is applied
    (high byte of its 16-bit entries), then handled as RGB.
  * RGB (alpha ignored): identical channels (gray saved as colour, common in the archive) give
    that channel; otherwise ITU-R BT.601 luma round(0.299 R + 0.587 G + 0.114 B), with a warning.
  * Gray with extra samples: the first sample. MINISWHITE gray is inverted so 0 is black.
  * Any other dtype (bool, signed or 32-bit integers, float, complex) raises "unsupported dtype X".
    Floats are refused even within [0, 1]: a float SEM file is processed data whose intended
    range we cannot know, and guessing would silently change contrast.

Limits, checked from the header before any pixel is decoded
  * Each side at least MIN_SIDE pixels: smaller files are icons or broken exports, not
    micrographs a CNN can learn from.
  * At most MAX_PIXELS pixels: protects memory on shared login nodes (a 100 MP uint16 RGB page
    already needs 600 MB to decode). Change the constant if your instrument writes larger frames.

Compression
  * Uncompressed, Deflate and PackBits TIFFs decode with tifffile alone; LZW and JPEG need the
    optional `imagecodecs` package, and without it the file is refused with a reason saying so.

Other formats
  * PNG and JPEG (e.g. the archive's JPEG previews, or a PNG renamed .tif) are accepted through
    Pillow, with `vendor: None` and a warning, because they carry no SEM metadata. Every other
    file is refused by its first bytes, whatever its extension.

Paths
  * `SemImage.path` is `os.fsdecode(path)`, so a non-UTF-8 name keeps its surrogate escapes and
    still opens. Text meant for people or JSON must use `semhpc.utils.paths.display_path(path)`, which shows such
    bytes as "\\xe9" and never fails to encode.
"""

from __future__ import annotations

import contextlib
import logging
import os
from dataclasses import dataclass
from typing import Callable, Iterator

import numpy as np

from semhpc.data.sem_metadata import (
    declared_image_height,
    decode_block,
    parse_fei_ini,
    parse_zeiss_cz_sem,
    vendor_fields,
)
from semhpc.utils.errors import SemhpcError
from semhpc.utils.files import NotRegularFile, open_regular
from semhpc.utils.options import MIN_SIDE
from semhpc.utils.paths import display_path

MAX_PIXELS = 100_000_000
SUPPORTED_DTYPES = ("uint8", "uint16")

FEI_TAGS = (34682, 34680)  # FEI_HELIOS, FEI_SFEG: the same ini text
ZEISS_TAG = 34118  # CZ_SEM
TIFF_TEXT_TAGS = {270: "ImageDescription", 271: "Make", 272: "Model", 305: "Software", 306: "DateTime"}

_FILE_SIGNATURES = (
    (b"II*\x00", "tiff"),
    (b"MM\x00*", "tiff"),
    (b"II+\x00", "tiff"),  # BigTIFF
    (b"MM\x00+", "tiff"),
    (b"\x89PNG\r\n\x1a\n", "png"),
    (b"\xff\xd8\xff", "jpeg"),
)
BT601_LUMA = np.array([0.299, 0.587, 0.114])

# Pillow mode -> numpy dtype name of the decoded samples; gray modes need no colour conversion.
_PILLOW_DTYPES = {"1": "bool", "L": "uint8", "LA": "uint8", "P": "uint8", "PA": "uint8", "RGB": "uint8",
                  "RGBA": "uint8", "CMYK": "uint8", "YCbCr": "uint8", "I;16": "uint16", "I;16L": "uint16",
                  "I;16B": "uint16", "I": "int32", "F": "float32"}
_PILLOW_GRAY_MODES = ("L", "LA", "I;16", "I;16L", "I;16B")


@dataclass
class SemImage:
    pixels: np.ndarray  # 2-D uint8 (H, W), data bar removed, intensity-mapped
    meta: dict  # normalised fields (None where unknown), JSON-serialisable
    raw: dict  # raw vendor block(s) as strings, JSON-serialisable
    warnings: list[str]
    path: str


class SemReadError(SemhpcError):
    """An image file that cannot be read; str() is the one line "<path>: <reason>"."""

    def __init__(self, path, reason: str):
        self.path = display_path(path)
        self.reason = " ".join(str(reason).split())
        super().__init__(f"{self.path}: {self.reason}")


def read_sem_tiff(path) -> SemImage:
    """The image's pixels as 2-D uint8 (rules in the module docstring), its metadata and warnings."""
    warnings: list[str] = []
    with _open_frame(path, warnings) as frame:
        meta = _normalised_meta(frame, warnings)
        with _errors_as_sem_read_error(path, "decoding pixels"):
            samples, is_colour = frame.decode()
        pixels = _to_gray_uint8(samples[: meta["height"]], is_colour, warnings)
    return SemImage(pixels, meta, frame.raw, warnings, os.fsdecode(path))


def read_metadata(path) -> tuple[dict, dict, list[str]]:
    """(meta, raw, warnings) as `read_sem_tiff` gives them, without decoding pixels.

    Only warnings that need the pixels (a colour image converted to gray) are missing here.
    """
    warnings: list[str] = []
    with _open_frame(path, warnings) as frame:
        meta = _normalised_meta(frame, warnings)
    return meta, frame.raw, warnings


# ---------------------------------------------------------------------------------------------
# Finding the image in the file (header only)


@dataclass
class _Frame:
    """The chosen image of a file, described from its header before any pixel is decoded."""

    format: str  # "tiff", "png" or "jpeg"
    width: int
    page_height: int  # rows in the file, data bar included
    dtype: str  # of the stored samples, e.g. "uint16"
    raw: dict
    decode: Callable[[], tuple[np.ndarray, bool]]  # -> samples (H, W) or (H, W, S), is_colour


@contextlib.contextmanager
def _open_frame(path, warnings: list[str]) -> Iterator[_Frame]:
    with contextlib.ExitStack() as stack:
        stack.enter_context(_tifffile_log_as_warnings(warnings))
        handle = stack.enter_context(_open_binary(path))
        file_format = _sniff_format(handle, path)
        with _errors_as_sem_read_error(path, f"reading the {file_format.upper()} header"):
            if file_format == "tiff":
                import tifffile

                tif = stack.enter_context(tifffile.TiffFile(handle))
                frame = _tiff_frame(tif, os.fstat(handle.fileno()).st_size, path, warnings)
            else:
                from PIL import Image

                frame = _pillow_frame(stack.enter_context(Image.open(handle)), file_format, path, warnings)
        yield frame


def _open_binary(path):
    try:  # a str name even for bytes paths (tifffile needs one); a FIFO or device is refused unread
        return open_regular(path)
    except NotRegularFile as exc:
        raise SemReadError(path, exc.strerror) from None
    except OSError as exc:
        raise SemReadError(path, f"cannot open: {exc.strerror or exc}") from exc


def _sniff_format(handle, path) -> str:
    """"tiff", "png" or "jpeg" from the file's first bytes; the extension is not trusted."""
    head = handle.read(8)
    handle.seek(0)
    if not head:
        raise SemReadError(path, "empty file (0 bytes)")
    for signature, file_format in _FILE_SIGNATURES:
        if head.startswith(signature):
            return file_format
    raise SemReadError(path, f"not a TIFF, PNG or JPEG file (starts with {head[:4]!r})")


def _tiff_frame(tif, file_size: int, path, warnings: list[str]) -> _Frame:
    page = _choose_page(tif, path, warnings)
    _check_size(page.imagewidth, page.imagelength, path)
    dtype = _check_dtype("unknown" if page.dtype is None else np.dtype(page.dtype).name, path)
    _check_tiff_layout(page, path)
    _check_data_in_file(page, file_size, path)
    raw = _tiff_raw_blocks(page, tif.filehandle)
    return _Frame("tiff", page.imagewidth, page.imagelength, dtype, raw, lambda: _decode_tiff_page(page))


def _choose_page(tif, path, warnings: list[str]):
    """The largest page that is not a reduced-resolution thumbnail (the first one on ties)."""
    pages = list(tif.pages)
    if not pages:
        raise SemReadError(path, "TIFF holds no image page")
    full_resolution = [page for page in pages if not page.subfiletype & 1] or pages
    chosen = max(full_resolution, key=lambda page: page.imagewidth * page.imagelength)
    if len(pages) > 1:
        warnings.append(f"{len(pages) - 1} extra page(s) skipped; read page {pages.index(chosen)} "
                        f"({chosen.imagewidth}x{chosen.imagelength})")
    return chosen


def _check_size(width: int, height: int, path) -> None:
    if width < MIN_SIDE or height < MIN_SIDE:
        raise SemReadError(path, f"image too small ({width}x{height}); need at least {MIN_SIDE}x{MIN_SIDE}")
    if width * height > MAX_PIXELS:
        raise SemReadError(path, f"image too large ({width}x{height} = {width * height / 1e6:.1f} megapixels); "
                                 f"the limit is {MAX_PIXELS / 1e6:g} megapixels (MAX_PIXELS in {__name__})")


def _check_dtype(dtype: str, path) -> str:
    if dtype not in SUPPORTED_DTYPES:
        raise SemReadError(path, f"unsupported dtype {dtype} (supported: {', '.join(SUPPORTED_DTYPES)})")
    return dtype


def _check_tiff_layout(page, path) -> None:
    from tifffile import COMPRESSION, PHOTOMETRIC, TIFF

    photometric = getattr(page.photometric, "name", page.photometric)
    accepted = {PHOTOMETRIC.MINISBLACK, PHOTOMETRIC.MINISWHITE, PHOTOMETRIC.RGB, PHOTOMETRIC.PALETTE}
    jpeg_ycbcr = page.photometric == PHOTOMETRIC.YCBCR and page.compression == COMPRESSION.JPEG  # decoded as RGB
    if page.photometric not in accepted and not jpeg_ycbcr:
        raise SemReadError(path, f"unsupported photometric interpretation {photometric}")
    if page.photometric == PHOTOMETRIC.PALETTE and page.colormap is None:
        raise SemReadError(path, "palette image without a colour map")
    if page.imagedepth > 1:
        raise SemReadError(path, f"volume page ({page.imagedepth} slices) is not a 2-D image")
    if page.compression not in TIFF.DECOMPRESSORS:
        # LZW and JPEG decoders come from the optional imagecodecs package
        compression = getattr(page.compression, "name", page.compression)
        raise SemReadError(path, f"{compression}-compressed TIFF needs the 'imagecodecs' package, "
                                 "which is not installed")


def _check_data_in_file(page, file_size: int, path) -> None:
    end = max((offset + count for offset, count in zip(page.dataoffsets, page.databytecounts) if count),
              default=0)
    if end > file_size:
        raise SemReadError(path, f"truncated file: pixel data ends at byte {end} but the file has {file_size} bytes")


def _tiff_raw_blocks(page, filehandle) -> dict:
    """The standard text tags and the vendor blocks of `page`, every value a string."""
    raw: dict = {}
    text_tags = {name: page.tags[code].value for code, name in TIFF_TEXT_TAGS.items() if code in page.tags}
    text_tags = {name: value for name, value in text_tags.items() if isinstance(value, str)}
    if text_tags:
        raw["tiff"] = text_tags
    fei_tag = next((page.tags[code] for code in FEI_TAGS if code in page.tags), None)
    if fei_tag is not None:
        raw["fei"] = parse_fei_ini(decode_block(_tag_bytes(fei_tag, filehandle)))
    if ZEISS_TAG in page.tags:
        raw["zeiss"] = parse_zeiss_cz_sem(decode_block(_tag_bytes(page.tags[ZEISS_TAG], filehandle)))
    return raw


def _tag_bytes(tag, filehandle) -> bytes:
    """The tag's stored bytes; tifffile's parsed value would retype numbers and booleans."""
    filehandle.seek(tag.valueoffset)
    return filehandle.read(tag.valuebytecount)


def _pillow_frame(image, file_format: str, path, warnings: list[str]) -> _Frame:
    width, height = image.size
    _check_size(width, height, path)
    dtype = _check_dtype(_PILLOW_DTYPES.get(image.mode, f"of Pillow mode {image.mode}"), path)
    warnings.append(f"{file_format.upper()} file, not TIFF: no vendor metadata")
    return _Frame(file_format, width, height, dtype, {}, lambda: _decode_pillow(image, dtype))


# ---------------------------------------------------------------------------------------------
# Pixels


def _decode_tiff_page(page) -> tuple[np.ndarray, bool]:
    from tifffile import PHOTOMETRIC

    samples = page.asarray()
    if "S" in page.axes:
        samples = np.moveaxis(samples, page.axes.index("S"), -1)
    if page.photometric == PHOTOMETRIC.PALETTE:
        return np.moveaxis((page.colormap >> 8).astype(np.uint8)[:, samples], 0, -1), True
    if page.photometric == PHOTOMETRIC.MINISWHITE:
        samples = np.iinfo(samples.dtype).max - samples
    return samples, page.photometric in (PHOTOMETRIC.RGB, PHOTOMETRIC.YCBCR)


def _decode_pillow(image, dtype: str) -> tuple[np.ndarray, bool]:
    is_colour = image.mode not in _PILLOW_GRAY_MODES
    if is_colour and image.mode not in ("RGB", "RGBA"):
        image = image.convert("RGB")
    return np.asarray(image).astype(dtype, copy=False), is_colour


def _to_gray_uint8(samples: np.ndarray, is_colour: bool, warnings: list[str]) -> np.ndarray:
    gray = _one_channel(samples, is_colour, warnings)
    if gray.dtype == np.uint16:
        gray = (gray >> 8).astype(np.uint8)
    return np.ascontiguousarray(gray)


def _one_channel(samples: np.ndarray, is_colour: bool, warnings: list[str]) -> np.ndarray:
    if samples.ndim == 2:
        return samples
    if not is_colour:
        return samples[..., 0]
    red, green, blue = samples[..., 0], samples[..., 1], samples[..., 2]
    if np.array_equal(red, green) and np.array_equal(red, blue):
        return red
    warnings.append("colour image (channels differ): converted to gray with ITU-R BT.601 luma "
                    "0.299 R + 0.587 G + 0.114 B")
    return np.rint(samples[..., :3] @ BT601_LUMA).astype(samples.dtype)


# ---------------------------------------------------------------------------------------------
# Metadata


def _normalised_meta(frame: _Frame, warnings: list[str]) -> dict:
    fields = vendor_fields(frame.raw, frame.width, warnings)
    height = _rows_to_keep(frame, warnings)
    return {
        "vendor": fields.pop("vendor"),
        "model": fields.pop("model"),
        "format": frame.format,
        "width": frame.width,
        "height": height,
        "source_height": frame.page_height if height < frame.page_height else None,
        "dtype": frame.dtype,
        **fields,
    }


def _rows_to_keep(frame: _Frame, warnings: list[str]) -> int:
    """Rows above the vendor's data bar; all rows when none is declared or the value is implausible."""
    declared = declared_image_height(frame.raw, frame.page_height, warnings)
    if declared is None or declared == frame.page_height:
        return frame.page_height
    if MIN_SIDE <= declared < frame.page_height:
        return declared
    warnings.append(f"declared image height {declared} does not fit the {frame.page_height}-row page; "
                    "no data bar cut")
    return frame.page_height


class _ListHandler(logging.Handler):
    def __init__(self, messages: list[str]):
        super().__init__()
        self.messages = messages

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append("tifffile: " + " ".join(record.getMessage().split()))


@contextlib.contextmanager
def _tifffile_log_as_warnings(warnings: list[str]):
    """tifffile logs the damage it works around (a bad tag, a broken page chain); keep those lines
    with the image's warnings, where ingest records them, instead of on stderr."""
    logger = logging.getLogger("tifffile")
    handler, propagate = _ListHandler(warnings), logger.propagate
    logger.addHandler(handler)
    logger.propagate = False
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.propagate = propagate


@contextlib.contextmanager
def _errors_as_sem_read_error(path, doing: str):
    """Turn any reader exception into SemReadError: tifffile and Pillow raise many types on bad files."""
    try:
        yield
    except SemReadError:
        raise
    except Exception as exc:
        raise SemReadError(path, f"{doing} failed: {type(exc).__name__}: {exc}") from exc

"""SEM reader: real FEI/Zeiss samples, generated vendor files, intensity mapping, bad input, `semhpc inspect`.

Expected values come from the fixture constants (sem_fixtures), from tifffile's independent
parse of the real samples, or from the rules documented in semhpc/data/sem_tiff.py.
"""

import errno
import json
import os
import re

import numpy as np
import pytest
import tifffile

from sem_fixtures import (
    REAL_SAMPLES,
    ZEISS_PARAMS,
    fei_sections,
    gradient,
    write_fei_tiff,
    write_generic_tiff,
    write_header_only_tiff,
    write_multipage_tiff,
    write_pillow_image,
    write_tiff_with_unknown_tag_type,
    write_zeiss_tiff,
)
from semhpc.cli import main as semhpc_main
from semhpc.data.sem_tiff import MAX_PIXELS, MIN_SIDE, SemReadError, read_metadata, read_sem_tiff
from semhpc.utils import files
from semhpc.utils.paths import display_path

needs_samples = pytest.mark.skipif(not REAL_SAMPLES.is_dir(), reason=f"real SEM samples not found at {REAL_SAMPLES}")

META_KEYS = {"vendor", "model", "format", "width", "height", "source_height", "dtype", "pixel_size_m",
             "magnification", "hv_volts", "working_distance_m", "detector", "acquired_at"}


def read_both(path):
    """read_sem_tiff, after checking read_metadata gives the same meta, raw and header warnings."""
    image = read_sem_tiff(path)
    meta, raw, warnings = read_metadata(path)
    assert (meta, raw) == (image.meta, image.raw)
    assert warnings == [w for w in image.warnings if "ITU-R BT.601" not in w]  # that one needs pixels
    assert set(image.meta) == META_KEYS
    json.dumps([image.meta, image.raw])  # JSON-serialisable as promised
    assert image.pixels.dtype == np.uint8 and image.pixels.ndim == 2
    assert image.pixels.shape == (image.meta["height"], image.meta["width"])
    return image


# ---------------------------------------------------------------------------------------------
# Real instrument files


@needs_samples
@pytest.mark.parametrize("name", ["FEI-Helios-Ebeam-8bits.tif", "FEI-Helios-Ebeam-16bits.tif"])
def test_real_fei_sample(name):
    path = REAL_SAMPLES / name
    with tifffile.TiffFile(path) as tif:
        page, fei = tif.pages[0].asarray(), tif.fei_metadata
    rows = fei["Image"]["ResolutionY"]
    assert rows + fei["PrivateFei"]["DatabarHeight"] == page.shape[0]  # the bar sits below the image

    image = read_both(path)

    expected = page[:rows] if page.dtype == np.uint8 else page[:rows] >> 8
    np.testing.assert_array_equal(image.pixels, expected)
    assert (image.meta["height"], image.meta["source_height"], image.meta["width"]) == (rows, page.shape[0], 512)
    assert image.meta["dtype"] == page.dtype.name
    assert image.meta["vendor"] == "FEI" and image.meta["model"] == fei["System"]["SystemType"]
    assert image.meta["pixel_size_m"] == fei["Scan"]["PixelWidth"]
    assert image.meta["hv_volts"] == fei["Beam"]["HV"]
    assert image.meta["working_distance_m"] == fei["Stage"]["WorkingDistance"]
    assert image.meta["detector"] == fei["Detectors"]["Name"]
    assert image.meta["magnification"] == pytest.approx(120, rel=1e-3)  # the data bar reads "mag 120 x"
    assert image.meta["acquired_at"] == "2016-06-13T17:06:40"  # [User] 06/13/2016 05:06:40 PM
    assert image.raw["fei"]["Beam"]["HV"] == str(fei["Beam"]["HV"])
    assert image.warnings == []


@needs_samples
def test_uint16_mapping_reproduces_the_instruments_own_8bit_export(tmp_path):
    # Whole pages (bar included, the only non-blank rows of these samples) as plain TIFFs.
    page8 = tifffile.imread(REAL_SAMPLES / "FEI-Helios-Ebeam-8bits.tif")
    page16 = tifffile.imread(REAL_SAMPLES / "FEI-Helios-Ebeam-16bits.tif")
    assert len(np.unique(page16)) > 10
    write_generic_tiff(tmp_path / "p8.tif", page8)
    write_generic_tiff(tmp_path / "p16.tif", page16)
    np.testing.assert_array_equal(read_sem_tiff(tmp_path / "p16.tif").pixels, page8)
    np.testing.assert_array_equal(read_sem_tiff(tmp_path / "p8.tif").pixels, page8)


@needs_samples
def test_real_zeiss_sample():
    path = REAL_SAMPLES / "test_tiff_Zeiss_SEM_1k.tif"
    with tifffile.TiffFile(path) as tif:
        page = tif.pages[0]
        indices, colormap, sem = page.asarray(), page.colormap, tif.sem_metadata

    image = read_both(path)

    np.testing.assert_array_equal(image.pixels, (colormap[0] >> 8)[indices])  # gray ramp: R = G = B
    assert (colormap[0] == colormap[1]).all() and (colormap[0] == colormap[2]).all()
    meta = image.meta
    assert (meta["vendor"], meta["width"], meta["height"], meta["source_height"]) == ("Zeiss", 1024, 768, None)
    assert meta["model"] == sem["sv_serial_number"][1]
    assert sem["ap_image_pixel_size"][2] == "µm" and sem["ap_wd"][2] == "mm" and sem["ap_actualkv"][2] == "kV"
    assert meta["pixel_size_m"] == pytest.approx(sem["ap_image_pixel_size"][1] * 1e-6)
    assert meta["working_distance_m"] == pytest.approx(sem["ap_wd"][1] * 1e-3)
    assert meta["hv_volts"] == pytest.approx(sem["ap_actualkv"][1] * 1e3)
    assert sem["ap_mag"][2] == "X" and meta["magnification"] == sem["ap_mag"][1]
    assert meta["detector"] == sem["dp_detector_type"][1]
    assert meta["acquired_at"] == "2015-12-23T09:40:32"  # Date :23 Dec 2015, Time :9:40:32
    assert "105" in image.raw["zeiss"]["params"]["ap_mag"]
    assert image.warnings == []


# ---------------------------------------------------------------------------------------------
# Generated FEI files


# What the reader must make of sem_fixtures.FEI_SECTIONS on a 64 x 48 image with an 8-row bar.
FEI_FIXTURE_META = {
    "vendor": "FEI", "model": "Helios NanoLab 660", "format": "tiff", "width": 64, "height": 48,
    "source_height": 56, "dtype": "uint8", "pixel_size_m": 2e-08, "magnification": pytest.approx(0.128 / 1.28e-06),
    "hv_volts": 5000.0, "working_distance_m": 0.00403466, "detector": "TLD", "acquired_at": "2016-06-13T17:06:40",
}


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
def test_fei_file_loses_its_data_bar_and_gets_si_fields(tmp_path, dtype):
    original = gradient(48, 64, dtype)
    write_fei_tiff(tmp_path / "fei.tif", original, bar_rows=8)

    image = read_both(tmp_path / "fei.tif")

    np.testing.assert_array_equal(image.pixels, original if dtype == np.uint8 else original >> 8)
    assert image.meta == {**FEI_FIXTURE_META, "dtype": np.dtype(dtype).name}
    assert image.warnings == []


def test_fei_bar_height_from_databarheight_when_resolution_y_is_missing(tmp_path):
    original = gradient(40, 32)
    write_fei_tiff(tmp_path / "fei.tif", original, bar_rows=12,
                   sections=fei_sections(Image={"ResolutionY": None}, PrivateFei={"DatabarHeight": "12"}))
    image = read_both(tmp_path / "fei.tif")
    np.testing.assert_array_equal(image.pixels, original)
    assert image.meta["source_height"] == 52


@pytest.mark.parametrize("resolution_y", ["60", "4", "0", "forty"])
def test_implausible_fei_image_height_keeps_every_row(tmp_path, resolution_y):
    page = write_fei_tiff(tmp_path / "fei.tif", gradient(40, 32), bar_rows=8,
                          sections=fei_sections(Image={"ResolutionY": resolution_y}, PrivateFei=None))
    image = read_both(tmp_path / "fei.tif")
    np.testing.assert_array_equal(image.pixels, page)
    assert image.meta["height"] == 48 and image.meta["source_height"] is None
    assert any("ResolutionY" in w or "does not fit" in w for w in image.warnings)


@pytest.mark.parametrize("changes, expected_changes, warning", [
    # a bad value falls back to the next place FEI stores the same quantity
    ({"Beam": {"HV": "abc"}}, {}, "[Beam] HV='abc': is not a number"),
    ({"Stage": {"WorkingDistance": "-1"}}, {"working_distance_m": 0.0041}, "is not a positive number"),
    ({"User": {"Date": "13/06/2016"}}, {}, None),  # not US order: [PrivateFei] TimeOfCreation is used
    # nothing to fall back to: the field is None and a warning names the key
    ({"Scan": None}, {"pixel_size_m": None}, "pixel_size_m unknown"),  # magnification uses [EBeam] HFW
    ({"Beam": {"HV": "nan"}, "EBeam": {"HV": None}}, {"hv_volts": None}, "[Beam] HV='nan'"),
    ({"Image": {"MagCanvasRealWidth": ""}}, {"magnification": None}, "MagCanvasRealWidth missing or empty"),
    ({"Detectors": None}, {"detector": None}, "[Detectors] Name"),
    ({"System": None}, {"model": None}, "[System] SystemType"),
    ({"User": {"Date": "soon"}, "PrivateFei": {"TimeOfCreation": None}}, {"acquired_at": None}, "'soon"),
])
def test_malformed_fei_metadata_nulls_only_the_affected_field(tmp_path, changes, expected_changes, warning):
    original = gradient(48, 64)
    write_fei_tiff(tmp_path / "fei.tif", original, sections=fei_sections(**changes))

    image = read_both(tmp_path / "fei.tif")

    np.testing.assert_array_equal(image.pixels, original)  # the image is always read
    assert image.meta == {**FEI_FIXTURE_META, **expected_changes}
    if warning is None:
        assert image.warnings == []
    else:
        assert len(image.warnings) == 1 and warning in image.warnings[0], image.warnings


def test_garbage_fei_block_still_reads_the_image(tmp_path):
    original = gradient(32, 32)
    tifffile.imwrite(tmp_path / "fei.tif", original, extratags=[(34682, "B", 0, bytes(range(256)) * 3, True)])
    image = read_both(tmp_path / "fei.tif")
    np.testing.assert_array_equal(image.pixels, original)
    assert image.meta["vendor"] == "FEI" and image.meta["pixel_size_m"] is None and image.meta["height"] == 32
    assert any("pixel_size_m unknown" in w for w in image.warnings)


# ---------------------------------------------------------------------------------------------
# Generated Zeiss and generic files


# What the reader must make of sem_fixtures.ZEISS_PARAMS on a 40 x 24 image.
ZEISS_FIXTURE_META = {
    "vendor": "Zeiss", "model": "Sigma-03-12", "format": "tiff", "width": 40, "height": 24, "source_height": None,
    "dtype": "uint8", "magnification": pytest.approx(25_000),  # "25.00 K X"
    "pixel_size_m": pytest.approx(4.467e-9),  # "4.467 nm"
    "hv_volts": pytest.approx(3000),  # "3.00 kV"
    "working_distance_m": pytest.approx(5.1e-3),  # "5.1 mm"
    "detector": "InLens", "acquired_at": "2019-03-07T14:02:07",  # "7 Mar 2019", "14:02:07"
}


def test_zeiss_file_units_are_converted_to_si(tmp_path):
    original = gradient(24, 40)
    write_zeiss_tiff(tmp_path / "zeiss.tif", original)
    image = read_both(tmp_path / "zeiss.tif")
    np.testing.assert_array_equal(image.pixels, original)
    assert image.meta == ZEISS_FIXTURE_META
    assert image.raw["zeiss"]["params"]["ap_mag"] == ZEISS_PARAMS["ap_mag"]
    assert image.warnings == []


@pytest.mark.parametrize("changes, expected_changes, warning", [
    ({"ap_actualkv": "EHT = abc kV"}, {"hv_volts": pytest.approx(25_000)}, "ap_actualkv='abc kV': is not a number"),
    ({"ap_wd": "WD = 5 furlong"}, {"working_distance_m": None}, "unit 'furlong'"),
    ({"ap_image_pixel_size": "Image Pixel Size = 2.5 µm"}, {"pixel_size_m": pytest.approx(2.5e-6)}, None),
    ({"ap_mag": None}, {"magnification": None}, "ap_mag missing"),
    ({"ap_date": None}, {"acquired_at": None}, "ap_date"),
    ({"sv_serial_number": None}, {"model": "Gemini"}, None),  # dp_column_type
])
def test_malformed_zeiss_metadata_nulls_only_the_affected_field(tmp_path, changes, expected_changes, warning):
    params = {key: line for key, line in {**ZEISS_PARAMS, **changes}.items() if line is not None}
    write_zeiss_tiff(tmp_path / "zeiss.tif", gradient(24, 40), params)
    image = read_both(tmp_path / "zeiss.tif")
    assert image.meta == {**ZEISS_FIXTURE_META, **expected_changes}
    if warning is None:
        assert image.warnings == []
    else:
        assert len(image.warnings) == 1 and warning in image.warnings[0], image.warnings


@pytest.mark.parametrize("tags, width, pixel_size", [
    ({"ap_image_pixel_size": "Image Pixel Size = 8.934 nm", "ap_pixel_size": "Pixel Size = 4.467 nm"}, 512, 8.934e-9),
    ({"ap_pixel_size": "Pixel Size = 4.467 nm"}, 512, 8.934e-9),  # older SmartSEM: for a 1024-wide frame
    ({"ap_pixel_size": "Pixel Size = 4.467 nm"}, 2048, 2.2335e-9),
    ({"ap_pixel_size": "Pixel Size = 4.467 nm"}, 1024, 4.467e-9),
])
def test_zeiss_pixel_size_refers_to_the_image_width(tmp_path, tags, width, pixel_size):
    params = {key: line for key, line in ZEISS_PARAMS.items() if key != "ap_image_pixel_size"}
    write_zeiss_tiff(tmp_path / "zeiss.tif", gradient(16, width), {**params, **tags})
    image = read_both(tmp_path / "zeiss.tif")
    assert image.meta["pixel_size_m"] == pytest.approx(pixel_size)
    assert image.warnings == []


def test_zeiss_without_any_pixel_size_warns_once(tmp_path):
    params = {key: line for key, line in ZEISS_PARAMS.items() if key != "ap_image_pixel_size"}
    write_zeiss_tiff(tmp_path / "zeiss.tif", gradient(16, 40), params)
    image = read_both(tmp_path / "zeiss.tif")
    assert image.meta["pixel_size_m"] is None
    assert image.warnings == ["pixel_size_m unknown: Zeiss ap_image_pixel_size and Zeiss ap_pixel_size "
                              "missing or empty"]


def test_unknown_vendor_gives_generic_fields(tmp_path):
    original = gradient(20, 30)
    write_generic_tiff(tmp_path / "plain.tif", original, datetime="2021:05:04 10:11:12",
                       extratags=[(271, "s", 0, "Hitachi", True), (272, "s", 0, "S-4800", True)])
    image = read_both(tmp_path / "plain.tif")
    np.testing.assert_array_equal(image.pixels, original)
    assert image.meta == {
        "vendor": None, "model": "Hitachi S-4800", "format": "tiff", "width": 30, "height": 20,
        "source_height": None, "dtype": "uint8", "pixel_size_m": None, "magnification": None, "hv_volts": None,
        "working_distance_m": None, "detector": None, "acquired_at": "2021-05-04T10:11:12",
    }
    assert image.warnings == []


def test_damage_tifffile_works_around_becomes_a_warning_not_stderr(tmp_path, capfd):
    original = gradient(16, 16)
    write_tiff_with_unknown_tag_type(tmp_path / "odd.tif", original)
    image = read_both(tmp_path / "odd.tif")
    np.testing.assert_array_equal(image.pixels, original)
    assert any(w.startswith("tifffile: ") and "invalid data type" in w for w in image.warnings), image.warnings
    assert capfd.readouterr().err == ""


def test_multipage_reads_the_largest_full_resolution_page(tmp_path):
    main_page = gradient(32, 40, seed=1)
    write_multipage_tiff(tmp_path / "multi.tif", [
        (gradient(48, 60, seed=2), 1),  # bigger, but flagged as reduced-resolution: skipped
        (main_page, 0),
        (gradient(16, 16, seed=3), 0),
    ])
    image = read_both(tmp_path / "multi.tif")
    np.testing.assert_array_equal(image.pixels, main_page)
    assert any("2 extra page(s) skipped; read page 1" in w for w in image.warnings)


# ---------------------------------------------------------------------------------------------
# Intensity mapping


def test_uint16_maps_by_high_byte(tmp_path):
    original = np.zeros((16, 16), np.uint16)
    original[0, :4] = [0, 255, 256, 65535]
    write_generic_tiff(tmp_path / "u16.tif", original)
    assert read_sem_tiff(tmp_path / "u16.tif").pixels[0, :4].tolist() == [0, 0, 1, 255]


@pytest.mark.parametrize("planarconfig", ["contig", "separate"])
def test_gray_stored_as_rgb_gives_that_gray(tmp_path, planarconfig):
    gray = gradient(20, 24)
    rgb = np.stack([gray] * 3, axis=-1 if planarconfig == "contig" else 0)
    write_generic_tiff(tmp_path / "rgb.tif", rgb, photometric="rgb", planarconfig=planarconfig)
    image = read_both(tmp_path / "rgb.tif")
    np.testing.assert_array_equal(image.pixels, gray)
    assert image.warnings == []


def test_colour_image_becomes_bt601_luma_with_a_warning(tmp_path):
    rgb = np.stack([gradient(16, 16, seed=s) for s in range(3)], axis=-1)
    write_generic_tiff(tmp_path / "colour.tif", rgb, photometric="rgb")
    image = read_both(tmp_path / "colour.tif")
    red, green, blue = (rgb[..., i].astype(float) for i in range(3))
    np.testing.assert_array_equal(image.pixels, np.rint(0.299 * red + 0.587 * green + 0.114 * blue))
    assert any("ITU-R BT.601" in w for w in image.warnings)


def test_palette_colour_map_is_applied(tmp_path):
    indices = gradient(16, 16)
    inverted_ramp = (255 - np.arange(256, dtype=np.uint16)) * 257
    write_generic_tiff(tmp_path / "palette.tif", indices, photometric="palette",
                       colormap=np.stack([inverted_ramp] * 3))
    np.testing.assert_array_equal(read_both(tmp_path / "palette.tif").pixels, 255 - indices)


def test_rgba_alpha_is_ignored_and_miniswhite_is_inverted(tmp_path):
    gray = gradient(16, 16)
    rgba = np.stack([gray, gray, gray, np.zeros_like(gray)], axis=-1)
    write_generic_tiff(tmp_path / "rgba.tif", rgba, photometric="rgb", extrasamples=["unassalpha"])
    np.testing.assert_array_equal(read_sem_tiff(tmp_path / "rgba.tif").pixels, gray)
    write_generic_tiff(tmp_path / "white.tif", gray, photometric="miniswhite")
    np.testing.assert_array_equal(read_sem_tiff(tmp_path / "white.tif").pixels, 255 - gray)


def test_lzw_tiff_is_decoded_or_refused_naming_the_missing_package(tmp_path):
    from PIL import Image

    original = gradient(32, 32)
    Image.fromarray(original).save(tmp_path / "lzw.tif", compression="tiff_lzw")
    try:
        import imagecodecs  # noqa: F401  (tifffile's LZW decoder)
    except ImportError:
        with pytest.raises(SemReadError, match="LZW-compressed TIFF needs the 'imagecodecs' package"):
            read_metadata(tmp_path / "lzw.tif")
    else:
        np.testing.assert_array_equal(read_both(tmp_path / "lzw.tif").pixels, original)


# ---------------------------------------------------------------------------------------------
# PNG / JPEG through Pillow


@pytest.mark.parametrize("file_format, name", [("PNG", "renamed.tif"), ("PNG", "x.png"), ("JPEG", "preview.jpg")])
def test_png_and_jpeg_are_read_without_vendor_metadata(tmp_path, file_format, name):
    smooth = np.add.outer(np.arange(32) * 4, np.arange(48) * 2).astype(np.uint8)  # JPEG-friendly
    write_pillow_image(tmp_path / name, smooth, file_format)
    image = read_both(tmp_path / name)
    assert image.meta["vendor"] is None and image.meta["format"] == file_format.lower()
    assert (image.meta["width"], image.meta["height"], image.raw) == (48, 32, {})
    assert any(f"{file_format} file, not TIFF" in w for w in image.warnings)
    if file_format == "PNG":
        np.testing.assert_array_equal(image.pixels, smooth)
    else:
        assert np.abs(image.pixels.astype(int) - smooth).mean() < 3  # lossy, but the same picture


def test_16bit_png_maps_like_16bit_tiff(tmp_path):
    original = gradient(16, 16, np.uint16)
    write_pillow_image(tmp_path / "deep.png", original, "PNG")
    image = read_both(tmp_path / "deep.png")
    assert image.meta["dtype"] == "uint16"
    np.testing.assert_array_equal(image.pixels, original >> 8)


# ---------------------------------------------------------------------------------------------
# Bad input: every failure is one SemReadError line naming the file


def write_truncated_tiff(path):
    write_generic_tiff(path, gradient(64, 64))
    os.truncate(path, os.path.getsize(path) // 2)


def write_broken_header(path):
    write_generic_tiff(path, gradient(64, 64))
    with open(path, "r+b") as handle:
        handle.seek(4)
        handle.write(b"\xff\xff\xff\x7f")  # first IFD far beyond the end of the file


BAD_FILES = {
    "zero-byte": (lambda p: open(p, "wb").close(), "empty file (0 bytes)"),
    "truncated pixel data": (write_truncated_tiff, "truncated file: pixel data ends at byte"),
    "no page": (write_broken_header, "TIFF holds no image page"),
    "text named .tif": (lambda p: open(p, "w").write("not an image\n"), "not a TIFF, PNG or JPEG file"),
    "float32": (lambda p: write_generic_tiff(p, np.zeros((32, 32), np.float32)), "unsupported dtype float32"),
    "complex64": (lambda p: write_generic_tiff(p, np.zeros((32, 32), np.complex64)), "unsupported dtype complex64"),
    "bool": (lambda p: write_generic_tiff(p, np.zeros((32, 32), bool)), "unsupported dtype bool"),
    "int16": (lambda p: write_generic_tiff(p, np.zeros((32, 32), np.int16)), "unsupported dtype int16"),
    "float PNG": (lambda p: write_pillow_image(p, np.zeros((32, 32), np.float32), "TIFF"),
                  "unsupported dtype float32"),
    "1x1": (lambda p: write_generic_tiff(p, np.zeros((1, 1), np.uint8)),
            f"image too small (1x1); need at least {MIN_SIDE}x{MIN_SIDE}"),
    "thin": (lambda p: write_generic_tiff(p, np.zeros((MIN_SIDE - 1, 500), np.uint8)), "image too small (500x15)"),
    # The header claims 4x the limit but holds no pixel: the refusal must come from the header.
    "huge": (lambda p: write_header_only_tiff(p, 20_000, MAX_PIXELS // 5_000), "image too large (20000x20000"),
    "directory": (lambda p: os.mkdir(p), "cannot open: Is a directory"),
    "missing": (lambda p: None, "cannot open: No such file or directory"),
}


@pytest.mark.parametrize("reader", [read_sem_tiff, read_metadata], ids=["read_sem_tiff", "read_metadata"])
@pytest.mark.parametrize("case", list(BAD_FILES))
def test_bad_input_raises_one_line_naming_the_file(tmp_path, case, reader):
    write, reason = BAD_FILES[case]
    path = tmp_path / "sample.tif"
    write(path)
    with pytest.raises(SemReadError) as caught:
        reader(path)
    message = str(caught.value)
    assert message.startswith(f"{path}: ") and reason in message
    assert "\n" not in message


def test_unreadable_file_is_reported(tmp_path, monkeypatch):
    path = tmp_path / "locked.tif"
    write_generic_tiff(path, gradient(16, 16))
    path.chmod(0)
    if os.geteuid() == 0:
        # root reads mode-000 files anyway; fail open() as the kernel does for everyone else
        def denied(file, *args, **kwargs):
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), file)

        monkeypatch.setattr(files, "open", denied, raising=False)  # the reader opens through utils.files
    with pytest.raises(SemReadError, match=r"locked\.tif: cannot open: Permission denied$"):
        read_sem_tiff(path)


def test_non_utf8_file_names_read_and_fail_printably(tmp_path, capsys):
    good = os.fsencode(tmp_path) + b"/caf\xe9.tif"
    bad = os.fsencode(tmp_path) + b"/bad\xff.tif"
    original = gradient(16, 16)
    write_generic_tiff(os.fsdecode(good), original)
    open(bad, "wb").close()

    image = read_sem_tiff(good)  # bytes path
    np.testing.assert_array_equal(image.pixels, original)
    assert os.fsencode(image.path) == good
    assert display_path(good).endswith("caf\\xe9.tif")
    with pytest.raises(SemReadError) as caught:
        read_sem_tiff(os.fsdecode(bad))  # str path with surrogate escapes, as os.listdir gives
    str(caught.value).encode("utf-8")  # printable: no lone surrogates
    assert "bad\\xff.tif: empty file" in str(caught.value)

    assert semhpc_main(["inspect", "--json", os.fsdecode(good), os.fsdecode(bad)]) == 1
    out, err = capsys.readouterr()
    records = json.loads(out)
    assert records[0]["path"].endswith("caf\\xe9.tif") and records[0]["width"] == 16
    assert records[1] == {"path": display_path(bad), "error": "empty file (0 bytes)"}
    assert err.count("\n") == 1 and "bad\\xff.tif" in err


# ---------------------------------------------------------------------------------------------
# semhpc inspect


def test_inspect_json_lists_records_and_failures(tmp_path, capsys):
    write_fei_tiff(tmp_path / "fei.tif", gradient(48, 64))
    write_zeiss_tiff(tmp_path / "zeiss.tif", gradient(16, 16))
    (tmp_path / "notes.tif").write_text("hello")

    code = semhpc_main(["inspect", "--json", str(tmp_path / "fei.tif"), str(tmp_path / "notes.tif"),
                        str(tmp_path / "zeiss.tif")])

    out, err = capsys.readouterr()
    records = json.loads(out)
    assert code == 1
    assert [r.get("vendor") for r in records] == ["FEI", None, "Zeiss"]
    assert records[0]["path"] == str(tmp_path / "fei.tif") and records[0]["source_height"] == 56
    assert META_KEYS | {"path", "warnings"} == set(records[0]) and "raw" not in records[0]
    assert set(records[1]) == {"path", "error"} and "not a TIFF, PNG or JPEG" in records[1]["error"]
    assert err.splitlines() == [f"semhpc inspect: {tmp_path / 'notes.tif'}: {records[1]['error']}"]


def test_inspect_text_blocks_with_units(tmp_path, capsys):
    write_fei_tiff(tmp_path / "fei.tif", gradient(48, 64))
    write_generic_tiff(tmp_path / "plain.tif", gradient(16, 16))

    assert semhpc_main(["inspect", str(tmp_path / "fei.tif"), str(tmp_path / "plain.tif")]) == 0

    out, err = capsys.readouterr()
    fei_block, plain_block = out.strip().split("\n\n")
    assert fei_block.splitlines()[0] == str(tmp_path / "fei.tif")
    for expected in ("FEI", "Helios NanoLab 660", "64 x 48 px (data bar cut; the page has 56 rows)",
                     "20 nm", "1e+05 x", "5 kV", "4.035 mm", "TLD", "2016-06-13T17:06:40"):
        assert expected in fei_block
    assert re.search(r"^  vendor +unknown$", plain_block, re.M) and re.search(r"^  pixel size +-$", plain_block, re.M)
    assert err == ""


def test_inspect_raw_includes_vendor_blocks(tmp_path, capsys):
    write_zeiss_tiff(tmp_path / "zeiss.tif", gradient(16, 16))
    assert semhpc_main(["inspect", "--json", "--raw", str(tmp_path / "zeiss.tif")]) == 0
    (record,) = json.loads(capsys.readouterr().out)
    assert record["raw"]["zeiss"]["params"]["ap_wd"] == ZEISS_PARAMS["ap_wd"]

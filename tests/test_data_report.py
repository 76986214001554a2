"""`semhpc data report OUT` (semhpc/data/report.py): counts, instruments, coverage, duplicates and leakage."""

import json
import shutil

import numpy as np
from PIL import Image

from ingest_helpers import read_manifest, write_image, write_tree
from sem_fixtures import FEI_SECTIONS, ZEISS_PARAMS, gradient
from semhpc.cli import main as semhpc_main
from semhpc.data.split import split_of


def ingest_and_report(tmp_path, capsys) -> tuple[int, dict, str]:
    assert semhpc_main(["ingest", str(tmp_path / "src"), str(tmp_path / "out")]) == 0
    capsys.readouterr()
    code = semhpc_main(["data", "report", str(tmp_path / "out")])
    return code, json.loads((tmp_path / "out" / "report.json").read_text()), capsys.readouterr().out


def name_in_split(wanted: str, stem: str) -> str:
    """The first name stem_<i>.tif whose hash puts it in split `wanted`."""
    return next(f"{stem}_{i}.tif" for i in range(1000) if split_of(f"{stem}_{i}.tif") == wanted)


def test_counts_instruments_and_metadata_coverage(tmp_path, capsys):
    write_tree(tmp_path / "src", per_class=3)  # vendors cycle FEI, Zeiss, generic: 10 of each
    code, report, table = ingest_and_report(tmp_path, capsys)
    assert code == 0
    assert report["counts"] == read_manifest(tmp_path / "out")["counts"] and report["manifest_agrees"]
    assert report["images"] == 30 and report["dtypes"] == {"uint8": 30} and report["formats"] == {"tiff": 30}
    assert report["instruments"] == {f"FEI / {FEI_SECTIONS['System']['SystemType']}": 10,
                                     f"Zeiss / {ZEISS_PARAMS['sv_serial_number'].split('= ')[1]}": 10,
                                     "unknown vendor / unknown model": 10}
    assert report["metadata_coverage"]["vendor"] == 20 / 30
    assert report["metadata_coverage"]["pixel_size_m"] == 20 / 30
    assert report["source_sizes"] == {"32x24": 30}
    assert report["duplicate_groups"] == [] and report["leaking_groups"] == 0
    for name in ("Powder", "Tips", "total"):
        assert any(line.startswith(name) for line in table.splitlines())
    chart = Image.open(tmp_path / "out" / "report.png")
    assert chart.format == "PNG" and chart.width > 300


def test_duplicates_across_splits_are_reported_as_leakage(tmp_path, capsys):
    src = tmp_path / "src" / "Particles"
    original = name_in_split("train", "orig")
    write_image(src / original, gradient(24, 32, seed=1))
    leaked_copy = src / name_in_split("test", "copy")
    same_split_copy = src / name_in_split("train", "again")
    shutil.copy(src / original, leaked_copy)
    shutil.copy(src / original, same_split_copy)
    write_image(src / "other.tif", gradient(24, 32, seed=2))
    code, report, table = ingest_and_report(tmp_path, capsys)
    assert code == 1  # leakage makes the report fail, e.g. in CI
    assert report["duplicate_images"] == 2 and report["leaking_groups"] == 1
    [group] = report["duplicate_groups"]
    assert sorted(member["path"] for member in group["images"]) == sorted(
        f"Particles/{path.name}" for path in (src / original, leaked_copy, same_split_copy))
    assert group["splits"] == ["test", "train"]
    assert "LEAK" in table and leaked_copy.name in table


def test_duplicates_are_found_by_pixels_not_by_file_bytes(tmp_path, capsys):
    """The same pixels saved as TIFF and as PNG are one image."""
    pixels = gradient(24, 32, seed=3)
    write_image(tmp_path / "src" / "Powder" / "a.tif", pixels)
    Image.fromarray(pixels).save(tmp_path / "src" / "Powder" / "b.png")
    write_image(tmp_path / "src" / "Powder" / "c.tif", np.flipud(pixels))
    _, report, _ = ingest_and_report(tmp_path, capsys)
    [group] = report["duplicate_groups"]
    assert sorted(member["path"] for member in group["images"]) == ["Powder/a.tif", "Powder/b.png"]

"""`semhpc hdf5` (semhpc/data/hdf5.py): the NFFA layout, previews, never rewriting, bad files, MPI."""

import json
import shutil

import h5py
import numpy as np
import pytest
from ingest_helpers import read_errors, run_semhpc, write_image, write_tree
from PIL import Image
from sem_fixtures import gradient

from semhpc.classify.hdf5_group import hdf5_path, read_classification, write_classification
from semhpc.cli import main as semhpc_main
from semhpc.data.sem_tiff import display_path, read_sem_tiff
from semhpc.data.tfrecord import pixel_sha256

PREDICTION = {"top1_label": "Powder", "top1_score": 0.93, "decision": "auto", "model_version": "test",
              **{f"top{k}_label": f"class{k}" for k in range(2, 6)}, **{f"top{k}_score": 0.01 for k in range(2, 6)}}


def convert(src, out, *options) -> int:
    return semhpc_main(["hdf5", str(src), str(out), *map(str, options)])


@pytest.fixture()
def tree(tmp_path):
    """An archive-like tree: category folders plus a nested, unlabelled folder."""
    written = write_tree(tmp_path / "src", per_class=1, classes=["Powder", "Tips", "Fibres"])
    write_image(tmp_path / "src" / "2019" / "march" / "scan.tif", gradient(40, 48, seed=5), "fei")
    written["2019/march/scan.tif"] = None
    return tmp_path / "src", sorted(written)


def test_each_image_becomes_an_nffa_hdf5_file(tree, tmp_path):
    src, relative_paths = tree
    assert convert(src, tmp_path / "out") == 0
    for relative in relative_paths:
        source = read_sem_tiff(src / relative)
        with h5py.File(tmp_path / "out" / relative.replace(".tif", ".h5")) as h5:
            assert h5.attrs["schema_version"] == 1 and h5.attrs["source_file"] == relative
            assert h5.attrs["pixel_sha256"] == pixel_sha256(source.pixels)
            image = h5["image"]
            assert image.dtype == np.uint8 and np.array_equal(image[()], source.pixels)
            assert image.chunks is not None and image.compression == "gzip"
            assert image.attrs["CLASS"] == b"IMAGE"
            metadata = dict(h5["metadata"].attrs)
            assert json.loads(metadata.pop("raw")) == source.raw
            assert json.loads(metadata.pop("warnings")) == source.warnings
            assert metadata == {key: value for key, value in source.meta.items() if value is not None}
            assert len(h5["classification"]) == 0 and len(h5["classification"].attrs) == 0


def test_classify_finds_and_fills_the_classification_group(tree, tmp_path):
    src, relative_paths = tree
    assert convert(src, tmp_path / "out") == 0
    target = hdf5_path(str(src / relative_paths[0]), str(src), tmp_path / "out")
    write_classification(target, PREDICTION, "2026-01-01T00:00:00Z")
    assert read_classification(target)["top1_label"] == "Powder"


def test_rerun_never_rewrites_existing_files(tree, tmp_path):
    src, relative_paths = tree
    out = tmp_path / "out"
    assert convert(src, out) == 0
    classified = out / relative_paths[0].replace(".tif", ".h5")
    write_classification(classified, PREDICTION, "2026-01-01T00:00:00Z")
    removed = out / relative_paths[1].replace(".tif", ".h5")
    removed.unlink()
    stamps = {path: path.stat().st_ino for path in out.rglob("*.h5")}
    assert convert(src, out) == 0
    assert {path: path.stat().st_ino for path in stamps} == stamps
    assert removed.is_file()
    assert read_classification(classified)["top1_label"] == "Powder"


def test_previews_are_jpegs_of_the_same_pixels(tree, tmp_path):
    src, relative_paths = tree
    assert convert(src, tmp_path / "out", "--previews") == 0
    for relative in relative_paths:
        preview = Image.open(tmp_path / "out" / relative.replace(".tif", ".jpg"))
        pixels = read_sem_tiff(src / relative).pixels
        assert preview.format == "JPEG" and preview.size == (pixels.shape[1], pixels.shape[0])
        # Lossy, but the same picture: far closer than to an unrelated image of the same size.
        error = np.abs(np.asarray(preview, float) - pixels).mean()
        assert error < np.abs(np.asarray(preview, float) - np.roll(pixels, 7, axis=1)).mean() / 2


def test_bad_files_and_name_clashes_are_listed_with_exit_1(tree, tmp_path):
    src, relative_paths = tree
    (src / "Powder" / "broken.tif").write_bytes(b"")
    shutil.copy(src / relative_paths[0], src / relative_paths[0].replace(".tif", ".tiff"))
    assert convert(src, tmp_path / "out") == 1
    errors = read_errors(tmp_path / "out")
    assert errors[display_path(src / "Powder" / "broken.tif")] == "empty file (0 bytes)"
    clash = display_path(src / relative_paths[0].replace(".tif", ".tiff"))
    assert errors[clash].startswith("same output name as") and len(errors) == 2
    assert len(list((tmp_path / "out").rglob("*.h5"))) == len(relative_paths)


def test_missing_source_is_one_error_line(tmp_path, capsys):
    assert convert(tmp_path / "nothing", tmp_path / "out") == 2
    assert capsys.readouterr().err.strip() == f"semhpc hdf5: error: {tmp_path / 'nothing'}: source folder not found"


@pytest.mark.mpi
def test_two_ranks_write_what_one_process_writes(tree, tmp_path):
    src, relative_paths = tree
    (src / "Tips" / "broken.tif").write_bytes(b"GIF89a")
    assert convert(src, tmp_path / "one") == 1
    result = run_semhpc("hdf5", src, tmp_path / "two", mpi_ranks=2)
    assert result.returncode == 1, result.stderr
    assert result.stdout.count("hdf5: ") == 1
    one = sorted(path.relative_to(tmp_path / "one") for path in (tmp_path / "one").rglob("*.h5"))
    assert one == sorted(path.relative_to(tmp_path / "two") for path in (tmp_path / "two").rglob("*.h5"))
    for relative in one:
        with h5py.File(tmp_path / "one" / relative) as a, h5py.File(tmp_path / "two" / relative) as b:
            assert np.array_equal(a["image"][()], b["image"][()])
            assert dict(a["metadata"].attrs) == dict(b["metadata"].attrs)
    assert read_errors(tmp_path / "one") == read_errors(tmp_path / "two")

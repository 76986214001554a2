"""`semhpc hdf5` (semhpc/data/hdf5.py): the NFFA layout, previews, never rewriting, bad files, MPI."""

import json
import shutil

import h5py
import numpy as np
import pytest
from PIL import Image

from cli_runs import run_semhpc
from ingest_helpers import read_errors, write_image, write_tree
from sem_fixtures import REAL_SAMPLES, gradient
from semhpc.classify.hdf5_group import hdf5_path, read_classification, write_classification
from semhpc.cli import main as semhpc_main
from semhpc.data.nffa_context import FIELDS, check_file, instrument_context
from semhpc.data.sem_tiff import read_sem_tiff
from semhpc.data.tfrecord import pixel_sha256
from semhpc.utils.paths import display_path

PREDICTION = {"top1_label": "Powder", "top1_score": 0.93, "decision": "auto", "model_version": "test",
              **{f"top{k}_label": f"class{k}" for k in range(2, 6)}, **{f"top{k}_score": 0.01 for k in range(2, 6)}}


def user_and_sample(h5) -> tuple[dict, dict]:
    def attributes(group):
        values = dict(h5[group].attrs)
        return {**values, "sources": json.loads(values.pop("sources"))}

    return attributes("user"), attributes("sample")


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
            assert h5.attrs["schema_version"] == 2 and h5.attrs["source_file"] == relative
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
            # user/sample from the instrument tags: the FEI fixtures name their user "supervisor"
            expected_user = {"name": "supervisor"} if source.meta["vendor"] == "FEI" else {}
            assert user_and_sample(h5) == ({**expected_user, "sources": {field: "instrument" for field in expected_user}},
                                           {"sources": {}})
        assert check_file(tmp_path / "out" / relative.replace(".tif", ".h5")) == []


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


# --- user and sample groups: facility sidecar and instrument tags --------------------------------

FACILITY_CSV = """path,user.name,user.email,user.affiliation,sample.id,sample.material,user.proposal
Powder/powder_000.tif,Ada Lovelace,ada@example.org,CNR-IOM,S-0042,TiO2,NFFA-ID-17
./2019/march/scan.tif,,,,S-0043,,
Gone/never.tif,Nobody,,,,,
"""
FACILITY_YAML = """
Powder/powder_000.tif:
  user: {name: Ada Lovelace, email: ada@example.org, affiliation: CNR-IOM, proposal: NFFA-ID-17}
  sample: {id: S-0042, material: TiO2}
2019/march/scan.tif:
  sample: {id: S-0043}
Gone/never.tif:
  user: {name: Nobody}
"""


@pytest.mark.parametrize("suffix, text", [(".csv", FACILITY_CSV), (".yaml", FACILITY_YAML)])
def test_facility_sidecar_fills_user_and_sample_over_the_instrument_tags(tree, tmp_path, capsys, suffix, text):
    src, _ = tree
    sidecar = tmp_path / f"facility{suffix}"
    sidecar.write_text(text)
    assert convert(src, tmp_path / "out", "--facility-metadata", sidecar) == 0
    assert f"facility metadata for 2 of the converted image(s); 1 row(s) of {sidecar}" in capsys.readouterr().out
    with h5py.File(tmp_path / "out" / "Powder" / "powder_000.h5") as h5:  # an FEI file: its tag says "supervisor"
        user, sample = user_and_sample(h5)
    assert user == {"name": "Ada Lovelace", "email": "ada@example.org", "affiliation": "CNR-IOM",
                    "proposal": "NFFA-ID-17", "sources": dict.fromkeys(["name", "email", "affiliation", "proposal"],
                                                                       "facility")}
    assert sample == {"id": "S-0042", "material": "TiO2", "sources": {"id": "facility", "material": "facility"}}
    with h5py.File(tmp_path / "out" / "2019" / "march" / "scan.h5") as h5:  # sidecar sample, instrument user
        assert user_and_sample(h5) == ({"name": "supervisor", "sources": {"name": "instrument"}},
                                       {"id": "S-0043", "sources": {"id": "facility"}})
    with h5py.File(tmp_path / "out" / "Tips" / "tips_000.h5") as h5:  # in no row, no tags: empty groups
        assert user_and_sample(h5) == ({"sources": {}}, {"sources": {}})
    assert all(check_file(path) == [] for path in (tmp_path / "out").rglob("*.h5"))


@pytest.mark.parametrize("suffix, text, error", [
    (".csv", "path,user.phone\na.tif,123\n", "column 'user.phone' is not a known field"),
    (".csv", "file,user.name\na.tif,x\n", "no 'path' column"),
    (".csv", "path,user.email\na.tif,ada.example.org\n", ":2: user.email 'ada.example.org' is not an e-mail address"),
    (".csv", "path,user.name\na.tif,x\n./a.tif,y\n", ":3: path 'a.tif' appears twice"),
    (".csv", "path,user.name\n../a.tif,x\n", ":2: path '../a.tif' must be a relative path below SRC"),
    (".csv", "path,user.name\na.tif,x,extra\n", ":2: more cells than the 2 columns of the header"),
    (".yaml", "a.tif: {user: {phone: 1}}", ": a.tif: user.phone is not a known field (name, email"),
    (".yaml", "a.tif: {owner: {name: x}}", ": a.tif: 'owner' is not a group (user, sample)"),
    (".yaml", "a.tif: {sample: {id: [1, 2]}}", ": a.tif: sample.id must be text or a number, got list"),
    (".yaml", "- a.tif", ": top level must map image paths"),
    (".txt", "a.tif", ": facility metadata must be .csv, .yaml or .yml"),
])
def test_bad_facility_metadata_is_one_error_line_naming_file_and_row(tree, tmp_path, capsys, suffix, text, error):
    src, _ = tree
    sidecar = tmp_path / f"facility{suffix}"
    sidecar.write_text(text)
    assert convert(src, tmp_path / "out", "--facility-metadata", sidecar) == 2
    message = capsys.readouterr().err
    assert message.startswith(f"semhpc hdf5: error: {sidecar}") and error in message and message.count("\n") == 1
    assert not list((tmp_path / "out").rglob("*.h5"))


def test_check_file_names_what_breaks_the_layout(tree, tmp_path):
    src, relative_paths = tree
    assert convert(src, tmp_path / "out") == 0
    path = tmp_path / "out" / relative_paths[0].replace(".tif", ".h5")
    with h5py.File(path, "a") as h5:
        h5["user"].attrs["phone"] = "123"
        h5["user"].attrs["email"] = "nobody"
        del h5["sample"]
    assert sorted(check_file(path)) == ["/sample group missing", "/user attribute phone is not a documented field",
                                        "/user email 'nobody' is not an e-mail address", "/user email has no source"]


@pytest.mark.skipif(not REAL_SAMPLES.is_dir(), reason="real SEM samples not available")
def test_real_instrument_tags_give_user_and_sample_fields():
    fei = instrument_context(read_sem_tiff(REAL_SAMPLES / "FEI-Helios-Ebeam-8bits.tif").raw)
    zeiss = instrument_context(read_sem_tiff(REAL_SAMPLES / "test_tiff_Zeiss_SEM_1k.tif").raw)
    assert fei == {"user": {"name": "supervisor", "note": "Helios E-Beam"}, "sample": {}}
    # Zeiss: "User Name = LIM", "Sample Holder = Carousel 9x9mm"; "Sample ID =" and "User Text =" are empty
    assert zeiss == {"user": {"name": "LIM"}, "sample": {"holder": "Carousel 9x9mm"}}
    assert set(FIELDS) == {"user", "sample"}

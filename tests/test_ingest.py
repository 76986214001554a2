"""`semhpc ingest` (semhpc/data/ingest.py): records, manifest, stable split, class map, resume,
every bad input of issue 3, and MPI runs under real `mpirun -np 2`."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from cli_runs import MPI_ENV, run_semhpc
from ingest_helpers import (
    read_errors,
    read_manifest,
    read_records,
    write_image,
    write_tree,
)
from sem_fixtures import gradient, write_generic_tiff, write_header_only_tiff, write_pillow_image
from semhpc.cli import main as semhpc_main
from semhpc.data.categories import CATEGORIES
from semhpc.data.sem_tiff import read_sem_tiff
from semhpc.data.split import split_of
from semhpc.data.tfrecord import pixel_sha256, png_pixels
from semhpc.ranks.jobs import deal_by_weight
from semhpc.utils.paths import display_path


def ingest(src, out, *options) -> int:
    """`semhpc ingest` in this process (fast: TensorFlow is loaded once); returns the exit code."""
    return semhpc_main(["ingest", str(src), str(out), *map(str, options)])


def shard_stamps(out: Path) -> dict[str, tuple[int, int]]:
    """(inode, mtime_ns) of every shard file: a rewritten shard gets a new inode (atomic rename)."""
    return {path.name: (path.stat().st_ino, path.stat().st_mtime_ns) for path in out.glob("*.tfrecord")}


def paths_by_split(out: Path) -> dict[bytes, str]:
    return {record["path"]: record["split"] for record in read_records(out)}


# ---------------------------------------------------------------------------------------------
# Records and manifest


def test_records_carry_pixels_label_split_path_and_metadata(tmp_path):
    written = write_tree(tmp_path / "src", per_class=2)
    assert ingest(tmp_path / "src", tmp_path / "out", "--shards-per-split", 2) == 0
    records = read_records(tmp_path / "out")
    assert sorted(record["path"].decode() for record in records) == sorted(written)
    for record in records:
        relative = record["path"].decode()
        category, in_category = relative.split("/", 1)
        source = read_sem_tiff(tmp_path / "src" / relative)
        assert record["label"] == CATEGORIES.index(category)
        assert record["split"] == split_of(in_category)
        assert record["meta"] == source.meta  # FEI/Zeiss fields travel with the record
        assert np.array_equal(png_pixels(record["image"]), source.pixels)  # data bar cut, no resize
        assert (record["height"], record["width"]) == source.pixels.shape
        assert record["pixel_sha256"] == pixel_sha256(source.pixels)


def test_manifest_counts_every_image_once_and_lists_existing_shards(tmp_path):
    write_tree(tmp_path / "src", per_class=3)
    assert ingest(tmp_path / "src", tmp_path / "out", "--size", "20x16", "--shards-per-split", 2) == 0
    manifest = read_manifest(tmp_path / "out")
    records = read_records(tmp_path / "out")
    assert manifest["format"] == 1 and manifest["classes"] == list(CATEGORIES)
    assert manifest["image_size"] == [20, 16] and manifest["split"] == [0.8, 0.1, 0.1]
    assert all((record["width"], record["height"]) == (20, 16) for record in records)
    for split, per_class in manifest["counts"].items():
        for name, count in per_class.items():
            assert count == sum(1 for r in records if r["split"] == split and r["label"] == CATEGORIES.index(name))
    assert sum(map(sum, (c.values() for c in manifest["counts"].values()))) == manifest["images"] == 30
    for split, shards in manifest["shards"].items():
        assert all(name.startswith(f"{split}-") and (tmp_path / "out" / name).is_file() for name in shards)
    assert read_errors(tmp_path / "out") == {}


def test_cli_prints_a_summary_and_exits_0(tmp_path, capsys):
    write_tree(tmp_path / "src", per_class=1)
    assert ingest(tmp_path / "src", tmp_path / "out", "--size", "16x16") == 0
    output = capsys.readouterr()
    assert output.out.startswith("ingest: 10 images in ") and f"{tmp_path / 'out'}/manifest.json" in output.out
    assert "error" not in output.err and "warning" not in output.err


def test_adding_files_keeps_splits_and_rewrites_only_the_shards_they_land_in(tmp_path):
    write_tree(tmp_path / "src", per_class=4)
    assert ingest(tmp_path / "src", tmp_path / "out", "--shards-per-split", 4) == 0
    before_splits, before_stamps = paths_by_split(tmp_path / "out"), shard_stamps(tmp_path / "out")
    write_image(tmp_path / "src" / "Powder" / "new.tif", gradient(24, 32, seed=999))
    assert ingest(tmp_path / "src", tmp_path / "out", "--shards-per-split", 4) == 0
    after_splits, after_stamps = paths_by_split(tmp_path / "out"), shard_stamps(tmp_path / "out")
    assert {path: after_splits[path] for path in before_splits} == before_splits
    assert len(after_splits) == len(before_splits) + 1
    changed = {name for name in before_stamps if after_stamps[name] != before_stamps[name]}
    new_split = after_splits[b"Powder/new.tif"]
    assert len(changed) == 1 and changed.pop().startswith(f"{new_split}-")


def test_rerun_after_interruption_writes_only_missing_shards(tmp_path):
    write_tree(tmp_path / "src", per_class=3)
    out = tmp_path / "out"
    assert ingest(tmp_path / "src", out, "--shards-per-split", 3) == 0
    complete_manifest, stamps = read_manifest(out), shard_stamps(out)
    shards = sorted(stamps)
    # The states kill -9 can leave: a shard never written, a shard whose journal entry is saved but
    # which was not yet renamed into place, a half-written temporary file, no manifest.
    (out / shards[0]).unlink()
    (out / ".ingest" / f"{shards[0]}.json").unlink()
    (out / shards[1]).unlink()
    (out / f".{shards[2]}.abc123.tmp").write_bytes(b"half a shard")
    (out / "manifest.json").unlink()
    assert ingest(tmp_path / "src", out, "--shards-per-split", 3) == 0
    after = shard_stamps(out)
    assert {name for name in shards if after[name] != stamps[name]} == {shards[0], shards[1]}
    assert read_manifest(out) == complete_manifest
    assert not list(out.glob(".*.tmp"))


def test_foreign_files_in_out_are_never_deleted_and_refused(tmp_path, capsys):
    write_tree(tmp_path / "src", per_class=2)
    out = tmp_path / "out"
    assert ingest(tmp_path / "src", out, "--shards-per-split", 3) == 0
    foreign = out / "train-00007-of-00009.tfrecord"  # looks like a shard, was not written by this ingest
    foreign.write_bytes(b"someone else's records")
    capsys.readouterr()
    assert ingest(tmp_path / "src", out, "--shards-per-split", 2) == 2
    assert f"{foreign}: looks like a shard, but this dataset's journal" in capsys.readouterr().err
    assert foreign.read_bytes() == b"someone else's records"
    foreign.unlink()
    assert ingest(tmp_path / "src", out, "--shards-per-split", 2) == 0  # the old plan's shards are ours: removed
    assert sorted(path.name for path in out.glob("*.tfrecord")) == sorted(
        f"{split}-0000{index}-of-00002.tfrecord" for split in ("train", "validation", "test") for index in (0, 1))

    elsewhere = tmp_path / "not-a-dataset"
    elsewhere.mkdir()
    (elsewhere / "test-00000-of-00001.tfrecord").write_bytes(b"x")
    (elsewhere / "notes.txt").write_text("mine")
    assert ingest(tmp_path / "src", elsewhere) == 2
    assert "holds files semhpc ingest did not write (notes.txt, test-00000-of-00001.tfrecord)" in capsys.readouterr().err
    assert sorted(path.name for path in elsewhere.iterdir()) == ["notes.txt", "test-00000-of-00001.tfrecord"]


def test_fewer_shards_than_before_removes_the_old_ones(tmp_path):
    write_tree(tmp_path / "src", per_class=2)
    assert ingest(tmp_path / "src", tmp_path / "out", "--shards-per-split", 3) == 0
    assert ingest(tmp_path / "src", tmp_path / "out", "--shards-per-split", 1) == 0
    manifest = read_manifest(tmp_path / "out")
    assert sorted(p.name for p in (tmp_path / "out").glob("*.tfrecord")) == sorted(
        name for shards in manifest["shards"].values() for name in shards)
    assert len(read_records(tmp_path / "out")) == 20


# ---------------------------------------------------------------------------------------------
# Class map


def test_default_class_map_merges_old_folders_and_reports_unknown_ones(tmp_path):
    src = tmp_path / "src"
    for folder in ("Pillars", "Forest", "Cantilever_Tips", "Particles", "Misc"):
        write_image(src / folder / "a.tif", gradient(24, 32, seed=len(folder)))
    assert ingest(src, tmp_path / "out") == 1
    labels = {record["path"].decode(): CATEGORIES[record["label"]] for record in read_records(tmp_path / "out")}
    assert labels == {"Pillars/a.tif": "Patterned_surface", "Forest/a.tif": "Nanowires",
                      "Cantilever_Tips/a.tif": "Tips", "Particles/a.tif": "Particles"}
    errors = read_errors(tmp_path / "out")
    assert list(errors) == [display_path(src / "Misc")]
    assert "unknown category folder 'Misc'" in errors[display_path(src / "Misc")]


def test_class_map_file_sets_classes_and_folder_merges(tmp_path):
    src = tmp_path / "src"
    for folder in ("Particles", "Pillars", "Old_Particles"):
        write_image(src / folder / "a.tif", gradient(24, 32, seed=len(folder)))
    class_map = tmp_path / "classes.yaml"
    class_map.write_text("classes: [Particles, Pillars]\nfolders:\n  Old_Particles: Particles\n")
    assert ingest(src, tmp_path / "out", "--class-map", class_map) == 0
    manifest = read_manifest(tmp_path / "out")
    assert manifest["classes"] == ["Particles", "Pillars"]
    labels = {record["path"].decode(): record["label"] for record in read_records(tmp_path / "out")}
    assert labels == {"Particles/a.tif": 0, "Pillars/a.tif": 1, "Old_Particles/a.tif": 0}


@pytest.mark.parametrize("content, message", [
    ("folder:\n  A: Particles\n", "unknown key 'folder'"),
    ("folders:\n  A: Particle\n", "folders.A maps to 'Particle', which is not a class"),
    ("classes: [\n", "invalid YAML"),
])
def test_bad_class_map_is_one_error_line(tmp_path, capsys, content, message):
    write_tree(tmp_path / "src", per_class=1)
    (tmp_path / "map.yaml").write_text(content)
    assert ingest(tmp_path / "src", tmp_path / "out", "--class-map", tmp_path / "map.yaml") == 2
    error = capsys.readouterr().err.strip()
    assert error.count("\n") == 0 and error.startswith(f"semhpc ingest: error: {tmp_path / 'map.yaml'}")
    assert message in error


def test_folder_links_never_read_an_image_twice_or_under_another_class(tmp_path):
    src = tmp_path / "src"
    written = write_tree(src, per_class=2, classes=["Nanowires", "Particles", "Powder"])
    (src / "Forest").symlink_to("Nanowires")  # an alias of a category folder
    (src / "Particles" / "more").symlink_to("../Powder")  # a link into another category
    assert ingest(src, tmp_path / "out") == 1
    labels = {record["path"].decode(): CATEGORIES[record["label"]] for record in read_records(tmp_path / "out")}
    assert sorted(labels) == sorted(written)
    assert all(path.split("/")[0] == name for path, name in labels.items())
    errors = read_errors(tmp_path / "out")
    assert errors[display_path(src / "Forest")].startswith(f"folder already scanned as '{src / 'Nanowires'}'")
    link = display_path(src / "Particles" / "more")
    assert errors[link].startswith(f"link to the category folder '{src / 'Powder'}'")
    assert len(errors) == 2


def test_a_link_to_a_skipped_folder_of_src_is_not_followed_and_errors_csv_says_so(tmp_path):
    src = tmp_path / "src"
    write_tree(src, per_class=2, classes=["Particles", "Powder"])
    write_image(src / "Misc" / "misc_000.tif", gradient(24, 32, seed=7))  # not a category: skipped
    (src / "Powder" / "more").symlink_to("../Misc")  # inside SRC, outside the Powder category
    outside = tmp_path / "elsewhere" / "batch7"  # a sub-collection linked in from outside SRC
    write_image(outside / "powder_ext.tif", gradient(24, 32, seed=8))
    (src / "Powder" / "batch7").symlink_to(outside)
    assert ingest(src, tmp_path / "out") == 1
    paths = {record["path"].decode() for record in read_records(tmp_path / "out")}
    assert "Powder/batch7/powder_ext.tif" in paths
    assert not any("misc_000" in path for path in paths)  # skipped means: not in the dataset
    errors = read_errors(tmp_path / "out")
    assert errors[display_path(src / "Misc")].startswith("unknown category folder 'Misc'")
    assert errors[display_path(src / "Powder" / "more")].startswith(f"link to '{src / 'Misc'}', a folder of the source")
    assert len(errors) == 2


def test_split_does_not_depend_on_the_category_folder(tmp_path):
    for folder in ("Pillars", "Patterned_surface"):
        for index in range(12):
            write_image(tmp_path / folder / "src" / folder / f"x{index}.tif", gradient(24, 32, seed=index))
        assert ingest(tmp_path / folder / "src", tmp_path / folder / "out") == 0
    splits = [{path.split(b"/", 1)[1]: split for path, split in paths_by_split(tmp_path / folder / "out").items()}
              for folder in ("Pillars", "Patterned_surface")]
    assert splits[0] == splits[1]


# ---------------------------------------------------------------------------------------------
# User errors: one line, exit 2


@pytest.mark.parametrize("case, message", [
    ("missing source", "source folder not found"),
    ("no category folders", "no images to ingest"),
    ("output is a file", "output exists and is not a folder"),
    ("output inside source", "must not be inside the source folder"),
    ("bad size", "argument --size: '12x': expected WIDTHxHEIGHT"),
    ("bad split", "must sum to 1"),
])
def test_user_errors_are_one_line_naming_the_problem(tmp_path, capsys, case, message):
    src, out, options = tmp_path / "src", tmp_path / "out", []
    if case != "missing source":
        src.mkdir()
    if case == "no category folders":
        (src / "notes.txt").write_text("hello")
    if case == "output is a file":
        out.write_text("x")
    if case == "output inside source":
        out = src / "out"
    options = {"bad size": ["--size", "12x"], "bad split": ["--split", "0.5,0.5,0.5"]}.get(case, [])
    assert ingest(src, out, *options) == 2
    error = capsys.readouterr().err.strip()
    assert error.startswith("semhpc ingest: error: ") and "\n" not in error and message in error


# ---------------------------------------------------------------------------------------------
# Bad inputs (issue 3): the run finishes, errors.csv names path and reason, exit 1, nothing lost


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def _tiff(path: Path, pixels: np.ndarray) -> Path:
    write_generic_tiff(path, pixels)
    return path


def _truncated_tiff(path: Path) -> Path:
    write_generic_tiff(path, gradient(64, 64))
    os.truncate(path, os.path.getsize(path) // 2)
    return path


def _symlink(path: Path, target: str) -> Path:
    os.symlink(target, path)
    return path


def _fifo(path: Path) -> Path:
    os.mkfifo(path)
    return path


def _non_utf8_name(path: Path) -> str:
    broken = os.fsencode(path.parent) + b"/caf\xe9.tif"
    with open(broken, "wb") as handle:
        handle.write(b"not an image")
    return os.fsdecode(broken)


def _empty_category_folder(path: Path) -> Path:
    folder = path.parent.parent / "Fibres"
    folder.mkdir()
    return folder


# case -> (make it at SRC/Particles/bad.tif, returning the path errors.csv must name; reason)
BAD_INPUTS = {
    "zero-byte file": (lambda p: _write(p, b""), "empty file (0 bytes)"),
    "truncated TIFF": (_truncated_tiff, "truncated file"),
    "non-TIFF with .tif extension": (lambda p: _write(p, b"plain text"), "not a TIFF, PNG or JPEG file"),
    "float32 TIFF": (lambda p: _tiff(p, np.zeros((32, 32), np.float32)), "unsupported dtype float32"),
    "complex TIFF": (lambda p: _tiff(p, np.zeros((32, 32), np.complex64)), "unsupported dtype complex64"),
    "1x1 image": (lambda p: _tiff(p, np.zeros((1, 1), np.uint8)), "image too small (1x1)"),
    "huge dimensions": (lambda p: write_header_only_tiff(p, 20_000, 20_000) or p, "image too large (20000x20000"),
    "symlink loop (file)": (lambda p: _symlink(p, p.name), "symlink loop"),
    "symlink loop (folder)": (lambda p: _symlink(p, "."), "symlink loop: leads back to folder"),
    "broken symlink": (lambda p: _symlink(p, "missing.tif"), "broken symlink"),
    "FIFO named .tif": (_fifo, "not a regular file (FIFO)"),
    "non-image file": (lambda p: _write(p.with_suffix(".txt"), b"notes"), "not an image file name"),
    "non-UTF-8 name": (_non_utf8_name, "not a TIFF, PNG or JPEG file"),
    "empty category folder": (_empty_category_folder, "category folder holds no image files"),
    "file outside category folders": (lambda p: _write(p.parent.parent / "stray.tif", b""),
                                      "not inside a category folder"),
}


@pytest.mark.parametrize("case", BAD_INPUTS)
def test_bad_input_is_listed_and_nothing_is_lost(tmp_path, case):
    src, out = tmp_path / "src", tmp_path / "out"
    good = write_tree(src, per_class=1, classes=[c for c in CATEGORIES if c != "Fibres"])
    assert ingest(src, out, "--shards-per-split", 2) == 0
    make_bad, reason = BAD_INPUTS[case]
    reported = make_bad(src / "Particles" / "bad.tif")
    assert ingest(src, out, "--shards-per-split", 2) == 1
    assert list(read_errors(out)) == [display_path(reported)]
    assert reason in read_errors(out)[display_path(reported)]
    assert sorted(path.decode() for path in paths_by_split(out)) == sorted(good)
    assert read_manifest(out)["images"] == len(good)


def test_non_utf8_name_of_a_good_file_is_ingested_with_its_raw_bytes(tmp_path):
    folder = tmp_path / "src" / "Powder"
    folder.mkdir(parents=True)
    write_generic_tiff(os.fsdecode(os.fsencode(folder) + b"/caf\xe9.tif"), gradient(24, 32))
    assert ingest(tmp_path / "src", tmp_path / "out") == 0
    assert list(paths_by_split(tmp_path / "out")) == [b"Powder/caf\xe9.tif"]


@pytest.mark.parametrize("file_format", ["JPEG", "PNG"])
def test_jpeg_and_png_are_accepted_with_a_warning(tmp_path, file_format):
    (tmp_path / "src" / "Powder").mkdir(parents=True)
    write_pillow_image(tmp_path / "src" / "Powder" / f"a.{file_format.lower()}", gradient(24, 32), file_format)
    assert ingest(tmp_path / "src", tmp_path / "out") == 0
    [record] = read_records(tmp_path / "out")
    assert record["meta"]["format"] == file_format.lower() and record["meta"]["vendor"] is None
    warnings = (tmp_path / "out" / "warnings.csv").read_text()
    assert f"{file_format} file, not TIFF: no vendor metadata" in warnings


def test_unreadable_file_is_listed(tmp_path):
    """Root reads any file, so as root the ingest runs without the capabilities that allow it."""
    src, out = tmp_path / "src", tmp_path / "out"
    write_tree(src, per_class=1, classes=["Particles"])
    locked = src / "Particles" / "locked.tif"
    write_generic_tiff(locked, gradient(24, 32))
    locked.chmod(0)
    command = [sys.executable, "-m", "semhpc", "ingest", str(src), str(out)]
    if os.geteuid() == 0:
        if not Path("/usr/bin/setpriv").exists():
            pytest.skip("running as root without setpriv: cannot take away root's right to read any file")
        command = ["/usr/bin/setpriv", "--bounding-set=-dac_override,-dac_read_search", "--", *command]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert result.returncode == 1, result.stderr
    assert read_errors(out) == {display_path(locked): "cannot open: Permission denied"}
    assert read_manifest(out)["images"] == 1


# ---------------------------------------------------------------------------------------------
# MPI


def test_deal_by_weight_gives_each_job_to_one_rank_and_balances():
    weights = [5, 1, 9, 3, 3, 7, 2, 8]
    shares = deal_by_weight(weights, 3)
    assert sorted(job for share in shares for job in share) == list(range(len(weights)))
    loads = [sum(weights[job] for job in share) for share in shares]
    assert max(loads) - min(loads) <= max(weights)
    assert deal_by_weight(weights, 3) == shares
    assert deal_by_weight([1, 1], 4)[2:] == [[], []]


@pytest.mark.mpi
def test_two_ranks_write_what_one_process_writes(tmp_path):
    write_tree(tmp_path / "src", per_class=3, size=(48, 40))
    (tmp_path / "src" / "Powder" / "broken.tif").write_bytes(b"")
    assert ingest(tmp_path / "src", tmp_path / "one", "--shards-per-split", 3) == 1
    result = run_semhpc("ingest", tmp_path / "src", tmp_path / "two", "--shards-per-split", 3, mpi_ranks=2)
    assert result.returncode == 1, result.stderr
    assert result.stdout.count("ingest: 30 images in 9 shards") == 1  # rank 0 alone reports
    one, two = read_manifest(tmp_path / "one"), read_manifest(tmp_path / "two")
    assert one == two
    for shards in one["shards"].values():
        for name in shards:
            assert (tmp_path / "one" / name).read_bytes() == (tmp_path / "two" / name).read_bytes()
    assert read_errors(tmp_path / "two") == read_errors(tmp_path / "one")


@pytest.mark.mpi
def test_user_error_under_mpi_is_reported_once_with_exit_2(tmp_path):
    result = run_semhpc("ingest", tmp_path / "missing", tmp_path / "out", mpi_ranks=2)
    assert result.returncode == 2
    assert result.stderr.count("semhpc ingest: error:") == 1 and "source folder not found" in result.stderr


@pytest.mark.mpi
def test_a_failing_rank_ends_the_job_instead_of_hanging(tmp_path):
    write_tree(tmp_path / "src", per_class=2)
    # A folder where a shard must go (with a journal entry, as if an earlier ingest had put it
    # there): the rank writing that shard fails.
    for split in ("train", "validation", "test"):
        (tmp_path / "out" / f"{split}-00000-of-00001.tfrecord").mkdir(parents=True)
        (tmp_path / "out" / ".ingest").mkdir(exist_ok=True)
        (tmp_path / "out" / ".ingest" / f"{split}-00000-of-00001.tfrecord.json").write_text("{}")
    result = run_semhpc("ingest", tmp_path / "src", tmp_path / "out", "--shards-per-split", 1, mpi_ranks=2,
                        timeout=120)
    assert result.returncode == 2
    assert "cannot write the shard" in result.stderr


@pytest.mark.mpi
@pytest.mark.slow
def test_kill_9_then_rerun_completes_only_the_missing_shards(tmp_path):
    """Noisy 384x384 images make a shard take long enough to kill the job between shards."""
    src = tmp_path / "src"
    for index in range(80):
        write_image(src / CATEGORIES[index % 10] / f"n{index:03d}.tif", gradient(384, 384, seed=index))
    assert ingest(src, tmp_path / "reference", "--shards-per-split", 8) == 0

    command = ["mpirun", "-np", "2", "--oversubscribe", sys.executable, "-m", "semhpc", "ingest", str(src),
               str(tmp_path / "out"), "--shards-per-split", "8"]
    job = subprocess.Popen(command, env=MPI_ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                           start_new_session=True)
    finished_dir = tmp_path / "out" / ".ingest"
    deadline = time.monotonic() + 120
    while not list(finished_dir.glob("*.json")) and time.monotonic() < deadline:
        time.sleep(0.005)
    os.killpg(job.pid, signal.SIGKILL)  # mpirun and both ranks, at once
    job.wait()
    finished = {path.name[:-len(".json")] for path in finished_dir.glob("*.json")}
    stamps = shard_stamps(tmp_path / "out")
    planned = [name for shards in read_manifest(tmp_path / "reference")["shards"].values() for name in shards]
    assert 0 < len(finished) < len(planned) and not (tmp_path / "out" / "manifest.json").exists()

    result = run_semhpc("ingest", src, tmp_path / "out", "--shards-per-split", 8, mpi_ranks=2)
    assert result.returncode == 0, result.stderr
    assert all(shard_stamps(tmp_path / "out")[name] == stamps[name] for name in finished)
    assert read_manifest(tmp_path / "out") == read_manifest(tmp_path / "reference")

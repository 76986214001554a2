"""Export and classify: the bundle, the decision policy at its boundaries, outputs, errors, resume
(also after kill -9 under `mpirun -np 2`), the HDF5 classification group and real instrument files.

The run directory is made directly in the layout of CONTRACTS.md (config.yaml, final_weights.h5,
test_metrics.json) from an untrained DenseNet-28 at 32 px, so these tests do not need a trainer.
"""

import csv
import functools
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import pytest

from cli_runs import MPI_ENV, semhpc_ok, synth_and_ingest
from sem_fixtures import REAL_SAMPLES, gradient, write_fei_tiff, write_generic_tiff, write_zeiss_tiff
from semhpc.classify.bundle import export_bundle, read_bundle
from semhpc.classify.hdf5_group import read_classification
from semhpc.classify.policy import PREDICTION_FIELDS, Thresholds, prediction
from semhpc.classify.preprocess import scale_fn
from semhpc.cli import main as semhpc_main
from semhpc.data.categories import CATEGORIES
from semhpc.data.sem_tiff import read_sem_tiff
from semhpc.utils.errors import SemhpcError

REPO = Path(__file__).resolve().parents[1]


def make_run_dir(run_dir: Path, data_dir: Path | None = None, seed: int = 1) -> Path:
    """A run directory as `semhpc train` leaves it, with untrained DenseNet-28 weights at 32 px,
    "trained" on `data_dir` (default: a dataset that no longer exists)."""
    import tensorflow as tf

    from semhpc.config import load_config, save_config
    from semhpc.model import registry
    from semhpc.runtime.run_artifacts import save_weights

    cfg = load_config(REPO / "configs" / "demo.yaml",
                      [f"run.dir={run_dir}", f"data.dir={data_dir or run_dir.parent / 'deleted-dataset'}",
                       "model.name=densenet28", "data.image_size=32"])
    run_dir.mkdir(parents=True)
    save_config(cfg, run_dir)
    tf.keras.utils.set_random_seed(seed)
    save_weights(registry.build("densenet28", num_classes=len(CATEGORIES), input_size=32),
                 run_dir / "final_weights.h5")
    metrics = {"accuracy": 0.25, "top5_accuracy": 0.75, "loss": 2.0, "classes": list(CATEGORIES), "images": 40}
    (run_dir / "test_metrics.json").write_text(json.dumps(metrics))
    return run_dir


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    return make_run_dir(tmp_path_factory.mktemp("classify") / "run")


@pytest.fixture(scope="module")
def bundle(run_dir):
    return export_bundle(run_dir, run_dir.parent / "bundle")


def write_images(folder: Path, count: int, start_seed: int = 0) -> list[Path]:
    """`count` small SEM-like TIFFs in two sub-folders, alternating FEI, Zeiss and generic files."""
    paths = []
    for index in range(count):
        path = folder / f"sample{index % 2}" / f"image{index:04d}.tif"
        path.parent.mkdir(parents=True, exist_ok=True)
        pixels = gradient(48, 64, seed=start_seed + index)
        [write_fei_tiff, write_zeiss_tiff, write_generic_tiff][index % 3](path, pixels)
        paths.append(path)
    return paths


def write_corrupt(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"II*\x00" + b"\x00" * 20)  # a TIFF signature and nothing usable
    return path


def read_csv(path: Path) -> list[dict]:
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def classify(bundle, source, out, *extra) -> int:
    """`semhpc classify` in this process; `bundle` is a Bundle or a bundle folder."""
    model = bundle.path if hasattr(bundle, "path") else bundle
    return semhpc_main(["classify", "--model", str(model), "--input", str(source), "--out", str(out), *extra])


# ---------------------------------------------------------------------------------------------
# Bundle


def test_export_bundle_is_self_contained(run_dir, bundle, tmp_path):
    import tensorflow as tf

    from semhpc.config import load_config
    from semhpc.runtime.run_artifacts import load_trained_model

    assert bundle.classes == list(CATEGORIES)
    assert bundle.input_size == 32 and bundle.model_name == "densenet28"
    assert bundle.preprocessing["scaling"] == "torch"
    # The dataset is gone, so the stored size comes from the config (demo.yaml's ingest.size).
    assert bundle.preprocessing["stored_size"] == [128, 96]
    assert bundle.preprocessing["stored_size_from"].startswith("config")
    assert bundle.model_version.startswith("densenet28-")
    assert (bundle.path / "config.yaml").read_text() == (run_dir / "config.yaml").read_text()
    assert bundle.test_metrics() == json.loads((run_dir / "test_metrics.json").read_text())
    assert bundle.manifest["training"]["weights"] == "final_weights.h5"
    assert bundle.manifest["created_with"]["tensorflow"] == tf.__version__

    # The bundle still works when the run directory is gone: same logits as the run's model.
    images = np.random.default_rng(0).random((3, 32, 32, 3), dtype=np.float32)
    expected = load_trained_model(run_dir, load_config(run_dir / "config.yaml"), len(CATEGORIES))(images)
    moved = tmp_path / "elsewhere"
    os.rename(bundle.path, moved)
    try:
        np.testing.assert_allclose(read_bundle(moved).load_model()(images), expected, atol=1e-5)
    finally:
        os.rename(moved, bundle.path)


def test_export_refuses_to_overwrite_and_needs_a_run(run_dir, bundle, tmp_path):
    with pytest.raises(SemhpcError, match="already exists.*--force"):
        export_bundle(run_dir, bundle.path)
    with pytest.raises(SemhpcError, match="not a semhpc run directory"):
        export_bundle(tmp_path, tmp_path / "out")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("found, advice", [(0, "re-export"), (None, "re-export"), (2, "upgrade semhpc")])
def test_incompatible_bundle_format_is_refused(bundle, tmp_path, found, advice):
    copy = tmp_path / "copy"
    copy.mkdir()
    (copy / "model.keras").symlink_to(bundle.path / "model.keras")
    manifest = {**bundle.manifest, "bundle_format": found}
    (copy / "bundle.json").write_text(json.dumps(manifest))
    with pytest.raises(SemhpcError, match=f"bundle format {found}.*{advice}"):
        read_bundle(copy)
    assert classify(copy, tmp_path, tmp_path / "out") == 2


def test_a_folder_without_bundle_json_is_not_a_bundle(tmp_path):
    with pytest.raises(SemhpcError, match="not a semhpc model bundle.*semhpc export"):
        read_bundle(tmp_path)


def test_a_file_is_prepared_exactly_as_the_training_pipeline_prepared_it(tmp_path):
    """classify's input for a TIFF == the evaluation pipeline's image for its ingested record."""
    from semhpc.data import pipeline, tfrecord

    source = tmp_path / "src"
    for index, category in enumerate(CATEGORIES[:3]):
        write_images(source / category, 3, start_seed=10 * index)
    data = tmp_path / "data"
    assert semhpc_main(["ingest", str(source), str(data), "--size", "40x30", "--shards-per-split", "1",
                        "--split", "0.34,0.33,0.33"]) == 0
    prepared = export_bundle(make_run_dir(tmp_path / "run", data_dir=data), tmp_path / "bundle")
    assert prepared.preprocessing["stored_size"] == [40, 30]
    assert prepared.preprocessing["stored_size_from"] == "dataset manifest"

    manifest = pipeline.load_manifest(data)
    compared = 0
    for split, shards in manifest["shards"].items():
        if not shards:  # the hash left this split empty: make_dataset refuses an empty split
            continue
        records = [tfrecord.decode_example(record)
                   for shard in shards for record in tfrecord.read_records(data / shard)]
        dataset = pipeline.make_dataset(data, split, prepared.input_size, 1, training=False, augment=False)
        for record, (images, _) in zip(records, dataset, strict=True):
            pixels = read_sem_tiff(source / os.fsdecode(record["path"])).pixels
            np.testing.assert_array_equal(prepared.model_input(pixels), images[0].numpy())
            compared += 1
    assert compared == 9


# ---------------------------------------------------------------------------------------------
# Decision policy


@pytest.mark.parametrize("score, decision", [
    (1.0, "auto"), (0.9, "auto"), (0.899999, "suggest"), (0.35, "suggest"), (0.349999, "manual"), (0.0, "manual"),
])
def test_decision_at_the_default_threshold_boundaries(score, decision):
    assert Thresholds().decide(score) == decision


def test_decision_uses_the_score_as_written():
    """float32(0.9) is 0.8999999762 but is written as 0.900000, so it must be `auto`."""
    probabilities = np.zeros(len(CATEGORIES), np.float32)
    probabilities[[3, 7]] = [0.9, 0.1]
    row = prediction("x.tif", probabilities, list(CATEGORIES), Thresholds(), "v1")
    assert (row["top1_label"], row["top1_score"], row["decision"]) == (CATEGORIES[3], 0.9, "auto")
    assert (row["top2_label"], row["top2_score"]) == (CATEGORIES[7], 0.1)
    assert list(row) == list(PREDICTION_FIELDS)


def test_custom_thresholds_and_their_validation():
    thresholds = Thresholds(auto=0.6, suggest=0.2)
    assert [thresholds.decide(s) for s in (0.6, 0.59, 0.2, 0.19)] == ["auto", "suggest", "suggest", "manual"]
    assert Thresholds(auto=0.5, suggest=0.5).decide(0.5) == "auto"
    with pytest.raises(SemhpcError, match="--suggest 0.7 --auto 0.6"):
        Thresholds(auto=0.6, suggest=0.7)
    with pytest.raises(SemhpcError):
        Thresholds(auto=1.5)


def test_fewer_than_five_classes_leave_empty_ranks():
    row = prediction("x.tif", np.array([0.2, 0.5, 0.3]), ["a", "b", "c"], Thresholds(), "v1")
    assert [row[f"top{k}_label"] for k in range(1, 6)] == ["b", "c", "a", None, None]
    assert row["decision"] == "suggest"


# ---------------------------------------------------------------------------------------------
# classify, one process


@pytest.fixture(scope="module")
def classified(bundle, tmp_path_factory):
    """One run over 11 good files and a corrupt one: (input folder, good paths, out, exit status)."""
    root = tmp_path_factory.mktemp("classified")
    good = write_images(root / "in", 11)
    write_corrupt(root / "in" / "sample1" / "broken.tif")
    (root / "in" / "sample0" / "moved.tif").symlink_to(root / "nowhere.tif")  # a dangling link
    (root / "in" / "README.txt").write_text("not an image, not an input")
    out = root / "out"
    status = classify(bundle, root / "in", out, "--batch-size", "4", "--chunk-size", "5")
    return root / "in", good, out, status


def test_classify_writes_every_readable_file_once_with_top5_and_decision(bundle, classified):
    _, good, out, _ = classified
    rows = read_csv(out / "predictions.csv")
    assert list(rows[0]) == list(PREDICTION_FIELDS)
    assert [row["path"] for row in rows] == sorted(str(path) for path in good)
    model = bundle.load_model()
    for row in rows:
        scores = [float(row[f"top{k}_score"]) for k in range(1, 6)]
        labels = [row[f"top{k}_label"] for k in range(1, 6)]
        assert scores == sorted(scores, reverse=True) and len(set(labels)) == 5
        assert set(labels) <= set(CATEGORIES)
        assert row["decision"] == Thresholds().decide(scores[0])
        assert row["model_version"] == bundle.model_version
    # The threaded, batched pipeline gives what the model says about each file on its own.
    first = rows[0]
    image = bundle.model_input(read_sem_tiff(first["path"]).pixels)
    logits = model(scale_fn(bundle.preprocessing["scaling"])(image[np.newaxis]))[0].numpy()
    probabilities = np.exp(logits - logits.max()) / np.exp(logits - logits.max()).sum()
    assert first["top1_label"] == CATEGORIES[int(np.argmax(probabilities))]
    assert float(first["top1_score"]) == pytest.approx(probabilities.max(), abs=2e-6)


def test_jsonl_holds_the_same_rows_as_csv(classified):
    _, _, out, _ = classified
    csv_rows = read_csv(out / "predictions.csv")
    json_rows = [json.loads(line) for line in (out / "predictions.jsonl").read_text().splitlines()]
    assert [row["path"] for row in json_rows] == [row["path"] for row in csv_rows]
    assert [row["top1_score"] for row in json_rows] == [float(row["top1_score"]) for row in csv_rows]
    assert [row["decision"] for row in json_rows] == [row["decision"] for row in csv_rows]


def test_bad_files_go_to_errors_csv_and_exit_status_is_1(classified):
    folder, good, out, status = classified
    assert status == 1
    errors = {row["path"]: row["reason"] for row in read_csv(out / "errors.csv")}
    assert set(errors) == {str(folder / "sample1" / "broken.tif"), str(folder / "sample0" / "moved.tif")}
    assert "broken symlink" in errors[str(folder / "sample0" / "moved.tif")]
    assert errors[str(folder / "sample1" / "broken.tif")]
    report = json.loads((out / "throughput.json").read_text())
    assert (report["images"], report["errors"], report["ranks"]) == (len(good), 1, 1)  # 1: read by a rank
    assert set(report["seconds_by_phase"]) == {"read_decode", "inference", "write"}
    assert report["per_rank"][0]["images"] == len(good)


def test_rerun_recomputes_nothing_and_keeps_the_results(bundle, classified):
    folder, good, out, _ = classified
    before = (out / "predictions.csv").read_text()
    parts_before = sorted((out / "parts").iterdir())
    assert classify(bundle, folder, out, "--batch-size", "4", "--chunk-size", "5") == 1
    report = json.loads((out / "throughput.json").read_text())
    assert (report["images"], report["resumed_skipped"]) == (0, len(good) + 1)
    assert sorted((out / "parts").iterdir()) == parts_before
    assert (out / "predictions.csv").read_text() == before


def test_resume_classifies_only_what_is_missing(bundle, classified, tmp_path):
    folder, good, out, _ = classified
    import shutil

    copy = tmp_path / "out"
    shutil.copytree(out, copy)
    lost = sorted((copy / "parts").glob("*.jsonl"))[1]  # as if the run was killed before this chunk
    lost_paths = {json.loads(line)["path"] for line in lost.read_text().splitlines()}
    lost.unlink()
    (copy / "parts" / ".r0000-c0000009-abc.jsonl.tmp").write_text('{"half": ')  # a part being written
    assert classify(bundle, folder, copy, "--batch-size", "4", "--chunk-size", "5") == 1
    report = json.loads((copy / "throughput.json").read_text())
    assert report["images"] + report["errors"] == len(lost_paths)
    assert not list((copy / "parts").glob(".*.tmp"))
    assert (copy / "predictions.csv").read_text() == (out / "predictions.csv").read_text()


def test_rerun_with_other_settings_is_refused(bundle, classified):
    folder, _, out, _ = classified
    assert classify(bundle, folder, out, "--auto", "0.8") == 2
    with pytest.raises(SemhpcError, match="auto was 0.9, now 0.8"):
        from semhpc.classify.writer import start_run

        start_run(out, {"model_version": bundle.model_version, "auto": 0.8, "suggest": 0.35, "hdf5": None})


def test_list_input_and_thresholds(bundle, classified, tmp_path):
    folder, good, _, _ = classified
    listing = tmp_path / "inputs.txt"
    relative = [os.path.relpath(path, tmp_path) for path in good[:4]]
    listing.write_text("# four files\n" + "\n".join(relative) + "\n\n")
    out = tmp_path / "out"
    assert classify(bundle, listing, out, "--auto", "0.12", "--suggest", "0.11") == 0
    rows = read_csv(out / "predictions.csv")
    assert [row["path"] for row in rows] == sorted(str(path) for path in good[:4])
    thresholds = Thresholds(auto=0.12, suggest=0.11)
    assert [row["decision"] for row in rows] == [thresholds.decide(float(row["top1_score"])) for row in rows]


def test_missing_input_is_a_usage_error(bundle, tmp_path):
    assert classify(bundle, tmp_path / "nowhere", tmp_path / "out") == 2
    (tmp_path / "empty").mkdir()
    assert classify(bundle, tmp_path / "empty", tmp_path / "out") == 2


def test_names_that_differ_only_in_how_a_byte_is_shown_get_a_row_each(bundle, tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    raw = os.path.join(os.fsencode(folder), b"caf\xe9.tif")  # the raw byte 0xE9 (not UTF-8)
    literal = folder / "caf\\xe9.tif"  # the four characters \ x e 9
    write_generic_tiff(Path(os.fsdecode(raw)), gradient(48, 64, seed=1))
    write_generic_tiff(literal, gradient(48, 64, seed=2))
    out = tmp_path / "out"
    assert classify(bundle, folder, out) == 0
    rows = read_csv(out / "predictions.csv")
    assert [row["path"] for row in rows] == sorted([f"{folder}/caf\\xe9.tif", f"{folder}/caf\\\\xe9.tif"])
    # A rerun matches each committed row to its own file: nothing is classified again.
    assert classify(bundle, folder, out) == 0
    assert json.loads((out / "throughput.json").read_text())["resumed_skipped"] == 2
    assert len(read_csv(out / "predictions.csv")) == 2


@pytest.mark.skipif(not REAL_SAMPLES.is_dir(), reason="real SEM samples not available")
def test_real_instrument_files_are_classified(bundle, tmp_path):
    out = tmp_path / "out"
    assert classify(bundle, REAL_SAMPLES, out) == 0
    rows = read_csv(out / "predictions.csv")
    assert sorted(Path(row["path"]).name for row in rows) == sorted(p.name for p in REAL_SAMPLES.glob("*.tif"))
    assert read_csv(out / "errors.csv") == []


# ---------------------------------------------------------------------------------------------
# HDF5 classification group


def hdf5_snapshot(h5_file: Path) -> dict:
    """Everything in the file outside the classification group."""
    with h5py.File(h5_file, "r") as h5:
        return {"root": dict(h5.attrs), "metadata": dict(h5["metadata"].attrs), "image": h5["image"][()],
                "groups": sorted(h5)}


def test_hdf5_round_trip(bundle, tmp_path):
    good = write_images(tmp_path / "in", 3)
    hdf5_dir = tmp_path / "h5"
    assert semhpc_main(["hdf5", str(tmp_path / "in"), str(hdf5_dir)]) == 0
    h5_files = [hdf5_dir / path.relative_to(tmp_path / "in").with_suffix(".h5") for path in good]
    h5_files[2].unlink()  # this image's HDF5 file is missing
    before = [hdf5_snapshot(h5_file) for h5_file in h5_files[:2]]
    out = tmp_path / "out"
    assert classify(bundle, tmp_path / "in", out, "--hdf5", str(hdf5_dir)) == 1

    rows = {row["path"]: row for row in read_csv(out / "predictions.csv")}
    assert set(rows) == {str(path) for path in good}
    for path, h5_file, snapshot in zip(good, h5_files, before):
        group = read_classification(h5_file)
        row = rows[str(path)]
        assert group["top1_label"] == row["top1_label"] and group["decision"] == row["decision"]
        assert group["model_version"] == bundle.model_version
        assert group["top1_score"] == pytest.approx(float(row["top1_score"]))
        assert group["top5_labels"] == [row[f"top{k}_label"] for k in range(1, 6)]
        np.testing.assert_allclose(group["top5_scores"], [float(row[f"top{k}_score"]) for k in range(1, 6)], rtol=1e-6)
        assert time.strptime(group["classified_at"], "%Y-%m-%dT%H:%M:%SZ")
        with h5py.File(h5_file, "r") as h5:
            assert h5["classification"]["top5_scores"].dtype == np.float32
        after = hdf5_snapshot(h5_file)  # the rest of the file is untouched
        np.testing.assert_array_equal(after.pop("image"), snapshot.pop("image"))
        assert json.dumps(after, default=str) == json.dumps(snapshot, default=str)
    errors = read_csv(out / "errors.csv")
    assert [row["path"] for row in errors] == [str(good[2])]
    assert "not found" in errors[0]["reason"]


# ---------------------------------------------------------------------------------------------
# Under mpirun -np 2


def mpirun_classify(bundle, source, out, *extra, np_=2):
    return ["mpirun", "-np", str(np_), "--oversubscribe", "--mca", "mpi_yield_when_idle", "1",
            sys.executable, "-m", "semhpc", "classify", "--model", str(bundle.path), "--input", str(source),
            "--out", str(out), *extra]


def child_pids(pid: int) -> list[int]:
    children = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            children.append(int(stat.parent.name))
    return children


def part_paths(parts: list[Path]) -> list[str]:
    return [json.loads(line)["path"] for part in parts for line in part.read_text().splitlines()]


@pytest.mark.mpi
def test_kill_9_then_resume_under_mpirun_gives_every_file_exactly_once(bundle, tmp_path):
    good = write_images(tmp_path / "in", 240)
    write_corrupt(tmp_path / "in" / "sample0" / "broken.tif")
    out = tmp_path / "out"
    args = ("--batch-size", "2", "--chunk-size", "4")
    job = subprocess.Popen(mpirun_classify(bundle, tmp_path / "in", out, *args), env=MPI_ENV,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=REPO)
    deadline = time.time() + 300
    while len(list((out / "parts").glob("*.jsonl"))) < 6 and job.poll() is None and time.time() < deadline:
        time.sleep(0.01)
    ranks = child_pids(job.pid)
    for pid in [*ranks, job.pid]:  # the whole job dies at once, as on a node failure
        os.kill(pid, signal.SIGKILL)
    job.wait()
    assert len(ranks) == 2
    parts_before = sorted((out / "parts").glob("*.jsonl"))
    done_before = part_paths(parts_before)
    assert 0 < len(done_before) < len(good) + 1, "the job must be killed mid-run"
    assert not (out / "predictions.csv").exists()

    rerun = subprocess.run(mpirun_classify(bundle, tmp_path / "in", out, *args), env=MPI_ENV, cwd=REPO,
                           capture_output=True, text=True, timeout=600)
    assert rerun.returncode == 1, rerun.stderr  # 1: the corrupt file, documented as non-fatal
    rows = read_csv(out / "predictions.csv")
    assert [row["path"] for row in rows] == sorted(str(path) for path in good)
    assert [row["path"] for row in read_csv(out / "errors.csv")] == [str(tmp_path / "in" / "sample0" / "broken.tif")]
    # Nothing finished before the kill was classified again.
    new_parts = sorted(set((out / "parts").glob("*.jsonl")) - set(parts_before))
    done_after = part_paths(new_parts)
    assert not set(done_after) & set(done_before)
    assert len(done_before) + len(done_after) == len(good) + 1
    report = json.loads((out / "throughput.json").read_text())
    assert report["ranks"] == 2 and report["resumed_skipped"] == len(done_before)
    assert sum(rank["files"] for rank in report["per_rank"]) == len(done_after)


def alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


@pytest.mark.mpi
def test_a_dead_rank_does_not_hang_the_job(bundle, tmp_path):
    write_images(tmp_path / "in", 240)
    out = tmp_path / "out"
    job = subprocess.Popen(mpirun_classify(bundle, tmp_path / "in", out, "--batch-size", "2", "--chunk-size", "4"),
                           env=MPI_ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=REPO)
    deadline = time.time() + 300
    while len(list((out / "parts").glob("*.jsonl"))) < 2 and job.poll() is None and time.time() < deadline:
        time.sleep(0.01)
    ranks = child_pids(job.pid)
    assert len(ranks) == 2
    os.kill(ranks[-1], signal.SIGKILL)  # one rank dies; the other must not wait for it forever
    assert job.wait(timeout=120) != 0
    assert not any(alive(pid) for pid in ranks)


@pytest.mark.mpi
def test_setup_error_on_rank0_ends_every_rank(bundle, tmp_path):
    write_images(tmp_path / "in", 2)
    out = tmp_path / "out"
    (out).mkdir()
    (out / "run.json").write_text(json.dumps({"model_version": "another-model", "auto": 0.9, "suggest": 0.35,
                                              "hdf5": None}))
    result = subprocess.run(mpirun_classify(bundle, tmp_path / "in", out), env=MPI_ENV, cwd=REPO,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 2
    assert "model_version was 'another-model'" in result.stderr


# ---------------------------------------------------------------------------------------------
# A real training run


@pytest.mark.slow
def test_export_and_classify_a_real_training_run(tmp_path):
    semhpc = functools.partial(semhpc_ok, timeout=1200)
    synth_and_ingest(tmp_path, per_class=4, shards_per_split=1)
    semhpc("train", "--set", f"data.dir={tmp_path / 'data'}", "--set", f"run.dir={tmp_path / 'run'}",
           "--set", "model.name=densenet28", "--set", "data.image_size=32", "--set", "train.epochs=1",
           "--set", "train.batch_size=4")
    semhpc("export", str(tmp_path / "run"), str(tmp_path / "bundle"))
    trained = read_bundle(tmp_path / "bundle")
    assert trained.test_metrics()["classes"] == trained.classes
    semhpc("classify", "--model", str(tmp_path / "bundle"), "--input", str(tmp_path / "tiffs"),
           "--out", str(tmp_path / "out"))
    rows = read_csv(tmp_path / "out" / "predictions.csv")
    assert len(rows) == len(list((tmp_path / "tiffs").rglob("*.tif")))

"""Bad input and environment faults, as a table: what a user does, and the one line semhpc answers.

Every row of TABLE runs one `semhpc` command line (in this process) against a small dataset, a
finished tiny training run, or a fault made for the row, and must end with exit status 2 and one
line `semhpc CMD: error: ...` that holds the row's text: the file or key named, what is wrong,
no traceback. Rows are grouped by class (issue 20): splits a run reads, damaged checkpoints and
shards, YAML inputs, values out of range (config keys and command-line options), special files.
The checks that need more than that one line (status.json, a fallback that succeeds, an output
left intact) follow the table as ordinary tests, and so do the environment faults: a full disk
(a 2 MB tmpfs; 64 MB for a disk that fills during training; ingest and hdf5 also under
`mpirun -np 2`), a read-only output and a folder the user may not write (EACCES, run without
root's permission overrides), per command that writes.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from cli_runs import run_semhpc
from semhpc.cli import main as semhpc_main
from semhpc.data.ingest import recorded_shard_bytes
from semhpc.data.tfrecord import check_shard
from semhpc.hpc.profiles import PROFILE_SCHEMA

REPO = Path(__file__).resolve().parents[1]
TINY_RUN = ["model.name=densenet28", "data.image_size=32", "train.batch_size=16", "train.epochs=2",
            "data.augment=false", "train.log_every=1"]


class Env:
    """The shared inputs (made once per module) and the faults a row makes from them in `tmp`."""

    def __init__(self, shared: Path, tmp: Path):
        self.shared, self.tmp = shared, tmp
        self.tiffs, self.data, self.run = shared / "tiffs", shared / "data", shared / "run"

    def train(self, *sets: str, data: Path | None = None) -> list[str]:
        sets = (*TINY_RUN, f"data.dir={data or self.data}", f"run.dir={self.tmp / 'run'}", *sets)
        return ["train", *[arg for text in sets for arg in ("--set", text)]]

    def ingested(self, split: str) -> Path:
        """A dataset of the shared images ingested with split fractions `split`."""
        out = self.tmp / f"data-{split}"
        assert semhpc_main(["ingest", str(self.tiffs), str(out), "--size", "32x24", "--split", split,
                            "--shards-per-split", "1"]) == 0
        return out

    def data_copy(self, truncate: str | None = None, forget_lengths: bool = False, fifo: str | None = None,
                  flip: str | None = None) -> Path:
        """A copy of the dataset; `truncate` names a shard cut to half its length; `forget_lengths`
        drops ingest's state (the recorded lengths), as a copy without hidden folders would;
        `fifo` names a file replaced by a FIFO; `flip` a shard with one byte inverted mid-file."""
        copy = self.tmp / "data-copy"
        shutil.copytree(self.data, copy)
        if truncate:
            shard = copy / truncate
            shard.write_bytes(shard.read_bytes()[: shard.stat().st_size // 2])
        if flip:
            damaged = bytearray((copy / flip).read_bytes())
            damaged[len(damaged) // 2] ^= 0xFF
            (copy / flip).write_bytes(bytes(damaged))
        if forget_lengths:
            shutil.rmtree(copy / ".ingest")
        if fifo:
            (copy / fifo).unlink()
            os.mkfifo(copy / fifo)
        return copy

    def run_copy(self, damaged: int) -> Path:
        """A copy of the finished run whose `damaged` newest checkpoints are cut short."""
        copy = self.tmp / "run-copy"
        shutil.copytree(self.run, copy)
        for prefix in newest_checkpoints(copy)[:damaged]:
            data = Path(f"{prefix}.data-00000-of-00001")
            data.write_bytes(data.read_bytes()[:1000])
        return copy

    def file(self, name: str, content: bytes) -> str:
        (self.tmp / name).write_bytes(content)
        return str(self.tmp / name)

    def fifo(self, name: str) -> str:
        os.mkfifo(self.tmp / name)
        return str(self.tmp / name)

    def profile(self, name: str, change: bytes = b"", **lines: bytes) -> str:
        """The generic Slurm cluster profile with `change` appended and each `key=value` set in its
        section (the line that sets it replaced, else one added under the section's header)."""
        text = (REPO / "hpc" / "clusters" / "generic-slurm.yaml").read_bytes() + change
        for key, value in lines.items():
            line = b"  %s: %s" % (key.encode(), value)
            found = re.search(rb"^  %s:.*$" % key.encode(), text, flags=re.M)
            if found:
                text = text[:found.start()] + line + text[found.end():]
            else:
                section = next(name for name, fields in PROFILE_SCHEMA.items() if key in fields)
                text = text.replace(b"\n%s:\n" % section.encode(), b"\n%s:\n%s\n" % (section.encode(), line), 1)
        return self.file(name, text)

    def submit(self, profile: str, *options: str) -> list[str]:
        return ["submit", "--cluster", profile, "--job", "train", "--dry-run", *options]

    def bundle(self) -> str:
        """The shared run exported as a classify bundle."""
        assert semhpc_main(["export", str(self.run), str(self.tmp / "bundle")]) == 0
        return str(self.tmp / "bundle")

    def resume(self, run: Path, *sets: str) -> list[str]:
        return ["train", "--resume", str(run), *[arg for text in sets for arg in ("--set", text)]]


def newest_checkpoints(run: Path) -> list[str]:
    """Checkpoint prefixes of `run`, newest first."""
    prefixes = [str(index)[: -len(".index")] for index in (run / "checkpoints").glob("ckpt-*.index")]
    return sorted(prefixes, key=lambda prefix: int(prefix.rsplit("-", 1)[1]), reverse=True)


# The table. Each row: id, the command line (built from an Env), the text its error line must hold.
TABLE = [
    # Splits a run uses (issue 20, item 4): checked before the first step, not after the last epoch.
    ("train: empty test split", lambda env: env.train(data=env.ingested("0.9,0.1,0")),
     "the test split holds no images"),
    ("train: empty validation split", lambda env: env.train(data=env.ingested("0.9,0,0.1")),
     "the validation split holds no images"),
    ("train, no cache: empty test split", lambda env: env.train("data.cache=false", data=env.ingested("0.9,0.1,0")),
     "the test split holds no images"),
    ("eval: empty test split", lambda env: ["eval", str(env.run), "--data", str(env.ingested("0.9,0.1,0"))],
     "the test split holds no images"),
    # Damaged checkpoints (item 6).
    ("train --resume: every checkpoint truncated", lambda env: env.resume(env.run_copy(damaged=2), "train.epochs=3"),
     "no intact checkpoint to resume from: ckpt-4 (IndexError"),
    # Damaged shards (item 7): the shard is named, and how to repair it.
    ("train: truncated test shard", lambda env: env.train(data=env.data_copy("test-00000-of-00001.tfrecord")),
     "test-00000-of-00001.tfrecord: TFRecord shard has"),
    ("train: truncated shard, no ingest state", lambda env: env.train(
        data=env.data_copy("train-00000-of-00001.tfrecord", forget_lengths=True)),
     "train-00000-of-00001.tfrecord: TFRecord shard is truncated"),
    ("data report: truncated shard", lambda env: ["data", "report",
                                                  str(env.data_copy("validation-00000-of-00001.tfrecord"))],
     "validation-00000-of-00001.tfrecord: TFRecord shard is truncated"),
    ("train, no cache: a record's checksum fails mid-run", lambda env: env.train(
        "data.cache=false", data=env.data_copy(flip="train-00000-of-00001.tfrecord")),
     "a TFRecord shard is damaged (corrupted record at"),
    ("data report: a record's checksum fails", lambda env: ["data", "report",
                                                           str(env.data_copy(flip="train-00000-of-00001.tfrecord"))],
     "train-00000-of-00001.tfrecord: damaged TFRecord shard (corrupted record at"),
    # YAML inputs (item 8 and the class): UTF-8 only, a bad byte named with its offset; no key twice.
    ("train: config with a non-UTF-8 byte", lambda env: ["train", "--config", env.file("c.yaml", b"train:\n  lr: 0.1 # caf\xe9\n")],
     "c.yaml: config file is not UTF-8 text: byte 0xe9 at offset 22 (line 2)"),
    ("ingest: class map with a non-UTF-8 byte", lambda env: ["ingest", str(env.tiffs), str(env.tmp / "out"),
                                                            "--class-map", env.file("m.yaml", b"folders:\n  P\xe9: Powder\n")],
     "m.yaml: class map is not UTF-8 text: byte 0xe9 at offset 12 (line 2)"),
    ("submit: cluster profile with a non-UTF-8 byte", lambda env: ["submit", "--cluster", env.profile("site.yaml", b"# \xff\n"),
                                                                  "--job", "train", "--dry-run"],
     "site.yaml: cluster profile is not UTF-8 text: byte 0xff at offset"),
    ("train: config repeats a key", lambda env: ["train", "--config", env.file("c.yaml", b"train:\n  lr: 0.1\n  lr: 0.2\n")],
     "c.yaml: invalid YAML (line 3, column 3): duplicate key 'lr' (first on line 2)"),
    ("train: config repeats a section", lambda env: ["train", "--config", env.file("c.yaml", b"data: {}\ntrain: {}\ndata: {}\n")],
     "duplicate key 'data' (first on line 1)"),
    ("ingest: class map repeats a folder", lambda env: ["ingest", str(env.tiffs), str(env.tmp / "out"), "--class-map",
                                                       env.file("m.yaml", b"folders: {Old: Powder, Old: Tips}\n")],
     "m.yaml: invalid YAML (line 1, column 24): duplicate key 'Old'"),
    ("submit: cluster profile repeats a section", lambda env: ["submit", "--cluster", env.profile("site.yaml", b"env: {}\n"),
                                                              "--job", "train", "--dry-run"],
     "site.yaml: invalid YAML"),
    # Values out of range (item 9): config keys, for every command that takes a config ...
    ("train: data.image_size=99999999", lambda env: env.train("data.image_size=99999999"),
     "data.image_size = 99999999 must be between 16 and 1024"),
    ("train: model.dropout=1.5", lambda env: env.train("model.dropout=1.5"), "model.dropout = 1.5 must be between 0 and 0.9"),
    ("train: train.lr=nan", lambda env: env.train("train.lr=.nan"), "train.lr = nan must be between 0 and 10"),
    ("train: ingest.size of 3 items", lambda env: env.train("ingest.size=[64, 48, 3]"), "must hold 2 items"),
    ("bench: train.batch_size=0", lambda env: ["bench", "--set", "train.batch_size=0"], "must be between 1 and 4096"),
    ("profile: data.image_size=8", lambda env: ["profile", "--set", "data.image_size=8"], "must be between 16 and 1024"),
    ("demo: launch.np=0", lambda env: ["demo", "--set", "launch.np=0"], "launch.np = 0 must be between 1 and 4096"),
    # ... and numeric options, one per command that has them.
    ("ingest --size 100000x100000", lambda env: ["ingest", str(env.tiffs), str(env.tmp / "o"), "--size", "100000x100000"],
     "argument --size: '100000x100000': each side must be between 16 and 4096 pixels"),
    ("ingest --shards-per-split 0", lambda env: ["ingest", str(env.tiffs), str(env.tmp / "o"), "--shards-per-split", "0"],
     "argument --shards-per-split: 0 is out of range: must be between 1 and 10000"),
    ("synth --per-class 0", lambda env: ["synth", str(env.tmp / "o"), "--per-class", "0"], "argument --per-class: 0 is out"),
    ("synth --size 64", lambda env: ["synth", str(env.tmp / "o"), "--per-class", "1", "--size", "64"],
     "argument --size: '64': expected WIDTHxHEIGHT"),
    ("eval --batch-size 0", lambda env: ["eval", str(env.run), "--batch-size", "0"], "argument --batch-size: 0 is out"),
    ("classify --batch-size 100000", lambda env: ["classify", "--model", "b", "--input", "i", "--out", "o",
                                                  "--batch-size", "100000"], "must be between 1 and 4096"),
    ("classify --auto 1.5", lambda env: ["classify", "--model", "b", "--input", "i", "--out", "o", "--auto", "1.5"],
     "argument --auto: 1.5 is out of range: must be between 0 and 1"),
    ("calibrate --target-precision nan", lambda env: ["calibrate", "--model", "b", "--target-precision", "nan"],
     "argument --target-precision: nan is out of range"),
    ("launch -np 0", lambda env: ["launch", "-np", "0", "--", "train"], "argument -np/--np: 0 is out of range"),
    ("demo -np 100000", lambda env: ["demo", "-np", "100000"], "argument -np/--np: 100000 is out of range"),
    ("bench --batches 0", lambda env: ["bench", "--batches", "0"], "argument --batches: 0 is out of range"),
    ("profile --steps 0", lambda env: ["profile", "--steps", "0"], "argument --steps: 0 is out of range"),
    ("submit --nodes 0", lambda env: ["submit", "--cluster", "generic-slurm", "--job", "train", "--nodes", "0"],
     "argument --nodes: 0 is out of range"),
    ("jupyter --port 70000", lambda env: ["jupyter", "--port", "70000"], "argument --port: 70000 is out of range"),
    # ... and the numbers of a cluster profile: a node's shape, its memory and the walltimes.
    ("submit: profile node.cores=100000", lambda env: env.submit(env.profile("site.yaml", cores=b"100000")),
     "site.yaml: node.cores = 100000 must be between 1 and 1024"),
    ("submit: profile node.gpus=400", lambda env: env.submit(env.profile("site.yaml", gpus=b"400")),
     "site.yaml: node.gpus = 400 must be between 0 and 64"),
    ("submit: profile gpu_compute_capability=80", lambda env: env.submit(
        env.profile("site.yaml", gpu_compute_capability=b"80")),
     "site.yaml: node.gpu_compute_capability = 80 must be between 0 and 20"),
    ("submit: profile node.cpu_ranks=5000", lambda env: env.submit(env.profile("site.yaml", cpu_ranks=b"5000")),
     "site.yaml: node.cpu_ranks = 5000 must be between 1 and 1024"),
    ("submit: profile node.memory_gb=5120000", lambda env: env.submit(env.profile("site.yaml", memory_gb=b"5120000")),
     "site.yaml: node.memory_gb = 5120000 must be between 0 and 65536"),
    ("submit: profile node.memory_gb_per_core=-1", lambda env: env.submit(
        env.profile("site.yaml", memory_gb_per_core=b"-1")),
     "site.yaml: node.memory_gb_per_core = -1 must be between 0 and 65536"),
    ("submit: profile memory per GPU x GPUs", lambda env: env.submit(env.profile("site.yaml", memory_gb_per_gpu=b"20000")),
     "site.yaml: node.memory_gb_per_gpu = 20000 x node.gpus = 80000 GB per node must be at most 65536 GB"),
    ("submit: profile default_walltime of 416 days", lambda env: env.submit(
        env.profile("site.yaml", default_walltime=b'"9999:00:00"')),
     "site.yaml: scheduler.default_walltime '9999:00:00': walltime must be longer than zero and at most 365 days"),
    ("submit: profile max_walltime of zero", lambda env: env.submit(env.profile("site.yaml", max_walltime=b'"0:00:00"')),
     "site.yaml: scheduler.max_walltime '0:00:00': walltime must be longer than zero"),
    ("submit --walltime 400d", lambda env: env.submit("generic-slurm", "--walltime", "400d"),
     "--walltime '400d': walltime must be longer than zero and at most 365 days"),
    ("launch --cores-per-rank x", lambda env: ["launch", "--cores-per-rank", "x", "--", "train"], "'x' is not a whole number"),
    # Special files (the class): refused without opening, so nothing blocks.
    ("train: config is a FIFO", lambda env: ["train", "--config", env.fifo("c.yaml")],
     "c.yaml: config file is not a regular file"),
    ("ingest: class map is a FIFO", lambda env: ["ingest", str(env.tiffs), str(env.tmp / "out"),
                                                "--class-map", env.fifo("m.yaml")],
     "m.yaml: class map is not a regular file"),
    ("submit: cluster profile is a FIFO", lambda env: ["submit", "--cluster", env.fifo("site.yaml"), "--job", "train",
                                                      "--dry-run"], "unknown cluster"),
    ("classify: the input is a FIFO", lambda env: ["classify", "--model", env.bundle(), "--input", env.fifo("in"),
                                                  "--out", str(env.tmp / "out")],
     "in: not a folder, image or list file (FIFO); not read"),
    ("train: manifest.json is a FIFO", lambda env: env.train(data=env.data_copy(fifo="manifest.json")),
     "manifest.json: cannot read the manifest: not a regular file (FIFO)"),
    ("data report: a shard is a FIFO", lambda env: ["data", "report", str(env.data_copy(fifo="test-00000-of-00001.tfrecord"))],
     "test-00000-of-00001.tfrecord: cannot read the TFRecord shard: not a regular file (FIFO)"),
    ("train: a shard is a FIFO", lambda env: env.train(data=env.data_copy(fifo="validation-00000-of-00001.tfrecord")),
     "validation-00000-of-00001.tfrecord: cannot read the TFRecord shard: not a regular file (FIFO)"),
]


@pytest.fixture(scope="module")
def shared(tmp_path_factory) -> Path:
    """40 synthetic SEM TIFFs, their dataset (32 x 24, one shard per split) and a finished 2-epoch
    run on it (2 steps per epoch: checkpoints ckpt-2 and ckpt-4)."""
    root = tmp_path_factory.mktemp("bad-input")
    assert semhpc_main(["synth", str(root / "tiffs"), "--per-class", "4", "--size", "64x48", "--seed", "3"]) == 0
    assert semhpc_main(["ingest", str(root / "tiffs"), str(root / "data"), "--size", "32x24",
                        "--shards-per-split", "1"]) == 0
    assert semhpc_main(Env(root, root).train()) == 0  # its tmp is root: the run is root/run
    return root


@pytest.fixture
def env(shared, tmp_path) -> Env:
    return Env(shared, tmp_path)


@pytest.mark.parametrize("command, message", [pytest.param(command, message, id=case)
                                              for case, command, message in TABLE])
def test_bad_input_ends_with_one_line_naming_the_problem(env, capsys, command, message):
    argv = command(env)
    capsys.readouterr()
    with deadline(120):  # a FIFO opened for reading would block forever: fail instead
        status = semhpc_main(argv)
    err = capsys.readouterr().err
    assert "Traceback" not in err
    last = err.strip().splitlines()[-1]
    assert status == 2, err[-2000:]
    assert last.startswith(f"semhpc {argv[0]}: error: ") and message in last, last


def test_inspect_reports_each_special_file_and_goes_on(env, capsys):
    argv = ["inspect", env.fifo("x.tif"), env.fifo("y.tif")]
    with deadline(60):
        assert semhpc_main(argv) == 1
    lines = capsys.readouterr().err.strip().splitlines()
    assert lines == [f"semhpc inspect: {path}: not a regular file (FIFO); not read" for path in argv[1:]]


@contextlib.contextmanager
def deadline(seconds: int):
    """Raise in the test instead of hanging when the body blocks (e.g. on a FIFO)."""
    def expired(signum, frame):
        raise TimeoutError(f"still blocked after {seconds} s")

    previous = signal.signal(signal.SIGALRM, expired)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


# ---------------------------------------------------------------------------------------------
# Beyond the one line


def test_resume_skips_a_truncated_checkpoint_says_so_and_finishes(env, capsys):
    run = env.run_copy(damaged=1)
    assert semhpc_main(env.resume(run, "train.epochs=3")) == 0
    err = capsys.readouterr().err
    assert "damaged checkpoint(s) skipped: ckpt-4 (IndexError" in err and "resuming from ckpt-2" in err
    status = json.loads((run / "status.json").read_text())
    assert (status["state"], status["step"]) == ("finished", 6)  # epochs 2 and 3 trained again from step 2
    assert json.loads((run / "test_metrics.json").read_text())["steps"] == 6


def test_a_resume_that_cannot_start_marks_the_run_failed(env, capsys):
    run = env.run_copy(damaged=2)
    assert json.loads((run / "status.json").read_text())["state"] == "finished"
    assert semhpc_main(env.resume(run, "train.epochs=3")) == 2
    status = json.loads((run / "status.json").read_text())
    assert status["state"] == "failed" and "no intact checkpoint" in status["error"]
    assert (run / "final_weights.h5").is_file()  # the finished run's results are kept


def test_rerunning_ingest_repairs_a_truncated_shard(env, capsys):
    data = env.data_copy("test-00000-of-00001.tfrecord")
    assert semhpc_main(["ingest", str(env.tiffs), str(data), "--size", "32x24", "--shards-per-split", "1"]) == 0
    assert semhpc_main(["data", "report", str(data)]) == 0


# ---------------------------------------------------------------------------------------------
# Write failures (item 5 and the class): a full disk or a read-only folder is one line naming the
# file; finished outputs stay intact and a rerun after freeing space completes.


@contextlib.contextmanager
def tmpfs(folder: Path, size: str):
    """A tmpfs of `size` mounted at `folder` (mounting needs root: the test is skipped without it)."""
    folder.mkdir()
    mounted = os.geteuid() == 0 and subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)], capture_output=True).returncode == 0
    if not mounted:
        pytest.skip("mounting a small tmpfs needs root")
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], check=True)


@pytest.fixture
def small_disk(tmp_path):
    """A 2 MB tmpfs at tmp_path/disk."""
    with tmpfs(tmp_path / "disk", "2m") as disk:
        yield disk


@pytest.fixture
def training_disk(tmp_path):
    """A 64 MB tmpfs: room for a run's first files, so that the disk fills during training."""
    with tmpfs(tmp_path / "disk", "64m") as disk:
        yield disk


def fill(disk: Path, leave: int) -> Path:
    """Fill `disk` up to `leave` free bytes with one file, which is returned (delete it to free)."""
    filler = disk / "filler"
    info = os.statvfs(disk)
    filler.write_bytes(b"\0" * (info.f_bavail * info.f_frsize - leave))
    return filler


def read_only(disk: Path) -> Path:
    subprocess.run(["mount", "-o", "remount,ro", str(disk)], check=True)
    return disk


def run_failing(argv: list[str], capsys) -> str:
    """Run `argv`, which must fail with exit 2; its one error line."""
    capsys.readouterr()
    assert semhpc_main(argv) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return err.strip().splitlines()[-1]


def test_ingest_on_a_full_disk_keeps_finished_shards_and_a_rerun_completes(env, small_disk, capsys):
    out = small_disk / "data"
    filler = fill(small_disk, leave=60_000)
    line = run_failing(["ingest", str(env.tiffs), str(out), "--shards-per-split", "4"], capsys)
    assert line.startswith(f"semhpc ingest: error: {out}/") and line.endswith(": no space left on device")
    assert ".tfrecord: cannot write the shard" in line
    finished = {path.name: path.stat().st_ino for path in out.glob("*.tfrecord")}
    assert finished and not list(out.glob(".*.tmp"))  # some shards were done; no half file left
    for name in finished:  # every shard present is whole: the length ingest recorded
        check_shard(out / name, recorded_shard_bytes(out, name))
    filler.unlink()
    assert semhpc_main(["ingest", str(env.tiffs), str(out), "--shards-per-split", "4"]) == 0
    assert all((out / name).stat().st_ino == inode for name, inode in finished.items())  # not rewritten
    assert json.loads((out / "manifest.json").read_text())["images"] == 40


def test_hdf5_on_a_full_disk_keeps_finished_files_and_a_rerun_completes(env, small_disk, capsys):
    import h5py

    out = small_disk / "h5"
    filler = fill(small_disk, leave=60_000)
    line = run_failing(["hdf5", str(env.tiffs), str(out)], capsys)
    assert line.startswith(f"semhpc hdf5: error: {out}/") and line.endswith(".h5: cannot write: no space left on device")
    finished = sorted(out.rglob("*.h5"))
    assert finished and not list(out.rglob(".*.tmp"))
    for path in finished:
        with h5py.File(path, "r") as h5:
            assert h5["image"].shape == (48, 64)
    filler.unlink()
    assert semhpc_main(["hdf5", str(env.tiffs), str(out)]) == 0
    assert len(list(out.rglob("*.h5"))) == 40


def test_train_on_a_full_disk_is_one_line(env, small_disk, capsys):
    fill(small_disk, leave=8_000)
    line = run_failing(env.train(f"run.dir={small_disk / 'run'}"), capsys)
    assert line.startswith(f"semhpc train: error: {small_disk / 'run'}/") and line.endswith("no space left on device")


def test_a_disk_that_fills_during_training_names_the_file_and_marks_the_run_failed(env, training_disk, capsys):
    run = training_disk / "run"
    fill(training_disk, leave=1_000_000)  # room for the config, status and metrics; not for a checkpoint
    line = run_failing(env.train(f"run.dir={run}"), capsys)
    assert line.startswith(f"semhpc train: error: {run}/checkpoints/ckpt-2_temp/"), line
    assert line.endswith(": no space left on device")
    status = json.loads((run / "status.json").read_text())
    assert status["state"] == "failed" and status["error"] == line.split(": error: ", 1)[1]
    assert not list((run / "checkpoints").glob("*_temp"))  # the unfinished checkpoint made room for it


def test_train_says_so_when_status_json_cannot_be_marked_failed(env, training_disk, capsys):
    status = training_disk / "run" / "status.json"

    def freeze_status():  # once the run has said "running", status.json cannot be changed (even by root)
        while not status.is_file():
            time.sleep(0.01)
        subprocess.run(["chattr", "+i", str(status)], check=True)

    freezer = threading.Thread(target=freeze_status)
    freezer.start()
    try:
        line = run_failing(env.train(f"run.dir={status.parent}"), capsys)
    finally:
        freezer.join()
        subprocess.run(["chattr", "-i", str(status)], check=True)
    # The first write refused is the epoch end's status: the line says that status.json still says running.
    assert line == (f"semhpc train: error: {status}: cannot write: operation not permitted; "
                    "status.json still says running")
    assert json.loads(status.read_text())["state"] == "running"


@pytest.mark.mpi
@pytest.mark.parametrize("command", ["ingest", "hdf5"])
def test_a_full_disk_under_mpi_ends_every_rank_with_one_line_and_a_rerun_completes(env, small_disk, command):
    out = small_disk / command
    argv = [command, env.tiffs, out, *(["--shards-per-split", "4"] if command == "ingest" else [])]
    filler = fill(small_disk, leave=60_000)
    failed = run_semhpc(*argv, mpi_ranks=2, timeout=600)  # a rank left waiting would end in TimeoutExpired
    assert failed.returncode == 2 and "Traceback" not in failed.stderr, failed.stderr[-3000:]
    # mpirun merges the ranks' stderr, so rank 1's line may follow rank 0's progress bar on one line.
    lines = re.findall(rf"semhpc {command}: error \(rank \d\): .*", failed.stderr)
    assert lines and all(f"): {out}/" in line and line.endswith(": no space left on device") for line in lines), \
        failed.stderr[-3000:]
    if command == "ingest":
        finished = sorted(out.glob("*.tfrecord"))
        for shard in finished:  # every shard present is whole: the length ingest recorded
            check_shard(shard, recorded_shard_bytes(out, shard.name))
    else:
        import h5py

        finished = sorted(out.rglob("*.h5"))
        for path in finished:
            with h5py.File(path, "r") as h5:
                assert h5["image"].shape == (48, 64)
    assert finished and not list(out.rglob(".*.tmp"))
    filler.unlink()
    rerun = run_semhpc(*argv, mpi_ranks=2, timeout=600)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    if command == "ingest":
        assert json.loads((out / "manifest.json").read_text())["images"] == 40
    else:
        assert len(list(out.rglob("*.h5"))) == 40


# Each command that writes, with its output on a read-only file system.
READ_ONLY = [
    ("ingest", lambda env, ro: ["ingest", str(env.tiffs), str(ro / "new")], "new: cannot create the output folder"),
    ("hdf5", lambda env, ro: ["hdf5", str(env.tiffs), str(ro / "h5")], "read-only file system"),
    ("synth", lambda env, ro: ["synth", str(ro / "tiffs"), "--per-class", "1", "--size", "64x48"],
     "read-only file system"),
    ("train", lambda env, ro: env.train(f"run.dir={ro / 'run'}"), "read-only file system"),
    ("export", lambda env, ro: ["export", str(env.run), str(ro / "bundle")], "read-only file system"),
    ("data report", lambda env, ro: ["data", "report", str(ro / "data")], "report.json: cannot write: read-only file system"),
    ("submit", lambda env, ro: ["submit", "--cluster", "generic-slurm", "--job", "train", "--job-dir", str(ro / "jobs"),
                                "--", "--config", str(env.file("c.yaml", b"run:\n  dir: r\n"))],
     "cannot write: read-only file system"),
]


@pytest.mark.parametrize("command, message", [pytest.param(command, message, id=case)
                                              for case, command, message in READ_ONLY])
def test_a_read_only_output_is_one_line(env, small_disk, capsys, command, message):
    shutil.copytree(env.data, small_disk / "data")  # for `data report`, which writes into the dataset
    line = run_failing(command(env, read_only(small_disk)), capsys)
    assert line.lower().endswith("read-only file system") and message in line, line
    assert str(small_disk) in line


# Each command that writes, into a folder it may read but not write: a copy of the inputs owned by
# `nobody`, mode 755. Root bypasses permissions only through its capabilities CAP_DAC_OVERRIDE,
# CAP_DAC_READ_SEARCH and CAP_FOWNER, so the command runs as root without them (setpriv): the
# permission checks of an ordinary user, with the venv (under /root) still readable. Outputs go to
# new paths in the folder; `data report`, `eval` and `calibrate` write next to their inputs.
PERMISSION_DENIED = [
    ("ingest", lambda ro: ["ingest", ro / "tiffs", ro / "data-new"]),
    ("hdf5", lambda ro: ["hdf5", ro / "tiffs", ro / "h5"]),
    ("synth", lambda ro: ["synth", ro / "tiffs-new", "--per-class", "1", "--size", "64x48"]),
    ("train run.dir", lambda ro: Env(ro, ro).train(f"data.dir={ro / 'data'}", f"run.dir={ro / 'run-new'}")),
    ("eval", lambda ro: ["eval", ro / "run", "--data", ro / "data"]),
    ("export", lambda ro: ["export", ro / "run", ro / "bundle-new"]),
    ("data report", lambda ro: ["data", "report", ro / "data"]),
    ("classify", lambda ro: ["classify", "--model", ro / "bundle", "--input", ro / "tiffs", "--out", ro / "predictions"]),
    ("calibrate", lambda ro: ["calibrate", "--model", ro / "bundle", "--data", ro / "data"]),
    ("catalog build", lambda ro: ["catalog", "build", ro / "catalog.db", "--dataset", ro / "data"]),
    ("submit --job-dir", lambda ro: ["submit", "--cluster", "generic-slurm", "--job", "train", "--job-dir",
                                     ro / "jobs", "--", "--config", ro / "c.yaml"]),
]
WITHOUT_PERMISSION_OVERRIDES = ["setpriv", "--bounding-set", "-dac_override,-dac_read_search,-fowner", "--"]


@pytest.fixture(scope="module")
def not_writable(shared, tmp_path_factory):
    """A folder owned by `nobody` (readable by all, writable by nobody else), holding copies of the inputs."""
    if os.geteuid() != 0:
        pytest.skip("handing a folder to another user needs root")
    folder = tmp_path_factory.mktemp("not-writable")
    for name in ("tiffs", "data", "run"):
        shutil.copytree(shared / name, folder / name)
    assert semhpc_main(["export", str(shared / "run"), str(folder / "bundle")]) == 0
    (folder / "c.yaml").write_text("run:\n  dir: r\n")
    subprocess.run(["chmod", "-R", "a+rX,go-w", str(folder)], check=True)
    subprocess.run(["chown", "-R", "nobody:", str(folder)], check=True)
    return folder


@pytest.mark.slow
@pytest.mark.parametrize("command", [pytest.param(command, id=case) for case, command in PERMISSION_DENIED])
def test_permission_denied_is_one_line_naming_the_path(not_writable, command):
    argv = [str(arg) for arg in command(not_writable)]
    out = subprocess.run([*WITHOUT_PERMISSION_OVERRIDES, sys.executable, "-m", "semhpc", *argv], cwd=not_writable,
                         capture_output=True, text=True, timeout=600,
                         env={**os.environ, "PYTHONPATH": str(REPO), "TF_CPP_MIN_LOG_LEVEL": "3"})
    assert "Traceback" not in out.stderr, out.stderr[-3000:]
    last = out.stderr.strip().splitlines()[-1]
    assert out.returncode == 2 and last.startswith(f"semhpc {argv[0]}: error: {not_writable}/"), out.stderr[-3000:]
    assert last.endswith("permission denied"), last

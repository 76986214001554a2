"""Bad input and environment faults, as a table: what a user does, and the one line semhpc answers.

Every row of TABLE runs one `semhpc` command line (in this process) against a small dataset, a
finished tiny training run, or a fault made for the row, and must end with exit status 2 and one
line `semhpc CMD: error: ...` that holds the row's text: the file or key named, what is wrong,
no traceback. Rows are grouped by class (issue 20): splits a run reads, damaged checkpoints and
shards, YAML inputs, values out of range (config keys and command-line options). SPECIAL_FILES
does the same for every input a command reads by name, made a FIFO, a socket and a character
device in turn. The checks that need more than that one line (status.json, a fallback that
succeeds, an output left intact) follow the tables as ordinary tests, and so do the environment
faults, per command that writes (WRITES): a full disk and a read-only output (small tmpfs mounts;
ingest and hdf5 on a full disk also keep their finished outputs, also under `mpirun -np 2`, and a
disk that fills during training marks the run failed), and a folder the user may not write
(EACCES, run without root's permission overrides).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import shutil
import signal
import socket
import stat
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

    def data_copy(self, truncate: str | None = None, forget_lengths: bool = False, flip: str | None = None) -> Path:
        """A copy of the dataset; `truncate` names a shard cut to half its length; `forget_lengths`
        drops ingest's state (the recorded lengths), as a copy without hidden folders would;
        `flip` a shard with one byte inverted mid-file."""
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


def special_file(path: Path, kind: str) -> str:
    """Make `path` a FIFO, a Unix socket or a character device (/dev/zero's: a read never ends),
    in place of any file there; returns the path."""
    path.unlink(missing_ok=True)
    if kind == "FIFO":
        os.mkfifo(path)
    elif kind == "socket":
        with socket.socket(socket.AF_UNIX) as server:
            cwd = os.getcwd()
            os.chdir(path.parent)  # a socket's address is at most 107 bytes: bind the name alone
            try:
                server.bind(path.name)
            finally:
                os.chdir(cwd)
    else:
        os.mknod(path, 0o666 | stat.S_IFCHR, os.makedev(1, 5))
    return str(path)


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
    assert_one_error_line(command(env), message, capsys)


def assert_one_error_line(argv: list[str], message: str, capsys) -> None:
    """`semhpc ARGV` ends with exit status 2 and, last, one line `semhpc CMD: error: ...` holding
    `message`, and no traceback."""
    last = run_failing(argv, capsys)
    assert last.startswith(f"semhpc {argv[0]}: error: ") and message in last, last


def run_command(argv: list[str], capsys) -> tuple[int, str]:
    """(exit status, stderr) of `semhpc ARGV`, run in this process, but `catalog` in a fresh one:
    once earlier rows have run TensorFlow's data pipeline here, the process's SQLite calls can
    bind to the SQLite inside TensorFlow's libraries, built without the FTS5 the catalog needs
    (`semhpc catalog` itself never runs that pipeline)."""
    if argv[0] == "catalog":
        out = run_semhpc(*argv, timeout=120)
        return out.returncode, out.stderr
    capsys.readouterr()
    with deadline(120):  # a FIFO or /dev/zero opened for reading would never end: fail instead
        status = semhpc_main(argv)
    return status, capsys.readouterr().err


# Special files (the class): every input a command reads by name, made a FIFO (a read waits for a
# writer forever), a Unix socket (cannot be opened) or a character device (/dev/zero's: a read
# never ends); each is refused unread, naming the file and its kind. Each row: id, the command
# line from an Env and a maker `special(path) -> str`, the text its error line must hold ({kind}).
SPECIAL_KINDS = ["FIFO", "socket", "character device"]
SPECIAL_FILES = [
    ("train: config", lambda env, special: ["train", "--config", special(env.tmp / "c.yaml")],
     "c.yaml: config file is not a regular file ({kind}); not read"),
    ("ingest: class map", lambda env, special: ["ingest", str(env.tiffs), str(env.tmp / "out"), "--class-map",
                                                special(env.tmp / "m.yaml")],
     "m.yaml: class map is not a regular file ({kind}); not read"),
    ("submit: cluster profile", lambda env, special: ["submit", "--cluster", special(env.tmp / "site.yaml"), "--job",
                                                      "train", "--dry-run"], "unknown cluster"),
    ("classify: the input", lambda env, special: ["classify", "--model", env.bundle(), "--input",
                                                  special(env.tmp / "in"), "--out", str(env.tmp / "out")],
     "in: not a folder, image or list file ({kind}); not read"),
    ("classify: the bundle's manifest", lambda env, special: [
        "classify", "--model", str(Path(special(Path(env.bundle()) / "bundle.json")).parent), "--input",
        str(env.tiffs), "--out", str(env.tmp / "out")], "bundle.json: bundle manifest is not a regular file ({kind})"),
    ("train: manifest.json", lambda env, special: env.train(data=Path(special(env.data_copy() / "manifest.json")).parent),
     "manifest.json: cannot read the manifest: not a regular file ({kind})"),
    ("data report: a shard", lambda env, special: ["data", "report", str(Path(special(
        env.data_copy() / "test-00000-of-00001.tfrecord")).parent)],
     "test-00000-of-00001.tfrecord: cannot read the TFRecord shard: not a regular file ({kind})"),
    ("train: a shard", lambda env, special: env.train(data=Path(special(
        env.data_copy() / "validation-00000-of-00001.tfrecord")).parent),
     "validation-00000-of-00001.tfrecord: cannot read the TFRecord shard: not a regular file ({kind})"),
    ("train --resume: the run's metrics log", lambda env, special: env.resume(Path(special(
        env.run_copy(damaged=0) / "metrics.jsonl")).parent, "train.epochs=3"),
     "metrics.jsonl: metrics log is not a regular file ({kind}); not read"),
    ("hdf5: facility metadata", lambda env, special: ["hdf5", str(env.tiffs), str(env.tmp / "h5"),
                                                      "--facility-metadata", special(env.tmp / "facility.csv")],
     "facility.csv: facility metadata file is not a regular file ({kind}); not read"),
    ("catalog build: predictions", lambda env, special: ["catalog", "build", str(env.tmp / "catalog.db"),
                                                         "--predictions", special(env.tmp / "predictions.csv")],
     "predictions.csv: predictions file is not a regular file ({kind}); not read"),
]


@pytest.mark.parametrize("kind", SPECIAL_KINDS)
@pytest.mark.parametrize("command, message", [pytest.param(command, message, id=case)
                                              for case, command, message in SPECIAL_FILES])
def test_a_special_file_is_refused_unread_naming_its_kind(env, capsys, command, message, kind):
    assert_one_error_line(command(env, lambda path: special_file(path, kind)), message.format(kind=kind), capsys)


def test_inspect_reports_each_special_file_and_goes_on(env, capsys):
    argv = ["inspect", *[special_file(env.tmp / f"{n}.tif", kind) for n, kind in enumerate(SPECIAL_KINDS)]]
    with deadline(60):
        assert semhpc_main(argv) == 1
    lines = capsys.readouterr().err.strip().splitlines()
    assert lines == [f"semhpc inspect: {path}: not a regular file ({kind}); not read"
                     for path, kind in zip(argv[1:], SPECIAL_KINDS)]


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
def output_disk(tmp_path):
    """A 256 MB tmpfs: room for copies of the inputs that a command writes next to (a run: 65 MB)."""
    with tmpfs(tmp_path / "disk", "256m") as disk:
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
    status, err = run_command(argv, capsys)
    assert status == 2 and "Traceback" not in err, err[-3000:]
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


def copied(source: Path, disk: Path) -> Path:
    """A copy of `source` on `disk`, for a command that writes next to its input."""
    shutil.copytree(source, disk / source.name)
    return disk / source.name


# Each command that writes, with its output on `disk` (inputs it writes next to copied there
# first), and what its line says when that file system is read-only. The same commands then meet
# a full disk.
WRITES = [
    ("ingest", lambda env, disk: ["ingest", str(env.tiffs), str(disk / "new")], "new: cannot create the output folder"),
    ("hdf5", lambda env, disk: ["hdf5", str(env.tiffs), str(disk / "h5")], "read-only file system"),
    ("synth", lambda env, disk: ["synth", str(disk / "tiffs"), "--per-class", "1", "--size", "64x48"],
     "read-only file system"),
    ("train", lambda env, disk: env.train(f"run.dir={disk / 'run'}"), "read-only file system"),
    ("eval", lambda env, disk: ["eval", str(copied(env.run, disk)), "--data", str(env.data)], "read-only file system"),
    ("export", lambda env, disk: ["export", str(env.run), str(disk / "bundle")], "read-only file system"),
    ("data report", lambda env, disk: ["data", "report", str(copied(env.data, disk))],
     "report.json: cannot write: read-only file system"),
    ("classify", lambda env, disk: ["classify", "--model", env.bundle(), "--input", str(env.tiffs), "--out",
                                    str(disk / "predictions")], "read-only file system"),
    ("calibrate", lambda env, disk: ["calibrate", "--model", str(copied(Path(env.bundle()), disk)), "--data",
                                     str(env.data)], "read-only file system"),
    ("catalog build", lambda env, disk: ["catalog", "build", str(disk / "catalog.db"), "--dataset", str(env.data)],
     "read-only file system"),
    ("submit", lambda env, disk: ["submit", "--cluster", "generic-slurm", "--job", "train", "--job-dir",
                                  str(disk / "jobs"), "--", "--config", str(env.file("c.yaml", b"run:\n  dir: r\n"))],
     "cannot write: read-only file system"),
]


@pytest.mark.parametrize("command, message", [pytest.param(command, message, id=case)
                                              for case, command, message in WRITES])
def test_a_read_only_output_is_one_line(env, output_disk, capsys, command, message):
    argv = command(env, output_disk)
    read_only(output_disk)
    line = run_failing(argv, capsys)
    assert line.lower().endswith("read-only file system") and message in line, line
    assert str(output_disk) in line


@pytest.mark.parametrize("command", [pytest.param(command, id=case) for case, command, _ in WRITES])
def test_a_full_disk_is_one_line(env, output_disk, capsys, command):
    argv = command(env, output_disk)
    fill(output_disk, leave=0)
    line = run_failing(argv, capsys)
    assert line.endswith("no space left on device") and str(output_disk) in line, line


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


def every_option() -> list[tuple[str, argparse.Action]]:
    """("semhpc CMD [SUB]", action) for every argument of every command, sub-commands included."""
    from semhpc.cli import build_parser

    found, parsers = [], [("semhpc", build_parser(None))]
    while parsers:
        name, parser = parsers.pop()
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                parsers += [(f"{name} {sub}", subparser) for sub, subparser in action.choices.items()]
            else:
                found.append((name, action))
    return found


def test_every_numeric_option_of_every_command_has_a_checked_range():
    """The class behind `--size 100000x100000` and `-np 0`: no command takes a bare int or float,
    and every option whose default is a number refuses values far outside any sensible range."""
    options = every_option()
    assert len({name for name, _ in options}) >= 20  # every command was walked
    bare = [(name, action.dest) for name, action in options if action.type in (int, float)]
    assert bare == []
    numeric = [(name, action) for name, action in options
               if isinstance(action.default, (int, float)) and not isinstance(action.default, bool)]
    assert len(numeric) >= 10
    for name, action in numeric:
        assert action.type is not None, f"{name} {action.option_strings}: a number without a type"
        for far in ("99999999999999999999", "-99999999999999999999"):
            with pytest.raises(argparse.ArgumentTypeError):
                action.type(far)

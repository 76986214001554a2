"""A straggler shows in the monitor: under real `mpirun -np 2`, rank 1 gets every training batch
DELAY seconds late (a slow disk or a busy node, made by a wrapper around the data pipeline, never by
the trainer). Both ranks' step times include the wait at the allreduce and look alike; the compute
time each rank records before that wait names rank 1."""

import subprocess
import sys

import pytest

from semhpc.monitor import describe_rank_spread, open_run
from semhpc.runtime.launcher import mpirun_command
from test_trainer import dataset, train_args  # noqa: F401 (dataset is a fixture)

pytestmark = pytest.mark.mpi

DELAY = 0.5

# `python -m semhpc` with rank 1's training batches late: a numpy function sleeping in its pipeline.
SLOW_INPUT_ON_RANK_1 = f"""
import sys
import time

import tensorflow as tf

from semhpc.cli import main
from semhpc.data import pipeline

make_dataset = pipeline.make_dataset


def late(images):
    time.sleep({DELAY})
    return images


def with_late_batches_on_rank_1(*args, **kwargs):
    batches = make_dataset(*args, **kwargs)
    if not (kwargs["training"] and kwargs["rank"] == 1):
        return batches
    spec = batches.element_spec[0]
    return batches.map(lambda images, labels: (
        tf.ensure_shape(tf.numpy_function(late, [images], spec.dtype, stateful=True), spec.shape), labels))


pipeline.make_dataset = with_late_batches_on_rank_1
sys.exit(main())
"""


def test_a_rank_with_late_batches_is_named_the_straggler(dataset, tmp_path):  # noqa: F811
    wrapper = tmp_path / "slow_rank_1.py"
    wrapper.write_text(SLOW_INPUT_ON_RANK_1)
    run = tmp_path / "run"
    cmd = mpirun_command(2, train_args(dataset, run, "train.epochs=1", "train.log_every=2"))
    app_at = cmd.index(sys.executable)
    cmd = [*cmd[:app_at], sys.executable, str(wrapper), *cmd[app_at + 3:]]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    assert out.returncode == 0, out.stderr[-3000:]

    rank_times = open_run(run).rank_step_times()
    assert sorted(rank_times["rank"].unique()) == [0, 1] and rank_times["compute_time"].notna().all()
    medians = rank_times.groupby("rank")[["step_time", "compute_time"]].median()
    # Rank 0 waits for rank 1 at every allreduce: both step times include the delay...
    assert (medians["step_time"] >= DELAY).all(), medians
    # ...but only rank 1's own part of the step does.
    assert medians.loc[1, "compute_time"] >= DELAY, medians
    assert medians.loc[1, "compute_time"] - medians.loc[0, "compute_time"] > DELAY / 2, medians
    compute_spread = medians["compute_time"].max() / medians["compute_time"].min()
    step_spread = medians["step_time"].max() / medians["step_time"].min()
    assert compute_spread > step_spread, medians
    line = describe_rank_spread(rank_times)
    assert line.startswith("compute time per rank") and "slowest rank 1 at" in line, line

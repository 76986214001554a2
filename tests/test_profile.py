"""`semhpc profile`: per-layer rows that add up to the wall step time, the JSON summary, the
experiment table, analysis of an existing profile or raw trace, ranks gathered under mpirun; and
the attribution rules on hand-made traces. Tiny models, no timing thresholds."""

import json
import subprocess

import pandas as pd
import pytest

from cli_runs import run_semhpc as semhpc
from semhpc.bench.attribution import (
    COMMUNICATION,
    COVERED_KINDS,
    FRAMEWORK_BETWEEN_OPS,
    FRAMEWORK_LAUNCH,
    INPUT_WAIT,
    OpNamer,
    attribute_step,
    innermost_pieces,
)
from semhpc.bench.trace import Interval, StepTrace
from semhpc.cli import main as cli
from semhpc.runtime.launcher import mpirun_command

TINY = ["--model", "densenet28", "--image-size", "32", "--batch-size", "2", "--steps", "4", "--warmup", "1"]
PHASES = {"forward", "backward", "optimizer"}
SUMMARY_KEYS = {"model", "image_size", "batch_size", "steps", "ranks", "iterations", "wall_step_time",
                "profiled_step_time", "unprofiled_step_time", "overhead", "coverage", "layer_share",
                "framework_share", "unattributed_share", "phases", "rows", "per_rank"}


def densenet28_blocks():
    from semhpc.model import registry

    return {registry.layer_block(layer.name) for layer in registry.build("densenet28", input_size=32).layers}


def check_summary(summary, iterations, ranks):
    assert SUMMARY_KEYS <= set(summary) and summary["ranks"] == ranks
    rows = pd.DataFrame(summary["rows"])
    assert (rows["seconds"] >= 0).all()
    assert rows["seconds"].sum() == pytest.approx(summary["wall_step_time"])
    covered = rows.loc[rows["kind"].isin(COVERED_KINDS), "seconds"].sum()
    assert summary["coverage"] == pytest.approx(covered / summary["wall_step_time"])
    assert summary["layer_share"] == pytest.approx(rows.loc[rows["kind"] == "layer", "seconds"].sum()
                                                   / summary["wall_step_time"])
    assert summary["coverage"] + summary["framework_share"] + summary["unattributed_share"] == pytest.approx(1.0)
    for rank in summary["per_rank"]:
        assert rank["overhead"] == pytest.approx(rank["profiled_step_time"] / rank["unprofiled_step_time"])
    assert summary["overhead"] == pytest.approx(sum(r["overhead"] for r in summary["per_rank"]) / ranks)
    layers = rows[rows["kind"] == "layer"]
    assert set(layers["layer"]) <= densenet28_blocks() and set(layers["phase"]) <= PHASES
    for block in ("conv1", "conv2_block1", "predictions"):
        assert set(layers.loc[layers["layer"] == block, "phase"]) == PHASES, block
    assert (iterations["seconds"] >= 0).all()
    assert sorted(iterations["rank"].unique()) == list(range(ranks))
    assert iterations.groupby("rank")["iteration"].nunique().tolist() == [summary["iterations"]] * ranks


@pytest.fixture(scope="module")
def profiled(tmp_path_factory):
    out = tmp_path_factory.mktemp("profile") / "p"
    done = semhpc("profile", *TINY, "--rounds", "2", "--out", str(out), "--json")
    assert done.returncode == 0, done.stderr
    return out, json.loads(done.stdout)


def test_rows_add_up_to_the_wall_step_time(profiled):
    out, summary = profiled
    iterations = pd.read_csv(out / "iterations.csv")
    check_summary(summary, iterations, ranks=1)
    assert json.loads((out / "profile.json").read_text()) == summary
    assert summary["iterations"] == 4
    steps = pd.read_csv(out / "steps.csv")
    assert steps.groupby("profiled").size().to_dict() == {False: 4, True: 4}
    # Each traced step lies inside the perf-counter window of the same step.
    per_iteration = iterations.groupby("iteration")["seconds"].sum().to_numpy()
    assert (per_iteration <= steps.loc[steps["profiled"], "seconds"].to_numpy() + 1e-6).all()
    assert summary["unprofiled_step_time"] == pytest.approx(steps.loc[~steps["profiled"], "seconds"].median())


def test_experiment_table_accumulates_to_the_totals(profiled):
    out, _ = profiled
    iterations = pd.read_csv(out / "iterations.csv")
    experiment = pd.read_csv(out / "experiment.csv")
    columns = ["at_25", "at_50", "at_75", "at_100"]
    assert (experiment[columns].diff(axis=1).iloc[:, 1:] >= 0).all().all()
    totals = iterations.groupby(["layer", "phase"])["seconds"].sum()
    merged = experiment.set_index(["layer", "phase"])["at_100"]
    pd.testing.assert_series_equal(merged.sort_index(), totals.sort_index(), check_names=False)
    first = iterations[iterations["iteration"] == iterations["iteration"].min()].groupby(["layer", "phase"])["seconds"].sum()
    pd.testing.assert_series_equal(experiment.set_index(["layer", "phase"])["at_25"].loc[first.index].sort_index(),
                                   first.sort_index(), check_names=False)


def test_analysing_the_folder_again_gives_the_same_summary(profiled, capsys):
    out, summary = profiled
    assert cli(["profile", "--analyse", str(out), "--json"]) == 0
    again = json.loads(capsys.readouterr().out)
    assert again["coverage"] == pytest.approx(summary["coverage"])
    assert again["overhead"] == pytest.approx(summary["overhead"])
    pd.testing.assert_frame_equal(pd.DataFrame(again["rows"]), pd.DataFrame(summary["rows"]))


def test_a_raw_trace_is_split_into_the_same_step_times(profiled, capsys, tmp_path):
    out, summary = profiled
    assert cli(["profile", "--analyse", str(out / "trace"), "--model", "densenet28", "--out", str(tmp_path)]) == 0
    table = capsys.readouterr().out
    assert "coverage" in table and "overhead n/a" in table
    raw = pd.read_csv(tmp_path / "iterations.csv")
    measured = pd.read_csv(out / "iterations.csv")
    # Without the step's graph fewer ops get a layer, but every step keeps its wall time.
    pd.testing.assert_series_equal(raw.groupby("iteration")["seconds"].sum(),
                                   measured.groupby("iteration")["seconds"].sum())
    assert json.loads((tmp_path / "profile.json").read_text())["overhead"] is None


def test_a_folder_without_profile_is_one_clear_line(tmp_path):
    out = semhpc("profile", "--analyse", str(tmp_path))
    assert out.returncode == 2
    assert out.stderr.strip().startswith(f"semhpc profile: error: {tmp_path}: neither a profile folder")


@pytest.mark.mpi
def test_two_ranks_are_profiled_and_gathered_on_rank_0(tmp_path):
    cmd = mpirun_command(2, ["profile", *TINY, "--rounds", "1", "--out", str(tmp_path / "p"), "--json"])
    cmd.insert(1, "--oversubscribe")
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)  # one document: only rank 0 prints
    iterations = pd.read_csv(tmp_path / "p" / "iterations.csv")
    check_summary(summary, iterations, ranks=2)
    assert [r["rank"] for r in summary["per_rank"]] == [0, 1]
    assert {"rank0", "rank1"} == {p.name for p in (tmp_path / "p" / "trace").iterdir()}
    # Horovod's allreduce ops ran on both ranks and were charged to communication.
    communication = iterations[iterations["kind"] == "communication"].groupby("rank")["seconds"].sum()
    assert communication.index.tolist() == [0, 1] and (communication > 0).all()


# --- attribution rules on hand-made traces ------------------------------------------------------

def op(start, end, name, thread=1):
    return Interval(start * 1e9, end * 1e9, thread, name)


class NamesOnly(OpNamer):
    def __init__(self):
        super().__init__(["conv1/conv", "conv2_block1_1_conv", "predictions"], "m", "RMSprop")


def test_every_instant_goes_to_one_row():
    """0-1 input; 1-1.5 nothing yet; A alone 1.5-3, A and B overlap 3-4, B alone 4-5; 5-7 allreduce
    pending with no op; 7-8 nothing; C 8-9; 9-10 nothing after the last op."""
    a, b, c = "m/conv1/conv/Conv2D", "gradient_tape/m/predictions/MatMul", "RMSprop/mul"
    step = StepTrace(0, 0.0, 10e9, ops=[op(1.5, 4, a), op(3, 5, b, thread=2), op(8, 9, c)],
                     input_waits=[op(0, 1, "")], allreduce_pending=[op(4.5, 7, "")])
    seconds = attribute_step(step, NamesOnly())
    assert seconds == pytest.approx({INPUT_WAIT: 1.0, ("conv1", "forward"): 2.0, ("predictions", "backward"): 1.5,
                                     COMMUNICATION: 2.0, ("optimizer", "optimizer"): 1.0,
                                     FRAMEWORK_LAUNCH: 1.5, FRAMEWORK_BETWEEN_OPS: 1.0})
    assert sum(seconds.values()) == pytest.approx(step.seconds)


def test_an_enclosing_event_keeps_only_its_own_time():
    pieces = innermost_pieces([op(0, 10, "outer"), op(2, 5, "inner"), op(6, 7, "inner2"), op(1, 3, "other", thread=2)])
    own = {}
    for piece in pieces:
        own[piece.name] = own.get(piece.name, 0) + (piece.end - piece.start) / 1e9
    assert own == pytest.approx({"outer": 6.0, "inner": 3.0, "inner2": 1.0, "other": 2.0})


def test_op_names_map_to_blocks_and_phases():
    namer = NamesOnly()
    assert namer.row("m/conv2_block1_1_conv/Conv2D") == ("conv2_block1", "forward")
    assert namer.row("gradient_tape/m/conv1/conv/Conv2D/Conv2DBackpropFilter") == ("conv1", "backward")
    assert namer.row("categorical_crossentropy/softmax_cross_entropy_with_logits") == ("loss", "forward")
    assert namer.row("gradient_tape/categorical_crossentropy/mul") == ("loss", "backward")
    assert namer.row("DistributedGradientTape_Allreduce/cond_3/HorovodAllreduce_x_0") == COMMUNICATION
    assert namer.row("RMSprop/mul_7") == ("optimizer", "optimizer")  # no graph: shared
    assert namer.row("AddN_3") == ("unattributed", "unattributed")


def test_nameless_ops_take_the_layer_of_the_tensor_they_read():
    graph = {
        "IdentityN": ("IdentityN", [("gradient_tape/m/conv1/conv/Conv2DBackpropFilter", 0),
                                    ("gradient_tape/m/predictions/MatMul", 0)]),
        "RMSprop/Square_1": ("Square", [("IdentityN", 1)]),  # the second gradient: predictions
        "RMSprop/Cast": ("Cast", [("iteration_resource", 0)]),
        "L2Loss_4": ("L2Loss", [("L2Loss_4/ReadVariableOp", 0)]),
        "L2Loss_4/ReadVariableOp": ("ReadVariableOp", [("kernel_resource", 0)]),
        "AddN_2": ("AddN", [("gradient_tape/m/conv2_block1_1_conv/Conv2D", 0)]),
    }
    variables = {"iteration_resource": "RMSprop/iteration:0", "kernel_resource": "conv1/conv/kernel:0"}
    namer = OpNamer(["conv1/conv", "conv2_block1_1_conv", "predictions"], "m", "RMSprop", graph, variables)
    assert namer.row("RMSprop/Square_1") == ("predictions", "optimizer")
    assert namer.row("RMSprop/Cast") == ("optimizer", "optimizer")
    assert namer.row("L2Loss_4") == ("conv1", "forward")
    assert namer.row("AddN_2") == ("conv2_block1", "backward")

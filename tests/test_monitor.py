"""semhpc.monitor: tables of a run, its state while live / after a kill / when silent, the jobs
table, and `semhpc report`."""

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time

import pandas as pd
import pytest

from artifacts import train_command
from cli_runs import semhpc_ok as semhpc
from semhpc.monitor import describe_rank_spread, list_jobs, open_run
from semhpc.monitor.status import decide_status
from semhpc.utils.errors import SemhpcError
from semhpc.utils.metrics_log import read_metrics

NOW = 1_800_000_000.0


def step_records(count, step_time=0.5, start=NOW - 100):
    return [{"kind": "start", "step": 0, "steps_per_epoch": count, "time": start}] + [
        {"kind": "step", "step": s, "step_time": step_time, "time": start + s * step_time} for s in range(1, count + 1)]


def write_run(path, records, status=None, tail=""):
    path.mkdir(parents=True, exist_ok=True)
    (path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records) + tail)
    if status is not None:
        (path / "status.json").write_text(json.dumps(status))
    return open_run(path)


# --- against the real 2-rank run of the artefacts fixture ------------------------------------------

@pytest.mark.slow
def test_a_live_run_reads_running_then_finished(artifacts):
    live = artifacts.live_statuses
    # Read while the trainer was still writing: steps already recorded, the run not over.
    running = [s for s in live if s.state == "running" and s.step]
    assert running, [s.describe() for s in live]
    final = artifacts.final_status
    assert final.state == "finished"
    assert final.step == final.total_steps
    assert all(s.step <= final.step for s in running)
    # The monitor followed the run as it grew (from before its first step record).
    assert live[0].step is None or live[0].step < final.step


@pytest.mark.slow
def test_tables_of_the_real_run_match_its_metrics_file(artifacts):
    run = open_run(artifacts.run)
    records = read_metrics(artifacts.run / "metrics.jsonl")
    start = run.start()
    steps = run.steps()
    assert list(steps["step"]) == [r["step"] for r in records if r["kind"] == "step"]
    assert list(run.epochs()["val_accuracy"]) == [r["val_accuracy"] for r in records if r["kind"] == "epoch"]
    assert (steps["elapsed"].diff().dropna() >= 0).all()
    per_rank = run.rank_step_times()
    assert sorted(per_rank["rank"].unique()) == list(range(start["ranks"]))
    assert (per_rank["step_time"] > 0).all()
    # Each rank's compute part is a part of its step (the rest is the wait at the allreduce).
    assert (per_rank["compute_time"] > 0).all() and (per_rank["compute_time"] <= per_rank["step_time"]).all()
    config = run.config()
    assert config["run"]["dir"] == str(artifacts.run) and config["train"]["epochs"] == 1
    assert run.evaluation() == json.loads((artifacts.run / "eval.json").read_text())
    assert run.test_results()["confusion"] == run.eval_results()["confusion"]


@pytest.mark.slow
def test_a_killed_training_becomes_failed(artifacts, tmp_path):
    run = tmp_path / "run"
    proc = subprocess.Popen([sys.executable, "-m", "semhpc", *train_command(artifacts.data, run, "train.epochs=50")],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 300
        while not (run / "metrics.jsonl").is_file() or not open_run(run).steps().shape[0]:
            assert proc.poll() is None and time.time() < deadline, "training ended before its first step"
            time.sleep(0.2)
        assert open_run(run).status().state == "running"
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    status = open_run(run).status()
    assert status.state == "failed"
    assert str(proc.pid) in status.reason


# --- the status rules on hand-made records ---------------------------------------------------------

def test_without_status_file_silence_beyond_k_median_step_times_is_stalled(tmp_path):
    run = write_run(tmp_path / "run", step_records(20, step_time=0.5))
    last = NOW - 100 + 20 * 0.5
    # log_every defaults to 1 without a config.yaml: threshold = 10 x 0.5 s, floor disabled.
    assert run.status(stall_factor=10, min_stall_seconds=0, now=last + 4).state == "running"
    stalled = run.status(stall_factor=10, min_stall_seconds=0, now=last + 6)
    assert stalled.state == "stalled" and "no new metrics for 6 s" in stalled.reason
    # The floor keeps a slow epoch end (validation, checkpoint) from looking stalled.
    assert run.status(stall_factor=10, min_stall_seconds=60, now=last + 30).state == "running"


def test_a_test_record_or_test_metrics_means_finished(tmp_path):
    records = step_records(5) + [{"kind": "test", "step": 5, "accuracy": 0.5, "loss": 1.0, "time": NOW}]
    assert write_run(tmp_path / "a", records).status(now=NOW + 1e6).state == "finished"
    run = write_run(tmp_path / "b", step_records(5))
    (tmp_path / "b" / "test_metrics.json").write_text("{}")
    assert run.status(now=NOW + 1e6).state == "finished"


def test_status_file_decides_and_a_dead_pid_on_this_host_is_failed(tmp_path):
    here = socket.gethostname()
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead_pid = int(dead.stdout)
    base = {"host": here, "updated": NOW, "step": 5, "error": None}
    cases = [
        ({"state": "running", "pid": os.getpid()}, "running"),
        ({"state": "running", "pid": dead_pid}, "failed"),
        ({"state": "failed", "pid": os.getpid(), "error": "RuntimeError: boom"}, "failed"),
        ({"state": "finished", "pid": dead_pid}, "finished"),
    ]
    for number, (status, expected) in enumerate(cases):
        run = write_run(tmp_path / f"r{number}", step_records(5, start=time.time() - 3), {**base, **status})
        assert run.status().state == expected, status
    assert "RuntimeError: boom" in open_run(tmp_path / "r2").status().reason


def test_a_run_on_another_host_is_judged_by_its_metrics(tmp_path):
    status = {"state": "running", "pid": 1, "host": "compute-node-that-is-not-here", "updated": NOW - 100}
    run = write_run(tmp_path / "run", step_records(5, start=NOW - 100), status)
    assert run.status(min_stall_seconds=0, now=NOW - 100 + 3).state == "running"
    assert run.status(min_stall_seconds=0, now=NOW + 3600).state == "stalled"


def test_a_half_written_last_line_is_skipped_until_complete(tmp_path):
    records = step_records(3)
    partial = json.dumps({"kind": "step", "step": 4, "step_time": 0.5, "time": NOW})
    run = write_run(tmp_path / "run", records, tail=partial[:17])
    assert list(run.steps()["step"]) == [1, 2, 3]
    with open(tmp_path / "run" / "metrics.jsonl", "a") as fh:
        fh.write(partial[17:] + "\n")
    assert list(run.steps()["step"]) == [1, 2, 3, 4]


def test_eta_comes_from_the_wall_clock_pace_and_total_steps():
    records = step_records(10, step_time=0.5)   # records 0.5 s apart, 10 of 40 steps done
    status = decide_status(records, None, False, total_steps=40, log_every=1, now=records[-1]["time"] + 1)
    assert status.seconds_per_step == pytest.approx(0.5)
    assert status.eta_seconds == pytest.approx(30 * 0.5)
    assert status.progress == pytest.approx(0.25)
    assert status.describe().startswith("running: step 10/40 (25%), ETA 0.2 min")


def test_not_a_run_directory_is_one_clear_error(tmp_path):
    with pytest.raises(SemhpcError, match="not a semhpc run directory"):
        open_run(tmp_path)


# --- batch jobs ------------------------------------------------------------------------------------

def test_jobs_table_is_newest_first_and_skips_a_cut_line(tmp_path, monkeypatch):
    from semhpc.hpc import scheduler

    monkeypatch.setenv("SEMHPC_HOME", str(tmp_path))
    monkeypatch.setattr(scheduler.Slurm, "available", lambda self: False)  # no squeue here
    jobs = [{"id": str(n), "cluster": "local-slurm", "scheduler": "slurm", "kind": "train", "name": f"job{n}",
             "script": "s.sh", "log": f"job-{n}.log", "workdir": str(tmp_path), "submitted": f"2026-01-0{n}T10:00:00"}
            for n in (1, 2)]
    (tmp_path / "jobs.jsonl").write_text("".join(json.dumps(j) + "\n" for j in jobs) + '{"id": "3", "clus')
    table = list_jobs()
    assert list(table["id"]) == ["2", "1"]
    assert list(table["log"]) == ["job-2.log", "job-1.log"]
    assert table["state"].notna().all()
    assert list_jobs(with_states=False).columns.tolist() == [c for c in table.columns if c != "state"]


def test_no_jobs_submitted_is_an_empty_table(tmp_path, monkeypatch):
    monkeypatch.setenv("SEMHPC_HOME", str(tmp_path))
    assert list_jobs().empty


# --- semhpc report ----------------------------------------------------------------------------------

@pytest.mark.slow
def test_report_writes_html_that_references_existing_pngs(artifacts, tmp_path):
    out = tmp_path / "report"
    printed = semhpc("report", str(artifacts.run), "--out", str(out), "--predictions", str(artifacts.classified),
                     "--sweep", str(artifacts.sweep), "--profile", str(artifacts.profile))
    page = out / "index.html"
    assert printed.strip() == str(page)
    html = page.read_text()
    images = re.findall(r'<img src="([^"]+)"', html)
    assert set(images) == {"training_curves.png", "rank_step_spread.png", "confusion_matrix.png",
                           "per_class_metrics.png", "score_histogram.png", "probability_correct.png", "scaling.png",
                           "layer_times.png", "layer_time_vs_iteration.png", "coverage.png"}
    for name in images:
        assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", name
    assert "finished" in html


def test_rank_spread_names_the_straggler_over_the_newest_intervals():
    rows = [{"step": s, "rank": r, "step_time": t} for s in range(1, 31)
            for r, t in enumerate([0.5, 0.5, 0.9 if s > 10 else 0.5])]
    line = describe_rank_spread(pd.DataFrame(rows))
    assert line == ("step time per rank (median of the last 20 intervals): rank 0 0.500 s, rank 1 0.500 s, "
                    "rank 2 0.900 s; slowest rank 2 at 1.80x the fastest")
    assert describe_rank_spread(pd.DataFrame(rows[:3])).endswith("slowest rank 0 at 1.00x the fastest")
    assert describe_rank_spread(pd.DataFrame(columns=["step", "rank", "step_time"])) == \
        "step time per rank: no step recorded yet"


def test_rank_spread_uses_the_compute_time_before_the_allreduce_when_recorded():
    """Every rank's step time includes its wait for the slowest at the allreduce: alike on all
    ranks. The compute time before that wait names the straggler."""
    rows = [{"step": s, "rank": r, "step_time": 0.9, "compute_time": c} for s in range(1, 6)
            for r, c in enumerate([0.3, 0.85])]
    assert describe_rank_spread(pd.DataFrame(rows)) == (
        "compute time per rank (median of the last 5 intervals): rank 0 0.300 s, rank 1 0.850 s; "
        "slowest rank 1 at 2.83x the fastest; step time 0.900 s (with the wait at the allreduce)")
    # A run recorded before compute times existed: the step time, as before.
    older = [{**row, "compute_time": float("nan")} for row in rows]
    assert describe_rank_spread(pd.DataFrame(older)).startswith("step time per rank (median of the last 5")

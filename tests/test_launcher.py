"""The mpirun line of `semhpc launch`: tuned CPU defaults, binding, and a real 2-rank launch."""

import os
import subprocess
import sys

import pytest

from semhpc.runtime.launcher import FAST_ENV, FAST_MCA, mpirun_command


def test_tuned_defaults_are_on_the_command_line():
    cmd = mpirun_command(2, ["train", "--config", "c.yaml"])
    line = " ".join(cmd)
    assert cmd[:3] == ["mpirun", "-np", "2"]
    assert "--bind-to core" in line
    for key, value in FAST_MCA.items():
        assert f"--mca {key} {value}" in line
    for key, value in FAST_ENV.items():
        assert f"-x {key}={value}" in line
    assert "-x OMP_NUM_THREADS=1" in line
    assert cmd[-6:] == [sys.executable, "-m", "semhpc", "train", "--config", "c.yaml"]


def test_plain_mode_drops_the_tuning_but_keeps_binding():
    line = " ".join(mpirun_command(2, ["bench"], tuned=False))
    assert "--bind-to core" in line
    assert "mpi_yield_when_idle" not in line and "HOROVOD_CYCLE_TIME" not in line


def test_several_cores_per_rank_map_by_pe():
    line = " ".join(mpirun_command(4, ["train"], cores_per_rank=6, hosts="n1:2,n2:2"))
    assert "--map-by slot:PE=6 --bind-to core" in line
    assert "-H n1:2,n2:2" in line and "-x OMP_NUM_THREADS=6" in line


def test_dry_run_prints_a_copyable_command(capsys):
    from semhpc.cli import main

    assert main(["launch", "-np", "3", "--dry-run", "--", "train", "--config", "my run.yaml"]) == 0
    out = capsys.readouterr().out.strip()
    assert out.startswith("mpirun -np 3 ")
    assert out.endswith("train --config 'my run.yaml'")


@pytest.mark.mpi
def test_real_launch_binds_each_rank_to_its_own_core():
    """Two real ranks; each must see exactly one core in its affinity mask (no core sharing)."""
    out = subprocess.run([sys.executable, "-m", "semhpc", "launch", "-np", "2", "--", "doctor"],
                         capture_output=True, text=True, timeout=300, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    assert out.returncode == 0, out.stderr
    affinity = [line.split(":")[1].strip() for line in out.stdout.splitlines() if "cpu_affinity:" in line]
    assert affinity == ["1", "1"]

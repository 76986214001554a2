"""The mpirun line of `semhpc launch`: tuned CPU defaults, binding, a real 2-rank launch, and the
same settings as defaults of a rank started without it."""

import json
import os
import subprocess
import sys

import pytest

from semhpc.runtime.launcher import FAST_ENV, FAST_MCA, mpirun_command, rank_environment


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


def test_plain_mode_states_the_library_values_but_keeps_binding():
    line = " ".join(mpirun_command(2, ["bench"], tuned=False))
    assert "--bind-to core" in line
    assert "--mca mpi_yield_when_idle 0" in line and "-x HOROVOD_CYCLE_TIME=1" in line
    assert "--mca mpi_yield_when_idle 1" not in line and "HOROVOD_CYCLE_TIME=5" not in line


# Each rank prints its world size and the rank settings its environment holds after init_horovod().
RANK_SETTINGS = ("import json, os; from semhpc.runtime.distributed import init_horovod; world = init_horovod(1); "
                 f"print(json.dumps({{'size': world.size, **{{k: os.environ.get(k) for k in {sorted(rank_environment())!r}}}}}))")


def rank_settings(command: list[str], **set_by_user: str) -> list[dict]:
    """What each rank of `command` prints, started with none of the rank settings in its
    environment but `set_by_user`."""
    env = {key: value for key, value in os.environ.items() if key not in rank_environment()}
    out = subprocess.run(command, capture_output=True, text=True, timeout=300, env={**env, **set_by_user})
    assert out.returncode == 0, out.stderr[-3000:]
    return [json.loads(line) for line in out.stdout.splitlines() if line.startswith("{")]


def test_a_rank_started_without_the_launcher_takes_its_settings_unless_set():
    """`semhpc train` alone or under a hand-written mpirun line: the launcher's settings, the stall
    limits included, unless the environment sets them."""
    [settings] = rank_settings([sys.executable, "-c", RANK_SETTINGS], HOROVOD_CYCLE_TIME="3")  # the user's wins
    assert settings == {"size": 1, **rank_environment(), "HOROVOD_CYCLE_TIME": "3"}


@pytest.mark.mpi
@pytest.mark.parametrize("tuned", [True, False], ids=["tuned", "plain"])
def test_ranks_under_mpirun_keep_the_lines_settings(tuned):
    """The defaults do not undo the plain baseline: its ranks keep the libraries' values."""
    command = mpirun_command(2, [], tuned=tuned)
    assert command[-2:] == ["-m", "semhpc"]
    command[-2:] = ["-c", RANK_SETTINGS]
    expected = {"size": 2, **rank_environment(tuned)}
    assert rank_settings(command) == [expected, expected]


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

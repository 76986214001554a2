"""Cluster profiles and job scripts without a scheduler: every job kind for every profile passes
`bash -n` and shellcheck, key directives are right, values can never run as code, and the script
bodies, run with the environment Slurm or PBS Pro would set and stub tools on PATH, start exactly
the commands they should. The slow test runs a PBS script's body for real (no PBS server here).
"""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from semhpc import cli
from semhpc.commands import submit
from semhpc.hpc import SHIPPED_DIR
from semhpc.hpc.profiles import PROFILE_SCHEMA, available_profiles, load_profile, parse_profile
from semhpc.hpc.render import render_job
from semhpc.hpc.resources import JOB_KINDS, parse_walltime, plan_resources, scaling_sweep
from semhpc.utils.errors import SemhpcError
from semhpc.utils.metrics_log import read_metrics

SHIPPED = ["c3hpc", "galileo", "marconi-a2", "generic-slurm", "local-slurm", "testbed-slurm", "testbed-pbs"]
EVIL = ['x"; touch PWNED; "', "$(touch PWNED)", "`touch PWNED`", "a b\nc; touch PWNED", "'", "*", "${HOME}"]
# This machine as a PBS Pro cluster: one 2-core node, bare metal.
LOCAL_PBS = {"scheduler": {"type": "pbs"}, "node": {"cores": 2, "cpu_ranks": 2}, "execution": {"mode": "bare-metal"}}


def render(profile, kind="train", args=("--config", "run.yaml"), name="semhpc-job", log="/jobs/job-%j.log",
           **resources):
    return render_job(profile, kind, plan_resources(profile, kind, **resources), name=name, args=list(args),
                      log=log)


def profile_from(tmp_path, shipped, changes, name="test-site"):
    """A profile in tmp_path: the shipped one `shipped` (None: empty) with `changes` ({section: {key: value}})."""
    data = yaml.safe_load((SHIPPED_DIR / "clusters" / f"{shipped}.yaml").read_text()) if shipped else {}
    for section, values in changes.items():
        data[section] = {**data.get(section, {}), **values} if isinstance(values, dict) else values
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(data))
    return load_profile(str(path))


# --- the stubs: tools that record how they were called ----------------------------------------

STUB = """#!{python}
import json, os, sys
with open({log!r}, "a") as out:
    out.write(json.dumps({{"argv": [os.path.basename(sys.argv[0]), *sys.argv[1:]], "env": dict(os.environ)}}) + "\\n")
sys.stdout.write({output!r})
"""


def stubs(tmp_path, outputs):
    """A bin folder of stub tools (name -> what it prints) and the file their calls go to."""
    bin_dir, calls = tmp_path / "bin", tmp_path / "calls.jsonl"
    bin_dir.mkdir(exist_ok=True)
    for name, output in outputs.items():
        (bin_dir / name).write_text(STUB.format(python=sys.executable, log=str(calls), output=output))
        (bin_dir / name).chmod(0o755)
    return bin_dir, calls


def run_body(script, tmp_path, scheduler_env, tools, extra_env=None):
    """Run a job script with bash, as the scheduler would start it: [(tool argv, tool env)] of the stubs."""
    bin_dir, calls = stubs(tmp_path, tools)
    workdir = tmp_path / "submitdir"
    workdir.mkdir(exist_ok=True)
    (tmp_path / "job.sh").write_text(script)
    env = {**os.environ, **scheduler_env, **(extra_env or {}), "PATH": f"{bin_dir}:{os.environ['PATH']}"}
    result = subprocess.run(["bash", str(tmp_path / "job.sh")], cwd=tmp_path, env=env, capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    records = [json.loads(line) for line in calls.read_text().splitlines()] if calls.exists() else []
    return [(r["argv"], r["env"]) for r in records], result


def slurm_env(tmp_path, nodes="node1", ranks_per_node=2):
    return {"SLURM_JOB_ID": "4242", "SLURM_SUBMIT_DIR": str(tmp_path / "submitdir"), "SLURM_SUBMIT_HOST": "login1",
            "SLURM_JOB_NODELIST": nodes, "SLURM_NTASKS_PER_NODE": str(ranks_per_node)}


def pbs_env(tmp_path, node_file_lines, ncpus):
    node_file = tmp_path / "nodefile"
    node_file.write_text("".join(f"{node}\n" for node in node_file_lines))
    return {"PBS_JOBID": "77.pbsserver", "PBS_O_WORKDIR": str(tmp_path / "submitdir"), "PBS_O_HOST": "login1",
            "PBS_NODEFILE": str(node_file), "NCPUS": str(ncpus)}


def call_of(calls, tool):
    """(argv, env) of the one call of `tool`."""
    (found,) = [call for call in calls if call[0][0] == tool]
    return found


def option(argv, name):
    """The value after option `name` in argv."""
    return argv[argv.index(name) + 1]


# --- every profile x every job kind: bash -n and shellcheck ------------------------------------

def test_the_shipped_profiles_are_all_found():
    assert set(SHIPPED) <= set(available_profiles())


@pytest.mark.parametrize("cluster", SHIPPED)
def test_every_job_kind_renders_a_script_bash_and_shellcheck_accept(cluster, tmp_path):
    assert shutil.which("shellcheck"), "shellcheck not found: scripts/bootstrap.sh --test installs it"
    profile = load_profile(cluster)
    scripts = {kind: render(profile, kind) for kind in JOB_KINDS}
    full = plan_resources(profile, "bench", nodes=2)
    scripts.update({f"bench-{p.ranks}": render_job(profile, "bench", p, name="sweep", args=[], log="/j/l.log")
                    for p in scaling_sweep(full)})
    for kind, script in scripts.items():
        path = tmp_path / f"{kind}.sh"
        path.write_text(script)
        syntax = subprocess.run(["bash", "-n", str(path)], capture_output=True, text=True)
        assert syntax.returncode == 0, f"{cluster} {kind}: {syntax.stderr}"
        lint = subprocess.run(["shellcheck", "--shell=bash", "--severity=style", str(path)], capture_output=True,
                              text=True)
        assert lint.returncode == 0 and lint.stdout == "", f"{cluster} {kind}:\n{lint.stdout}"


# --- key directives -----------------------------------------------------------------------------

def directives(script, prefix):
    return [line[len(prefix) + 1:] for line in script.splitlines() if line.startswith(prefix + " ")]


def test_galileo_gpu_job_asks_for_all_four_gpus_one_rank_each():
    lines = directives(render(load_profile("galileo"), nodes=2), "#SBATCH")
    assert {"--nodes=2", "--ntasks-per-node=4", "--cpus-per-task=4", "--gres=gpu:4", "--time=02:00:00",
            "--partition=gll_usr_gpuprod", "--account=your_project", "--job-name=semhpc-job",
            "--output=/jobs/job-%j.log"} <= set(lines)


def test_c3hpc_pbs_select_line_places_two_gpu_ranks_per_node():
    lines = directives(render(load_profile("c3hpc"), nodes=2), "#PBS")
    select = next(line for line in lines if line.startswith("-l select="))
    assert select.startswith("-l select=2:ncpus=24:ngpus=2:mpiprocs=2")
    assert {"-l walltime=04:00:00", "-q gpu", "-N semhpc-job", "-j oe", "-o /jobs/job-%j.log"} <= set(lines)


def test_testbed_slurm_job_names_its_account_partition_and_debug_qos():
    lines = directives(render(load_profile("testbed-slurm"), nodes=2), "#SBATCH")
    assert {"--nodes=2", "--ntasks-per-node=1", "--cpus-per-task=1", "--account=tb_semhpc",
            "--partition=tb_usr_prod", "--qos=tb_qos_dbg", "--time=00:20:00"} <= set(lines)
    assert not any(line.startswith("--qos") for line in directives(render(load_profile("galileo")), "#SBATCH"))


def test_cpu_jobs_use_the_cpu_queue_and_cpu_ranks_without_gpus():
    c3hpc = directives(render(load_profile("c3hpc"), "ingest", args=("src", "out")), "#PBS")
    assert "-l select=1:ncpus=24:mpiprocs=2:mem=60gb" in c3hpc and "-q cpu" in c3hpc
    marconi = directives(render(load_profile("marconi-a2")), "#SBATCH")
    assert {"--ntasks-per-node=4", "--cpus-per-task=17", "--partition=knl_usr_prod"} <= set(marconi)
    assert not any(line.startswith("--gres") for line in marconi)


@pytest.mark.parametrize("given, clock", [("90m", "01:30:00"), ("1-12:00:00", "36:00:00"), ("2d", "48:00:00"),
                                          ("4:05:00", "04:05:00")])
def test_walltimes_are_written_as_hours_minutes_seconds_for_both_schedulers(given, clock):
    assert f"#SBATCH --time={clock}" in render(load_profile("generic-slurm"), walltime=given).splitlines()
    assert f"#PBS -l walltime={clock}" in render(load_profile("c3hpc"), walltime=given).splitlines()


def test_impossible_requests_are_one_line_errors():
    galileo = load_profile("galileo")
    with pytest.raises(SemhpcError, match="at most 24:00:00"):
        plan_resources(galileo, "train", walltime="25:00:00")
    with pytest.raises(SemhpcError, match="galileo nodes have 4 GPU"):
        plan_resources(galileo, "train", gpus_per_node=8)
    with pytest.raises(SemhpcError, match="jupyter job runs on one node"):
        plan_resources(galileo, "jupyter", nodes=2)
    with pytest.raises(SemhpcError, match="walltime must look like"):
        parse_walltime("1:75:00", "--walltime")


def test_bench_sweep_doubles_ranks_on_one_node_then_nodes():
    full = plan_resources(load_profile("galileo"), "bench", nodes=4)
    sweep = [(p.nodes, p.ranks_per_node, p.gpus_per_node, p.cores_per_rank) for p in scaling_sweep(full)]
    assert sweep == [(1, 1, 1, 4), (1, 2, 2, 4), (1, 4, 4, 4), (2, 4, 4, 4), (4, 4, 4, 4)]


# --- profiles: discovery and validation -----------------------------------------------------------

def test_semhpc_clusters_folder_overrides_a_shipped_profile(tmp_path, monkeypatch):
    data = yaml.safe_load((SHIPPED_DIR / "clusters" / "galileo.yaml").read_text())
    data["scheduler"]["account"] = "my_project"
    (tmp_path / "galileo.yaml").write_text(yaml.safe_dump(data))
    monkeypatch.setenv("SEMHPC_CLUSTERS", str(tmp_path))
    assert available_profiles()["galileo"] == tmp_path / "galileo.yaml"
    assert "#SBATCH --account=my_project" in render(load_profile("galileo")).splitlines()


@pytest.mark.parametrize("changes, message", [
    ({"node": {"gpu": 2}}, r"unknown key 'node.gpu'; did you mean 'node.gpus'\?"),
    ({"cluster": "x"}, r"unknown key 'cluster'"),
    ({"scheduler": {"type": "lsf"}}, r"scheduler.type = 'lsf' must be one of: slurm, pbs"),
    ({"scheduler": {"cpu_queue": "x; rm -rf ~"}}, r"scheduler.cpu_queue = 'x; rm -rf ~' may only hold"),
    ({"env": {"EVIL": "$(touch PWNED)"}}, r"env.EVIL = .*only \$\{NAME\} references"),
    ({"env": {"BAD NAME": "1"}}, r"env name 'BAD NAME' is not a valid"),
    ({"execution": {"image": ""}}, r"execution.image is required when execution.mode is container"),
    ({"scheduler": {"type": "pbs", "qos": "debug"}}, r"scheduler.qos is a Slurm setting"),
    ({"scheduler": {"qos": "dbg qos"}}, r"scheduler.qos = 'dbg qos' may only hold"),
    ({"paths": {"data": "/a,b"}}, r"paths.data = '/a,b': a container bind path cannot hold"),
])
def test_profile_mistakes_are_one_line_errors_naming_file_and_key(tmp_path, changes, message):
    with pytest.raises(SemhpcError, match=message) as error:
        profile_from(tmp_path, "galileo", changes)
    assert str(error.value).startswith(str(tmp_path / "test-site.yaml")) and "\n" not in str(error.value)


def test_missing_required_key_and_unknown_cluster(tmp_path):
    with pytest.raises(SemhpcError, match="missing required key 'node.cores'"):
        parse_profile("x", tmp_path / "x.yaml", {"scheduler": {"type": "slurm"}, "execution": {"mode": "bare-metal"}})
    with pytest.raises(SemhpcError, match="unknown cluster 'galilei'; did you mean 'galileo'"):
        load_profile("galilei")


# --- script bodies with stub tools ------------------------------------------------------------------

def test_pbs_container_job_runs_singularity_ranks_under_the_host_mpirun(tmp_path):
    image = tmp_path / "semhpc.sif"
    image.write_text("")
    profile = profile_from(tmp_path, "c3hpc", {"execution": {"image": str(image)},
                                               "paths": {"data": str(tmp_path / "data"),
                                                         "scratch": "${SCRATCH_ROOT}/sem"}})
    script = render(profile, nodes=2)
    calls, _ = run_body(script, tmp_path, pbs_env(tmp_path, ["n1", "n1", "n2", "n2"], 24),
                        {"mpirun": "", "module": "", "singularity": ""}, {"SCRATCH_ROOT": "/scr"})
    assert call_of(calls, "module")[0] == ["module", "load", "openmpi/4.1", "singularity"]
    argv, env = call_of(calls, "mpirun")
    assert argv[0] == "mpirun" and option(argv, "-np") == "4" and option(argv, "-H") == "n1:2,n2:2"
    assert option(argv, "--map-by") == "slot:PE=12" and "OMP_NUM_THREADS=12" in argv
    tail = argv[argv.index("singularity"):]
    assert tail == ["singularity", "exec", "--nv", "--bind", os.environ["HOME"], "--bind", str(tmp_path / "data"),
                    "--bind", "/scr/sem", str(image), "python", "-m", "semhpc", "train", "--config", "run.yaml"]
    assert env["NCCL_SOCKET_IFNAME"] == "ib0" and "NCCL_SOCKET_IFNAME" in argv  # exported, and -x to remote ranks
    assert env["SEMHPC_JOB_ID"] == "77.pbsserver" and env["PWD"] == str(tmp_path / "submitdir")


def test_slurm_srun_job_starts_container_ranks_with_pmix_and_the_launcher_settings(tmp_path):
    (tmp_path / "semhpc").mkdir()
    (tmp_path / "semhpc" / "semhpc-0.1.0-cuda.sif").write_text("")
    script = render(load_profile("galileo"), nodes=2, gpus_per_node=2)
    calls, _ = run_body(script, tmp_path, slurm_env(tmp_path, "node[1-2]", 2),
                        {"srun": "", "module": "", "singularity": "", "scontrol": "node1\nnode2\n"},
                        {"CINECA_SCRATCH": str(tmp_path), "WORK": "/work/u"})
    argv, env = call_of(calls, "srun")
    assert argv[1:8] == ["--mpi=pmix", "--nodes=2", "--ntasks=4", "--ntasks-per-node=2", "--cpus-per-task=8",
                         "--cpu-bind=cores", "singularity"]
    assert argv[8:11] == ["exec", "--nv", "--bind"] and argv[-5:] == ["-m", "semhpc", "train", "--config", "run.yaml"]
    assert (env["OMP_NUM_THREADS"], env["HOROVOD_CYCLE_TIME"], env["OMPI_MCA_mpi_yield_when_idle"]) == ("8", "5", "1")


def test_bare_metal_knl_job_loads_modules_activates_the_venv_and_pins_threads(tmp_path):
    venv = tmp_path / "home" / "semhpc-venv" / "bin"
    venv.mkdir(parents=True)
    (venv / "activate").write_text("export VIRTUAL_ENV=activated\n")
    (venv / "python").symlink_to(sys.executable)
    calls, _ = run_body(render(load_profile("marconi-a2")), tmp_path, slurm_env(tmp_path, "knl7", 4),
                        {"mpirun": "", "module": "", "scontrol": "knl7\n"},
                        {"HOME": str(tmp_path / "home"), "WORK": "/w", "CINECA_SCRATCH": "/s"})
    assert call_of(calls, "module")[0] == ["module", "load", "python/3.11", "openmpi/4.1"]
    argv, env = call_of(calls, "mpirun")
    assert option(argv, "-np") == "4" and option(argv, "-H") == "knl7:4" and "OMP_NUM_THREADS=17" in argv
    assert argv[argv.index(str(venv / "python")):] == [str(venv / "python"), "-m", "semhpc", "train", "--config",
                                                        "run.yaml"]
    assert env["VIRTUAL_ENV"] == "activated" and env["KMP_AFFINITY"] == "granularity=fine,compact,1,0"


def test_pbs_script_body_without_pbs_server_hands_mpirun_the_nodefile_hosts(tmp_path):
    profile = profile_from(tmp_path, None, LOCAL_PBS)
    calls, result = run_body(render(profile), tmp_path, pbs_env(tmp_path, ["vm", "vm"], 2), {"mpirun": ""})
    argv, _ = call_of(calls, "mpirun")
    assert option(argv, "-np") == "2" and option(argv, "-H") == "vm:2"
    assert argv[argv.index(f"{sys.prefix}/bin/python"):] == [f"{sys.prefix}/bin/python", "-m", "semhpc", "train",
                                                               "--config", "run.yaml"]
    assert "semhpc job 77.pbsserver" in result.stdout


# --- safety: nothing a user types can run ------------------------------------------------------

def test_hostile_arguments_reach_the_ranks_as_literal_text(tmp_path):
    script = render(load_profile("local-slurm"), args=["--config", *EVIL])
    calls, _ = run_body(script, tmp_path, slurm_env(tmp_path), {"mpirun": "", "scontrol": "node1\n"})
    argv, _ = call_of(calls, "mpirun")
    assert argv[-len(EVIL) - 2:] == ["train", "--config", *EVIL]
    assert not list(tmp_path.rglob("PWNED"))


def test_hostile_profile_values_stay_literal(tmp_path):
    profile = profile_from(tmp_path, "local-slurm", {"env": {"NOTE": 'a"; touch PWNED; "\' ${HOME}'},
                                                     "paths": {"data": "/d; touch PWNED"}})
    calls, _ = run_body(render(profile), tmp_path, slurm_env(tmp_path), {"mpirun": "", "scontrol": "node1\n"})
    env = call_of(calls, "mpirun")[1]
    assert env["NOTE"] == f'a"; touch PWNED; "\' {os.environ["HOME"]}' and env["SEMHPC_DATA"] == "/d; touch PWNED"
    assert not list(tmp_path.rglob("PWNED"))


@pytest.mark.parametrize("name", ['x"; touch /tmp/pwned; "', "$(id)", "a b", "-x", "x" * 64])
def test_hostile_job_names_are_refused(name, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert cli.main(["submit", "--cluster", "local-slurm", "--job", "train", f"--name={name}", "--dry-run"]) == 2
    error = capsys.readouterr().err
    assert error.startswith("semhpc submit: error: --name") and error.count("\n") == 1
    assert not os.path.exists("/tmp/pwned")


def test_job_dir_that_directives_cannot_hold_is_refused(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert cli.main(["submit", "--cluster", "local-slurm", "--job", "train", "--job-dir", "a b;c", "--dry-run"]) == 2
    assert "--job-dir" in capsys.readouterr().err


# --- semhpc submit / jobs / cancel against stub schedulers --------------------------------------

@pytest.fixture
def submit_here(tmp_path, monkeypatch):
    """cwd = tmp_path/work, the job registry in tmp_path/home, stub sbatch/squeue/scancel on PATH."""
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    monkeypatch.setenv("SEMHPC_HOME", str(tmp_path / "home"))
    bin_dir, calls = stubs(tmp_path, {"sbatch": "101\n", "squeue": "101|RUNNING\n999|RUNNING\n", "scancel": ""})
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
    return work, calls


def test_dry_run_prints_the_script_and_submits_nothing(submit_here, capsys):
    work, calls = submit_here
    assert cli.main(["submit", "--cluster", "local-slurm", "--job", "train", "--dry-run", "--",
                     "--config", "c.yaml"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("#!/bin/bash\n#SBATCH --job-name=semhpc-train\n")
    assert f"#SBATCH --output={work}/semhpc-jobs/semhpc-train-%j.log" in out.splitlines()
    assert not calls.exists() and not (work / "semhpc-jobs").exists()


def test_submit_records_the_job_and_jobs_and_cancel_use_the_record(submit_here, capsys):
    work, calls = submit_here
    assert cli.main(["submit", "--cluster", "local-slurm", "--job", "train", "--walltime", "10m", "--",
                     "--config", "c.yaml"]) == 0
    assert capsys.readouterr().out.split()[:2] == ["job", "101"]
    sbatch = json.loads(calls.read_text().splitlines()[0])["argv"]
    script = Path(sbatch[-1])
    assert sbatch[:2] == ["sbatch", "--parsable"] and script.parent == work / "semhpc-jobs"
    assert "#SBATCH --time=00:10:00" in script.read_text().splitlines()

    assert cli.main(["jobs"]) == 0
    table = capsys.readouterr().out.splitlines()
    assert table[0].split() == ["JOB", "CLUSTER", "KIND", "NAME", "STATE", "SUBMITTED", "LOG"]
    assert table[1].split()[:5] == ["101", "local-slurm", "train", "semhpc-train", "RUNNING"]
    assert table[1].split()[-1] == f"{work}/semhpc-jobs/semhpc-train-101.log" and len(table) == 2  # not job 999

    assert cli.main(["cancel", "999"]) == 2
    assert "not submitted by semhpc" in capsys.readouterr().err
    assert cli.main(["cancel", "101"]) == 0
    assert json.loads(calls.read_text().splitlines()[-1])["argv"] == ["scancel", "101"]


def test_pbs_job_ids_are_cancelled_typed_with_or_without_the_server_suffix(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("SEMHPC_HOME", str(tmp_path / "home"))
    qstat = "Job Id: 12.head|Job_Name=semhpc-train|job_state=R|queue=workq\nJob Id: 13.head|job_state=Q\n"
    bin_dir, calls = stubs(tmp_path, {"qsub": "12.head\n", "qstat": qstat, "qdel": ""})
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
    assert cli.main(["submit", "--cluster", "testbed-pbs", "--job", "train", "--", "--config", "c.yaml"]) == 0
    assert capsys.readouterr().out.split()[:2] == ["job", "12.head"]
    assert cli.main(["jobs"]) == 0
    assert capsys.readouterr().out.splitlines()[1].split()[:5] == ["12.head", "testbed-pbs", "train", "semhpc-train",
                                                                    "RUNNING"]
    assert cli.main(["cancel", "13"]) == 2  # not semhpc's job, short or long
    assert cli.main(["cancel", "12"]) == 0
    assert capsys.readouterr().out.startswith("cancelled job 12.head ")
    assert cli.main(["cancel", "12.head"]) == 0
    deleted = [argv for argv in (json.loads(line)["argv"] for line in calls.read_text().splitlines()) if argv[0] == "qdel"]
    assert deleted == [["qdel", "12.head"]] * 2


def test_bench_sweep_is_submitted_as_a_chain_of_dependent_jobs(submit_here, monkeypatch, capsys):
    work, calls = submit_here
    monkeypatch.setattr(submit, "check_job_arguments", lambda kind, argv: None)  # bench's options are not the point
    profile = work / "two-nodes.yaml"
    profile.write_text(yaml.safe_dump({"scheduler": {"type": "slurm"}, "node": {"cores": 4, "cpu_ranks": 4},
                                       "execution": {"mode": "bare-metal"}}))
    assert cli.main(["submit", "--cluster", str(profile), "--job", "bench", "--nodes", "2", "--", "--steps", "5"]) == 0
    submitted = [json.loads(line)["argv"] for line in calls.read_text().splitlines()]
    assert [argv[2] for argv in submitted[1:]] == ["--dependency=afterany:101"] * 3
    ranks = [directives(Path(argv[-1]).read_text(), "#SBATCH") for argv in submitted]
    assert [(r[1], r[2]) for r in ranks] == [("--nodes=1", "--ntasks-per-node=1"), ("--nodes=1", "--ntasks-per-node=2"),
                                             ("--nodes=1", "--ntasks-per-node=4"), ("--nodes=2", "--ntasks-per-node=4")]
    assert len(capsys.readouterr().out.splitlines()) == 4


# --- for real: the PBS body launches a 2-rank Horovod training (no PBS server involved) -------

@pytest.mark.slow
@pytest.mark.mpi
def test_pbs_script_body_without_pbs_server_launches_2_rank_training(tmp_path):
    def semhpc(*args):
        out = subprocess.run([sys.executable, "-m", "semhpc", *args], capture_output=True, text=True, timeout=600)
        assert out.returncode == 0, out.stderr
    semhpc("synth", str(tmp_path / "tiffs"), "--per-class", "8", "--size", "64x48", "--seed", "3")
    semhpc("ingest", str(tmp_path / "tiffs"), str(tmp_path / "data"), "--size", "64x48", "--shards-per-split", "2")
    (tmp_path / "submitdir").mkdir()
    (tmp_path / "submitdir" / "tiny.yaml").write_text(yaml.safe_dump({
        "run": {"dir": "run"}, "data": {"dir": str(tmp_path / "data"), "image_size": 32, "augment": False},
        "model": {"name": "densenet28"}, "train": {"epochs": 1, "batch_size": 4}}))
    profile = profile_from(tmp_path, None, LOCAL_PBS)
    script = tmp_path / "job.sh"
    script.write_text(render(profile, args=["--config", "tiny.yaml"]))
    host = subprocess.run(["hostname"], capture_output=True, text=True).stdout.strip()
    env = {**os.environ, **pbs_env(tmp_path, [host, host], 2)}
    result = subprocess.run(["bash", str(script)], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stderr[-4000:]
    records = read_metrics(tmp_path / "submitdir" / "run" / "metrics.jsonl")
    assert [r["ranks"] for r in records if r["kind"] == "start"] == [2]
    assert [r["epoch"] for r in records if r["kind"] == "epoch"] == [1]


def test_every_profile_key_is_documented_in_the_hpc_readme():
    readme = (SHIPPED_DIR / "README.md").read_text()
    assert [f"{s}.{k}" for s, keys in PROFILE_SCHEMA.items() for k in keys if f"`{s}.{k}`" not in readme] == []

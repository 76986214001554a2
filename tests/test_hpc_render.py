"""Cluster profiles and job scripts without a scheduler: every job kind for every profile passes
`bash -n` and shellcheck, key directives are right, values can never run as code, and the script
bodies, run with the environment Slurm or PBS Pro would set and stub tools on PATH, start exactly
the commands they should. The slow test runs a PBS script's body for real (no PBS server here).
"""

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from cli_runs import synth_and_ingest
from semhpc import cli
from semhpc.hpc import SHIPPED_DIR, submission
from semhpc.hpc.profiles import PROFILE_SCHEMA, available_profiles, load_profile, parse_profile
from semhpc.hpc.render import render_job
from semhpc.hpc.resources import IMAGE_COMPUTE_CAPABILITIES, JOB_KINDS, parse_walltime, plan_resources, scaling_sweep
from semhpc.utils.errors import SemhpcError
from semhpc.utils.metrics_log import read_metrics

SHIPPED = ["c3hpc", "leonardo-booster", "leonardo-dcgp", "galileo100", "generic-slurm", "local-slurm",
           "testbed-slurm", "testbed-pbs"]
# The thesis' retired machines, loadable by path only.
HISTORICAL = [str(SHIPPED_DIR / "clusters" / "historical" / f"{name}.yaml") for name in ("galileo", "marconi-a2")]
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

def test_the_shipped_profiles_are_all_found_and_the_retired_ones_only_by_path():
    assert set(SHIPPED) <= set(available_profiles())
    assert not {"galileo", "marconi-a2"} & set(available_profiles())
    assert [load_profile(path).name for path in HISTORICAL] == ["galileo", "marconi-a2"]


@pytest.mark.parametrize("cluster", SHIPPED + HISTORICAL, ids=lambda cluster: cluster.rpartition("/clusters/")[2])
def test_every_job_kind_renders_a_script_bash_and_shellcheck_accept(cluster, tmp_path):
    assert shutil.which("shellcheck"), "shellcheck not found: scripts/bootstrap.sh --test installs it"
    profile = load_profile(cluster)
    scripts = {kind: render(profile, kind) for kind in JOB_KINDS}
    full = plan_resources(profile, "bench", nodes=2)
    scripts.update({f"bench-{p.ranks}": render_job(profile, "bench", p, name="sweep", args=[], log="/j/l.log")
                    for p in scaling_sweep(full, profile.node)})
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


def test_leonardo_booster_gpu_job_asks_for_all_four_gpus_one_rank_each_with_the_qos():
    lines = directives(render(load_profile("leonardo-booster"), nodes=2), "#SBATCH")
    assert {"--nodes=2", "--ntasks-per-node=4", "--cpus-per-task=8", "--gres=gpu:4", "--mem=480G",
            "--time=02:00:00", "--partition=boost_usr_prod", "--qos=normal", "--account=your_project",
            "--job-name=semhpc-job", "--output=/jobs/job-%j.log"} <= set(lines)


def test_memory_follows_the_gpus_and_cores_a_job_uses_not_the_node():
    booster = load_profile("leonardo-booster")
    assert "--mem=120G" in directives(render(booster, gpus_per_node=1), "#SBATCH")
    assert "--mem=480G" in directives(render(booster, "ingest", args=("a", "b")), "#SBATCH")  # 32 cores x 15
    sweep = scaling_sweep(plan_resources(booster, "bench", nodes=2), booster.node)
    assert [(p.ranks, p.memory_gb) for p in sweep] == [(1, 120), (2, 240), (4, 480), (8, 480)]
    assert "--mem=448G" in directives(render(load_profile("leonardo-dcgp")), "#SBATCH")  # 112 cores x 4


def test_pbs_select_line_places_two_gpu_ranks_per_node(tmp_path):
    newer_gpus = profile_from(tmp_path, "c3hpc", {"node": {"gpu_model": "V100", "gpu_compute_capability": 7.0,
                                                           "memory_gb_per_gpu": 20}})
    lines = directives(render(newer_gpus, nodes=2), "#PBS")
    assert "-l select=2:ncpus=24:ngpus=2:mpiprocs=2:mem=40gb" in lines
    assert {"-l place=scatter", "-l walltime=04:00:00", "-q gpu", "-N semhpc-job", "-j oe",
            "-o /jobs/job-%j.log"} <= set(lines)


def test_testbed_slurm_job_names_its_account_partition_and_debug_qos():
    lines = directives(render(load_profile("testbed-slurm"), nodes=2), "#SBATCH")
    assert {"--nodes=2", "--ntasks-per-node=1", "--cpus-per-task=1", "--account=tb_semhpc",
            "--partition=tb_usr_prod", "--qos=tb_qos_dbg", "--time=00:20:00"} <= set(lines)
    assert not any(line.startswith("--qos") for line in directives(render(load_profile("local-slurm")), "#SBATCH"))


def test_cpu_jobs_use_the_cpu_queue_and_cpu_ranks_without_gpus():
    c3hpc = directives(render(load_profile("c3hpc"), "ingest", args=("src", "out")), "#PBS")
    assert "-l select=1:ncpus=24:mpiprocs=2:mem=48gb" in c3hpc and "-q cpu" in c3hpc
    dcgp = directives(render(load_profile("leonardo-dcgp")), "#SBATCH")
    assert {"--ntasks-per-node=8", "--cpus-per-task=14", "--partition=dcgp_usr_prod", "--qos=normal"} <= set(dcgp)
    assert not any(line.startswith("--gres") for line in dcgp)


def test_gpus_older_than_the_image_are_refused_naming_both_and_jobs_default_to_cpu_ranks():
    c3hpc = load_profile("c3hpc")
    with pytest.raises(SemhpcError) as error:
        plan_resources(c3hpc, "train", gpus_per_node=1)
    message = str(error.value)
    assert "Tesla K20, compute capability 3.5" in message and "7.0, 7.5, 8.0, 8.6, 9.0" in message
    default = plan_resources(c3hpc, "train")
    assert (default.gpus_per_node, default.ranks_per_node, default.queue) == (0, 2, "cpu")
    assert plan_resources(load_profile("galileo100"), "train").gpus_per_node == 2  # V100 = 7.0: usable


def test_the_image_compute_capabilities_are_those_the_dockerfile_builds():
    dockerfile = (SHIPPED_DIR.parent / "containers" / "Dockerfile").read_text()
    (built,) = re.findall(r"^ARG CUDA_CC_LIST=([0-9,]+)$", dockerfile, re.MULTILINE)
    assert tuple(int(cc) / 10 for cc in built.split(",")) == IMAGE_COMPUTE_CAPABILITIES


def test_site_directives_for_slurm(tmp_path):
    profile = profile_from(tmp_path, "leonardo-booster", {"scheduler": {
        "constraint": "a100&ib", "exclusive": True, "reservation": "s_res", "gpus_per_task": True,
        "gpu_bind": "closest", "extra_directives": ["--mail-type=END", "--signal=B:USR1@300"]}})
    lines = directives(render(profile, gpus_per_node=2), "#SBATCH")
    assert {"--gpus-per-task=1", "--gpu-bind=closest", "--mem=240G", "--constraint=a100&ib", "--exclusive",
            "--reservation=s_res", "--qos=normal", "--mail-type=END", "--signal=B:USR1@300"} <= set(lines)
    assert not any(line.startswith("--gres") for line in lines)
    lines = directives(render(profile, qos="boost_qos_dbg", reservation=""), "#SBATCH")
    assert "--qos=boost_qos_dbg" in lines and not any(line.startswith("--reservation") for line in lines)


def test_site_directives_for_pbs(tmp_path):
    profile = profile_from(tmp_path, "c3hpc", {"scheduler": {"place": "pack", "exclusive": True,
                                                             "extra_directives": ["-W group_list=sem", "-m abe"]}})
    lines = directives(render(profile, reservation="R123.pbs"), "#PBS")
    assert {"-l place=pack:excl", "-q R123.pbs", "-W group_list=sem", "-m abe"} <= set(lines)
    assert "-q cpu" not in lines


@pytest.mark.parametrize("given, clock", [("90m", "01:30:00"), ("1-12:00:00", "36:00:00"), ("2d", "48:00:00"),
                                          ("4:05:00", "04:05:00")])
def test_walltimes_are_written_as_hours_minutes_seconds_for_both_schedulers(given, clock):
    assert f"#SBATCH --time={clock}" in render(load_profile("generic-slurm"), walltime=given).splitlines()
    assert f"#PBS -l walltime={clock}" in render(load_profile("c3hpc"), walltime=given).splitlines()


def test_impossible_requests_are_one_line_errors():
    booster = load_profile("leonardo-booster")
    with pytest.raises(SemhpcError, match="at most 24:00:00"):
        plan_resources(booster, "train", walltime="25:00:00")
    with pytest.raises(SemhpcError, match="leonardo-booster nodes have 4 GPU"):
        plan_resources(booster, "train", gpus_per_node=8)
    with pytest.raises(SemhpcError, match="jupyter job runs on one node"):
        plan_resources(booster, "jupyter", nodes=2)
    with pytest.raises(SemhpcError, match="walltime must look like"):
        parse_walltime("1:75:00", "--walltime")


def test_jupyter_job_asks_what_a_notebook_needs_and_ends_when_idle(tmp_path):
    """Not the whole node: the profile's jupyter.cores and memory; the idle timeout reaches JupyterLab."""
    dcgp = load_profile("leonardo-dcgp")
    lines = directives(render(dcgp, "jupyter", args=()), "#SBATCH")
    assert {"--nodes=1", "--ntasks-per-node=1", "--cpus-per-task=2", "--mem=8G"} <= set(lines)
    script = render(profile_from(tmp_path, "c3hpc", {"jupyter": {"cores": 4, "memory_gb": 16, "idle_minutes": 30}}),
                    "jupyter", args=())
    assert "#PBS -l select=1:ncpus=4:mpiprocs=1:mem=16gb" in script.splitlines()
    assert "SEMHPC_IDLE_SECONDS=1800" in script.splitlines()
    assert '--ServerApp.shutdown_no_activity_timeout="$SEMHPC_IDLE_SECONDS"' in script
    # Never more cores than the node has.
    assert plan_resources(profile_from(tmp_path, "c3hpc", {"jupyter": {"cores": 999}}), "jupyter").cores_per_rank == \
        load_profile("c3hpc").node.cores


def test_bench_sweep_doubles_ranks_on_one_node_then_nodes():
    booster = load_profile("leonardo-booster")
    full = plan_resources(booster, "bench", nodes=4)
    sweep = [(p.nodes, p.ranks_per_node, p.gpus_per_node, p.cores_per_rank)
             for p in scaling_sweep(full, booster.node)]
    assert sweep == [(1, 1, 1, 8), (1, 2, 2, 8), (1, 4, 4, 8), (2, 4, 4, 8), (4, 4, 4, 8)]


# --- profiles: discovery and validation -----------------------------------------------------------

def test_semhpc_clusters_folder_overrides_a_shipped_profile(tmp_path, monkeypatch):
    data = yaml.safe_load((SHIPPED_DIR / "clusters" / "leonardo-booster.yaml").read_text())
    data["scheduler"]["account"] = "my_project"
    (tmp_path / "leonardo-booster.yaml").write_text(yaml.safe_dump(data))
    monkeypatch.setenv("SEMHPC_CLUSTERS", str(tmp_path))
    assert available_profiles()["leonardo-booster"] == tmp_path / "leonardo-booster.yaml"
    assert "#SBATCH --account=my_project" in render(load_profile("leonardo-booster")).splitlines()


SLURM_SITE, PBS_SITE = "leonardo-booster", "c3hpc"


@pytest.mark.parametrize("base, changes, message", [
    (SLURM_SITE, {"node": {"gpu": 2}}, r"unknown key 'node.gpu'; did you mean 'node.gpus'\?"),
    (SLURM_SITE, {"cluster": "x"}, r"unknown key 'cluster'"),
    (SLURM_SITE, {"scheduler": {"type": "lsf"}}, r"scheduler.type = 'lsf' must be one of: slurm, pbs"),
    (SLURM_SITE, {"scheduler": {"cpu_queue": "x; rm -rf ~"}}, r"scheduler.cpu_queue = 'x; rm -rf ~' may only hold"),
    (SLURM_SITE, {"env": {"EVIL": "$(touch PWNED)"}}, r"env.EVIL = .*only \$\{NAME\} references"),
    (SLURM_SITE, {"env": {"BAD NAME": "1"}}, r"env name 'BAD NAME' is not a valid"),
    (SLURM_SITE, {"execution": {"image": ""}}, r"execution.image is required when execution.mode is container"),
    (SLURM_SITE, {"paths": {"data": "/a,b"}}, r"paths.data = '/a,b': a container bind path cannot hold"),
    (SLURM_SITE, {"scheduler": {"qos": "normal; rm"}}, r"scheduler.qos = 'normal; rm' may only hold"),
    (SLURM_SITE, {"scheduler": {"reservation": "a b"}}, r"scheduler.reservation = 'a b' may only hold"),
    (SLURM_SITE, {"scheduler": {"constraint": "a100$(id)"}},
     r"scheduler.constraint = .* may only hold feature names"),
    (SLURM_SITE, {"scheduler": {"gpu_bind": "closest;x"}}, r"scheduler.gpu_bind = .* may only hold"),
    (SLURM_SITE, {"scheduler": {"exclusive": "yes"}}, r"scheduler.exclusive = 'yes' is not a valid bool"),
    (SLURM_SITE, {"scheduler": {"place": "pack"}},
     r"scheduler.place is a PBS Pro setting; this profile's scheduler.type is slurm"),
    (SLURM_SITE, {"scheduler": {"extra_directives": ["--mail-type=END; touch PWNED"]}},
     r"extra_directives entry .*one option"),
    (SLURM_SITE, {"scheduler": {"extra_directives": ["--mail-type=END\n--x"]}},
     r"extra_directives entry .*one option"),
    (SLURM_SITE, {"scheduler": {"extra_directives": ["#SBATCH --mail-type=END"]}},
     r"extra_directives entry .*no prefix"),
    (SLURM_SITE, {"scheduler": {"extra_directives": ["--time=48:00:00"]}}, r"semhpc writes --time itself"),
    (SLURM_SITE, {"scheduler": {"extra_directives": ["--mail-type=END --time=48:00:00"]}},
     r"extra_directives entry .*one option per entry"),
    (SLURM_SITE, {"scheduler": {"extra_directives": ["-p other"]}}, r"semhpc writes --partition itself"),
    (SLURM_SITE, {"scheduler": {"extra_directives": "--mail-type=END"}},
     r"scheduler.extra_directives = .* is not a valid list"),
    (SLURM_SITE, {"node": {"gpu_compute_capability": None}},
     r"node.gpu_compute_capability is required when node.gpus > 0"),
    (SLURM_SITE, {"node": {"gpus": 0, "gpu_compute_capability": 0.0}}, r"node.memory_gb_per_gpu needs node.gpus > 0"),
    (SLURM_SITE, {"job_defaults": {"trian": []}}, r"unknown job kind 'job_defaults.trian'; did you mean 'train'"),
    (SLURM_SITE, {"job_defaults": {"train": "--set x=1"}}, r"job_defaults.train must be a list of strings"),
    (PBS_SITE, {"scheduler": {"qos": "normal"}},
     r"scheduler.qos is a Slurm setting; this profile's scheduler.type is pbs"),
    (PBS_SITE, {"scheduler": {"gpus_per_task": True}}, r"scheduler.gpus_per_task is a Slurm setting"),
    (PBS_SITE, {"scheduler": {"place": "everywhere"}}, r"scheduler.place = 'everywhere' must be free, pack, scatter"),
    (PBS_SITE, {"scheduler": {"extra_directives": ["-l select=4:ncpus=8"]}}, r"semhpc writes -l select itself"),
    (PBS_SITE, {"scheduler": {"extra_directives": ["-l place=pack"]}}, r"semhpc writes scheduler.place itself"),
])
def test_profile_mistakes_are_one_line_errors_naming_file_and_key(tmp_path, base, changes, message):
    with pytest.raises(SemhpcError, match=message) as error:
        profile_from(tmp_path, base, changes)
    assert str(error.value).startswith(str(tmp_path / "test-site.yaml")) and "\n" not in str(error.value)


def test_missing_required_key_and_unknown_cluster(tmp_path):
    with pytest.raises(SemhpcError, match="missing required key 'node.cores'"):
        parse_profile("x", tmp_path / "x.yaml", {"scheduler": {"type": "slurm"}, "execution": {"mode": "bare-metal"}})
    with pytest.raises(SemhpcError, match="unknown cluster 'leonardo-boost'; did you mean 'leonardo-booster'"):
        load_profile("leonardo-boost")


# --- script bodies with stub tools ------------------------------------------------------------------

def test_pbs_container_job_runs_singularity_ranks_under_the_host_mpirun(tmp_path):
    image = tmp_path / "semhpc.sif"
    image.write_text("")
    profile = profile_from(tmp_path, "c3hpc", {"execution": {"image": str(image)},
                                               "node": {"gpu_compute_capability": 7.0},
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


RUNTIME_TAILS = {  # the rank's command after the host mpirun's options, for image IMAGE and data folder DATA
    "apptainer": ["apptainer", "exec", "--nv", "--bind", "HOME", "--bind", "DATA", "IMAGE", "python"],
    "singularity": ["singularity", "exec", "--nv", "--bind", "HOME", "--bind", "DATA", "IMAGE", "python"],
    "charliecloud": ["ch-run", "--cd=WORKDIR", "--set-env", "--home", "--bind=DATA", "IMAGE", "--", "python"],
    "podman": ["podman", "run", "--rm", "--env-host", "--userns=keep-id", "--net=host", "--pid=host", "--ipc=host",
               "--workdir=WORKDIR", "--volume=WORKDIR:WORKDIR", "--volume=/tmp:/tmp",
               "--entrypoint=/opt/semhpc/venv/bin/python",
               "--device=nvidia.com/gpu=all", "--volume=HOME:HOME", "--volume=DATA:DATA", "IMAGE"],
}


@pytest.mark.parametrize("runtime", RUNTIME_TAILS)
def test_each_container_runtime_starts_the_ranks_with_its_words(runtime, tmp_path):
    """execution.runtime picks the exec line, GPU flag, environment and binds of hpc/runtimes.yaml."""
    from semhpc.hpc.runtimes import container_runtime

    image = tmp_path / "semhpc-image"
    image.mkdir()
    program = container_runtime(runtime).program
    profile = profile_from(tmp_path, "c3hpc", {"execution": {"runtime": runtime, "image": str(image)},
                                               "node": {"gpu_compute_capability": 7.0},
                                               "paths": {"data": str(tmp_path / "data"), "scratch": ""}})
    pbs_tmpdir = "/var/tmp/pbs.77.pbsserver"  # PBS's per-job TMPDIR
    calls, _ = run_body(render(profile, gpus_per_node=2), tmp_path, pbs_env(tmp_path, ["n1", "n1"], 24),
                        {"mpirun": "", "module": "", program: ""}, extra_env={"TMPDIR": pbs_tmpdir})
    argv, env = call_of(calls, "mpirun")
    # Open MPI's session folder (where the ranks in the image join the launcher) is one the container sees.
    assert env["TMPDIR"] == {"apptainer": pbs_tmpdir, "singularity": pbs_tmpdir}.get(runtime, "/tmp")
    names = {"HOME": os.environ["HOME"], "DATA": str(tmp_path / "data"), "IMAGE": str(image),
             "WORKDIR": str(tmp_path / "submitdir")}
    expected = [re.sub("|".join(names), lambda m: names[m.group(0)], word) for word in RUNTIME_TAILS[runtime]]
    assert argv[argv.index(program):] == [*expected, "-m", "semhpc", "train", "--config", "run.yaml"]


def test_a_missing_image_folder_stops_the_job_before_the_ranks(tmp_path):
    profile = profile_from(tmp_path, "c3hpc", {"execution": {"runtime": "charliecloud", "image": str(tmp_path / "no")},
                                               "paths": {"data": "", "scratch": ""}})
    (tmp_path / "job.sh").write_text(render(profile))
    (tmp_path / "submitdir").mkdir()
    bin_dir, calls = stubs(tmp_path, {"mpirun": "", "module": "", "ch-run": ""})
    result = subprocess.run(["bash", str(tmp_path / "job.sh")], cwd=tmp_path, capture_output=True, text=True,
                            env={**os.environ, **pbs_env(tmp_path, ["n1"], 24), "PATH": f"{bin_dir}:{os.environ['PATH']}"})
    assert result.returncode == 1 and f"cannot read the image {tmp_path / 'no'}" in result.stderr
    assert '["mpirun"' not in (calls.read_text() if calls.exists() else "")


def test_an_unknown_runtime_is_a_one_line_error_naming_the_choices(tmp_path):
    with pytest.raises(SemhpcError, match=r"execution.runtime 'docker' must be one of apptainer, singularity, "
                                          r"charliecloud, podman \(hpc/runtimes.yaml\)"):
        profile_from(tmp_path, "c3hpc", {"execution": {"runtime": "docker"}})


def test_slurm_srun_job_starts_container_ranks_with_pmix_and_the_launcher_settings(tmp_path):
    (tmp_path / "semhpc").mkdir()
    (tmp_path / "semhpc" / "semhpc-0.1.0-cuda.sif").write_text("")
    script = render(load_profile("leonardo-booster"), nodes=2, gpus_per_node=2)
    calls, _ = run_body(script, tmp_path, slurm_env(tmp_path, "node[1-2]", 2),
                        {"srun": "", "module": "", "singularity": "", "scontrol": "node1\nnode2\n"},
                        {"SCRATCH": "/scratch/u", "WORK": str(tmp_path)})
    assert call_of(calls, "module")[0] == ["module", "load", "openmpi/4.1.6--gcc--12.2.0"]
    argv, env = call_of(calls, "srun")
    assert argv[1:8] == ["--mpi=pmix", "--nodes=2", "--ntasks=4", "--ntasks-per-node=2", "--cpus-per-task=16",
                         "--cpu-bind=cores", "singularity"]
    assert argv[8:11] == ["exec", "--nv", "--bind"] and argv[-5:] == ["-m", "semhpc", "train", "--config", "run.yaml"]
    assert "/scratch/u" in argv and str(tmp_path / "sem-data") in argv
    assert (env["OMP_NUM_THREADS"], env["HOROVOD_CYCLE_TIME"], env["OMPI_MCA_mpi_yield_when_idle"]) == ("16", "5", "1")


def test_bare_metal_knl_job_loads_modules_activates_the_venv_and_pins_threads(tmp_path):
    venv = tmp_path / "home" / "semhpc-venv" / "bin"
    venv.mkdir(parents=True)
    (venv / "activate").write_text("export VIRTUAL_ENV=activated\n")
    (venv / "python").symlink_to(sys.executable)
    calls, _ = run_body(render(load_profile(HISTORICAL[1])), tmp_path, slurm_env(tmp_path, "knl7", 4),
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
    (work / "c.yaml").write_text("run:\n  dir: r\n")  # read for launch.gpus
    assert cli.main(["submit", "--cluster", "local-slurm", "--job", "train", "--dry-run", "--",
                     "--config", "c.yaml"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("#!/bin/bash\n#SBATCH --job-name=semhpc-train\n")
    assert f"#SBATCH --output={work}/semhpc-jobs/semhpc-train-%j.log" in out.splitlines()
    assert not calls.exists() and not (work / "semhpc-jobs").exists()


def test_submit_qos_and_reservation_override_the_profile_and_pbs_refuses_a_qos(submit_here, capsys):
    assert cli.main(["submit", "--cluster", "leonardo-booster", "--job", "train", "--qos", "boost_qos_dbg",
                     "--reservation", "s_res", "--walltime", "30m", "--dry-run"]) == 0
    lines = directives(capsys.readouterr().out, "#SBATCH")
    assert {"--qos=boost_qos_dbg", "--reservation=s_res", "--time=00:30:00"} <= set(lines)
    assert "--qos=normal" not in lines
    assert cli.main(["submit", "--cluster", "c3hpc", "--job", "train", "--qos", "debug", "--dry-run"]) == 2
    assert "c3hpc runs pbs, which has no QOS" in capsys.readouterr().err
    assert cli.main(["submit", "--cluster", "leonardo-booster", "--job", "train", "--qos", "a;b", "--dry-run"]) == 2
    assert "--qos 'a;b': may only hold" in capsys.readouterr().err


def test_leonardo_dcgp_trains_in_bfloat16_with_8_ranks_of_14_cores_unless_told_otherwise(submit_here, capsys):
    work, _ = submit_here
    (work / "c.yaml").write_text("run:\n  dir: r\n")  # read for launch.gpus
    assert cli.main(["submit", "--cluster", "leonardo-dcgp", "--job", "train", "--dry-run", "--",
                     "--config", "c.yaml"]) == 0
    script = capsys.readouterr().out
    assert "SEMHPC_ARGS=(train --set train.precision=mixed --config c.yaml)" in script.splitlines()
    assert {"--ntasks-per-node=8", "--cpus-per-task=14"} <= set(directives(script, "#SBATCH"))
    assert "OMP_NUM_THREADS=14" in script
    assert cli.main(["submit", "--cluster", "leonardo-dcgp", "--job", "train", "--dry-run", "--",
                     "--set", "train.precision=fp32"]) == 0  # the user's --set comes later, so it wins
    assert "SEMHPC_ARGS=(train --set train.precision=mixed --set train.precision=fp32)" in capsys.readouterr().out


def test_a_profiles_default_job_arguments_are_checked_before_anything_is_queued(submit_here, capsys):
    work, calls = submit_here
    data = yaml.safe_load((SHIPPED_DIR / "clusters" / "local-slurm.yaml").read_text())
    data["job_defaults"] = {"train": ["--no-such-option"]}
    (work / "site.yaml").write_text(yaml.safe_dump(data))
    with pytest.raises(SystemExit):
        cli.main(["submit", "--cluster", str(work / "site.yaml"), "--job", "train", "--", "--config", "c.yaml"])
    assert "--no-such-option" in capsys.readouterr().err and not calls.exists()


def test_submit_records_the_job_and_jobs_and_cancel_use_the_record(submit_here, capsys):
    work, calls = submit_here
    (work / "c.yaml").write_text("run:\n  dir: r\n")  # read for launch.gpus
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
    (tmp_path / "c.yaml").write_text("run:\n  dir: r\n")  # read for launch.gpus
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
    monkeypatch.setattr(submission, "check_job_arguments", lambda kind, argv: None)  # bench's options are not the point
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
    synth_and_ingest(tmp_path)
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


@pytest.mark.parametrize("inventory", ["c3hpc", "cineca"])
def test_the_ansible_inventories_install_valid_profiles_with_the_sites_module_names(inventory, tmp_path):
    path = SHIPPED_DIR.parent / "ansible" / "inventories" / inventory / "group_vars" / "all.yml"
    for name, data in yaml.safe_load(path.read_text())["semhpc_site_profiles"].items():
        profile = parse_profile(name, path, data)
        assert not [m for m in profile.execution.modules if "--gnu--" in m]  # CINECA spells the compiler gcc
        assert profile.scheduler.type != "slurm" or profile.scheduler.login_host


def test_current_site_profiles_name_their_login_host_and_cite_their_sources():
    for name in ("leonardo-booster", "leonardo-dcgp", "galileo100"):
        profile = load_profile(name)
        text = profile.path.read_text()
        assert profile.scheduler.login_host.endswith(".cineca.it") and "https://docs.hpc.cineca.it/" in text
        assert "read on 2026-12-06" in text or "read 2026-12-06" in text
    # C3HPC's operator publishes no user guide: the profile cites the thesis, which names the login host.
    c3hpc = load_profile("c3hpc")
    assert c3hpc.scheduler.login_host == "hpc.c3e.exact-lab.it" and "section 1.2.1" in c3hpc.path.read_text()


def test_every_profile_key_is_documented_in_the_hpc_readme():
    readme = (SHIPPED_DIR / "README.md").read_text()
    assert [f"{s}.{k}" for s, keys in PROFILE_SCHEMA.items() for k in keys if f"`{s}.{k}`" not in readme] == []

"""Cluster profiles: one YAML file per site, validated against PROFILE_SCHEMA.

A profile holds everything that differs between sites (docs/background.md: Clusters): scheduler, account and
queues, node shape, module names, container image or venv, MPI launcher, interface settings and
paths. Job scripts are rendered from it; no site detail lives in code.

Profiles are looked up by name (the file name without .yaml) in, first match wins:
  1. the folders of $SEMHPC_CLUSTERS (colon-separated): a user's own or modified profiles;
  2. /etc/semhpc/clusters: profiles a site deployment installs;
  3. hpc/clusters in the semhpc repository: the shipped ones.
`--cluster` also takes a path to a .yaml file. To add a site, copy a shipped profile into one of
the first two places and edit it (hpc/README.md).
"""

from __future__ import annotations

import copy
import os
import re
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

from semhpc.config.loader import check_value, did_you_mean, read_yaml_mapping
from semhpc.config.schema import Field
from semhpc.hpc import SHIPPED_DIR, shell
from semhpc.hpc.resources import JOB_KINDS, parse_walltime
from semhpc.hpc.runtimes import container_runtimes
from semhpc.utils.errors import SemhpcError
from semhpc.utils.options import MAX_CORES, MAX_GPUS_PER_NODE

SITE_DIR = Path("/etc/semhpc/clusters")
REQUIRED = None  # a Field default of None marks a key every profile must set
# Upper bounds of a node's numbers: well above any machine built, low enough that a typo (80 for a
# compute capability of 8.0, 5120 GB for 512) is one line naming the key, not a job no queue runs.
MAX_NODE_MEMORY_GB = 65_536  # 64 TB; the largest shared-memory nodes hold 32 TB
MAX_COMPUTE_CAPABILITY = 20.0  # NVIDIA's newest GPUs are 10.x-12.x

# Values that end up unquoted in #SBATCH / #PBS directives: no spaces, quotes or shell syntax.
DIRECTIVE_WORD = re.compile(r"[A-Za-z0-9_.@,+-]+")
# Slurm --gpu-bind values: closest, none, single:1, map_gpu:0,1 ...
GPU_BIND = re.compile(r"[A-Za-z0-9_.:,-]+")
# Slurm --constraint: feature names joined by & (and), | (or), , and [..] groups, * counts.
CONSTRAINT = re.compile(r"[A-Za-z0-9_.,&|*\[\]-]+")
# PBS Pro -l place=arrangement[:sharing][:group=resource].
PBS_PLACE = re.compile(r"(free|pack|scatter|vscatter)(:(excl|shared|exclhost|group=[A-Za-z0-9_]+))*")
# One extra directive: one option and its value, plain words (no quotes, `#`, `$`, `;` or newlines).
DIRECTIVE_LINE = re.compile(r"-{1,2}[A-Za-z][A-Za-z0-9-]*([= ][A-Za-z0-9_.@,+=:/%&|*\[\]-]+)?")
# Options semhpc writes itself (from the plan and the keys above): an extra directive may not repeat them.
MANAGED_OPTIONS = {
    "slurm": {"-J": "--job-name", "--job-name": "--job-name", "-N": "--nodes", "--nodes": "--nodes",
              "--ntasks-per-node": "--ntasks-per-node", "-c": "--cpus-per-task", "--cpus-per-task": "--cpus-per-task",
              "--gres": "--gres", "--mem": "--mem", "--mem-per-cpu": "--mem", "--mem-per-gpu": "--mem",
              "-t": "--time", "--time": "--time", "-p": "--partition", "--partition": "--partition",
              "-A": "--account", "--account": "--account", "-o": "--output", "--output": "--output",
              "-q": "--qos", "--qos": "--qos", "-C": "--constraint", "--constraint": "--constraint",
              "--exclusive": "--exclusive", "--reservation": "--reservation", "--gpus-per-task": "--gpus-per-task",
              "--gpu-bind": "--gpu-bind"},
    "pbs": {"-N": "-N", "-q": "-q", "-A": "-A", "-j": "-j", "-k": "-k", "-o": "-o", "-e": "-o",
            "-l select": "-l select", "-l walltime": "-l walltime", "-l place": "scheduler.place"},
}
# The flavour in an image's name as containers/build.sh writes it: semhpc-VERSION-FLAVOR.sif/.tar/folder.
IMAGE_FLAVOR_IN_NAME = re.compile(r"-(cpu|mkl|cuda)(\.sif|\.tar|$)")
# Profile names (file names) appear in job scripts' comments and in `semhpc jobs`.
PROFILE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")

PROFILE_SCHEMA: dict[str, dict[str, Field]] = {
    "scheduler": {
        "type": Field("str", REQUIRED, "Batch system.", choices=("slurm", "pbs")),
        "account": Field("str", "", "Account/project charged (--account / -A); empty: the user's default."),
        "cpu_queue": Field("str", "", "Partition (Slurm) or queue (PBS) for CPU jobs; empty: the default."),
        "gpu_queue": Field("str", "", "Partition or queue for GPU jobs; empty: the default."),
        "default_walltime": Field("str", "01:00:00", "Walltime when --walltime is not given (HH:MM:SS)."),
        "max_walltime": Field("str", "", "Longest walltime the queues allow (HH:MM:SS); empty: no check."),
        "login_host": Field("str", "", "Host for the Jupyter `ssh -L` tunnel; empty: the submit host."),
        "qos": Field("str", "", "Slurm QOS for every job (--qos); `semhpc submit --qos` overrides; empty: none."),
        "reservation": Field("str", "", "Reservation to run in (Slurm --reservation; PBS: the reservation's queue)."),
        "constraint": Field("str", "", "Slurm node features the job needs (--constraint), e.g. a100&ib."),
        "exclusive": Field("bool", False, "Whole nodes, shared with no other job (Slurm --exclusive; PBS place :excl)."),
        "gpus_per_task": Field("bool", False, "Slurm: ask --gpus-per-task=1 (one GPU bound to each rank) instead of "
                                              "--gres=gpu:G per node."),
        "gpu_bind": Field("str", "", "Slurm --gpu-bind value, e.g. closest or single:1; empty: Slurm's default."),
        "place": Field("str", "scatter", "PBS -l place: free, pack, scatter or vscatter, optionally :excl, :shared, "
                                         ":exclhost or :group=RESOURCE."),
        "extra_directives": Field("list[str]", [], "More directive lines the site requires, without the #SBATCH/#PBS "
                                                    "prefix, one option each (e.g. --mail-type=END, -W group_list=x)."),
    },
    "node": {
        "cores": Field("int", REQUIRED, "Physical cores per node.", minimum=1, maximum=MAX_CORES),
        "gpus": Field("int", 0, "GPUs per GPU node (one Horovod rank per GPU).", minimum=0,
                      maximum=MAX_GPUS_PER_NODE),
        "gpu_model": Field("str", "", "GPU model, for messages (e.g. A100 64GB)."),
        "gpu_compute_capability": Field("float", 0.0, "CUDA compute capability of the GPUs (e.g. 8.0 for A100); "
                                                      "required when node.gpus > 0.", minimum=0.0,
                                        maximum=MAX_COMPUTE_CAPABILITY),
        "memory_gb": Field("int", 0, "Memory to request per node in GB when no per-GPU/per-core rule applies; "
                                     "0: the scheduler's default.", minimum=0,
                           maximum=MAX_NODE_MEMORY_GB),
        "memory_gb_per_gpu": Field("int", 0, "Memory per GPU a job uses, in GB (GPU jobs ask GPUs x this).", minimum=0,
                                   maximum=MAX_NODE_MEMORY_GB),
        "memory_gb_per_core": Field("int", 0, "Memory per core a job uses, in GB (CPU jobs ask cores x this).",
                                    minimum=0, maximum=MAX_NODE_MEMORY_GB),
        "cpu_ranks": Field("int", 1, "Ranks per node in CPU jobs: one per socket or per core group.", minimum=1,
                          maximum=MAX_CORES),
    },
    "execution": {
        "mode": Field("str", REQUIRED, "Where ranks run.", choices=("container", "bare-metal")),
        "runtime": Field("str", "apptainer", "Container runtime, one of hpc/runtimes.yaml: apptainer, singularity, "
                                             "charliecloud or podman."),
        "image": Field("str", "", "Container image on a filesystem the compute nodes see (a .sif; Charliecloud: "
                                  "the folder ch-convert wrote; Podman: the image's name)."),
        "image_flavor": Field("str", "", "The image's flavour (containers/build.sh --flavor; bare-metal: "
                                         "scripts/bootstrap.sh --mkl): cpu, mkl (Intel Extension for TensorFlow, "
                                         "for Intel CPUs with AVX512_BF16/AMX only: docs/benchmarks.md) or cuda; "
                                         "empty: the one the image's file name says.",
                              choices=("", "cpu", "mkl", "cuda")),
        "venv": Field("str", "", "Bare-metal venv with semhpc; empty: the venv running `semhpc submit`."),
        "modules": Field("list[str]", [], "`module load` names, in order (MPI, CUDA, the container runtime)."),
        "launcher": Field("str", "mpirun", "How ranks start: host mpirun (hybrid model) or `srun --mpi=pmix`.",
                          choices=("mpirun", "srun")),
    },
    "jupyter": {
        "cores": Field("int", 2, "Cores of a `jupyter` job: a notebook's kernel and JupyterLab need a few, not a "
                                 "whole node (at most node.cores).", minimum=1),
        "memory_gb": Field("int", 8, "Memory of a `jupyter` job in GB; 0: the scheduler's default.", minimum=0),
        "idle_minutes": Field("int", 60, "A `jupyter` job ends itself after this many minutes without activity "
                                         "(no request, no busy kernel); 0: only at its walltime.", minimum=0),
    },
    "paths": {
        "data": Field("str", "", "Where datasets live (bound into the container)."),
        "scratch": Field("str", "", "Fast scratch space, e.g. Lustre (bound into the container)."),
    },
}
TOP_LEVEL = ("description", *PROFILE_SCHEMA, "env", "job_defaults")


@dataclass(frozen=True)
class Profile:
    name: str
    path: Path
    description: str
    scheduler: SimpleNamespace
    node: SimpleNamespace
    execution: SimpleNamespace
    jupyter: SimpleNamespace
    paths: SimpleNamespace
    env: dict[str, str]  # exported in every job, after semhpc's own settings
    job_defaults: dict[str, list[str]]  # job kind -> arguments put before the user's (theirs win)


def profile_dirs() -> list[Path]:
    """The folders searched for profiles, highest precedence first."""
    user = [Path(p) for p in os.environ.get("SEMHPC_CLUSTERS", "").split(os.pathsep) if p]
    return [*user, SITE_DIR, SHIPPED_DIR / "clusters"]


def available_profiles() -> dict[str, Path]:
    """Profile name -> file, after precedence (a user's leonardo-booster.yaml hides the shipped one)."""
    found: dict[str, Path] = {}
    for folder in profile_dirs():
        for path in sorted(folder.glob("*.yaml")) if folder.is_dir() else []:
            found.setdefault(path.stem, path)
    return found


def load_profile(name_or_path: str) -> Profile:
    """The validated profile named `name_or_path`, or read from that .yaml path."""
    path = Path(name_or_path)
    if path.suffix not in (".yaml", ".yml") or not path.is_file():
        profiles = available_profiles()
        if name_or_path not in profiles:
            where = ", ".join(str(d) for d in profile_dirs())
            raise SemhpcError(f"unknown cluster '{name_or_path}'{did_you_mean(name_or_path, profiles)} "
                              f"(profiles are read from: {where})")
        path = profiles[name_or_path]
    return parse_profile(path.stem, path, read_yaml_mapping(path, "cluster profile", "a profile must be a mapping of sections"))


def parse_profile(name: str, path: Path, data: dict) -> Profile:
    source = str(path)
    if not PROFILE_NAME.fullmatch(name):
        raise SemhpcError(f"{source}: a profile's file name may only hold letters, digits and _ . -")
    for key in data:
        if key not in TOP_LEVEL:
            raise SemhpcError(f"{source}: unknown key '{key}'{did_you_mean(key, TOP_LEVEL)}")
    sections = {section: _section(section, data.get(section) or {}, source) for section in PROFILE_SCHEMA}
    profile = Profile(name=name, path=path, description=str(data.get("description", "")),
                      env=_environment(data.get("env") or {}, source),
                      job_defaults=_job_defaults(data.get("job_defaults") or {}, source),
                      **{section: SimpleNamespace(**values) for section, values in sections.items()})
    _check_consistency(profile, source)
    return profile


def _section(section: str, values: dict, source: str) -> dict:
    if not isinstance(values, dict):
        raise SemhpcError(f"{source}: '{section}' must be a mapping, got {type(values).__name__}")
    fields = PROFILE_SCHEMA[section]
    for key in values:
        if key not in fields:
            raise SemhpcError(f"{source}: unknown key '{section}.{key}'{did_you_mean(key, fields, section)}")
    checked = {}
    for key, field in fields.items():
        if values.get(key) is None or values[key] == field.default:  # absent, empty (null) or default
            if field.default is REQUIRED:
                raise SemhpcError(f"{source}: missing required key '{section}.{key}' ({field.help})")
            checked[key] = copy.deepcopy(field.default)
        else:
            checked[key] = check_value(f"{section}.{key}", values[key], field, source)
    return checked


def _environment(env: dict, source: str) -> dict[str, str]:
    if not isinstance(env, dict):
        raise SemhpcError(f"{source}: 'env' must be a mapping of NAME: value, got {type(env).__name__}")
    checked = {}
    for name, value in env.items():
        if not isinstance(name, str) or not shell.ENV_NAME.fullmatch(name):
            raise SemhpcError(f"{source}: env name {name!r} is not a valid environment variable name")
        if isinstance(value, bool) or not isinstance(value, (str, int, float)):
            raise SemhpcError(f"{source}: env.{name} = {value!r} must be a string or a number")
        checked[name] = str(value)
        _check_references(f"env.{name}", checked[name], source)
    return checked


def _job_defaults(defaults: dict, source: str) -> dict[str, list[str]]:
    if not isinstance(defaults, dict):
        raise SemhpcError(f"{source}: 'job_defaults' must be a mapping of job kind: [arguments], "
                          f"got {type(defaults).__name__}")
    checked = {}
    for kind, arguments in defaults.items():
        if kind not in JOB_KINDS:
            raise SemhpcError(f"{source}: unknown job kind 'job_defaults.{kind}'{did_you_mean(str(kind), JOB_KINDS)}")
        if not isinstance(arguments, list) or not all(isinstance(a, str) for a in arguments):
            raise SemhpcError(f"{source}: job_defaults.{kind} must be a list of strings (the job's arguments)")
        checked[kind] = list(arguments)
    return checked


def _check_consistency(profile: Profile, source: str) -> None:
    """Rules between keys, and values that reach directives or the shell."""
    sched, execution, node = profile.scheduler, profile.execution, profile.node
    for key in ("account", "cpu_queue", "gpu_queue", "login_host", "qos", "reservation"):
        value = getattr(sched, key)
        if value and not DIRECTIVE_WORD.fullmatch(value):
            raise SemhpcError(f"{source}: scheduler.{key} = {value!r} may only hold letters, digits and . _ - + @ ,")
    if sched.gpu_bind and not GPU_BIND.fullmatch(sched.gpu_bind):
        raise SemhpcError(f"{source}: scheduler.gpu_bind = {sched.gpu_bind!r} may only hold letters, digits and "
                          ". _ - : ,")
    if sched.constraint and not CONSTRAINT.fullmatch(sched.constraint):
        raise SemhpcError(f"{source}: scheduler.constraint = {sched.constraint!r} may only hold feature names "
                          "joined by & | , * and [ ]")
    if not PBS_PLACE.fullmatch(sched.place):
        raise SemhpcError(f"{source}: scheduler.place = {sched.place!r} must be free, pack, scatter or vscatter, "
                          "optionally followed by :excl, :shared, :exclhost or :group=RESOURCE")
    only = {"Slurm": ("slurm", ("qos", "constraint", "gpus_per_task", "gpu_bind")), "PBS Pro": ("pbs", ("place",))}
    for scheduler_name, (scheduler_type, keys) in only.items():
        for key in keys if sched.type != scheduler_type else ():
            if getattr(sched, key) != PROFILE_SCHEMA["scheduler"][key].default:
                raise SemhpcError(f"{source}: scheduler.{key} is a {scheduler_name} setting; this profile's "
                                  f"scheduler.type is {sched.type}")
    for line in sched.extra_directives:
        _check_extra_directive(line, sched.type, source)
    if node.gpus and not node.gpu_compute_capability:
        raise SemhpcError(f"{source}: node.gpu_compute_capability is required when node.gpus > 0 "
                          "(e.g. 8.0 for A100, 7.0 for V100; semhpc refuses GPUs its image cannot use)")
    if node.memory_gb_per_gpu and not node.gpus:
        raise SemhpcError(f"{source}: node.memory_gb_per_gpu needs node.gpus > 0")
    for key, count in (("memory_gb_per_gpu", "gpus"), ("memory_gb_per_core", "cores")):
        asked = getattr(node, key) * getattr(node, count)  # what a whole-node job asks for
        if asked > MAX_NODE_MEMORY_GB:
            raise SemhpcError(f"{source}: node.{key} = {getattr(node, key)} x node.{count} = {asked} GB per node "
                              f"must be at most {MAX_NODE_MEMORY_GB} GB")
    for key in ("default_walltime", "max_walltime"):
        if getattr(sched, key):
            parse_walltime(getattr(sched, key), f"{source}: scheduler.{key}")
    if sched.max_walltime and parse_walltime(sched.default_walltime, "") > parse_walltime(sched.max_walltime, ""):
        raise SemhpcError(f"{source}: scheduler.default_walltime {sched.default_walltime} exceeds "
                          f"max_walltime {sched.max_walltime}")
    if execution.runtime not in container_runtimes():
        raise SemhpcError(f"{source}: execution.runtime {execution.runtime!r} must be one of "
                          f"{', '.join(container_runtimes())} (hpc/runtimes.yaml)")
    if execution.mode == "container" and not execution.image:
        raise SemhpcError(f"{source}: execution.image is required when execution.mode is container")
    named = IMAGE_FLAVOR_IN_NAME.search(os.path.basename(execution.image.rstrip("/")))
    if execution.image_flavor and named and named.group(1) != execution.image_flavor:
        raise SemhpcError(f"{source}: execution.image_flavor is {execution.image_flavor} but execution.image "
                          f"{execution.image!r} is a {named.group(1)} image")
    if execution.launcher == "srun" and sched.type != "slurm":
        raise SemhpcError(f"{source}: execution.launcher srun needs scheduler.type slurm (use mpirun with PBS)")
    if profile.node.cpu_ranks > profile.node.cores:
        raise SemhpcError(f"{source}: node.cpu_ranks {profile.node.cpu_ranks} exceeds node.cores {profile.node.cores}")
    for key in ("image", "venv"):
        _check_references(f"execution.{key}", getattr(execution, key), source)
    for key, value in vars(profile.paths).items():
        _check_references(f"paths.{key}", value, source)
        if execution.mode == "container" and any(sep in value for sep in ",:"):
            raise SemhpcError(f"{source}: paths.{key} = {value!r}: a container bind path cannot hold ',' or ':'")


def _check_extra_directive(line: str, scheduler_type: str, source: str) -> None:
    """One option per line, plain words only, and none that semhpc writes itself."""
    key = f"scheduler.extra_directives entry {line!r}"
    if not DIRECTIVE_LINE.fullmatch(line):
        raise SemhpcError(f"{source}: {key}: one option per entry, e.g. --mail-type=END or -W group_list=x; "
                          "no prefix, quotes, `#`, `$`, `;` or line breaks")
    option = re.split(r"[= ]", line, maxsplit=1)[0]
    resource = re.match(r"-l (select|walltime|place)\b", line)
    managed = MANAGED_OPTIONS[scheduler_type].get(f"-l {resource.group(1)}" if resource else option)
    if managed:
        raise SemhpcError(f"{source}: {key}: semhpc writes {managed} itself (from the job and the profile's "
                          "scheduler/node keys); set it there")


def _check_references(key: str, value: str, source: str) -> None:
    if shell.stray_dollar(value) or "`" in value:
        raise SemhpcError(f"{source}: {key} = {value!r}: only ${{NAME}} references to environment variables "
                          "are expanded; write $VAR as ${VAR} and do not use $(...) or backticks")

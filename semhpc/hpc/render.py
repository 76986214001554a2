"""Render a job script from a profile, a job kind and a resource plan.

A rendered script reads top to bottom:
  #!/bin/bash, #SBATCH / #PBS directives      scheduler.directives(...)
  environment                                 profile.env and paths, exported (values quoted)
  scheduler/<type>.sh                         job id, submit directory (cd), job_hosts
  execution/modules.sh, execution/<mode>.sh   module loads; SEMHPC_PYTHON, how a rank runs Python
  run_ranks()                                 the launcher line: host mpirun (hybrid) or srun --mpi=pmix
  job/<kind>.sh                               what the job does with its arguments (SEMHPC_ARGS)
Values (profile, command line) only ever appear as quoted words: in the assignments before a
snippet and in the launcher line. The snippets in hpc/templates are fixed text. So no value can
turn into code, which tests/test_hpc_render.py checks with injection strings, `bash -n` and
shellcheck.
"""

from __future__ import annotations

import re
import sys

from semhpc import __version__
from semhpc.hpc import SHIPPED_DIR, scheduler, shell
from semhpc.hpc.resources import JOB_KINDS, ResourcePlan
from semhpc.hpc.runtimes import container_runtime
from semhpc.runtime.launcher import mpirun_command, rank_environment
from semhpc.utils.errors import SemhpcError

TEMPLATES = SHIPPED_DIR / "templates"
# Job names go unquoted into directives; PBS wants a leading letter.
JOB_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_.-]{0,62}")
# Log paths go unquoted into directives too (`%j` is Slurm's job id).
DIRECTIVE_PATH = re.compile(r"[A-Za-z0-9_./+@%-]+")

# Parts of the launcher's mpirun line that only the running job knows, replaced by bash words.
_HOSTS, _PYTHON, _ARGS = "\0hosts", "\0python", "\0args"
_RUNTIME_WORDS = {_HOSTS: '"$(job_hosts)"', _PYTHON: '"${SEMHPC_PYTHON[@]}"', _ARGS: '"$@"'}


def check_job_name(name: str) -> str:
    if not JOB_NAME.fullmatch(name):
        raise SemhpcError(f"--name {name!r}: use a letter, then up to 62 letters, digits, '_', '.' or '-'")
    return name


def check_log_path(log: str) -> str:
    if not DIRECTIVE_PATH.fullmatch(log):
        raise SemhpcError(f"job log {log!r}: #SBATCH/#PBS lines cannot quote paths, so the job directory may "
                          "only hold letters, digits and _ . / + @ -; pick another with --job-dir")
    return log


def render_job(profile, kind: str, plan: ResourcePlan, *, name: str, args: list[str], log: str) -> str:
    """The job script that runs `kind` with `args` on `plan`'s resources of `profile`'s cluster."""
    if not TEMPLATES.is_dir():
        raise SemhpcError(f"job templates not found in {TEMPLATES}: reinstall semhpc from a wheel built "
                          "with its hpc/ folder (ansible/scripts/wheelhouse.sh) or from a checkout (pip install -e)")
    sched = scheduler.for_profile(profile)
    sections = [
        _header(profile, kind, plan, sched.directives(plan, profile, check_job_name(name), check_log_path(log))),
        _environment(profile),
        _snippet(f"scheduler/{profile.scheduler.type}.sh"),
        _execution(profile, plan),
        "" if JOB_KINDS[kind].single_process else _launcher(profile, plan),
        _job(profile, kind, args, log),
    ]
    return "\n".join(section for section in sections if section)


def _header(profile, kind: str, plan: ResourcePlan, directives: list[str]) -> str:
    execution = profile.execution
    shape = f"{plan.nodes} node(s) x {plan.ranks_per_node} rank(s) x {plan.cores_per_rank} core(s)"
    if plan.gpus_per_node:
        shape += f", {plan.gpus_per_node} GPU(s) per node"
    return "\n".join([
        "#!/bin/bash",
        *directives,
        "#",
        f"# semhpc {__version__}: {kind} job on {profile.name} ({profile.scheduler.type}, {execution.mode}, "
        f"{execution.launcher}), {shape}.",
        "# Rendered by `semhpc submit` from hpc/templates; hpc/README.md explains it.",
        "# No `set -u`: bash 4.2 (CentOS 7 nodes) calls an empty array unset.",
        "set -eo pipefail",
        "",
    ])


def _environment(profile) -> str:
    """The profile's paths (as SEMHPC_DATA / SEMHPC_SCRATCH) and env, for every process of the job."""
    exports = {f"SEMHPC_{key.upper()}": value for key, value in vars(profile.paths).items() if value}
    exports.update(profile.env)
    if not exports:
        return ""
    lines = ["# Environment from the cluster profile."]
    lines += [f"export {key}={shell.word_with_vars(value)}" for key, value in exports.items()]
    return "\n".join(lines) + "\n"


def _execution(profile, plan: ResourcePlan) -> str:
    execution = profile.execution
    settings, parts = [], []
    if execution.modules:
        settings.append(_array("SEMHPC_MODULES", [shell.word(m) for m in execution.modules]))
        parts.append(_snippet("execution/modules.sh"))
    if execution.mode == "container":
        runtime = container_runtime(execution.runtime)
        binds = [path for path in [profile.paths.data, profile.paths.scratch] if path]
        options = runtime.options(binds, gpus=bool(plan.gpus_per_node), home="${HOME}")
        settings += [f"SEMHPC_RUNTIME={shell.word(runtime.program)}",
                     f"SEMHPC_IMAGE={shell.word_with_vars(execution.image)}",
                     f"SEMHPC_IMAGE_IS_PATH={int(runtime.image == 'path')}",
                     f"SEMHPC_RUNTIME_TMPDIR={shell.word(runtime.tmpdir)}",
                     _array("SEMHPC_CONTAINER_OPTIONS", [shell.word_with_vars(word) for word in options]),
                     _array("SEMHPC_IMAGE_PYTHON", [shell.word(word) for word in runtime.python])]
    else:
        settings.append(f"SEMHPC_VENV={shell.word_with_vars(_venv(execution.venv))}")
    parts.append(_snippet(f"execution/{execution.mode}.sh"))
    return "\n".join(settings) + "\n" + "\n".join(parts)


def _venv(configured: str) -> str:
    """The profile's venv, or else the venv of the Python running `semhpc submit`."""
    if configured:
        return configured
    if sys.prefix == sys.base_prefix:
        raise SemhpcError("execution.venv is empty and semhpc does not run from a venv: set execution.venv "
                          "in the cluster profile")
    return sys.prefix


def _launcher(profile, plan: ResourcePlan) -> str:
    """`run_ranks ARGS`: start `semhpc ARGS` on every rank of the job."""
    if profile.execution.launcher == "srun":
        how = "srun with Slurm's PMIx, with the settings semhpc launch gives mpirun ranks"
        body = [f"export {key}={shell.word(value)}" for key, value in _srun_env(plan).items()]
        body.append(_wrap(_srun_words(plan)))
    else:
        how = "the host's mpirun on the job's nodes (semhpc.runtime.launcher's tuned line)"
        body = [_wrap(_mpirun_words(profile, plan))]
    return f"# Ranks start through {how}.\nrun_ranks() {{\n" + "".join(f"  {line}\n" for line in body) + "}\n"


def _mpirun_words(profile, plan: ResourcePlan) -> list[str]:
    cmd = mpirun_command(plan.ranks, [_ARGS], cores_per_rank=plan.cores_per_rank, hosts=_HOSTS, python=_PYTHON)
    at = cmd.index(_PYTHON)
    cmd[at:at] = [word for name in profile.env for word in ("-x", name)]  # remote ranks get the profile env
    return [_RUNTIME_WORDS.get(part) or shell.word(part) for part in cmd]


def _srun_env(plan: ResourcePlan) -> dict[str, str]:
    """The launcher's rank settings; its MCA parameters become OMPI_MCA_* variables."""
    return {"OMP_NUM_THREADS": str(plan.cores_per_rank), **rank_environment()}


def _srun_words(plan: ResourcePlan) -> list[str]:
    return ["srun", "--mpi=pmix", f"--nodes={plan.nodes}", f"--ntasks={plan.ranks}",
            f"--ntasks-per-node={plan.ranks_per_node}", f"--cpus-per-task={plan.cores_per_rank}",
            "--cpu-bind=cores", _RUNTIME_WORDS[_PYTHON], "-m", "semhpc", _RUNTIME_WORDS[_ARGS]]


def _wrap(words: list[str]) -> str:
    """The command with one option (and its values) per line, the rank's command on the last one."""
    at = words.index(_RUNTIME_WORDS[_PYTHON])
    lines: list[list[str]] = []
    for word in words[:at]:
        if not lines or word.startswith("-"):
            lines.append([])
        lines[-1].append(word)
    lines.append(words[at:])
    return " \\\n    ".join(" ".join(line) for line in lines)


def _job(profile, kind: str, args: list[str], log: str) -> str:
    job = JOB_KINDS[kind]
    command = [job.command] if job.command else []
    settings = [_array("SEMHPC_ARGS", [shell.word(a) for a in [*command, *args]])]
    if kind == "jupyter":
        settings += [f"SEMHPC_LOGIN_HOST={shell.word(profile.scheduler.login_host)}", f"SEMHPC_LOG={shell.word(log)}",
                     f"SEMHPC_IDLE_SECONDS={profile.jupyter.idle_minutes * 60}"]
    return "\n".join(settings) + "\n" + _snippet(f"job/{job.script}")


def _array(name: str, quoted_words: list[str]) -> str:
    return f"{name}=({' '.join(quoted_words)})"


def _snippet(relative: str) -> str:
    return f"# --- {relative} ---\n{(TEMPLATES / relative).read_text()}"

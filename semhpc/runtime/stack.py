"""What software stack this process runs on, and whether semhpc supports it.

`semhpc doctor` reports `stack_report()`; the trainer calls `require_supported_stack()` first so a
wrong TensorFlow fails with one line naming the supported pair instead of an obscure Horovod error.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import importlib.metadata
import os
import platform
import re
import shutil
import subprocess
from collections.abc import Mapping

from semhpc import SUPPORTED_HOROVOD, SUPPORTED_TENSORFLOW, __version__
from semhpc.runtime.cpu_extension import cpu_extension_report
from semhpc.utils.errors import SemhpcError

SUPPORTED_PAIR = f"tensorflow-cpu=={SUPPORTED_TENSORFLOW} (or tensorflow[and-cuda]) with horovod=={SUPPORTED_HOROVOD}"
WHY_PINNED = "Horovod 0.28.1 does not build or run with TensorFlow >= 2.16 / Keras 3 (horovod#4290)"


def package_version(name: str) -> str | None:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def tensorflow_version() -> str | None:
    """The installed TensorFlow distribution's version, without importing TensorFlow."""
    for dist in ("tensorflow-cpu", "tensorflow", "intel-tensorflow", "tensorflow-intel"):
        version = package_version(dist)
        if version:
            return version
    return None


def tensorflow_problem(version: str | None) -> str | None:
    """One line saying what is wrong with this TensorFlow version, or None when it is supported."""
    if version is None:
        return f"TensorFlow is not installed; semhpc needs {SUPPORTED_PAIR}"
    major_minor = tuple(int(p) for p in re.findall(r"\d+", version)[:2])
    if major_minor >= (2, 16):
        return f"TensorFlow {version} is not supported: {WHY_PINNED}; install {SUPPORTED_PAIR}"
    if major_minor != (2, 15):
        return f"TensorFlow {version} is untested; semhpc supports {SUPPORTED_PAIR}"
    return None


def require_supported_stack() -> None:
    """Raise SemhpcError when TensorFlow or Horovod cannot work for training."""
    problem = tensorflow_problem(tensorflow_version())
    if problem:
        raise SemhpcError(problem)
    if package_version("horovod") is None:
        raise SemhpcError(f"Horovod is not installed; run scripts/bootstrap.sh (needs {SUPPORTED_PAIR})")


def mpirun_version() -> str | None:
    """First line of `mpirun --version` (e.g. 'mpirun (Open MPI) 4.1.4'), or None."""
    if shutil.which("mpirun") is None:
        return None
    try:
        out = subprocess.run(["mpirun", "--version"], capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return (out.stdout or out.stderr).strip().splitlines()[0] if (out.stdout or out.stderr) else None


def launcher_openmpi(env: Mapping[str, str]) -> str | None:
    """The Open MPI whose launcher started this process, e.g. '5.0.3' or '4 (ORTE)'; None if none.

    In the hybrid model the host's mpirun starts ranks inside the container, and the container's
    Open MPI must speak its protocol (same major version and PMIx). A rank cannot run the host's
    `mpirun --version`, but each launcher leaves marks, most exact first:
    SEMHPC_HOST_MPI_VERSION (a job script may export the host's `mpirun --version`),
    OMPI_VERSION (exported by the mpirun of Open MPI >= 5), PRTE_LAUNCHED (its PRRTE runtime),
    OMPI_MCA_orte_* (the ORTE runtime of Open MPI <= 4, reported as 4). They count only in a
    launched rank (OMPI_COMM_WORLD_SIZE or PMIX_RANK set): environment modules may set OMPI_VERSION.
    """
    if not (env.get("OMPI_COMM_WORLD_SIZE") or env.get("PMIX_RANK")):
        return None
    for name in ("SEMHPC_HOST_MPI_VERSION", "OMPI_VERSION"):
        version = re.search(r"\d+(\.\d+)+", env.get(name, ""))
        if version:
            return version.group(0)
    if env.get("PRTE_LAUNCHED"):
        return "5 (PRRTE)"
    if any(name.startswith("OMPI_MCA_orte_") for name in env):
        return "4 (ORTE)"
    return None


def release_series(version: str | None) -> tuple[int, ...]:
    """(major, minor) of the first dotted version in `version`, (major,) when only that is known."""
    match = re.search(r"(\d+)(?:\.(\d+))?", version or "")
    return tuple(int(part) for part in match.groups() if part is not None) if match else ()


def openmpi_mismatch(launcher: str | None, library_mpirun: str | None) -> str | None:
    """A warning when the launcher's and this environment's Open MPI differ in major version, or
    (when the launcher's exact version is known) in release series: mpirun/orted and the MPI
    library only interoperate within one series (4.1.x with 4.1.x)."""
    if launcher is None:
        return None
    launcher_series, library_series = release_series(launcher), release_series(library_mpirun)
    if not library_series:
        return None
    if launcher_series[0] != library_series[0]:
        return (f"started by the launcher of Open MPI {launcher} but the MPI here is {library_mpirun}: "
                f"MPI_Init will likely fail or hang; use an image with Open MPI {launcher_series[0]}.x "
                f"or the bind model (containers/README.md)")
    if len(launcher_series) == 2 and len(library_series) == 2 and launcher_series != library_series:
        return (f"host Open MPI {launcher} and {library_mpirun} here are different release series "
                f"({'.'.join(map(str, launcher_series))}.x vs {'.'.join(map(str, library_series))}.x): Open MPI "
                f"supports its launcher and library together within one series only; use a host "
                f"Open MPI {'.'.join(map(str, library_series))}.x or the bind model (containers/README.md)")
    return None


# PMIx clients and servers of different versions work together from PMIx 2.1.1 on.
PMIX_CROSS_VERSION = (2, 1, 1)


def pmix_version() -> str | None:
    """The version of the PMIx library here (libpmix, which Open MPI 4.x uses), or None."""

    for name in ("libpmix.so.2", ctypes.util.find_library("pmix")):
        try:
            library = ctypes.CDLL(name) if name else None
        except OSError:
            continue
        if library is not None:
            library.PMIx_Get_version.restype = ctypes.c_char_p
            found = re.search(r"\d+(\.\d+)+\w*", library.PMIx_Get_version().decode(errors="replace"))
            return found.group(0) if found else None
    return None


def pmix_mismatch(host_pmix: str | None, library_pmix: str | None) -> str | None:
    """A warning when the host's PMIx server and the PMIx here differ and one predates 2.1.1."""
    if not (host_pmix and library_pmix):
        return None
    host, here = (tuple(int(p) for p in re.findall(r"\d+", v)[:3]) for v in (host_pmix, library_pmix))
    if host[:2] == here[:2] or min(host, here) >= PMIX_CROSS_VERSION:
        return None
    return (f"host PMIx {host_pmix} and PMIx {library_pmix} here: versions before 2.1.1 only work with their "
            f"own release; MPI_Init will likely fail")


def hybrid_mpi_report(library_mpirun: str | None, env: Mapping[str, str], library_pmix: str | None = None) -> dict:
    """How this rank pairs with the host MPI that launched it (the hybrid model), for stack_report.

    `mpi_launcher` / `host_pmix`: the launcher's Open MPI and PMIx (a launched rank's PMIX_VERSION
    is the host PMIx server's); `pmix`: the PMIx library here; `mpi_pairing`: one line saying
    whether they match; `warnings`: what does not."""
    launcher = launcher_openmpi(env)
    host_pmix = env.get("PMIX_VERSION") if (env.get("OMPI_COMM_WORLD_SIZE") or env.get("PMIX_RANK")) else None
    warnings = [w for w in (openmpi_mismatch(launcher, library_mpirun), pmix_mismatch(host_pmix, library_pmix)) if w]
    if launcher is None and host_pmix is None:
        pairing = "not started by a host MPI launcher"
    else:
        library = re.search(r"\d+(\.\d+)+", library_mpirun or "")
        here = f"Open MPI {library.group(0) if library else '?'} / PMIx {library_pmix or '?'}"
        host = f"Open MPI {launcher or '?'} / PMIx {host_pmix or '?'}"
        pairing = f"host {host} with {here} here: {'MISMATCH' if warnings else 'match'}"
        if not warnings and len(release_series(launcher)) < 2:
            pairing += " (the host's minor version is unknown: export SEMHPC_HOST_MPI_VERSION=\"$(mpirun --version)\")"
    return {"mpi_launcher": launcher, "host_pmix": host_pmix, "pmix": library_pmix, "mpi_pairing": pairing,
            "warnings": warnings}


def cpu_flags() -> set[str]:
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def container_runtime() -> str | None:
    """'apptainer', 'singularity', 'charliecloud', 'podman', 'docker' or None, from the marks each
    runtime leaves. The HPC runtimes' variables come first: an image converted from Docker may
    still hold Docker's /.dockerenv (ch-convert copies it from `docker export`)."""
    if os.environ.get("APPTAINER_CONTAINER") or os.environ.get("APPTAINER_NAME"):
        return "apptainer"
    if os.environ.get("SINGULARITY_CONTAINER") or os.environ.get("SINGULARITY_NAME"):
        return "singularity"
    if os.environ.get("CH_RUNNING"):
        return "charliecloud"
    if os.path.exists("/run/.containerenv"):
        return "podman"
    if os.path.exists("/.dockerenv"):
        return "docker"
    return None


def horovod_build() -> dict:
    """Horovod's version and the controllers/operations it was compiled with (imports TF)."""
    info = {"horovod": package_version("horovod"), "horovod_mpi": False, "horovod_gloo": False,
            "horovod_nccl": False, "horovod_tensorflow": False}
    if info["horovod"] is None:
        return info
    try:
        import horovod.tensorflow as hvd
    except Exception as exc:  # a Horovod built against another TF fails here with a linker error
        info["horovod_error"] = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
        return info
    info.update(horovod_tensorflow=True, horovod_mpi=bool(hvd.mpi_built()),
                horovod_gloo=bool(hvd.gloo_built()), horovod_nccl=bool(hvd.nccl_built()))
    return info


def stack_report() -> dict:
    """Everything `semhpc doctor` shows, plus `problems` (one line each) and `ok`."""
    report: dict = {
        "semhpc": __version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "tensorflow": tensorflow_version(),
        "keras": package_version("keras"),
        "mpirun": mpirun_version(),
        "mpi4py": package_version("mpi4py"),
        "cpu_threads": os.cpu_count(),
        "cpu_affinity": len(os.sched_getaffinity(0)),
        "cpu_bf16": bool(cpu_flags() & {"avx512_bf16", "amx_bf16"}),
        "container": container_runtime(),
        "gpus": [],
    }
    problems, extension_warnings = [], []
    tf_problem = tensorflow_problem(report["tensorflow"])
    if tf_problem:
        problems.append(tf_problem)
    else:
        import tensorflow as tf

        report["gpus"] = [d.name for d in tf.config.list_physical_devices("GPU")]
        report["onednn"] = os.environ.get("TF_ENABLE_ONEDNN_OPTS", "1") != "0"
        extension = cpu_extension_report(cpu_bf16=report["cpu_bf16"])
        extension_warnings = extension.pop("warnings")
        report.update(extension)
        report.update(horovod_build())
        if report["horovod"] is None:
            problems.append("Horovod is not installed; run scripts/bootstrap.sh")
        elif "horovod_error" in report:
            problems.append(f"Horovod does not load with this TensorFlow ({report['horovod_error']}); "
                            f"rebuild it: {SUPPORTED_PAIR}")
        elif not (report["horovod_mpi"] or report["horovod_gloo"]):
            problems.append("Horovod was built without MPI and Gloo; rebuild with HOROVOD_WITH_MPI=1 HOROVOD_WITH_GLOO=1")
        if report["gpus"] and report.get("horovod") and not report.get("horovod_nccl"):
            problems.append("GPUs are visible but Horovod was built without NCCL (HOROVOD_GPU_OPERATIONS=NCCL)")
    if report["mpirun"] is None:
        problems.append("mpirun not found on PATH; install OpenMPI (Debian: openmpi-bin libopenmpi-dev)")
    report.update(hybrid_mpi_report(report["mpirun"], os.environ, pmix_version()))
    report["warnings"] += extension_warnings
    report["problems"] = problems
    report["ok"] = not problems
    return report

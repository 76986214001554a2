"""Container images: the Dockerfile's settings, the Apptainer recipe, and real builds of the cpu
and mkl images.

The fast tests read the files; the slow ones start a Docker daemon when none runs, make a Debian
base with debootstrap (cached as an image), build the cpu flavour with containers/build.sh, then
the mkl flavour on its cached layers, and run semhpc inside them as the image's non-root user.
"""

import json
import math
import os
import re
import shutil
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest

import semhpc
from semhpc.runtime.launcher import FAST_ENV, FAST_MCA
from semhpc.runtime.stack import (
    container_runtime,
    hybrid_mpi_report,
    launcher_openmpi,
    openmpi_mismatch,
    pmix_mismatch,
    pmix_version,
)

ROOT = Path(__file__).resolve().parents[1]
CONTAINERS = ROOT / "containers"
DOCKERFILE = CONTAINERS / "Dockerfile"
SYSTEM_CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")


# --- reading the Dockerfile -------------------------------------------------------------------

def dockerfile_instructions(path=DOCKERFILE):
    """(stage, INSTRUCTION, arguments) for every instruction; continuation lines joined.

    stage is None for the global ARGs before the first FROM, else the FROM's `AS` name."""
    instructions, stage, pending = [], None, ""
    for line in path.read_text().splitlines():
        if not pending and (not line.strip() or line.lstrip().startswith("#")):
            continue
        if line.rstrip().endswith("\\"):
            pending += line.rstrip()[:-1] + " "
            continue
        keyword, _, arguments = (pending + line).strip().partition(" ")
        pending = ""
        if keyword.upper() == "FROM":
            stage = arguments.split()[-1]
        instructions.append((stage, keyword.upper(), arguments.strip()))
    return instructions


def arg_defaults(stage):
    """{name: default} of the ARGs declared in one stage (None = the global ones)."""
    defaults = {}
    for where, keyword, arguments in dockerfile_instructions():
        if where == stage and keyword == "ARG":
            name, _, default = arguments.partition("=")
            defaults[name] = default.strip('"') or None
    return defaults


def image_env():
    """{name: value} of every ENV instruction (the `NAME=value ...` form)."""
    env = {}
    for _, keyword, arguments in dockerfile_instructions():
        if keyword == "ENV":
            env.update(pair.split("=", 1) for pair in arguments.split())
    return env


def test_image_defaults_match_the_launchers_fast_settings():
    """The image's MCA defaults and Horovod env are the launcher's FAST_MCA / FAST_ENV, no drift."""
    mca_lines = [args for _, keyword, args in dockerfile_instructions()
                 if keyword == "RUN" and "openmpi-mca-params.conf" in args]
    assert len(mca_lines) == 1
    for key, value in FAST_MCA.items():
        assert f"'{key} = {value}'" in mca_lines[0]
    env = image_env()
    for key, value in FAST_ENV.items():
        assert env.get(key) == value


def test_version_pins_agree_with_the_package_and_the_lock():
    lock = (ROOT / "requirements.lock").read_text()
    runtime_args = arg_defaults("runtime")
    assert runtime_args["TENSORFLOW_VERSION"] == semhpc.SUPPORTED_TENSORFLOW
    assert f"tensorflow-cpu=={semhpc.SUPPORTED_TENSORFLOW}\n" in lock
    assert runtime_args["HOROVOD_VERSION"] == semhpc.SUPPORTED_HOROVOD
    assert arg_defaults("wheelhouse")["HOROVOD_VERSION"] == semhpc.SUPPORTED_HOROVOD


def test_the_lock_pins_everything_the_image_asks_for_by_name():
    """The image installs containers/image-requirements.in with requirements.lock as constraints:
    a name the lock lacks would be resolved afresh at each build, unpinned."""
    def normalized(name):
        return re.sub(r"[-_.]+", "-", name).lower()

    locked = {normalized(line.split("==")[0]) for line in (ROOT / "requirements.lock").read_text().splitlines()
              if "==" in line}
    wanted = [line.strip() for line in (CONTAINERS / "image-requirements.in").read_text().splitlines()
              if line.strip() and not line.startswith("#")]
    assert wanted and {normalized(name) for name in wanted} <= locked


def shell_assigned_names(script):
    """Variables a RUN script sets itself (NAME=..., export NAME=..., for NAME in)."""
    return set(re.findall(r"(?:^|[\s;&|(])([A-Za-z_]\w*)=", script)) | set(re.findall(r"\bfor (\w+) in\b", script))


def test_every_variable_a_stage_uses_is_declared():
    """Build arguments resolve: each $VAR in a RUN/COPY/LABEL is an ARG of its stage, an ENV of it or
    of the stage it builds on (ARGs are not inherited, ENVs are), or set by the script itself;
    FROM uses global ARGs only. Holds for both flavours: they differ only in ARG values."""
    from_base_image = {"PATH", "LD_LIBRARY_PATH"}
    args, envs = {None: set(arg_defaults(None))}, {}
    for stage, keyword, arguments in dockerfile_instructions():
        if keyword == "FROM":
            image = arguments.split()[0]
            for name in re.findall(r"\$\{?(\w+)", image):
                assert name in args[None], f"FROM uses {name}, not a global ARG"
            args[stage], envs[stage] = set(), set(envs.get(image, set()))
        elif keyword == "ARG":
            args[stage].add(arguments.split("=")[0])
        elif keyword == "ENV":
            envs[stage] |= {pair.split("=")[0] for pair in arguments.split()}
        elif keyword in ("RUN", "COPY", "LABEL"):
            known = args[stage] | envs[stage] | from_base_image | shell_assigned_names(arguments)
            for name in re.findall(r"\$\{?([A-Za-z_]\w*)", arguments):
                assert name in known, f"stage {stage}: {keyword} uses ${name}, declared nowhere"


def build_script_function(name, *args):
    """Run one shell function of containers/build.sh by itself (they only read ROOT)."""
    script = CONTAINERS / "build.sh"
    body = re.search(rf"^{name}\(\) {{\n.*?^}}\n", script.read_text(), re.S | re.M).group(0)
    out = subprocess.run(["bash", "-c", f'{body}\n{name} "$@"', name, *args], capture_output=True, text=True,
                         env={**os.environ, "ROOT": str(ROOT)}, check=True)
    return out.stdout.strip()


def test_build_script_passes_only_declared_arguments_and_the_right_cuda_base():
    build_sh = (CONTAINERS / "build.sh").read_text()
    declared = {arguments.split("=")[0] for _, keyword, arguments in dockerfile_instructions() if keyword == "ARG"}
    passed = set(re.findall(r"^\s+--build-arg (\w+)=", build_sh, re.M))      # the docker build_args array
    assert passed and passed <= declared
    assert "--build-arg ARCHIVE=" in build_sh and "{{ ARCHIVE }}" in (CONTAINERS / "semhpc.def").read_text()
    # TensorFlow 2.15 is built against CUDA 12.2 and cuDNN 8.9; devel: Horovod compiles CUDA kernels.
    cuda_base = build_script_function("default_base_image", "cuda")
    assert re.fullmatch(r"nvidia/cuda:12\.2\.\d+-cudnn8-devel-ubuntu\d+\.\d+", cuda_base)
    assert build_script_function("default_base_image", "cpu") == arg_defaults(None)["BASE_IMAGE"]
    assert build_script_function("python_constant", "__version__") == semhpc.__version__


def test_git_ignores_the_machine_specific_build_inputs():
    """A site's CA bundle and a wheel compiled on one machine must never be committed."""
    staged = ["containers/site-ca/ca-bundle.crt", "containers/site-ca/proxy.pem",
              f"containers/prebuilt-wheels/horovod-{semhpc.SUPPORTED_HOROVOD}-cp311-cp311-linux_x86_64.whl"]
    ignored = subprocess.run(["git", "check-ignore", *staged], cwd=ROOT, capture_output=True, text=True)
    assert ignored.stdout.split() == staged


def hadolint_executable():
    beside_python = Path(sys.executable).parent / "hadolint"
    return str(beside_python) if beside_python.exists() else shutil.which("hadolint")


def test_hadolint_finds_nothing_to_fix():
    out = subprocess.run([hadolint_executable(), "--format", "json", str(DOCKERFILE)], capture_output=True,
                         text=True, timeout=60)
    findings = json.loads(out.stdout)
    assert [f for f in findings if f["level"] in ("error", "warning")] == [], findings
    assert out.returncode == 0


def test_apptainer_recipe_parses_with_its_sections():
    from spython.main.parse.parsers import SingularityParser

    text = (CONTAINERS / "semhpc.def").read_text()
    sections = re.findall(r"^%(\w+)", text, re.M)
    assert sorted(sections) == ["environment", "help", "labels", "runscript", "test"]
    assert re.search(r"^Bootstrap: docker-archive$", text, re.M)
    recipe = SingularityParser(str(CONTAINERS / "semhpc.def")).recipe["spython-base"]
    assert recipe.fromHeader == "{{ archive }}"          # the --build-arg ARCHIVE=... of build.sh
    assert recipe.cmd == 'exec semhpc "$@"'
    assert "PYTHONNOUSERSITE=1" in recipe.environ
    assert any("semhpc doctor" in line for line in recipe.install)     # %test, as spython writes it
    assert "org.opencontainers.image.title semhpc" in recipe.labels
    help_text = text.split("%help", 1)[1]
    assert "mpirun -np" in help_text and "--nv" in help_text


def definition_sections(text):
    """{section: body} of an Apptainer definition file."""
    parts = re.split(r"^%(\w+)[ \t]*$", text, flags=re.M)
    return {name: body for name, body in zip(parts[1::2], parts[2::2])}


def test_apptainer_recipe_installs_nothing_beyond_the_docker_image():
    """semhpc.def stays in step with the Dockerfile by construction: it bootstraps from the Docker
    archive, installs nothing of its own (no %post, %files, %setup), every variable its
    %environment sets has the Dockerfile's value (Apptainer keeps the host's PATH, so the venv is put
    first again), and %test repeats the Dockerfile's smoke test."""
    sections = definition_sections((CONTAINERS / "semhpc.def").read_text())
    assert not {"post", "files", "setup", "appinstall"} & set(sections)
    exported = dict(re.findall(r"^\s*export (\w+)=\"?([^\"\n]*)\"?$", sections["environment"], re.M))
    docker_env = image_env()
    assert exported, sections["environment"]
    for name, value in exported.items():
        assert value.replace("$PATH", "${PATH}") == docker_env[name], name
    dockerfile = DOCKERFILE.read_text()
    for line in sections["test"].strip().splitlines():
        command = line.strip().split(" | ")[0]
        assert command in dockerfile, command


# --- semhpc's wheel in the image ----------------------------------------------------------------

def wheel_source_copies():
    """(source, destination) of the wheelhouse stage's COPY instructions into /src/semhpc."""
    copies = []
    for stage, keyword, arguments in dockerfile_instructions():
        words = arguments.split()
        if stage == "wheelhouse" and keyword == "COPY" and words[-1].startswith("/src/semhpc"):
            copies += [(source, words[-1]) for source in words[:-1]]
    return copies


def test_the_images_semhpc_wheel_carries_every_hpc_file(tmp_path):
    """The wheel built from exactly what the Dockerfile copies holds every profile and snippet of
    hpc/ as data files (without them `semhpc submit` in the image fails: job templates not found)."""
    src = tmp_path / "src" / "semhpc"
    for source, destination in wheel_source_copies():
        target = tmp_path / destination.lstrip("/")
        if (ROOT / source).is_dir():
            shutil.copytree(ROOT / source, target, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            target.mkdir(parents=True, exist_ok=True)
            shutil.copy(ROOT / source, target)
    out = subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-build-isolation", "--no-deps", "-w",
                          str(tmp_path / "wheel"), str(src)], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    (wheel,) = (tmp_path / "wheel").glob("semhpc-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        data = {name.split(".data/data/", 1)[1] for name in archive.namelist() if ".data/data/" in name}
    # hpc/testbed/ is the test cluster of this repository's tests, not a part of the product.
    shipped = {f"share/semhpc/{path.relative_to(ROOT)}" for path in (ROOT / "hpc").rglob("*")
               if path.suffix in (".yaml", ".sh") and "testbed" not in path.relative_to(ROOT).parts}
    assert shipped and shipped <= data, sorted(shipped - data)
    assert "share/semhpc/hpc/clusters/historical/galileo.yaml" in data


# --- `semhpc doctor` under a host launcher ----------------------------------------------------

RANK = {"OMPI_COMM_WORLD_SIZE": "2", "PMIX_RANK": "0"}


@pytest.mark.parametrize("env, launcher", [
    (RANK, None),
    ({"OMPI_VERSION": "5.0.3"}, None),                  # set by a module, not by a launcher
    ({**RANK, "OMPI_VERSION": "5.0.3", "PRTE_LAUNCHED": "1"}, "5.0.3"),
    ({"PMIX_RANK": "0", "PRTE_LAUNCHED": "1"}, "5 (PRRTE)"),
    ({**RANK, "OMPI_MCA_orte_hnp_uri": "1.0;tcp://10.0.0.1:1"}, "4 (ORTE)"),
    ({**RANK, "SEMHPC_HOST_MPI_VERSION": "mpirun (Open MPI) 4.1.5", "OMPI_VERSION": "5.0.3"}, "4.1.5"),
])
def test_launcher_openmpi_reads_the_launchers_marks(env, launcher):
    assert launcher_openmpi(env) == launcher


def test_mismatch_warns_for_another_major_version_or_release_series():
    image_mpi = "mpirun (Open MPI) 4.1.4"
    assert openmpi_mismatch("4 (ORTE)", image_mpi) is None
    assert openmpi_mismatch("4.1.6", image_mpi) is None
    assert openmpi_mismatch(None, image_mpi) is None
    warning = openmpi_mismatch("5.0.3", image_mpi)
    assert "5.0.3" in warning and "4.1.4" in warning and "Open MPI 5.x" in warning
    warning = openmpi_mismatch("4.0.7", image_mpi)
    assert "different release series (4.0.x vs 4.1.x)" in warning and "host Open MPI 4.1.x" in warning


def test_pmix_pairing_and_the_one_line_verdict():
    rank = {**RANK, "OMPI_MCA_orte_hnp_uri": "x"}
    assert pmix_mismatch("4.2.2", "3.2.3") is None                 # cross-version support since 2.1.1
    assert "before 2.1.1" in pmix_mismatch("2.0.3", "4.2.2")
    report = hybrid_mpi_report("mpirun (Open MPI) 4.1.4", {**rank, "SEMHPC_HOST_MPI_VERSION": "4.1.5",
                                                           "PMIX_VERSION": "4.2.2"}, "4.2.2rc2")
    assert report["mpi_pairing"] == "host Open MPI 4.1.5 / PMIx 4.2.2 with Open MPI 4.1.4 / PMIx 4.2.2rc2 here: match"
    assert report["warnings"] == [] and report["host_pmix"] == "4.2.2" and report["pmix"] == "4.2.2rc2"
    report = hybrid_mpi_report("mpirun (Open MPI) 4.1.4", {**rank, "SEMHPC_HOST_MPI_VERSION": "4.0.7",
                                                           "PMIX_VERSION": "2.0.3"}, "4.2.2")
    assert report["mpi_pairing"].endswith("here: MISMATCH") and len(report["warnings"]) == 2
    assert "SEMHPC_HOST_MPI_VERSION" in hybrid_mpi_report("mpirun (Open MPI) 4.1.4", rank, "4.2.2")["mpi_pairing"]
    assert hybrid_mpi_report("mpirun (Open MPI) 4.1.4", {}, "4.2.2")["mpi_pairing"] == "not started by a host MPI launcher"


def test_the_pmix_library_version_is_read_from_libpmix():
    assert re.fullmatch(r"\d+\.\d+\.\d+\w*", pmix_version())


@pytest.mark.parametrize("marks, runtime", [
    ({"APPTAINER_CONTAINER": "/x.sif"}, "apptainer"),
    ({"SINGULARITY_CONTAINER": "/x.sif"}, "singularity"),
    ({"CH_RUNNING": "Weird Al Yankovic"}, "charliecloud"),
])
def test_hpc_runtimes_are_told_apart_from_docker(monkeypatch, marks, runtime):
    for name in ("APPTAINER_CONTAINER", "APPTAINER_NAME", "SINGULARITY_CONTAINER", "SINGULARITY_NAME", "CH_RUNNING"):
        monkeypatch.delenv(name, raising=False)
    for name, value in marks.items():
        monkeypatch.setenv(name, value)
    assert container_runtime() == runtime


def test_doctor_as_a_rank_of_a_real_mpirun_reports_the_launcher():
    root = ["--allow-run-as-root"] if os.geteuid() == 0 else []
    out = subprocess.run(["mpirun", "-np", "1", *root, sys.executable, "-m", "semhpc", "doctor", "--json"],
                         capture_output=True, text=True, timeout=300)
    report = json.loads(out.stdout)
    assert report["mpi_launcher"] == "4 (ORTE)" and "Open MPI) 4." in report["mpirun"]
    assert report["warnings"] == []


# --- a real Docker build of the cpu flavour (slow) ----------------------------------------------

@pytest.fixture(scope="module")
def cpu_build(docker_daemon, tmp_path_factory):
    """containers/build.sh for the cpu flavour on a debootstrap base: (image tag, output folder).

    The image stays in Docker (the next run's build is warm); the 2 GB archive is deleted."""
    out = tmp_path_factory.mktemp("image")
    result = build_cpu_image("--out", str(out))
    yield result.stdout.strip().splitlines()[-1], out
    shutil.rmtree(out)


def build_cpu_image(*options, env=None):
    """containers/build.sh for the cpu flavour on the debootstrap base, trusting this machine's CAs
    (a TLS-inspecting proxy may sit between pip and PyPI)."""
    site_ca = ["--site-ca", str(SYSTEM_CA_BUNDLE)] if SYSTEM_CA_BUNDLE.exists() else []
    result = subprocess.run([str(CONTAINERS / "build.sh"), "--flavor", "cpu", "--local-base", *site_ca, *options],
                            capture_output=True, text=True, timeout=3600, env={**os.environ, **(env or {})})
    assert result.returncode == 0, result.stderr[-5000:]
    return result


def run_in_image(tag, *command, env=None, timeout=600):
    """`docker run` as the image's default (non-root) user; SYS_NICE lets Open MPI bind memory."""
    env_args = [arg for key, value in (env or {}).items() for arg in ("-e", f"{key}={value}")]
    return subprocess.run(["docker", "run", "--rm", "--cap-add", "SYS_NICE", *env_args, "--entrypoint", command[0],
                           tag, *command[1:]], capture_output=True, text=True, timeout=timeout)


@pytest.mark.slow
def test_build_tags_archive_and_wheelhouse(cpu_build):
    tag, out = cpu_build
    version = semhpc.__version__
    assert tag == f"semhpc:{version}-cpu"
    with tarfile.open(out / f"semhpc-{version}-cpu.tar") as archive:
        manifest = json.load(archive.extractfile("manifest.json"))
    assert manifest[0]["RepoTags"] == [tag]
    wheelhouse = out / f"wheelhouse-{version}-cpu"
    requirements = (wheelhouse / "requirements.txt").read_text().split()
    assert f"horovod=={semhpc.SUPPORTED_HOROVOD}" in requirements
    assert f"tensorflow-cpu=={semhpc.SUPPORTED_TENSORFLOW}" in requirements
    assert f"semhpc=={version}" in requirements
    # Complete for an offline cluster: pip resolves every requirement from the folder alone.
    offline = subprocess.run([sys.executable, "-m", "pip", "install", "--dry-run", "--ignore-installed",
                              "--no-index", "--find-links", str(wheelhouse), "-r", str(wheelhouse / "requirements.txt")],
                             capture_output=True, text=True, timeout=300)
    assert offline.returncode == 0, offline.stderr[-3000:]
    assert f"horovod-{semhpc.SUPPORTED_HOROVOD}" in offline.stdout
    # Every other pin of the wheelhouse is the lock's, at the lock's version.
    locked = set((ROOT / "requirements.lock").read_text().splitlines())
    assert [pin for pin in requirements if pin not in locked and not pin.startswith(("horovod==", "semhpc=="))] == []


@pytest.mark.slow
def test_the_image_venv_holds_exactly_the_locked_versions(cpu_build):
    """The image's venv, build tools included, is the lock's: the same check as the bootstrap's."""
    tag, _ = cpu_build
    check = subprocess.run(["docker", "run", "--rm", "-v", f"{ROOT / 'scripts' / 'lock_check.py'}:/tmp/lock_check.py:ro",
                            "-v", f"{ROOT / 'requirements.lock'}:/tmp/requirements.lock:ro", "--entrypoint", "python",
                            tag, "/tmp/lock_check.py", "/tmp/requirements.lock",
                            "--allow", f"horovod=={semhpc.SUPPORTED_HOROVOD}", "--allow", f"semhpc=={semhpc.__version__}"],
                           capture_output=True, text=True, timeout=300)
    assert check.returncode == 0, check.stderr
    assert "every installed package of /opt/semhpc/venv is pinned" in check.stdout


@pytest.mark.slow
def test_build_leaves_no_staged_inputs_in_the_repository(cpu_build):
    """The site CA bundle and a prebuilt wheel are staged for the build only (git ignores them too)."""
    assert not (CONTAINERS / "site-ca" / "ca-bundle.crt").exists()
    assert list((CONTAINERS / "prebuilt-wheels").glob("*.whl")) == []


@pytest.mark.slow
def test_reused_horovod_wheel_skips_the_compile(cpu_build, tmp_path):
    """--reuse-wheels with the wheelhouse of the first build: the image gets that very wheel
    (a fresh compile would differ byte for byte) and still passes its smoke test."""
    _, out = cpu_build
    wheelhouse = out / f"wheelhouse-{semhpc.__version__}-cpu"
    [reused] = wheelhouse.glob(f"horovod-{semhpc.SUPPORTED_HOROVOD}-*.whl")
    image = "semhpc-reuse-test"
    try:
        build_cpu_image("--reuse-wheels", str(wheelhouse), "--no-archive", "--out", str(tmp_path),
                        env={"SEMHPC_IMAGE": image})
        # The exported wheel is that very file (a compile would differ byte for byte). Docker may
        # take the step from its cache when the same wheel was reused before, so its message
        # ("using the prebuilt ...") is not always printed.
        exported = tmp_path / f"wheelhouse-{semhpc.__version__}-cpu" / reused.name
        assert exported.read_bytes() == reused.read_bytes()
        report = json.loads(run_in_image(f"{image}:cpu", "semhpc", "doctor", "--json").stdout)
        assert report["ok"] is True and report["horovod_mpi"] and report["horovod_gloo"]
    finally:
        tags = [f"{image}:{semhpc.__version__}-cpu", f"{image}:cpu", f"{image}-wheelhouse:{semhpc.__version__}-cpu"]
        subprocess.run(["docker", "image", "rm", *tags], capture_output=True)


@pytest.mark.slow
def test_image_labels_user_and_defaults(cpu_build):
    tag, _ = cpu_build
    config = json.loads(subprocess.run(["docker", "image", "inspect", tag], capture_output=True, text=True,
                                       check=True).stdout)[0]["Config"]
    labels = config["Labels"]
    assert labels["org.opencontainers.image.version"] == semhpc.__version__
    assert labels["io.semhpc.tensorflow"] == semhpc.SUPPORTED_TENSORFLOW
    assert labels["io.semhpc.horovod"] == semhpc.SUPPORTED_HOROVOD
    assert labels["io.semhpc.flavor"] == "cpu"
    assert config["User"] == "1000:1000"
    mca = run_in_image(tag, "ompi_info", "--parsable", "--all").stdout
    for key, value in FAST_MCA.items():
        # Open MPI prints booleans as true/false; the source must be the image's params file.
        shown = re.search(rf":param:{key}:value:(\S+)", mca).group(1)
        assert shown == value or (value, shown) == ("1", "true")
        assert f":param:{key}:source:file" in mca
    env = dict(line.split("=", 1) for line in run_in_image(tag, "env").stdout.splitlines() if "=" in line)
    for key, value in FAST_ENV.items():
        assert env[key] == value


@pytest.mark.slow
def test_doctor_in_the_image_as_the_non_root_user(cpu_build):
    tag, _ = cpu_build
    assert run_in_image(tag, "id", "-u").stdout.strip() == "1000"
    out = run_in_image(tag, "semhpc", "doctor", "--json")
    report = json.loads(out.stdout)
    assert out.returncode == 0 and report["ok"] is True, out.stdout + out.stderr
    assert report["container"] == "docker"
    assert report["tensorflow"] == semhpc.SUPPORTED_TENSORFLOW and report["horovod"] == semhpc.SUPPORTED_HOROVOD
    assert report["horovod_mpi"] and report["horovod_gloo"]
    assert "Open MPI" in report["mpirun"] and report["warnings"] == []


@pytest.mark.slow
def test_submit_in_the_image_renders_jobs_from_the_shipped_profiles(cpu_build):
    """The wheel's hpc/ in the image: a shipped profile, a retired one by path, a job script."""
    tag, _ = cpu_build
    historical = "/opt/semhpc/venv/share/semhpc/hpc/clusters/historical/marconi-a2.yaml"
    script = "cd /tmp && " + " && ".join(
        f"semhpc submit --cluster {cluster} --job train --dry-run -- --config /opt/semhpc/configs/demo.yaml"
        for cluster in ("leonardo-booster", historical))
    out = run_in_image(tag, "bash", "-c", script)
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.count("#!/bin/bash") == 2 and "#SBATCH --account=" in out.stdout
    assert "semhpc 0.1.0: train job on leonardo-booster (slurm, container, srun)" in out.stdout
    assert "train job on marconi-a2 (slurm, bare-metal, mpirun)" in out.stdout
    assert out.stdout.count("# --- job/ranks.sh ---") == 2


@pytest.mark.slow
def test_doctor_in_the_image_warns_about_a_newer_host_launcher(cpu_build):
    tag, _ = cpu_build
    out = run_in_image(tag, "semhpc", "doctor", "--json",
                       env={"OMPI_COMM_WORLD_SIZE": "2", "OMPI_VERSION": "5.0.3", "PRTE_LAUNCHED": "1"})
    report = json.loads(out.stdout)
    assert report["mpi_launcher"] == "5.0.3"
    assert len(report["warnings"]) == 1 and "Open MPI 5.x" in report["warnings"][0]


@pytest.mark.slow
def test_cuda_flavour_refuses_a_base_without_cuda(docker_daemon):
    """FLAVOR=cuda reaches the build (no CUDA image can be pulled here) and fails with one clear line."""
    base = subprocess.run([str(CONTAINERS / "base-image.sh")], capture_output=True, text=True, check=True,
                          timeout=1800).stdout.strip()
    out = subprocess.run(["docker", "build", "--force-rm", "-f", str(DOCKERFILE), "--target", "base", "--build-arg", "FLAVOR=cuda",
                          "--build-arg", f"BASE_IMAGE={base}", str(ROOT)], capture_output=True, text=True, timeout=600)
    assert out.returncode != 0
    assert "FLAVOR=cuda needs a CUDA base image: --build-arg BASE_IMAGE=nvidia/cuda:" in out.stdout + out.stderr


ALLREDUCE = """
import horovod.tensorflow as hvd
import tensorflow as tf
hvd.init()
total = hvd.allreduce(tf.constant([hvd.rank() + 1.0]), op=hvd.Sum)
print(f"rank {hvd.rank()} of {hvd.size()}: sum {total.numpy()[0]}")
"""


@pytest.mark.slow
@pytest.mark.mpi
def test_two_ranks_allreduce_in_the_image(cpu_build):
    """`mpirun -np 2` inside the image, as the non-root user: Horovod over the image's Open MPI."""
    tag, _ = cpu_build
    out = run_in_image(tag, "mpirun", "-np", "2", "python", "-c", ALLREDUCE)
    assert out.returncode == 0, out.stderr[-5000:]
    lines = sorted(line for line in out.stdout.splitlines() if line.startswith("rank "))
    assert lines == ["rank 0 of 2: sum 3.0", "rank 1 of 2: sum 3.0"]


TRAIN_IN_IMAGE = """
set -euo pipefail
semhpc synth data/tiffs --per-class 8 --size 64x48 --seed 3
semhpc ingest data/tiffs data/dataset --size 64x48 --shards-per-split 2
semhpc launch -np 2 -- train --config /opt/semhpc/configs/demo.yaml --set run.dir=run \
  --set data.dir=data/dataset --set data.image_size=32 --set model.name=densenet28 \
  --set train.epochs=1 --set train.batch_size=4 --set train.log_every=1
cat run/metrics.jsonl
echo "TEST_METRICS $(python -c 'import json; print(json.dumps(json.load(open("run/test_metrics.json"))))')"
"""


def train_two_ranks_in_image(tag):
    """TRAIN_IN_IMAGE in `tag`: checks the run and returns its test metrics."""
    out = run_in_image(tag, "bash", "-c", TRAIN_IN_IMAGE, timeout=1200)
    assert out.returncode == 0, out.stderr[-5000:]
    records = [json.loads(line) for line in out.stdout.splitlines() if line.startswith("{")]
    start = next(r for r in records if r["kind"] == "start")
    assert start["ranks"] == 2
    epoch = next(r for r in records if r["kind"] == "epoch")
    assert epoch["epoch"] == 1 and math.isfinite(epoch["loss"]) and 0.0 <= epoch["accuracy"] <= 1.0
    assert any(r["kind"] == "test" for r in records)
    test = json.loads(next(line for line in out.stdout.splitlines() if line.startswith("TEST_METRICS "))[13:])
    # Horovod kept the replicas identical: the same weights on both ranks after training.
    fingerprints = test["replica_fingerprints"]
    assert len(fingerprints) == 2 and fingerprints[0] == fingerprints[1]
    return test


@pytest.mark.slow
@pytest.mark.mpi
def test_two_ranks_train_in_the_image(cpu_build):
    """synth -> ingest -> `semhpc launch -np 2 -- train` inside the image, as the non-root user."""
    tag, _ = cpu_build
    train_two_ranks_in_image(tag)


# --- the mkl flavour: the cpu build plus Intel Extension for TensorFlow (slow) -----------------

def extension_pins():
    """The name==version lines of requirements-mkl.lock."""
    return [line for line in (ROOT / "requirements-mkl.lock").read_text().splitlines()
            if line and not line.startswith("#")]


@pytest.fixture(scope="module")
def mkl_build(cpu_build, tmp_path_factory):
    """containers/build.sh --flavor mkl right after the cpu build, whose cached layers it reuses
    (no archive: the cpu tests check that path): (image tag, output folder)."""
    out = tmp_path_factory.mktemp("image-mkl")
    site_ca = ["--site-ca", str(SYSTEM_CA_BUNDLE)] if SYSTEM_CA_BUNDLE.exists() else []
    result = subprocess.run([str(CONTAINERS / "build.sh"), "--flavor", "mkl", "--local-base", *site_ca,
                             "--no-archive", "--out", str(out)], capture_output=True, text=True, timeout=3600)
    assert result.returncode == 0, result.stderr[-5000:]
    yield result.stdout.strip().splitlines()[-1], out
    shutil.rmtree(out)


@pytest.mark.slow
def test_mkl_build_reuses_the_cpu_build_and_adds_only_the_extension(cpu_build, mkl_build):
    """Every layer up to Horovod is the cpu build's: the very Horovod wheel (a compile would differ
    byte for byte) and the same pinned tree; the extension's wheels come apart, with their pins."""
    (_, cpu_out), (mkl_tag, mkl_out) = cpu_build, mkl_build
    version = semhpc.__version__
    assert mkl_tag == f"semhpc:{version}-mkl"
    cpu_wheels, mkl_wheels = cpu_out / f"wheelhouse-{version}-cpu", mkl_out / f"wheelhouse-{version}-mkl"
    [cpu_horovod] = cpu_wheels.glob("horovod-*.whl")
    assert (mkl_wheels / cpu_horovod.name).read_bytes() == cpu_horovod.read_bytes()
    assert (mkl_wheels / "requirements.txt").read_text() == (cpu_wheels / "requirements.txt").read_text()
    assert not (cpu_wheels / "extension").exists()
    assert sorted((mkl_wheels / "extension" / "requirements.txt").read_text().split()) == sorted(extension_pins())
    wheels = (wheel.name.split("-")[:2] for wheel in (mkl_wheels / "extension").glob("*.whl"))
    assert sorted(f"{name.replace('_', '-')}=={release}" for name, release in wheels) == sorted(extension_pins())
    labels = json.loads(subprocess.run(["docker", "image", "inspect", mkl_tag], capture_output=True, text=True,
                                       check=True).stdout)[0]["Config"]["Labels"]
    assert labels["io.semhpc.flavor"] == "mkl"


@pytest.mark.slow
def test_the_mkl_image_venv_holds_exactly_both_locks(mkl_build):
    tag, _ = mkl_build
    check = subprocess.run(["docker", "run", "--rm", "-v", f"{ROOT / 'scripts' / 'lock_check.py'}:/tmp/lock_check.py:ro",
                            "-v", f"{ROOT / 'requirements.lock'}:/tmp/requirements.lock:ro",
                            "-v", f"{ROOT / 'requirements-mkl.lock'}:/tmp/requirements-mkl.lock:ro",
                            "--entrypoint", "python", tag, "/tmp/lock_check.py", "/tmp/requirements.lock",
                            "/tmp/requirements-mkl.lock", "--allow", f"horovod=={semhpc.SUPPORTED_HOROVOD}",
                            "--allow", f"semhpc=={semhpc.__version__}"], capture_output=True, text=True, timeout=300)
    assert check.returncode == 0, check.stderr
    # The cpu lock alone refuses it: the extension is what the mkl flavour adds.
    alone = subprocess.run(["docker", "run", "--rm", "-v", f"{ROOT / 'scripts' / 'lock_check.py'}:/tmp/lock_check.py:ro",
                            "-v", f"{ROOT / 'requirements.lock'}:/tmp/requirements.lock:ro", "--entrypoint", "python",
                            tag, "/tmp/lock_check.py", "/tmp/requirements.lock", "--allow",
                            f"horovod=={semhpc.SUPPORTED_HOROVOD}", "--allow", f"semhpc=={semhpc.__version__}"],
                           capture_output=True, text=True, timeout=300)
    assert alone.returncode == 1
    unpinned = sorted(re.sub(r"[-_.]+", "-", line.split(": ", 1)[1].split()[0]).lower()
                      for line in alone.stderr.splitlines())
    assert unpinned == sorted(pin.split("==")[0] for pin in extension_pins())


def cpu_isa():
    flags = (Path("/proc/cpuinfo").read_text().split("\nflags", 1)[1]).split("\n", 1)[0].split()
    return "AVX512" if "avx512f" in flags else "AVX2"


@pytest.mark.slow
def test_doctor_reports_the_extension_in_the_mkl_image_and_its_absence_in_the_cpu_image(cpu_build, mkl_build):
    report = json.loads(run_in_image(mkl_build[0], "semhpc", "doctor", "--json").stdout)
    itex_version = dict(pin.split("==") for pin in extension_pins())["intel-extension-for-tensorflow"]
    assert report["ok"] is True and report["warnings"] == []
    assert report["itex"] == itex_version and report["itex_loaded"] is True
    assert report["itex_backend"] == cpu_isa()
    assert report["cpu_extension"].startswith(f"Intel Extension for TensorFlow {itex_version} loaded, {cpu_isa()}")
    assert report["horovod_mpi"] and report["horovod_gloo"]
    cpu = json.loads(run_in_image(cpu_build[0], "semhpc", "doctor", "--json").stdout)
    assert cpu["itex"] is None and cpu["itex_loaded"] is False and cpu["itex_backend"] is None
    assert cpu["cpu_extension"].startswith("none: stock TensorFlow oneDNN kernels") and "--flavor mkl" in cpu["cpu_extension"]


@pytest.mark.slow
@pytest.mark.mpi
def test_two_ranks_allreduce_and_train_in_the_mkl_image(mkl_build):
    """Horovod still works with the extension loaded: an allreduce and a 2-rank training whose
    replicas end identical."""
    tag, _ = mkl_build
    out = run_in_image(tag, "mpirun", "-np", "2", "python", "-c", ALLREDUCE)
    assert out.returncode == 0, out.stderr[-5000:]
    assert sorted(line for line in out.stdout.splitlines() if line.startswith("rank ")) == \
        ["rank 0 of 2: sum 3.0", "rank 1 of 2: sum 3.0"]
    train_two_ranks_in_image(tag)


@pytest.mark.slow
def test_an_unknown_flavour_stops_the_build_with_one_line(docker_daemon):
    base = subprocess.run([str(CONTAINERS / "base-image.sh")], capture_output=True, text=True, check=True,
                          timeout=1800).stdout.strip()
    out = subprocess.run(["docker", "build", "--force-rm", "-f", str(DOCKERFILE), "--target", "base", "--build-arg",
                          "FLAVOR=rocm", "--build-arg", f"BASE_IMAGE={base}", str(ROOT)],
                         capture_output=True, text=True, timeout=600)
    assert out.returncode != 0
    assert "FLAVOR must be cpu, mkl or cuda, not 'rocm'" in out.stdout + out.stderr

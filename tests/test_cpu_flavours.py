"""The mkl flavour: its lock, how the Dockerfile keeps the cpu build's layers for it, the bootstrap's
option, what `semhpc doctor` says about the extension, and the profile key that chooses it.

The real image (plugin loaded, Horovod training in it) is built in tests/test_containers.py (slow).
"""

import importlib.util
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

import semhpc
from semhpc.hpc import SHIPPED_DIR
from semhpc.hpc.profiles import available_profiles, load_profile
from semhpc.utils.errors import SemhpcError

ROOT = Path(__file__).resolve().parents[1]
LOCK, MKL_IN, MKL_LOCK = (ROOT / name for name in ("requirements.lock", "requirements-mkl.in", "requirements-mkl.lock"))
NOT_IN_THE_LOCK = [f"horovod=={semhpc.SUPPORTED_HOROVOD}", f"semhpc=={semhpc.__version__}"]


def pins(path):
    spec = importlib.util.spec_from_file_location("lock_check", ROOT / "scripts" / "lock_check.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.read_pins(path)


def lock_check(*locks):
    allowed = [arg for pin in NOT_IN_THE_LOCK for arg in ("--allow", pin)]
    return subprocess.run([sys.executable, str(ROOT / "scripts" / "lock_check.py"), *map(str, locks), *allowed],
                          capture_output=True, text=True, timeout=120)


# --- the lock ---------------------------------------------------------------------------------

def test_the_mkl_lock_pins_the_cpu_library_build_apart_from_the_main_lock():
    """requirements-mkl.lock holds the extension at the .in's pins (the CPU library build), and
    nothing of requirements.lock: the default install never reads it."""
    wanted = {re.sub(r"[-_.]+", "-", line.split("==")[0]).lower(): line.split("==")[1]
              for line in MKL_IN.read_text().splitlines() if line and not line.startswith("#")}
    assert wanted == {"intel-extension-for-tensorflow": "2.15.0.0", "intel-extension-for-tensorflow-lib": "2.15.0.0.0"}
    assert pins(MKL_LOCK) == wanted
    assert not set(pins(MKL_LOCK)) & set(pins(LOCK))


def test_lock_check_reads_every_lock_given_the_later_one_winning(tmp_path):
    """This venv (the cpu flavour) passes against both locks; a second lock that pins an installed
    package at another version is read, and named."""
    assert lock_check(LOCK, MKL_LOCK).returncode == 0
    drifted = tmp_path / "extra.lock"
    drifted.write_text(f"packaging=={pins(LOCK)['packaging']}.post9\n")
    result = lock_check(LOCK, drifted)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        f"{LOCK} + {drifted}: packaging {pins(LOCK)['packaging']} is installed but pinned at "
        f"{pins(LOCK)['packaging']}.post9"]


# --- the Dockerfile ---------------------------------------------------------------------------

def dockerfile_stages():
    """{stage name: its instructions, continuation lines joined} of containers/Dockerfile."""
    stages, stage = {}, None
    text = re.sub(r"\\\n", " ", (ROOT / "containers" / "Dockerfile").read_text())
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("FROM "):
            stage = line.split()[-1]
            stages[stage] = []
        elif stage and line and not line.startswith("#"):
            stages[stage].append(line)
    return stages


def test_the_cpu_builds_shared_stages_do_not_see_the_flavour():
    """A declared FLAVOR enters the cache key of every later RUN: the stages up to Horovod read the
    TensorFlow build from a copied file instead, so the mkl build takes the cpu build's layers."""
    stages = dockerfile_stages()
    for stage in ("base", "wheelhouse"):
        assert not [line for line in stages[stage] if line.startswith("ARG FLAVOR")], stage
    assert "COPY --from=flavor /flavor/ /etc/semhpc/" in stages["base"]
    [check] = [line for line in stages["flavor"] if line.startswith("RUN ")]
    assert "cpu|mkl|cuda)" in check and "echo cuda; else echo cpu; fi > /flavor/tensorflow-build" in check
    wheelhouse = stages["wheelhouse"]
    horovod = next(i for i, line in enumerate(wheelhouse) if "pip wheel" in line and "horovod==" in line)
    extension = wheelhouse.index("COPY --from=requirements /extension/ /tmp/extension/")
    assert extension > horovod       # the extension's layers come after the cpu build's Horovod


def test_build_script_knows_the_mkl_flavour():
    body = (ROOT / "containers" / "build.sh").read_text()
    function = re.search(r"^default_base_image\(\) \{\n.*?^\}\n", body, re.S | re.M).group(0)
    base = subprocess.run(["bash", "-c", f'{function}\ndefault_base_image mkl'], capture_output=True, text=True,
                          check=True).stdout.strip()
    assert base == "debian:bookworm"
    wrong = subprocess.run([str(ROOT / "containers" / "build.sh"), "--flavor", "rocm"], capture_output=True, text=True)
    assert wrong.returncode == 2
    assert wrong.stderr.strip() == "[build] error: --flavor must be cpu, mkl or cuda, not 'rocm'"


@pytest.mark.parametrize("argv, env, message", [
    (["--mlk"], {}, "[bootstrap] error: unknown option '--mlk' (--test, --mkl)"),
    ([], {"SEMHPC_FLAVOR": "rocm"}, "[bootstrap] error: SEMHPC_FLAVOR must be cpu or mkl, not 'rocm'"),
])
def test_bootstrap_refuses_an_unknown_flavour_before_touching_anything(argv, env, message, tmp_path):
    out = subprocess.run(["bash", str(ROOT / "scripts" / "bootstrap.sh"), *argv], capture_output=True, text=True,
                         env={**os.environ, "SEMHPC_VENV": str(tmp_path / "venv"), **env}, timeout=60)
    assert out.returncode == 1 and out.stderr.strip() == message
    assert not (tmp_path / "venv").exists()


# --- semhpc doctor ----------------------------------------------------------------------------

def doctor(env=None):
    out = subprocess.run([sys.executable, "-m", "semhpc", "doctor", "--json"], capture_output=True, text=True,
                         timeout=300, env={**os.environ, **(env or {})})
    return out.returncode, json.loads(out.stdout)


def test_doctor_says_clearly_when_the_extension_is_absent():
    code, report = doctor()
    assert code == 0 and report["itex"] is None and report["itex_loaded"] is False and report["itex_backend"] is None
    assert report["cpu_extension"] == ("none: stock TensorFlow oneDNN kernels (the mkl flavour adds it: "
                                       "containers/build.sh --flavor mkl, or scripts/bootstrap.sh --mkl)")


def test_doctor_warns_when_the_extension_is_installed_but_its_plugin_did_not_load(tmp_path):
    """The extension's metadata without its plugin library (a broken install): TensorFlow runs
    on, so it is a warning, and the report says the plugin is not loaded."""
    dist = tmp_path / "intel_extension_for_tensorflow-2.15.0.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: intel-extension-for-tensorflow\nVersion: 2.15.0.0\n")
    code, report = doctor({"PYTHONPATH": f"{tmp_path}{os.pathsep}{ROOT}"})
    assert code == 0 and report["ok"] is True
    assert report["itex"] == "2.15.0.0" and report["itex_loaded"] is False
    assert report["cpu_extension"] == "Intel Extension for TensorFlow 2.15.0.0 installed but NOT loaded"
    [warning] = report["warnings"]
    assert warning.startswith("intel-extension-for-tensorflow 2.15.0.0 is installed but TensorFlow did not load "
                              "its plugin (libitex_cpu.so)")


# --- the cluster profiles ---------------------------------------------------------------------

def test_only_the_sapphire_rapids_profile_chooses_the_mkl_image():
    chosen = {name: load_profile(name).execution.image_flavor for name in available_profiles()}
    assert {name for name, flavor in chosen.items() if flavor == "mkl"} == {"leonardo-dcgp"}
    assert load_profile("leonardo-dcgp").execution.image.endswith("semhpc-0.1.0-mkl.sif")


@pytest.mark.parametrize("execution, message", [
    ({"image_flavor": "mkl", "image": "${WORK}/semhpc/semhpc-0.1.0-cpu.sif"},
     r"execution.image_flavor is mkl but execution.image '\$\{WORK\}/semhpc/semhpc-0.1.0-cpu.sif' is a cpu image"),
    ({"image_flavor": "intel"}, r"execution.image_flavor = 'intel' must be one of: , cpu, mkl, cuda"),
])
def test_an_image_flavour_that_contradicts_the_image_is_a_one_line_error(tmp_path, execution, message):
    data = yaml.safe_load((SHIPPED_DIR / "clusters" / "leonardo-dcgp.yaml").read_text())
    data["execution"].update(execution)
    path = tmp_path / "site.yaml"
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(SemhpcError, match=message) as error:
        load_profile(str(path))
    assert str(error.value).startswith(str(path)) and "\n" not in str(error.value)

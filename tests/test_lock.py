"""requirements.lock is the only source of package versions: every install is constrained by it.

A pip call without the lock takes whatever the registry published last (a build tool's own
dependency included), and the environment then depends on the day it was made. These tests hold
the venv to the lock, prove the check can fail, and find any pip call in the repository's install
paths that runs without the lock. The image's venv and wheelhouse are held to it in
tests/test_containers.py (slow: it needs the real build).
"""

import importlib.util
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

import semhpc

ROOT = Path(__file__).resolve().parents[1]
LOCK = ROOT / "requirements.lock"
LOCK_CHECK = ROOT / "scripts" / "lock_check.py"
NOT_IN_THE_LOCK = [f"horovod=={semhpc.SUPPORTED_HOROVOD}", f"semhpc=={semhpc.__version__}"]


def load_lock_check():
    spec = importlib.util.spec_from_file_location("lock_check", LOCK_CHECK)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run_lock_check(lock, *allowed):
    args = [arg for name in allowed for arg in ("--allow", name)]
    return subprocess.run([sys.executable, str(LOCK_CHECK), str(lock), *args], capture_output=True, text=True,
                          timeout=120)


def test_the_venv_holds_exactly_the_locked_versions():
    """What the bootstrap installed, build tools included, is what the lock pins."""
    result = run_lock_check(LOCK, *NOT_IN_THE_LOCK)
    assert result.returncode == 0, result.stderr
    installed = load_lock_check().installed()
    for tool in ("pip", "setuptools", "wheel", "packaging"):
        assert tool in installed, f"{tool} is not installed in {sys.prefix}"


def test_the_check_names_a_package_at_another_version_and_one_the_lock_lacks(tmp_path):
    lock_check = load_lock_check()
    pins = lock_check.read_pins(LOCK)
    lines = [f"{name}=={version}" for name, version in pins.items() if name not in ("packaging", "wheel")]
    lines.append(f"packaging=={pins['packaging']}.post9")
    drifted = tmp_path / "requirements.lock"
    drifted.write_text("\n".join(lines) + "\n")
    result = run_lock_check(drifted, *NOT_IN_THE_LOCK)
    assert result.returncode == 1
    problems = result.stderr.strip().splitlines()
    assert len(problems) == 2, problems
    assert f"packaging {pins['packaging']} is installed but pinned at {pins['packaging']}.post9" in problems[0]
    assert f"wheel {pins['wheel']} is installed but not pinned" in problems[1]


def test_the_check_normalises_names_and_refuses_a_line_that_is_not_a_pin(tmp_path):
    lock_check = load_lock_check()
    assert lock_check.normalise("Jinja2") == lock_check.normalise("jinja2")
    assert lock_check.normalise("typing_extensions") == lock_check.normalise("typing-extensions")
    bad = tmp_path / "lock.txt"
    bad.write_text("numpy==1.26.4\npandas>=2\n")
    with pytest.raises(SystemExit, match=r"lock.txt:2: 'pandas>=2' is not a name==version pin"):
        lock_check.read_pins(bad)


def test_the_lock_pins_the_build_tools_and_every_name_the_inputs_ask_for():
    pins = load_lock_check().read_pins(LOCK)
    wanted = []
    for requirements in (ROOT / "requirements.in", ROOT / "containers" / "image-requirements.in"):
        for line in requirements.read_text().splitlines():
            line = line.split("#", 1)[0].strip()
            if line:
                wanted.append(re.split(r"[<>=\[ ]", line, maxsplit=1)[0])
    lock_check = load_lock_check()
    assert {"pip", "setuptools", "wheel"} <= set(pins)
    assert [name for name in wanted if lock_check.normalise(name) not in pins] == []


# --- every pip call in the install paths runs with the lock -----------------------------------

# The resolver itself: the one script that takes the newest releases, on purpose, to write the lock.
RESOLVER = ROOT / "scripts" / "lock.sh"
PIP_CALL = re.compile(r"\bpip3?\"?\s+(install|wheel|download)\b")
CONSTRAINED = re.compile(r"(\s-c\s|--constraint|--no-index|-r\s+\S*requirements\.lock)")


def display(path):
    return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else path.name


def logical_lines(path):
    """(line number, text) of a shell script or Dockerfile, continuation lines joined."""
    lines, pending, start = [], "", None
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if line.lstrip().startswith("#"):
            continue
        start = start or number
        if line.rstrip().endswith("\\"):
            pending += line.rstrip()[:-1] + " "
            continue
        lines.append((start, pending + line))
        pending, start = "", None
    return lines


def unconstrained_shell_pip_calls(path):
    """pip calls that neither pass the lock nor run after PIP_CONSTRAINT is set in the file."""
    found, constraint_set = [], False
    for number, line in logical_lines(path):
        for command in re.split(r"&&|\|\||;", line):
            if "PIP_CONSTRAINT=" in command:
                constraint_set = True
            if PIP_CALL.search(command) and not constraint_set and not CONSTRAINED.search(command + " "):
                found.append(f"{display(path)}:{number}: {command.strip()}")
    return found


def ansible_tasks(node):
    if isinstance(node, list):
        for item in node:
            yield from ansible_tasks(item)
    elif isinstance(node, dict):
        yield node
        for key in ("block", "rescue", "always"):
            yield from ansible_tasks(node.get(key))


def unconstrained_ansible_pip_tasks(path):
    found = []
    for task in ansible_tasks(yaml.safe_load(path.read_text())):
        module = task.get("ansible.builtin.pip") or task.get("pip")
        if isinstance(module, dict) and not CONSTRAINED.search(" " + str(module.get("extra_args", "")) + " "):
            found.append(f"{path.relative_to(ROOT)}: task '{task.get('name')}' runs pip without the lock")
        command = task.get("ansible.builtin.command") or task.get("ansible.builtin.shell") or {}
        text = " ".join(command.get("argv", [])) if isinstance(command, dict) else str(command)
        if PIP_CALL.search(text) and not CONSTRAINED.search(text + " "):
            found.append(f"{path.relative_to(ROOT)}: task '{task.get('name')}' runs pip without the lock")
    return found


def install_paths():
    shell = [path for pattern in ("scripts/*.sh", "containers/*.sh", "ansible/**/*.sh", "hpc/**/*.sh")
             for path in ROOT.glob(pattern) if path != RESOLVER]
    return shell + [ROOT / "containers" / "Dockerfile"], sorted(ROOT.glob("ansible/**/*.yml"))


def test_every_pip_call_in_the_install_paths_runs_with_the_lock():
    shell, playbooks = install_paths()
    assert ROOT / "scripts" / "bootstrap.sh" in shell and playbooks
    found = [call for path in shell for call in unconstrained_shell_pip_calls(path)]
    found += [task for path in playbooks for task in unconstrained_ansible_pip_tasks(path)]
    assert found == []


def test_the_pip_scan_finds_an_unconstrained_call(tmp_path):
    """The scan above must be able to fail: the Dockerfile line that let packaging drift."""
    script = tmp_path / "build.sh"
    script.write_text("#!/bin/sh\npython -m venv v \\\n && pip install pip==26.3 wheel==0.48.0\n"
                      "pip install -c requirements.lock jupyterlab\n")
    assert unconstrained_shell_pip_calls(script) == ["build.sh:2: pip install pip==26.3 wheel==0.48.0"]

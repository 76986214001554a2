"""The Ansible deployment (ansible/): lint, syntax, role documentation, the image role for real,
and the molecule scenario (slow).

The fast tests run ansible-lint and `ansible-playbook --syntax-check`, compare each role's
defaults with its argument specs and README, and run the semhpc_image and semhpc_data roles
against this machine (connection local, in tmp_path). The slow tests run `molecule test` for each scenario: a
login + compute pair of Debian containers converged in bare-metal mode (default) or in container
mode with Charliecloud (container), converged again with zero changes, then verified
(ansible/molecule/*/verify.yml).
"""

import hashlib
import json
import os
import re
import shutil
import sys
import tarfile
import time
from pathlib import Path

import pytest
import yaml

from ansible_runs import ANSIBLE, apply_roles, changed_tasks, run

ROOT = Path(__file__).resolve().parents[1]
ROLES = sorted(path.name for path in (ANSIBLE / "roles").iterdir())
PLAYBOOKS = ["site.yml", "deploy.yml", "jupyter.yml", "check.yml"]
INVENTORIES = ["c3hpc", "cineca"]


# --- static checks ----------------------------------------------------------------------------

def test_ansible_lint_finds_no_violations():
    result = run(["ansible-lint", "--offline", "--nocolor"], timeout=600)
    assert result.returncode == 0, result.stdout[-5000:] + result.stderr[-5000:]


@pytest.mark.parametrize("inventory", INVENTORIES)
def test_every_playbook_passes_the_syntax_check(inventory):
    result = run(["ansible-playbook", "-i", f"inventories/{inventory}", "--syntax-check", *PLAYBOOKS], timeout=300)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert result.stdout.count("playbook: ") == len(PLAYBOOKS)


@pytest.mark.parametrize("role", ROLES)
def test_role_defaults_are_specified_and_documented(role):
    """The role's own variables (named <role>_*) all have a default, unless required; the others
    are common inputs (ansible/README.md) without one. The README table lists them all."""
    path = ANSIBLE / "roles" / role
    defaults = set(yaml.safe_load((path / "defaults" / "main.yml").read_text()))
    specs = yaml.safe_load((path / "meta" / "argument_specs.yml").read_text())["argument_specs"]
    options = {name: spec for entry in specs.values() for name, spec in entry["options"].items()}
    owned = {name for name, spec in options.items() if name.startswith(f"{role}_") and not spec.get("required")}
    documented = set(re.findall(r"^\| `(\w+)` \|", (path / "README.md").read_text(), re.MULTILINE))
    assert defaults == owned
    assert documented == set(options)


def test_inventories_define_the_common_variables_and_groups():
    for inventory in INVENTORIES:
        folder = ANSIBLE / "inventories" / inventory
        common = yaml.safe_load((folder / "group_vars" / "all.yml").read_text())
        assert {"semhpc_version", "semhpc_mode", "semhpc_root"} <= set(common)
        assert ("semhpc_venv" if common["semhpc_mode"] == "bare-metal" else "semhpc_current_image") in common
        groups = yaml.safe_load((folder / "hosts.yml").read_text())["all"]["children"]
        assert {"login", "compute", "gpu"} <= set(groups)
        assert all((folder / "group_vars" / f"{group}.yml").is_file() for group in ("login", "compute", "gpu"))


def test_host_key_checking_stays_on():
    assert re.search(r"^host_key_checking\s*=\s*True$", (ANSIBLE / "ansible.cfg").read_text(), re.MULTILINE)


# --- the image role on this machine -----------------------------------------------------------

def sha256(path):
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def apply_role(tmp_path, role, variables):
    return apply_roles(tmp_path, variables, role, timeout=300)


@pytest.fixture
def images(tmp_path):
    """Three image files of different content on the 'controller', and the variables placing one."""
    sources = []
    for version in ("0.1.0", "0.2.0", "0.3.0"):
        path = tmp_path / "controller" / f"semhpc-{version}-cpu.sif"
        path.parent.mkdir(exist_ok=True)
        path.write_bytes(f"not a real image {version}\n".encode() * 100)
        sources.append(path)
    user, group = run(["id", "-un"]).stdout.strip(), run(["id", "-gn"]).stdout.strip()

    def variables(source, checksum=None):
        return {"semhpc_current_image": str(tmp_path / "shared" / "images" / "semhpc-current.sif"),
                "semhpc_image_src": str(source), "semhpc_image_checksum": f"sha256:{checksum or sha256(source)}",
                "semhpc_image_keep": 1, "semhpc_image_owner": user, "semhpc_image_group": group}

    return sources, variables, tmp_path / "shared" / "images"


def test_image_role_switches_the_link_and_keeps_one_previous_image(tmp_path, images):
    sources, variables, store = images
    for source in sources:
        result = apply_role(tmp_path, "semhpc_image", variables(source))
        assert result.returncode == 0, result.stdout[-3000:]
    link = store / "semhpc-current.sif"
    assert os.readlink(link) == "versions/semhpc-0.3.0-cpu.sif"  # relative: survives another mount point
    assert sha256(link) == sha256(sources[2])
    assert sorted(p.name for p in (store / "versions").iterdir()) == ["semhpc-0.2.0-cpu.sif", "semhpc-0.3.0-cpu.sif"]

    again = apply_role(tmp_path, "semhpc_image", variables(sources[2]))
    assert again.returncode == 0 and changed_tasks(again) == 0

    rollback = apply_role(tmp_path, "semhpc_image", variables(sources[1]))
    assert rollback.returncode == 0
    assert os.readlink(link) == "versions/semhpc-0.2.0-cpu.sif"
    assert sorted(p.name for p in (store / "versions").iterdir()) == ["semhpc-0.2.0-cpu.sif", "semhpc-0.3.0-cpu.sif"]


def test_image_role_refuses_a_wrong_checksum_and_keeps_the_current_image(tmp_path, images):
    sources, variables, store = images
    assert apply_role(tmp_path, "semhpc_image", variables(sources[0])).returncode == 0
    result = apply_role(tmp_path, "semhpc_image", variables(sources[1], checksum="0" * 64))
    assert result.returncode != 0
    assert "differs from semhpc_image_checksum" in result.stdout
    assert os.readlink(store / "semhpc-current.sif") == "versions/semhpc-0.1.0-cpu.sif"
    assert not (store / "versions" / "semhpc-0.2.0-cpu.sif").exists()


def image_folder_archive(path, version):
    """A tar.gz of a small image folder (the layout ch-convert -i dir -o tar writes, without a top folder)."""
    folder = path.parent / f"{version}-folder"
    (folder / "ch").mkdir(parents=True)
    (folder / "ch" / "environment").write_text(f"SEMHPC_VERSION={version}\n")
    (folder / "bin").mkdir()
    (folder / "bin" / "python").write_text("#!/bin/sh\n")
    with tarfile.open(path, "w:gz") as tar:
        for item in sorted(folder.iterdir()):
            tar.add(item, item.name)
    return path


def test_image_role_unpacks_an_image_folder_with_its_mount_points(tmp_path, images):
    """Charliecloud: the archive becomes versions/<name>/ with the mount points, the link points at
    the folder, a second run changes nothing, and older folders beyond semhpc_image_keep go."""
    _, variables, store = images
    archives = [image_folder_archive(tmp_path / "controller" / f"semhpc-{v}-cpu.tar.gz", v) for v in ("0.1.0", "0.2.0", "0.3.0")]
    folder_vars = {"semhpc_current_image": str(store / "semhpc-current"), "semhpc_image_unpack": True,
                   "semhpc_image_mount_points": ["/scratch", "/g100/home"]}
    for archive in archives:
        result = apply_role(tmp_path, "semhpc_image", {**variables(archive), **folder_vars})
        assert result.returncode == 0, result.stdout[-3000:]
    link = store / "semhpc-current"
    assert os.readlink(link) == "versions/semhpc-0.3.0-cpu"
    assert (link / "ch" / "environment").read_text() == "SEMHPC_VERSION=0.3.0\n"
    assert (link / "scratch").is_dir() and (link / "g100" / "home").is_dir()
    assert sorted(p.name for p in (store / "versions").iterdir()) == ["semhpc-0.2.0-cpu", "semhpc-0.3.0-cpu"]
    again = apply_role(tmp_path, "semhpc_image", {**variables(archives[2]), **folder_vars})
    assert again.returncode == 0 and changed_tasks(again) == 0


def test_data_role_refuses_world_writable_folders(tmp_path):
    result = apply_role(tmp_path, "semhpc_data", {
        "semhpc_root": str(tmp_path), "semhpc_data_root": str(tmp_path / "data"),
        "semhpc_data_dirs": [{"path": "runs", "mode": "1777"}]})
    assert result.returncode != 0
    assert "1777: data folders must not be writable by others" in result.stdout
    assert not (tmp_path / "data").exists()


@pytest.mark.parametrize("flavor, requirement, constraint", [
    ("cpu", "tensorflow-cpu==", "tensorflow-cpu=="),
    ("cuda", "tensorflow[and-cuda]==", "tensorflow=="),
])
def test_env_role_writes_the_lock_as_requirements_and_as_constraints(tmp_path, flavor, requirement, constraint):
    """Index installs take the lock twice: the pinned tree, and constraints for every pip call (pip
    refuses extras in a constraints file, so cuda's tensorflow[and-cuda] is plain tensorflow there)."""
    playbook = tmp_path / "pins.yml"
    playbook.write_text(yaml.safe_dump([{"name": "Pins", "hosts": "localhost", "connection": "local",
                                         "gather_facts": False, "tasks": [{"name": "Write the pins",
                                         "ansible.builtin.include_role": {"name": "semhpc_env", "tasks_from": "pins"}}]}]))
    venv = tmp_path / "venv"
    extra_vars = {"ansible_python_interpreter": sys.executable, "semhpc_venv": str(venv), "semhpc_version": "0.1.0",
                  "semhpc_env_flavor": flavor}
    result = run(["ansible-playbook", "-i", "localhost,", str(playbook), "-e", json.dumps(extra_vars)], timeout=300)
    assert result.returncode == 0, result.stdout[-3000:]
    lock = [line for line in (ROOT / "requirements.lock").read_text().splitlines()
            if line and not line.startswith("#")]
    written = {}
    for name in ("requirements", "constraints"):
        written[name] = [line for line in Path(f"{venv}.{name}.txt").read_text().splitlines()
                         if line and not line.startswith("#")]
        assert len(written[name]) == len(lock)
        assert {"pip==", "setuptools==", "wheel=="} <= {line.split("==")[0] + "==" for line in written[name]}
    tensorflow = next(line for line in lock if line.startswith("tensorflow-cpu=="))
    version = tensorflow.split("==")[1]
    assert f"{requirement}{version}" in written["requirements"]
    assert f"{constraint}{version}" in written["constraints"]
    assert not any("[" in line for line in written["constraints"])


# --- molecule (slow) --------------------------------------------------------------------------

@pytest.mark.parametrize("profile", ["testbed-slurm", "testbed-pbs"])
def test_hub_settings_take_scheduler_queue_account_qos_and_hub_address_from_the_cluster_profile(tmp_path, profile):
    """The jupyter role's hub settings for a cluster profile, loaded as JupyterHub loads them: the
    server jobs go where `semhpc submit` sends a job of that profile, and call the hub back at
    the profile's login host."""
    from hub_settings import load_settings, write_batchspawner_settings

    shipped = yaml.safe_load((ROOT / "hpc" / "clusters" / f"{profile}.yaml").read_text())
    shipped["scheduler"]["login_host"] = "head"
    config = load_settings(write_batchspawner_settings(tmp_path, {
        "semhpc_version": "0.1.0", "semhpc_root": "/opt/semhpc", "semhpc_jupyter_profile": shipped,
        "semhpc_jupyter_memory": "2G"}))
    assert config.JupyterHub.hub_connect_ip == "head"
    assert "PATH" in config.Spawner.env_keep  # the hub's PATH finds qsub (/opt/pbs/bin) and sbatch
    if profile == "testbed-slurm":
        assert config.JupyterHub.spawner_class == "batchspawner.SlurmSpawner"
        assert config.SlurmSpawner.req_partition == "tb_usr_prod"
        assert config.SlurmSpawner.req_options == "--account=tb_semhpc --qos=tb_qos_dbg"
        assert config.BatchSpawnerBase.req_memory == "2G"
    else:
        assert config.JupyterHub.spawner_class == "batchspawner.PBSSpawner"
        assert config.PBSSpawner.req_queue == "workq"
        assert "req_options" not in config.PBSSpawner   # the profile charges no account
        assert config.BatchSpawnerBase.req_memory == "2gb"
    # Values given to the role win over the profile's.
    config = load_settings(write_batchspawner_settings(tmp_path, {
        "semhpc_version": "0.1.0", "semhpc_root": "/opt/semhpc", "semhpc_jupyter_profile": shipped,
        "semhpc_jupyter_queue": "other", "semhpc_jupyter_hub_connect_ip": "10.0.0.5"}))
    assert config.JupyterHub.hub_connect_ip == "10.0.0.5"
    assert (config.SlurmSpawner.req_partition if profile == "testbed-slurm" else config.PBSSpawner.req_queue) == "other"
    # Cores and memory follow the profile's jupyter section, as `semhpc submit --job jupyter` asks:
    # memory_gb 0 leaves the memory to the scheduler, and the cores stay within a node.
    assert "req_memory" not in config.BatchSpawnerBase
    assert config.BatchSpawnerBase.req_nprocs == "1"      # jupyter.cores 2 (the default), node.cores 1
    shipped.update(node={**shipped["node"], "cores": 8}, jupyter={"cores": 3, "memory_gb": 12})
    config = load_settings(write_batchspawner_settings(tmp_path, {
        "semhpc_version": "0.1.0", "semhpc_root": "/opt/semhpc", "semhpc_jupyter_profile": shipped}))
    assert config.BatchSpawnerBase.req_nprocs == "3"
    assert config.BatchSpawnerBase.req_memory == ("12G" if profile == "testbed-slurm" else "12gb")


@pytest.mark.slow
@pytest.mark.parametrize("scenario", ["default", "container"])
def test_molecule_converges_idempotently_and_verifies(docker_daemon, scenario):  # noqa: F811
    """default: bare metal; container: Charliecloud, the image unpacked from a ch-convert archive."""
    assert shutil.which("debootstrap") or run(["docker", "image", "inspect", "semhpc/debian:bookworm"]).returncode == 0
    if scenario == "container":
        assert shutil.which("ch-convert"), "Charliecloud not found: apt-get install charliecloud"
    start = time.monotonic()
    result = run(["molecule", "test", "-s", scenario], timeout=3600)
    print(f"molecule test -s {scenario}: {time.monotonic() - start:.0f} s")  # shown with -s
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-8000:]
    for step in ("converge", "idempotence", "verify"):
        assert re.search(rf"{step}: Executed: Successful", output), step

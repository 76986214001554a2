"""The semhpc_jupyter role's batchspawner settings, written by Ansible as ansible/jupyter.yml does on
the hub host, and read back as JupyterHub reads them (traitlets), for the hub tests."""

import os
import subprocess
import sys
from pathlib import Path

import yaml
from traitlets.config.loader import PyFileConfigLoader

ROLES = Path(__file__).resolve().parents[1] / "ansible" / "roles"


def write_batchspawner_settings(folder: Path, variables: dict) -> Path:
    """Run the role's `hub` tasks against localhost, as ansible/jupyter.yml does on the hub host."""
    settings = folder / "etc" / "semhpc_batchspawner.py"
    playbook = folder / "hub.yml"
    playbook.write_text(yaml.safe_dump([{
        "name": "Write the batchspawner settings", "hosts": "localhost", "connection": "local", "gather_facts": False,
        "tasks": [{"name": "Hub", "ansible.builtin.include_role": {"name": "semhpc_jupyter", "tasks_from": "hub"}}]}]))
    extra = folder / "hub-vars.yml"
    extra.write_text(yaml.safe_dump({"ansible_python_interpreter": sys.executable,
                                     "semhpc_jupyter_hub_config": str(settings), **variables}))
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
           "ANSIBLE_ROLES_PATH": str(ROLES), "ANSIBLE_NOCOLOR": "1"}
    out = subprocess.run(["ansible-playbook", "-i", "localhost,", str(playbook), "-e", f"@{extra}"], env=env,
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stdout[-3000:]
    return settings


def load_settings(settings: Path):
    """The settings as JupyterHub loads them with load_subconfig: a traitlets Config."""
    return PyFileConfigLoader(settings.name, str(settings.parent)).load_config()

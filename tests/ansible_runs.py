"""Ansible from the tests: semhpc's roles applied to this machine (connection local, this
Python), as the playbooks apply them on a node, and the tools (ansible-playbook, ansible-lint,
molecule) found next to the Python running the tests."""

import os
import re
import subprocess
import sys
from pathlib import Path

import yaml

ANSIBLE = Path(__file__).resolve().parents[1] / "ansible"
TOOLS_ENV = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
             "ANSIBLE_NOCOLOR": "1", "ANSIBLE_FORCE_COLOR": "0"}


def run(argv, **kwargs):
    """A tool run in ansible/ (its ansible.cfg finds the roles); the completed process."""
    return subprocess.run(argv, cwd=ANSIBLE, env=TOOLS_ENV, capture_output=True, text=True, **kwargs)


def apply_roles(folder: Path, variables: dict, *roles: str, tasks_from: str = "main", timeout=600):
    """The roles' `tasks_from` entry point against localhost, with `variables` as extra vars; the
    completed process. The playbook and its variables are written to `folder`."""
    playbook, extra = folder / "roles.yml", folder / "role-vars.yml"
    playbook.write_text(yaml.safe_dump([{
        "name": "Apply the roles", "hosts": "localhost", "connection": "local", "gather_facts": False,
        "tasks": [{"name": f"Apply {role}", "ansible.builtin.include_role": {"name": role, "tasks_from": tasks_from}}
                  for role in roles]}]))
    extra.write_text(yaml.safe_dump({"ansible_python_interpreter": sys.executable, **variables}))
    return run(["ansible-playbook", "-i", "localhost,", str(playbook), "-e", f"@{extra}"], timeout=timeout)


def changed_tasks(result) -> int:
    """How many tasks changed something, from the play recap."""
    return int(re.search(r"localhost\s*:\s*ok=\d+\s+changed=(\d+)", result.stdout).group(1))

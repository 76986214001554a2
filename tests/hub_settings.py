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


def jupyterhub_config(*, bind_url: str, hub_ip: str, hub_port: int, proxy_api_port: int, state_dir: str,
                      proxy: str, user: str, password: str, settings: str, notebook_dir: str,
                      environment: dict, allow_root: bool = False) -> str:
    """jupyterhub_config.py of a test hub: a local login for `user`, the role's batchspawner
    `settings` loaded as a centre loads them, and the hub submitting as the user itself."""
    return f"""
c = get_config()  # noqa: F821
c.JupyterHub.bind_url = "{bind_url}"
c.JupyterHub.hub_ip = "{hub_ip}"
c.JupyterHub.hub_port = {hub_port}
c.JupyterHub.db_url = "sqlite:///{state_dir}/hub.sqlite"
c.JupyterHub.cookie_secret_file = "{state_dir}/cookie_secret"
c.JupyterHub.pid_file = "{state_dir}/hub.pid"
c.ConfigurableHTTPProxy.command = ["{proxy}"]
c.ConfigurableHTTPProxy.api_url = "http://127.0.0.1:{proxy_api_port}"
c.JupyterHub.authenticator_class = "dummy"
c.DummyAuthenticator.password = "{password}"
c.Authenticator.allowed_users = {{"{user}"}}
load_subconfig("{settings}")
# The hub runs as the user here; a centre's hub submits through sudo -u USER (the default prefix).
c.BatchSpawnerBase.exec_prefix = ""
c.Spawner.notebook_dir = "{notebook_dir}"
c.Spawner.environment.update({environment!r})
{'c.Spawner.args = ["--allow-root"]' if allow_root else ''}
"""

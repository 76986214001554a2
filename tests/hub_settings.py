"""The semhpc_jupyter role's batchspawner settings, written by Ansible as ansible/jupyter.yml does on
the hub host, and read back as JupyterHub reads them (traitlets), for the hub tests."""

from pathlib import Path

from traitlets.config.loader import PyFileConfigLoader

from ansible_runs import ANSIBLE, apply_roles

ROLES = ANSIBLE / "roles"


def write_batchspawner_settings(folder: Path, variables: dict) -> Path:
    """Run the role's `hub` tasks against localhost, as ansible/jupyter.yml does on the hub host."""
    settings = folder / "etc" / "semhpc_batchspawner.py"
    result = apply_roles(folder, {"semhpc_jupyter_hub_config": str(settings), **variables}, "semhpc_jupyter",
                         tasks_from="hub", timeout=300)
    assert result.returncode == 0, result.stdout[-3000:]
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

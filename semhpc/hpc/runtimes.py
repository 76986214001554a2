"""The HPC container runtimes (Apptainer, Singularity, Charliecloud, Podman), read from hpc/runtimes.yaml.

One table says, per runtime, its program, how it runs a command in an image, its GPU flag, how it
applies the image's environment and binds a host folder, and how the image's Python starts. Job
scripts (render.py) and the module's `semhpc` wrapper (ansible/roles/semhpc_module reads the same
file) both build their commands from it, so the runtimes differ in that file only.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

from semhpc.config.loader import read_yaml_mapping
from semhpc.hpc import SHIPPED_DIR
from semhpc.utils.errors import SemhpcError

RUNTIMES_FILE = SHIPPED_DIR / "runtimes.yaml"
KEYS = ("program", "exec", "gpu", "environment", "home", "bind", "image", "python", "tmpdir")


@dataclass(frozen=True)
class ContainerRuntime:
    name: str
    program: str
    exec: tuple[str, ...]
    gpu: tuple[str, ...]
    environment: tuple[str, ...]
    home: tuple[str, ...]  # words that make $HOME visible; {path} is $HOME
    bind: tuple[str, ...]  # words for one folder; {path} is the folder
    image: str  # "path" (a file or folder to check) or "name" (the runtime's own store)
    python: tuple[str, ...]
    tmpdir: str  # the host folder the job's TMPDIR becomes ("" keeps it): the container must see it

    def options(self, binds: list[str], gpus: bool, home: str | None = None) -> list[str]:
        """The words between the program and the image: exec, GPU, environment, the home folder
        (when `home` is given), one bind per folder of `binds`."""
        words = [*self.exec, *(self.gpu if gpus else ()), *self.environment]
        if home:
            words += [word.replace("{path}", home) for word in self.home]
        for path in binds:
            words += [word.replace("{path}", path) for word in self.bind]
        return words

    def command(self, image: str, binds: list[str], gpus: bool, home: str | None = None) -> list[str]:
        """The full command that starts the image's Python (arguments follow: -m semhpc ...)."""
        return [self.program, *self.options(binds, gpus, home), image, *self.python]


@lru_cache(maxsize=1)
def container_runtimes() -> dict[str, ContainerRuntime]:
    """Runtime name -> its definition, checked once."""
    data = read_yaml_mapping(RUNTIMES_FILE, "container runtimes", "a mapping of runtime name: definition")
    runtimes = {}
    for name, entry in data.items():
        if not isinstance(entry, dict) or set(entry) != set(KEYS):
            raise SemhpcError(f"{RUNTIMES_FILE}: runtime '{name}' must have exactly the keys {', '.join(KEYS)}")
        if entry["image"] not in ("path", "name"):
            raise SemhpcError(f"{RUNTIMES_FILE}: {name}.image must be path or name, not {entry['image']!r}")
        runtimes[name] = ContainerRuntime(
            name=name, program=str(entry["program"]), image=entry["image"], tmpdir=str(entry["tmpdir"] or ""),
            **{key: tuple(str(word) for word in entry[key] or ()) for key in ("exec", "gpu", "environment", "home",
                                                                               "bind", "python")})
    return runtimes


def container_runtime(name: str) -> ContainerRuntime:
    runtimes = container_runtimes()
    if name not in runtimes:
        raise SemhpcError(f"unknown container runtime '{name}' (known: {', '.join(runtimes)})")
    return runtimes[name]

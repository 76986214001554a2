#!/usr/bin/env python3
"""Check that every package installed for this Python is pinned in a lock file, at that version.

    python scripts/lock_check.py LOCK [LOCK ...] [--allow NAME==VERSION ...]

Run with the interpreter of the environment to check (the bootstrap's venv, the image's venv):
it reads that environment's installed distributions, build tools (pip, setuptools, wheel)
included, and compares each with LOCK (`requirements.lock`, or a constraints file derived from
it; more than one LOCK are read together, e.g. requirements.lock and the mkl flavour's
requirements-mkl.lock). `--allow` admits a package that is not in the lock at exactly one version: Horovod (compiled
against the installed TensorFlow, so it cannot be a registry pin) and semhpc itself.

Exit 0 when everything matches; else one line per package that is missing from the lock or
installed at another version, and exit 1. Why: a package installed without the lock as
constraints takes whatever the registry published last, and the environment (or an image's
wheelhouse) then depends on the day it was built. Standard library only: it runs in an image's
build stage before anything else is installed.
"""

import argparse
import importlib.metadata
import re
import sys


def normalise(name):
    """PEP 503 name: `Jinja2`, `jinja2` and `typing_extensions`/`typing-extensions` compare equal."""
    return re.sub(r"[-_.]+", "-", name).lower()


def read_pins(path):
    """{normalised name: version} of the `name==version` lines of a lock or constraints file."""
    pins = {}
    with open(path, encoding="utf-8") as fh:
        for number, line in enumerate(fh, 1):
            line = line.split("#", 1)[0].strip()
            if not line:
                continue
            name, sep, version = line.partition("==")
            if not sep or not version.strip():
                raise SystemExit(f"{path}:{number}: '{line}' is not a name==version pin")
            pins[normalise(name.split("[", 1)[0].strip())] = version.strip()
    return pins


def installed():
    """{normalised name: (name, version)} of the distributions this interpreter sees."""
    found = {}
    for dist in importlib.metadata.distributions():
        name = dist.metadata["Name"]
        if name:
            found[normalise(name)] = (name, dist.version)
    return found


def drift(pins, packages):
    """One line per installed package that the pins do not hold at its installed version."""
    problems = []
    for key, (name, version) in sorted(packages.items()):
        pinned = pins.get(key)
        if pinned is None:
            problems.append(f"{name} {version} is installed but not pinned")
        elif pinned != version:
            problems.append(f"{name} {version} is installed but pinned at {pinned}")
    return problems


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("locks", nargs="+", metavar="LOCK",
                        help="requirements.lock or a constraints file derived from it, and any extra lock")
    parser.add_argument("--allow", action="append", default=[], metavar="NAME==VERSION",
                        help="a package allowed besides the lock, at this version")
    args = parser.parse_args(argv)
    pins = {}
    for lock in args.locks:
        pins.update(read_pins(lock))
    for allowed in args.allow:
        name, sep, version = allowed.partition("==")
        if not sep or not version:
            parser.error(f"--allow {allowed}: expected NAME==VERSION")
        pins[normalise(name)] = version
    problems = drift(pins, installed())
    locks = " + ".join(args.locks)
    for problem in problems:
        print(f"{locks}: {problem}", file=sys.stderr)
    if not problems:
        print(f"every installed package of {sys.prefix} is pinned in {locks}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())

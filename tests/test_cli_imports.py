"""`semhpc --help`, every command's `--help` and `semhpc submit --dry-run` run on login nodes
and must answer at once: they import no TensorFlow, Horovod or Keras (seconds of start-up and
hundreds of MB), which is why those are imported only inside the functions that need them."""

import json
import subprocess
import sys

import pytest

from semhpc.cli import COMMANDS
from semhpc.hpc.resources import JOB_KINDS

HEAVY = ("tensorflow", "horovod", "keras")
# Runs the CLI in a fresh interpreter, then reports which heavy packages it imported.
PROBE = """
import json, sys
from semhpc import cli
try:
    code = cli.main(sys.argv[1:])
except SystemExit as exc:
    code = exc.code
loaded = sorted({name.split(".")[0] for name in sys.modules} & set(%r))
print("\\nPROBE " + json.dumps({"code": code, "loaded": loaded}))
""" % (HEAVY,)


def probe(*argv, cwd=None) -> dict:
    out = subprocess.run([sys.executable, "-c", PROBE, *argv], capture_output=True, text=True, timeout=300, cwd=cwd)
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.rsplit("\nPROBE ", 1)[1])


def test_top_level_help_imports_no_tensorflow():
    assert probe("--help") == {"code": 0, "loaded": []}


@pytest.mark.parametrize("command", COMMANDS)
def test_command_help_imports_no_tensorflow(command):
    assert probe(command, "--help") == {"code": 0, "loaded": []}


@pytest.mark.parametrize("kind", sorted(JOB_KINDS))
def test_submit_dry_run_imports_no_tensorflow(kind, tmp_path):
    (tmp_path / "c.yaml").write_text("run:\n  dir: r\n")
    job_args = {"train": ["--config", "c.yaml"], "ingest": ["src", "out"], "classify": ["--model", "m", "--input", "i",
                                                                                       "--out", "o"]}.get(kind, [])
    result = probe("submit", "--cluster", "local-slurm", "--job", kind, "--dry-run", "--", *job_args, cwd=tmp_path)
    assert result == {"code": 0, "loaded": []}

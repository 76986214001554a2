"""`semhpc doctor`: real report of this stack, and refusal of an unsupported TensorFlow."""

import json
import os
import subprocess
import sys

from semhpc.runtime.stack import tensorflow_problem


def run_doctor(*args, env=None):
    return subprocess.run([sys.executable, "-m", "semhpc", "doctor", *args], capture_output=True, text=True,
                          timeout=300, env={**os.environ, **(env or {})})


def test_json_report_of_this_machine():
    out = run_doctor("--json")
    report = json.loads(out.stdout)
    for key in ("python", "tensorflow", "horovod", "horovod_mpi", "horovod_gloo", "horovod_nccl", "mpirun", "gpus", "ok"):
        assert key in report
    assert report["ok"] is True and out.returncode == 0
    assert report["tensorflow"].startswith("2.15.")
    assert report["horovod"] == "0.28.1" and report["horovod_mpi"] and report["horovod_gloo"]
    assert report["gpus"] == []          # no GPU on this machine; NCCL not needed
    assert "Open MPI" in report["mpirun"]


def test_version_rules():
    assert tensorflow_problem("2.15.1") is None
    assert "not supported" in tensorflow_problem("2.16.1") and "horovod==0.28.1" in tensorflow_problem("2.16.1")
    assert "untested" in tensorflow_problem("2.14.0")
    assert "not installed" in tensorflow_problem(None)


def test_refuses_tensorflow_216_with_the_supported_pair(tmp_path):
    """A TensorFlow 2.17 distribution shadowing the real one: doctor must fail and say why."""
    dist = tmp_path / "tensorflow_cpu-2.17.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: tensorflow-cpu\nVersion: 2.17.0\n")
    out = run_doctor("--json", env={"PYTHONPATH": str(tmp_path)})
    report = json.loads(out.stdout)
    assert out.returncode == 1 and report["ok"] is False
    assert report["tensorflow"] == "2.17.0"
    assert any("TensorFlow 2.17.0 is not supported" in p and "tensorflow-cpu==2.15.1" in p and "horovod==0.28.1" in p
               for p in report["problems"])

"""`semhpc demo`: the main job on embedded synthetic data, end to end, printing every command.

synthetic SEM TIFFs -> MPI-parallel ingest to TFRecords -> N-rank Horovod training of DenseNet-28
-> per-class test accuracy and images/sec. Each stage is an ordinary semhpc command, printed
before it runs, so users can copy them. Finished stages are skipped on a re-run (synth keeps a
stamp of its parameters; ingest resumes by itself); training always runs afresh.
"""

from __future__ import annotations

import json
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

from semhpc.commands.train import add_config_arguments
from semhpc.runtime.launcher import mpirun_command
from semhpc.utils import atomic, options
from semhpc.utils.errors import SemhpcError
from semhpc.utils.metrics_log import read_metrics

HELP = "Run the main job on synthetic SEM data: synth -> ingest -> Horovod training -> test accuracy."


def add_arguments(parser) -> None:
    add_config_arguments(parser)
    parser.add_argument("-np", "--np", type=options.bounded_int(1, options.MAX_RANKS),
                        help="training ranks (default: launch.np of the config)")


def main(args) -> int:
    from semhpc.config import load_config, save_config

    config_path = args.config or str(Path(__file__).resolve().parents[2] / "configs" / "demo.yaml")
    cfg = load_config(config_path if Path(config_path).is_file() else None, args.overrides)
    ranks = args.np or cfg.launch.np
    run_dir = Path(cfg.run.dir)
    if run_dir.exists():  # the demo's own run directory: training always starts afresh
        print(f"[demo] removing the previous demo run {run_dir}", flush=True)
        shutil.rmtree(run_dir)
    resolved = save_config(cfg, run_dir)
    semhpc = [sys.executable, "-m", "semhpc"]

    synth_params = {"per_class": cfg.synth.per_class, "size": cfg.synth.size, "seed": cfg.synth.seed,
                    "imbalance": cfg.synth.imbalance}
    stamp = Path(cfg.synth.out) / ".semhpc-synth.json"
    if stamp.is_file() and json.loads(stamp.read_text()) == synth_params:
        print(f"[demo] 1/3 synthetic SEM images already in {cfg.synth.out}", flush=True)
    else:
        size = "x".join(map(str, cfg.synth.size))
        _run("1/3 synthesise SEM TIFFs", semhpc + ["synth", cfg.synth.out, "--per-class", str(cfg.synth.per_class),
                                                   "--size", size, "--seed", str(cfg.synth.seed)]
             + (["--imbalance"] if cfg.synth.imbalance else []))
        atomic.write_json(stamp, synth_params)

    ingest = ["ingest", cfg.synth.out, cfg.data.dir, "--size", "x".join(map(str, cfg.ingest.size)),
              "--split", ",".join(map(str, cfg.ingest.split)),
              "--shards-per-split", str(cfg.ingest.shards_per_split)]
    _run("2/3 ingest to TFRecords", mpirun_command(ranks, ingest) if ranks > 1 else semhpc + ingest)

    train = ["train", "--config", str(resolved)]
    _run(f"3/3 train {cfg.model.name} on {ranks} rank(s)", mpirun_command(ranks, train) if ranks > 1 else semhpc + train)

    test = json.loads((run_dir / "test_metrics.json").read_text())
    epochs = [r for r in read_metrics(run_dir / "metrics.jsonl") if r.get("kind") == "epoch"]
    if not epochs:
        raise SemhpcError(f"{run_dir / 'metrics.jsonl'}: no epoch records; did training fail?")
    print(f"\n[demo] test accuracy {test['accuracy']:.3f} (top-5 {test['top5_accuracy']:.3f}) on "
          f"{test['images']} images; chance is {1 / len(test['classes']):.3f}")
    print(f"[demo] training throughput (last epoch): {epochs[-1]['images_per_sec']:.1f} images/sec on {ranks} rank(s)")
    print(f"[demo] outputs in {run_dir}/: config.yaml, metrics.jsonl, status.json, tensorboard/, checkpoints/, "
          "final_weights.h5, test_metrics.json")
    return 0


def _run(title: str, cmd: list[str]) -> None:
    print(f"[demo] {title}\n  $ {' '.join(shlex.quote(c) for c in cmd)}", flush=True)
    code = subprocess.call(cmd)
    # ingest exits 1 when some files were skipped (listed in errors.csv); that is not fatal here.
    if code not in (0, 1) or (code == 1 and "ingest" not in cmd):
        raise SemhpcError(f"stage '{title}' failed with exit code {code}")


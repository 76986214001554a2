"""`semhpc profile`: layer timing, where the time of a training step goes, per layer block and phase.

    semhpc profile --model densenet28 --image-size 112 --batch-size 16 --steps 20 --out DIR
    semhpc launch -np 2 -- profile ...            every rank profiled, gathered on rank 0
    semhpc profile --config run.yaml --out DIR    the run's model, recipe and ingested data
    semhpc profile --analyse DIR [--model M]      re-read a profile folder, or summarise a
                                                  TensorFlow profiler trace (e.g. of model.fit)

Rows: forward, backward and weight update per layer block; loss; shared optimizer work; input
wait; allreduce; framework overhead; unattributed. They add up to the wall step time. Outputs
and definitions: `semhpc/bench/layer_timing_report.py`.
"""

from __future__ import annotations

import json
from pathlib import Path

from semhpc.bench import horovod_ranks
from semhpc.bench.trace import read_steps, trace_files
from semhpc.commands.bench import add_workload_arguments, resolve_config
from semhpc.utils import options
from semhpc.utils.errors import SemhpcError

HELP = "Per-layer profile of training steps: forward/backward/update per layer, plus input, communication, overhead."

DEFAULT_STEPS = 20
DEFAULT_WARMUP = 5
DEFAULT_ROUNDS = 4


def add_arguments(parser) -> None:
    add_workload_arguments(parser)
    parser.add_argument("--steps", type=options.bounded_int(1, 100_000), default=DEFAULT_STEPS,
                        help=f"profiled steps; as many again run unprofiled for the overhead (default {DEFAULT_STEPS})")
    parser.add_argument("--warmup", type=options.bounded_int(0, 10_000),
                        default=DEFAULT_WARMUP, help=f"unrecorded steps first (default {DEFAULT_WARMUP})")
    parser.add_argument("--rounds", type=options.bounded_int(1, 1000), default=DEFAULT_ROUNDS,
                        help=f"alternate unprofiled and profiled blocks this many times (default {DEFAULT_ROUNDS})")
    parser.add_argument("--threads", type=options.bounded_int(0, options.MAX_CORES),
                        default=0, help="intra-op threads per rank (default: one per bound core)")
    parser.add_argument("--data", help="ingested dataset to train on (default: the config's data.dir with --config, "
                                       "else synthetic batches)")
    parser.add_argument("--out", help="output folder (default runs/profile-MODEL)")
    parser.add_argument("--json", action="store_true", help="print the summary JSON instead of the table")
    parser.add_argument("--top", type=options.bounded_int(1, 10_000),
                        default=20, help="layer blocks in the table (default 20)")
    parser.add_argument("--analyse", metavar="DIR",
                        help="summarise an existing profile folder or TensorFlow profiler trace instead of running")


def main(args) -> int:
    if args.steps < 1 or args.warmup < 1 or args.rounds < 1:
        raise SemhpcError("--steps, --warmup and --rounds must be at least 1 (the first step compiles)")
    if args.analyse:
        return _analyse(args)
    return _time_layers(args)


def _time_layers(args) -> int:
    from semhpc.bench.layer_timing import time_layers
    from semhpc.bench.layer_timing_report import iteration_table, steps_table, summarise, write_layer_timing
    from semhpc.bench.workload import build_workload

    settings = {"model": args.model, "image_size": args.image_size, "batch_size": args.batch_size}
    cfg = resolve_config(args, settings, args.threads)
    ranks = horovod_ranks.start(cfg.train.threads)
    workload = build_workload(cfg, world_size=ranks.size)
    data_dir = args.data or (cfg.data.dir if args.config else None)
    batches = _batches(workload, cfg, data_dir, ranks)
    out = Path(args.out or f"runs/profile-{cfg.model.name}")
    mine = time_layers(workload, batches, args.steps, args.warmup, args.rounds, out / "trace",
                            ranks.rank, ranks.is_root)
    everyone = horovod_ranks.gather(mine)
    if ranks.is_root:
        settings.update(steps=args.steps, warmup=args.warmup, rounds=args.rounds, threads_per_rank=ranks.threads,
                        precision=workload.precision.policy, data=data_dir or "synthetic")
        iterations, steps = iteration_table(everyone), steps_table(everyone)
        summary = summarise(iterations, steps, settings)
        write_layer_timing(out, iterations, steps, summary)
        _print(summary, args)
        if not args.json:
            print(f"wrote {out}/profile.json, iterations.csv, steps.csv, experiment.csv, trace/")
    return 0


def _batches(workload, cfg, data_dir, ranks):
    """An endless iterator of (images, labels): the ingested dataset's training split, or the
    workload's synthetic batch over and over."""
    import tensorflow as tf

    if data_dir is None:
        return iter(tf.data.Dataset.from_tensors((workload.images, workload.labels)).repeat())
    from semhpc.runtime.recipe import split_dataset

    dataset = split_dataset(cfg, "train", training=True, rank=ranks.rank, world_size=ranks.size, data_dir=data_dir)
    return iter(dataset.repeat())


def _analyse(args) -> int:
    from semhpc.bench import layer_timing_report

    folder = Path(args.analyse)
    if (folder / "iterations.csv").is_file():
        iterations, steps, settings = layer_timing_report.read_layer_timing_dir(folder)
    elif trace_files(folder):
        iterations, steps, settings = _analyse_trace(args, folder), None, {"model": args.model}
    else:
        raise SemhpcError(f"{folder}: neither a profile folder (iterations.csv) nor a TensorFlow profiler trace "
                          f"(plugins/profile/*/*.xplane.pb)")
    summary = layer_timing_report.summarise(iterations, steps, settings)
    if args.out:
        layer_timing_report.write_layer_timing(args.out, iterations, steps, summary)
    _print(summary, args)
    return 0


def _analyse_trace(args, folder):
    """Rows of every step in a raw trace; `rank<N>` subfolders are ranks. Needs --model."""
    from semhpc.bench.attribution import attribute_step
    from semhpc.bench.layer_timing import RankLayerTimes, names_only_namer
    from semhpc.bench.layer_timing_report import iteration_table
    from semhpc.config import load_config
    from semhpc.runtime.schedule import make_optimizer

    if not args.model:
        raise SemhpcError(f"--analyse {folder}: a raw trace needs --model to know the layer names")
    cfg = load_config(args.config, args.overrides)
    namer = names_only_namer(args.model, make_optimizer(cfg.train, cfg.train.lr).name)
    rank_dirs = sorted(folder.glob("rank*")) or [folder]
    per_rank = []
    for rank, rank_dir in enumerate(rank_dirs):
        steps = read_steps(rank_dir)
        per_rank.append(RankLayerTimes(rank, iterations=[{"iteration": s.step_num, "rows": attribute_step(s, namer)}
                                                      for s in steps]))
    return iteration_table(per_rank)


def _print(summary: dict, args) -> None:
    from semhpc.bench.layer_timing_report import format_summary

    print(json.dumps(summary, indent=2) if args.json else format_summary(summary, args.top), flush=True)
